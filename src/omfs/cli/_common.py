"""What several ``om`` commands share: option parsers, and the bodies of the commands
that datasets and models both have (drop, promote, get's report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from omfs import _util
from omfs._util import TooDeepError, parse_bounded
from omfs.cli.app import App
from omfs.cli.errors import OptionError
from omfs.errors import UsageError

__all__ = [
    "drop_command",
    "parse_attributes",
    "parse_params",
    "parse_size",
    "parse_storage_options",
    "plan_lines",
    "promote_command",
    "refuse_overwrite",
    "report_written",
    "require_file",
    "restore_command",
    "write_payload_command",
]


def refuse_overwrite(app: App, path: Path | str, force: bool) -> None:
    """Stop with one line when ``path`` exists and ``--force`` was not given."""
    if not force and Path(path).exists():
        app.fail(f"{path} exists; pass --force to overwrite it")


def require_file(path: Path) -> None:
    """Refuse, in a line that says what ``path`` is, anything but a regular file to read."""
    if path.is_file():
        return
    if path.is_dir():
        raise UsageError(f"{str(path)!r} is a folder: give the path of a file in it")
    if path.exists():
        raise UsageError(
            f"{str(path)!r} is not a regular file (a device or pipe): save it to a file first"
        )
    raise UsageError(f"No such file: {str(path)!r}")


def parse_size(text: str) -> int:
    """``128MB``, ``1GiB``, ``500000`` as a number of bytes; a usage error otherwise."""
    try:
        return _util.parse_size(text)
    except ValueError as exc:
        raise OptionError(str(exc)) from None


def parse_storage_options(items: list[str] | None, option: str) -> dict[str, Any]:
    """``KEY=VALUE`` storage options (see :func:`omfs._util.parse_options`); a usage error
    otherwise."""
    try:
        return _util.parse_options(items, option)
    except ValueError as exc:
        raise OptionError(str(exc)) from None


def _key_value(item: str, option: str) -> tuple[str, str]:
    [(key, value)] = _kv([item], option)
    return key, value


def _kv(items: list[str] | None, option: str, form: str = "KEY=VALUE") -> list[tuple[str, str]]:
    """``KEY=VALUE`` items (see :func:`omfs._util.parse_kv`); a usage error otherwise."""
    try:
        return _util.parse_kv(items, option, form=form)
    except ValueError as exc:
        raise OptionError(str(exc)) from None


def parse_attributes(
    items: list[str] | None, *, as_json: bool = False, option: str = "--attr"
) -> dict[str, Any] | None:
    """``["k=v", ...]`` into a dict of strings (``v=1.10`` stays ``"1.10"``); with
    ``as_json`` each value is JSON (``n=3``, ``tags=["a","b"]``)."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, value = _key_value(item, option)
        if not as_json:
            out[key] = value
            continue
        try:
            out[key] = parse_bounded(json.loads, value)
        except TooDeepError as exc:
            raise OptionError(f"{option} {key}=...: the value cannot be stored: {exc}") from None
        except ValueError:
            raise OptionError(
                f"{option} {item!r}: the value is not JSON (quote strings: "
                f"{key}='\"{value}\"'), or leave out --attr-json to store it as text"
            ) from None
    return out


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``--param k=v`` of a runtime task: JSON where it parses (``n=3``, ``fit_intercept=
    false``), else text, as keyword arguments of the model's method."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, value = _key_value(item, "--param")
        try:
            out[key] = parse_bounded(json.loads, value)
        except TooDeepError as exc:
            raise OptionError(f"--param {key}=...: {exc}") from None
        except ValueError:
            out[key] = value
    return out


# `--at` of `om datasets|models get|metadata|versions`
At = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="TIME",
        help="as it was at this time (what NAME or NAME@tag selected then): ISO 8601, e.g. "
        "2026-03-01T12:00:00Z or 2026-03-01T13:00+01:00; a time without a zone is UTC",
    ),
]


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


