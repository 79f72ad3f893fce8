"""``om contexts ...``: the named contexts of the config file."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from omfs.cli._common import parse_storage_options
from omfs.cli.app import get_app

cli = typer.Typer(
    rich_markup_mode=None,
    help="Contexts: named roots (with cluster and options) in the config file.",
    no_args_is_help=True,
)


@cli.command("list")
def list_(ctx: typer.Context) -> None:
    """List the named contexts: name, root, bucket, cluster, and which is the default and
    which the remote of push and pull."""
    from omfs import config

    app = get_app(ctx)
    rows = [
        {
            "name": name,
            "root": entry["root"],
            "bucket": entry.get("bucket"),
            "cluster": entry.get("cluster"),
            # --json: true/false; for people, a star
            **{
                role: bool(entry[role]) if app.as_json else ("*" if entry[role] else "")
                for role in ("default", "remote")
            },
        }
        for name, entry in config.contexts().items()
    ]
    app.table(
        rows,
        ["name", "root", "bucket", "cluster", "default", "remote"],
        empty=f"no named contexts in {config.config_path()}; 'om contexts add' adds one",
    )


@cli.command()
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="context name, e.g. prod")],
    root: Annotated[str, typer.Option(help="root folder or URL, e.g. s3://acme-ml/prod")],
    bucket: Annotated[str | None, typer.Option(help="default bucket of this context")] = None,
    cluster: Annotated[str | None, typer.Option(help="Dask scheduler, e.g. tcp://s:8786")] = None,
    storage_option: Annotated[
        list[str] | None,
        typer.Option("--storage-option", help="KEY=VALUE (repeatable; dotted keys nest)"),
    ] = None,
    default: Annotated[
        bool, typer.Option("--default", help="make it the default context of omfs and om")
    ] = False,
    remote: Annotated[
        bool, typer.Option("--remote", help="make it the remote of om push and om pull")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="replace a context of the same name")
    ] = False,
) -> None:
    """Add a named context to the config file (replace one only with --force). It becomes
    the default only with --default; until then `om --context NAME` (or OMFS_CONTEXT)
    selects it. A local folder is stored as an absolute path."""
    from omfs import config

    options = parse_storage_options(storage_option, "--storage-option")
    path = config.add_context(
        name,
        root,
        bucket=bucket,
        cluster=cluster,
        storage_options=options,
        default=default,
        remote=remote,
        replace=force,
    )
    roles = [r for r, on in (("the default", default), ("the remote", remote)) if on]
    print(
        f"om: context {name!r} saved in {path}"
        + (f" as {' and '.join(roles)}" if roles else f"; use it with --context {name}"),
        file=sys.stderr,
    )
    secrets = config.secret_options(options)
    if secrets:
        print(_plain_text_note(secrets, path, root), file=sys.stderr)


def _plain_text_note(secrets: list[str], path: object, root: str) -> str:
    """Say, once, that credentials given as storage options sit in the file as plain text,
    and where else they can live."""
    from omfs.storage import credentials_hint

    return (
        f"om: note: {', '.join(map(repr, secrets))} {'is' if len(secrets) == 1 else 'are'} kept "
        f"as plain "
        f"text in {path} (readable by you only, mode 0600). Credentials can live outside it: "
        f"in environment variables or the storage's own credentials file "
        f"({credentials_hint(root)}; an AWS profile in ~/.aws/credentials is chosen with "
        "--storage-option profile=NAME)."
    )


@cli.command()
def remove(name: Annotated[str, typer.Argument(help="context name")]) -> None:
    """Remove a named context from the config file (its data is not touched)."""
    from omfs import config

    path = config.remove_context(name)
    print(f"om: context {name!r} removed from {path}", file=sys.stderr)
