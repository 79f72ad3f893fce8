"""What every ``om`` command shares: the context options, output and error reporting."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from omfs import _util
from omfs._util import TooDeepError, parse_bounded

__all__ = ["State", "emit_table", "emit_value", "parse_attributes", "progress_bar", "state"]


@dataclass
class State:
    root: str | None = None
    bucket: str | None = None
    cluster: str | None = None
    as_json: bool = False
    context: str | None = None

    def omega(self) -> Any:
        import omfs

        return omfs.setup(self.root, bucket=self.bucket, cluster=self.cluster, context=self.context)


state = State()


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def is_terminal() -> bool:
    return sys.stdout.isatty()


def jsonable(value: Any) -> Any:
    """What a value prints as: its ``to_dict()`` where it has one (metadata, frames)."""
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return value.to_dict()
    return value


_SUMMARY_AT = 100


def summarise(value: Any) -> str | None:
    """A one-paragraph summary of a long list (None when it is short enough to show)."""
    if not isinstance(value, list) or len(value) <= _SUMMARY_AT:
        return None
    head = ", ".join(json.dumps(v, default=str) for v in value[:5])
    tail = ", ".join(json.dumps(v, default=str) for v in value[-3:])
    return (
        f"[{head}, ..., {tail}]  ({len(value):,} values; pipe the output or use --json for "
        "all of them, or --result NAME to store them)"
    )


def emit_value(value: Any) -> None:
    """A document: JSON (highlighted on a terminal; a long list is summarised there)."""
    value = jsonable(value)
    if is_terminal() and not state.as_json:
        summary = summarise(value)
        if summary is not None:
            print(summary)
            return
        _console().print_json(data=value, default=str)
    else:
        print(json.dumps(value, indent=None if state.as_json else 2, default=str))


def emit_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    plain: Callable[[dict[str, Any]], str] | None = None,
    empty: str | None = None,
) -> None:
    """Rows: a table on a terminal, JSON with --json, tab-separated lines when piped.

    ``empty`` is said (on stderr) instead of an empty table.
    """
    if state.as_json:
        print(json.dumps([{c: r.get(c) for c in columns} for r in rows], default=str))
        return
    if not rows and empty is not None:
        print(f"om: {empty}", file=sys.stderr)
        return
    if is_terminal():
        from rich.table import Table

        table = Table(title=title)
        for c in columns:
            table.add_column(c)
        for r in rows:
            table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
        _console().print(table)
        return
    for r in rows:
        print(
            plain(r)
            if plain
            else "\t".join("" if r.get(c) is None else str(r.get(c)) for c in columns)
        )


def shows_progress() -> bool:
    """Whether :func:`progress_bar` shows anything (worth planning a transfer's total for)."""
    return sys.stderr.isatty() and not state.as_json


@contextmanager
def progress_bar(
    description: str, total: int | None, objects: int | None = None
) -> Iterator[Callable[..., None]]:
    """Yields ``advance(nbytes=0, objects=0)``: shows a bar of bytes on a terminal (and of
    objects done out of ``objects``, where given), nothing otherwise."""
    if not shows_progress():
        yield lambda nbytes=0, objects=0: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    ]
    if objects is not None:
        columns.insert(2, TextColumn(f"{{task.fields[done]}}/{objects} objects"))
    with Progress(*columns, console=_console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total, done=0)
        done = 0

        def advance(nbytes: int = 0, objects: int = 0) -> None:
            nonlocal done
            done += objects
            progress.update(task, advance=nbytes, done=done)

        yield advance


