"""The :class:`App` of one ``om`` run, and the command group that builds and guards it.

The root group makes one :class:`App` (the global options: context, bucket, ``--json``, ...)
and hands it to every command through Click's ``ctx.obj``, as pypa/hatch does; a command
takes it (:func:`get_app`), calls the library, displays and aborts through it. The group
also moves global options that follow a subcommand to the front, and reports user errors
in one line (:mod:`omfs.cli.errors`), in a real process and in a test's ``CliRunner`` alike.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    # the Context TyperGroup's methods take: Click's own, which typer >= 0.2x vendors
    from typer._click import Context as ClickContext

from omfs.cli.completion import completes_names
from omfs.cli.errors import USER_ERRORS, debugging, error_line, exit_code
from omfs.cli.helptext import readable_help
from omfs.cli.output import Output

__all__ = ["App", "OmGroup", "get_app", "hoist_global_options", "quiet_libraries"]


@dataclass
class App(Output):
    """What every command of one ``om`` run shares: the context it names and how to print."""

    root: str | None = None
    bucket: str | None = None
    cluster: str | None = None
    context: str | None = None
    #: ``--storage-option KEY=VALUE`` (beside ``--root s3://...``)
    storage_options: dict[str, Any] = field(default_factory=dict)
    as_json: bool = False
    #: ``om runtime --require ... --local``
    require: list[str] = field(default_factory=list)
    local: bool = False
    _omega: Any = field(default=None, repr=False)

    def omega(self) -> Any:
        """The context the global options name (opened once per run)."""
        if self._omega is None:
            import omfs

            self._omega = omfs.setup(
                self.root,
                bucket=self.bucket,
                cluster=self.cluster,
                context=self.context,
                storage_options=self.storage_options or None,
            )
        return self._omega

    def store(self, noun: str) -> Any:
        """``datasets``, ``models`` or ``jobs`` of the context."""
        return getattr(self.omega(), noun)

    def asks(self, yes: bool) -> bool:
        """Whether :meth:`confirm` will ask (a terminal, and no ``--yes``)."""
        return not yes and sys.stdin.isatty() and sys.stderr.isatty()

    def confirm(self, question: str, yes: bool) -> None:
        """Ask ``question`` on a terminal unless ``yes``; 'no' ends the command (exit 1)."""
        if not self.asks(yes):
            return
        print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            self.fail("not confirmed; nothing was changed")


def get_app(ctx: ClickContext) -> App:
    """The :class:`App` of this run (made on first use, e.g. by a noun's own callback)."""
    app: App = ctx.ensure_object(App)
    return app


#: the order of ``om --help``: the everyday nouns first, maintenance last
COMMAND_ORDER = (
    "datasets", "models", "buckets", "contexts", "runtime", "cluster", "info",
    "sync", "push", "pull", "export", "import", "fsck", "upgrade", "gc",
)  # fmt: skip


class OmGroup(TyperGroup):
    """The root command group: global options anywhere, user errors in one line, help in
    readable metavars with the everyday nouns first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        readable_help(self)
        completes_names(self)

    def list_commands(self, ctx: ClickContext) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        args = hoist_global_options(self, args)
        if "--json" in args[: args.index("--") if "--" in args else len(args)]:
            get_app(ctx).as_json = True  # errors before the callback runs are JSON too
        try:
            rest: list[str] = super().parse_args(ctx, args)
        except CLICK_USAGE_ERROR as exc:
            _usage_error_as_json(ctx, exc)
            raise
        return rest

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `om ... | head`: the reader has all it wanted
            _quiet_stdout()
            raise SystemExit(0) from None
        except USER_ERRORS as exc:
            if debugging():
                raise
            get_app(ctx).fail(error_line(exc), exit_code(exc))
        except CLICK_USAGE_ERROR as exc:  # a subcommand's arguments, an unknown command
            _usage_error_as_json(ctx, exc)
            raise


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


#: Click's usage error (a wrong option or argument; Typer vendors Click, so it is reached
#: through the public ``typer.BadParameter``, one of its kinds)
CLICK_USAGE_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


def _usage_error_as_json(ctx: ClickContext, exc: Any) -> None:
    """With ``--json``, a usage error is a JSON object on stderr too (as any error); for
    people, Click's own usage text stays."""
    run = get_app(ctx)
    if run.as_json and not debugging():
        run.fail(exc.format_message(), exc.exit_code)


def hoist_global_options(command: Any, args: list[str]) -> list[str]:
    """Move the top-level options (``--root X``, ``--json``, ``-v`` ...) that follow a
    subcommand to the front, where Click expects them, unless that subcommand has an
    option of the same name (``om contexts add NAME --root URL``)."""
    globals_: dict[str, bool] = {}  # option -> takes a value
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option":
            for opt in param.opts:
                globals_[opt] = not param.is_flag
    front: list[str] = []
    rest: list[str] = []
    current = command
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            rest += args[i:]
            break
        if token in (getattr(current, "commands", None) or {}):
            current = current.commands[token]
            rest.append(token)
            i += 1
            continue
        name = token.split("=", 1)[0]
        own = {o for p in current.params for o in getattr(p, "opts", [])}
        if current is not command and name in globals_ and name not in own:
            takes_value = globals_[name] and "=" not in token
            front += args[i : i + 1 + int(takes_value)]
            i += 1 + int(takes_value)
            continue
        rest.append(token)
        i += 1
    return front + rest


def quiet_libraries(verbose: bool) -> None:
    """Dask's and the storage libraries' logs and warnings stay out of the CLI's output
    unless ``-v``: omfs says what went wrong in one line."""
    import logging
    import warnings

    if verbose:
        os.environ.pop("DASK_LOGGING__DISTRIBUTED", None)
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        return
    # read by dask's config when distributed is first imported (after this)
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "critical"
    for name in ("distributed", "tornado", "asyncio", "aiobotocore", "botocore", "s3fs"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="distributed")
    warnings.filterwarnings("ignore", category=ResourceWarning)