# options of `om datasets|models|jobs drop`
NoError = Annotated[bool, typer.Option("--force", help="no error if it does not exist")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


def drop_command(app: App, store: str, name: str, force: bool, yes: bool = False) -> None:
    """``om datasets|models drop``: asks on a terminal before dropping every version."""
    target = app.store(store)
    if "@" not in name and app.asks(yes) and target.exists(name):
        count = len(target.versions(name))
        app.confirm(
            f"Drop {store[:-1]} {name!r} in bucket {target.bucket!r} with all its {count} "
            "version(s)?",
            yes,
        )
    dropped = target.drop(name, force=force)
    if app.as_json:
        app.value({"name": name, "dropped": dropped})
    else:
        print(_dropped_line(store, name, target.bucket, dropped))


def _dropped_line(store: str, name: str, bucket: str, dropped: bool) -> str:
    """What ``drop`` did, in one line, and how to undo it."""
    what = store[:-1]
    if not dropped:
        return f"no {what} {name!r} in bucket {bucket!r}; nothing was dropped"
    if "@" in name:
        return f"dropped {what} version {name!r} from bucket {bucket!r}"
    return (
        f"dropped {what} {name!r} with all its versions from bucket {bucket!r}; "
        f"`om --bucket {bucket} {store} restore {name}` brings it back until gc collects it"
    )


def restore_command(app: App, store: str, name: str) -> None:
    """``om datasets|models|jobs restore``: bring back a dropped object, and say so."""
    meta = app.store(store).restore(name)
    if app.as_json:
        app.value({"name": name, "restored": True, "version": meta.version})
    else:
        app.note(f"restored {store[:-1]} {name!r} (latest version {meta.version})")


def write_payload_command(
    app: App, store: str, name: str, path: Path, selected: dict[str, Any], force: bool
) -> None:
    """``om models|jobs get NAME PATH``: the version's verified payload bytes (never
    unpickled or run) written to ``path`` atomically; ``selected``: ``version``, ``at``."""
    from omfs._util import atomic_path

    objects = app.store(store)
    meta = objects.metadata(name, **selected)
    refuse_overwrite(app, path, force)
    with atomic_path(path) as tmp, app.progress(f"get {name}", meta.get("size")) as advance:
        tmp.write_bytes(objects.read_payload(meta, progress=advance))
    report_written(app, meta, path)


def report_written(app: App, meta: Any, path: Any) -> None:
    """After ``get NAME PATH``: the path, or a JSON record with --json."""
    if app.as_json:
        app.value({"name": meta.name, "version": meta.version, "path": str(path)})
    else:
        print(str(path))


def _promote_target(
    app: App,
    to_bucket: str | None,
    to_root: str | None,
    to_options: str | None,
    to_context: str | None,
) -> Any:
    """The context that ``--to-bucket``, ``--to-root`` and ``--to-context`` name."""
    import omfs

    if to_bucket is None and to_root is None and to_context is None:
        raise OptionError("promote needs --to-bucket, --to-root or --to-context")
    if to_root is not None and to_context is not None:
        raise OptionError("give --to-root or --to-context, not both")
    if to_context is not None:
        return omfs.setup(context=to_context, bucket=to_bucket)
    source = app.omega()
    if to_root is None:
        return source[to_bucket]
    try:
        options = json.loads(to_options) if to_options else None
    except ValueError as exc:
        raise UsageError(f"--to-options is not JSON: {exc}") from None
    return omfs.setup(to_root, bucket=to_bucket or source.bucket, storage_options=options)


def promote_command(
    app: App,
    store: str,
    name: str,
    target: tuple[str | None, str | None, str | None, str | None],
    how: dict[str, Any],
    dry_run: bool,
) -> None:
    """``om datasets|models promote``: copy a version to another bucket and/or context.

    ``target``: ``--to-bucket``, ``--to-root``, ``--to-options``, ``--to-context``; ``how``:
    the keyword arguments of the stores' ``promote``."""
    dst = _promote_target(app, *target)
    src_store, dst_store = app.store(store), getattr(dst, store)
    if dry_run:
        plan = src_store.promote(name, dst_store, dry_run=True, **how)
        if app.as_json:
            app.value(plan)
        else:
            print("\n".join(plan_lines(plan, store[:-1], dst.bucket, how)))
        return
    total = None
    if app.shows_progress():  # the bar's total: a dry run, only where a bar is shown
        total = src_store.promote(name, dst_store, dry_run=True, **how)["bytes"]
    with app.progress(f"promote {name}", total) as advance:
        meta = src_store.promote(name, dst_store, progress=advance, **how)
    if getattr(meta, "unchanged", False):
        app.note(
            f"{dst.bucket} already has {name} as {meta.name} v{meta.version}; nothing "
            "was copied (--force copies again)"
        )
    if app.as_json:
        app.value(meta)
    else:
        print(f"{meta.name}\tv{meta.version}\t{dst.root}\t{dst.bucket}")


def plan_lines(plan: Any, noun: str, bucket: str, how: dict[str, Any]) -> list[str]:
    """A promotion's dry run for people: what would be copied where, as which version, with
    which tags (``--json`` prints the plan itself)."""
    source, target = plan["source"], plan["target"]
    what = f"{noun} {source['name']} v{source['version']}"
    if plan.get("unchanged"):
        return [
            f"{bucket} already has {what} as {target['name']} v{target['version']}; nothing "
            "would be copied (--force copies again)"
        ]
    lines = [
        f"would promote {what} -> {target['name']} v{target['version']} in bucket "
        f"{target['bucket']}",
        f"  from      {source['context']}  bucket {source['bucket']}",
        f"  to        {target['context']}  bucket {target['bucket']}",
        f"  copy      {_copy_line(plan)}",
        f"  tags      {', '.join(plan.get('tags') or []) or '(none)'}",
    ]
    if plan.get("conditions"):
        lines.append(f"  checked   {', '.join(plan['conditions'])}")
    for sub in plan.get("inputs") or []:
        lines.append("  input     " + _input_line(sub))
    if how.get("with_schedule"):
        lines.append("  schedule  copied too (replacing the target's)")
    return lines


def _copy_line(plan: Any) -> str:
    """``2 file(s), 1.2 kB, server-side``: what a plan copies."""
    from rich.filesize import decimal

    own = plan["bytes"] - sum(sub["bytes"] for sub in plan.get("inputs") or [])
    how = "server-side" if plan.get("server_side") else "streamed"
    return f"{plan['files']} file(s), {decimal(own)}, {how}"


def _input_line(sub: Any) -> str:
    """One training dataset of a ``--with-inputs`` plan."""
    source, target = sub["source"], sub["target"]
    head = f"dataset {source['name']} v{source['version']} -> {target['name']} v{target['version']}"
    if sub.get("unchanged"):
        return f"{head} (already there)"
    return f"{head}: {_copy_line(sub)}"