def fail(message: str, code: int = 1) -> None:
    """Print one line to stderr (a JSON object with --json) and exit."""
    if state.as_json:
        print(json.dumps({"error": message, "exit_code": code}), file=sys.stderr)
    else:
        print(f"om: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def require_file(path: Path) -> None:
    """Fail with a line that says what ``path`` is, unless it is a regular file to read."""
    if path.is_file():
        return
    if path.is_dir():
        fail(f"{str(path)!r} is a folder: give the path of a file in it")
    if path.exists():
        fail(f"{str(path)!r} is not a regular file (a device or pipe): save it to a file first")
    fail(f"No such file: {str(path)!r}")


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
    if "--json" in front or "--json" in rest[:1]:
        state.as_json = True
    return front + rest


def parse_size(text: str) -> int:
    """``128MB``, ``1GiB``, ``500000`` as a number of bytes; a usage error otherwise."""
    try:
        return _util.parse_size(text)
    except ValueError as exc:
        fail(str(exc), 2)


def _kv(items: list[str] | None, option: str, form: str = "KEY=VALUE") -> list[tuple[str, str]]:
    """``KEY=VALUE`` items (see :func:`omfs._util.parse_kv`); a usage error otherwise."""
    try:
        return _util.parse_kv(items, option, form=form)
    except ValueError as exc:
        fail(str(exc), 2)


def parse_attributes(
    items: list[str] | None, *, as_json: bool = False, option: str = "--attr"
) -> dict[str, Any] | None:
    """``["k=v", ...]`` into a dict of strings (``v=1.10`` stays ``"1.10"``); with
    ``as_json`` each value is JSON (``n=3``, ``tags=["a","b"]``)."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for key, value in _kv(items, option):
        item = f"{key}={value}"
        if not as_json:
            out[key] = value
            continue
        try:
            out[key] = parse_bounded(json.loads, value)
        except TooDeepError as exc:
            fail(f"{option} {key}=...: the value cannot be stored: {exc}", 2)
        except ValueError:
            fail(
                f"{option} {item!r}: the value is not JSON (quote strings: "
                f"{key}='\"{value}\"'), or leave out --attr-json to store it as text",
                2,
            )
    return out


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


#: the library's advice in Python terms, as the CLI says it
_CLI_TERMS = [
    (re.compile(r"\blist\(\) shows the (datasets|models) there"), r"`om \1 list` shows them"),
    (re.compile(r"runtime\.mode\(local=True\)"), "`om runtime --local`"),
    (re.compile(r"\bput\(\) without append=True"), "put without --append"),
    (re.compile(r"\bwithout append=True"), "without --append"),
    (re.compile(r"\bwith append=True"), "with --append"),
    (re.compile(r"om\.models\.put\(\)"), "`om models put`"),
    (
        re.compile(r"open the context with unsafe_commits=True"),
        "use the API with unsafe_commits=True",
    ),
    (re.compile(r"Pass create_bucket=True"), "Pass --create-bucket"),
]


def one_line(exc: BaseException) -> str:
    """An exception as one line of text (its type when it has no message), with advice in
    CLI terms."""
    from omfs.errors import OmfsError

    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, OmfsError) and exc.filename:
        text = f"{exc.strerror or exc}: {exc.filename}"
    text = " ".join(str(text).split()) or type(exc).__name__
    for pattern, replacement in _CLI_TERMS:
        text = pattern.sub(replacement, text)
    return text


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``--param k=v`` of a runtime task: JSON where it parses (``n=3``, ``fit_intercept=
    false``), else text, as keyword arguments of the model's method."""
    out: dict[str, Any] = {}
    for key, value in _kv(items, "--param"):
        try:
            out[key] = parse_bounded(json.loads, value)
        except TooDeepError as exc:
            fail(f"--param {key}=...: {exc}", 2)
        except ValueError:
            out[key] = value
    return out


def run_with_errors(app: Callable[[], Any]) -> None:
    """Run the Typer app; library errors end as one line and exit code 1, Ctrl-C as
    ``om: error: interrupted`` and exit code 130 (OMFS_DEBUG=1 shows the traceback)."""
    from omfs.errors import OmfsError

    try:
        app()
    except (OmfsError, OSError, ValueError, TypeError, KeyError) as exc:
        if os.environ.get("OMFS_DEBUG"):
            raise
        fail(one_line(exc))
    except KeyboardInterrupt:
        if os.environ.get("OMFS_DEBUG"):
            raise
        fail("interrupted", 130)
    except SystemExit as exc:
        # Typer turns Ctrl-C into a silent exit 130: say so
        if exc.code == 130 and _caused_by_interrupt(exc):
            fail("interrupted", 130)
        raise


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if isinstance(seen, KeyboardInterrupt):
            return True
    return False


# options of `om datasets|models promote`, declared once for both nouns
ToBucket = Annotated[str | None, typer.Option("--to-bucket", help="target bucket")]
ToRoot = Annotated[str | None, typer.Option("--to-root", help="target context root URL")]
ToOptions = Annotated[
    str | None, typer.Option("--to-options", help="JSON storage options of --to-root")
]
ToContext = Annotated[
    str | None, typer.Option("--to-context", help="target: a named context of the config file")
]
AsName = Annotated[str | None, typer.Option("--as", help="name in the target")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="say what would be copied")]
Conditions = Annotated[
    list[str] | None,
    typer.Option("--condition", help="fitted, schema-matches (repeatable)"),
]
CreateBucket = Annotated[
    bool, typer.Option("--create-bucket", help="create the target bucket if it does not exist")
]
Force = Annotated[
    bool,
    typer.Option("--force", help="copy even if the target already has this version"),
]


def asks(yes: bool) -> bool:
    """Whether :func:`confirm` will ask (a terminal, and no ``--yes``)."""
    return not yes and sys.stdin.isatty() and sys.stderr.isatty()


def confirm(question: str, yes: bool) -> None:
    """Ask ``question`` on a terminal unless ``yes``; 'no' ends the command (exit 1)."""
    if not asks(yes):
        return
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        fail("not confirmed; nothing was changed")


def drop_command(store: str, name: str, force: bool, yes: bool = False) -> None:
    """``om datasets|models drop``: asks on a terminal before dropping every version."""
    target = getattr(state.omega(), store)
    if "@" not in name and asks(yes) and target.exists(name):
        count = len(target.versions(name))
        confirm(
            f"Drop {store[:-1]} {name!r} in bucket {target.bucket!r} with all its {count} "
            "version(s)?",
            yes,
        )
    dropped = target.drop(name, force=force)
    if state.as_json:
        emit_value({"name": name, "dropped": dropped})


def report_written(meta: Any, path: Any) -> None:
    """After ``get NAME PATH``: the path, or a JSON record with --json."""
    if state.as_json:
        emit_value({"name": meta.name, "version": meta.version, "path": str(path)})
    else:
        print(str(path))


def promote_command(
    store: str,
    name: str,
    to_bucket: str | None,
    to_root: str | None,
    to_options: str | None,
    asname: str | None,
    dry_run: bool,
    conditions: list[str] | None,
    to_context: str | None = None,
    create_bucket: bool = False,
    force: bool = False,
    with_inputs: bool = False,
) -> None:
    """``om datasets|models promote``: copy a version to another bucket and/or context."""
    import json

    import omfs

    if to_bucket is None and to_root is None and to_context is None:
        fail("promote needs --to-bucket, --to-root or --to-context", 2)
    if to_root is not None and to_context is not None:
        fail("give --to-root or --to-context, not both", 2)
    source = state.omega()
    if to_context is not None:
        target = omfs.setup(context=to_context, bucket=to_bucket)
    elif to_root is not None:
        options = json.loads(to_options) if to_options else None
        target = omfs.setup(to_root, bucket=to_bucket or source.bucket, storage_options=options)
    else:
        target = source[to_bucket]  # type: ignore[index]
    src_store, dst_store = getattr(source, store), getattr(target, store)
    how = {
        "asname": asname,
        "conditions": conditions,
        "create_bucket": create_bucket,
        "force": force,
    }
    if with_inputs:
        how["with_inputs"] = True
    if dry_run:
        emit_value(src_store.promote(name, dst_store, dry_run=True, **how))
        return
    total = None
    if shows_progress():  # the bar's total: a dry run, only where a bar is shown
        total = src_store.promote(name, dst_store, dry_run=True, **how)["bytes"]
    with progress_bar(f"promote {name}", total) as advance:
        meta = src_store.promote(name, dst_store, progress=advance, **how)
    if getattr(meta, "unchanged", False):
        print(
            f"om: {target.bucket} already has {name} as {meta.name} v{meta.version}; nothing "
            "was copied (--force copies again)",
            file=sys.stderr,
        )
    if state.as_json:
        emit_value(meta)
    else:
        print(f"{meta.name}\tv{meta.version}\t{target.root}\t{target.bucket}")
