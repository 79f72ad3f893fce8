"""``om serve``: the context's models and datasets over HTTP (the ``serve`` extra)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from omfs.cli.app import App, get_app
from omfs.cli.errors import OptionError


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to listen on (not loopback: a token)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="server processes")] = 1,
    token_file: Annotated[
        Path | None,
        typer.Option(help="private file of read/write TOKEN lines [env: OMFS_SERVE_TOKEN]"),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", metavar="NAME@TAG", help="serve only these (repeatable)"),
    ] = None,
    route: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME=TAG:W,TAG:W", help="canary weights for requests to NAME"),
    ] = None,
    shadow: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME=TAG", help="also run TAG on NAME's requests; audit only"),
    ] = None,
    no_audit: Annotated[
        bool, typer.Option("--no-audit", help="do not record answers in serving/audit")
    ] = False,
    max_body: Annotated[str, typer.Option(help="largest request body (413 above)")] = "16MiB",
    allow_other_users: Annotated[
        bool,
        typer.Option(
            "--allow-other-users",
            help="on loopback without a token, answer every local user, not only you",
        ),
    ] = False,
) -> None:
    """Serve the context's models (all, or each --model NAME@TAG) and datasets over HTTP:
    /v1/models/NAME@TAG/predict, MLflow's /invocations for one model, /metrics, /docs.
    On loopback without a token it answers only your own OS user's connections."""
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise OptionError("om serve needs the serve extra: pip install 'omfs[serve]'") from None
    from omfs.serve import app as make_app

    run = get_app(ctx)
    kwargs: dict[str, Any] = {
        "models": model or None,
        "route": route or None,
        "shadow": shadow or None,
        "audit": not no_audit,
        "token_file": str(token_file) if token_file else None,
        "host": host,
        "max_body": _size(max_body),
    }
    http = _guard(kwargs, allow_other_users)
    _run(run, make_app(run.omega(), **kwargs), kwargs, port, workers, http)


def _size(text: str) -> int:
    from omfs._util import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise OptionError(f"--max-body: {exc}") from None


def _guard(kwargs: dict[str, Any], allow_other_users: bool) -> str:
    """uvicorn's protocol: owner-only on loopback without a token; where the system cannot
    tell who connects, a generated token file (its path printed) instead."""
    from omfs.access import OWNER, TOKEN, Tokens, generated_token_file, loopback_guard

    guard = loopback_guard(kwargs["host"], Tokens.load(kwargs["token_file"]), allow_other_users)
    if guard == OWNER:
        return "omfs.access:OwnerOnlyProtocol"
    if guard == TOKEN:
        path = generated_token_file("serve")
        kwargs["token_file"] = str(path)
        print(
            "om serve: this system cannot tell which user opens a connection, so requests "
            f'need the token in {path}: curl -H "Authorization: Bearer $(tail -n1 {path} | '
            "cut -d' ' -f2)\" ... (or --allow-other-users)",
            file=sys.stderr,
        )
    return "auto"


def _run(run: App, asgi: Any, kwargs: dict[str, Any], port: int, workers: int, http: str) -> None:
    """Listen (the app was made, so models, routes and tokens were checked); more than one
    worker: each makes its own app from the same settings."""
    import uvicorn

    host, served = kwargs["host"], ", ".join(kwargs["models"] or ["every model"])
    print(f"om serve: {served} of {run.omega()!r} on http://{host}:{port}", file=sys.stderr)
    # no access log: the audit and /metrics record every request, and a log line per
    # request (formatted even when the level hides it) costs throughput
    settings: dict[str, Any] = {"log_level": "warning", "access_log": False}
    if workers == 1:
        freeze_startup_objects()
        hang_up_as_terminate()
        uvicorn.run(asgi, host=host, port=port, http=http, **settings)
        return
    os.environ["OMFS_SERVE_CONFIG"] = _settings(run, kwargs)
    uvicorn.run(
        "omfs.serve.asgi:from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=http,
        **settings,
    )


def hang_up_as_terminate() -> None:
    """A SIGHUP (its terminal closed) stops the server as SIGTERM does, flushing the audit:
    uvicorn handles SIGINT and SIGTERM only, and a HUP would end it on the spot."""
    import signal

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: signal.raise_signal(signal.SIGTERM))


def freeze_startup_objects() -> None:
    """Leave what the server loaded (modules, models) out of later garbage collections: a
    full collection would otherwise walk pandas, Arrow and scikit-learn while requests wait."""
    import gc

    gc.collect()
    gc.freeze()


def _settings(run: App, kwargs: dict[str, Any]) -> str:
    """Every setting a worker needs to open the same context and make the same app."""
    import json

    setup = {
        "root": run.root,
        "bucket": run.bucket,
        "context": run.context,
        "storage_options": run.storage_options or None,
    }
    return json.dumps({"setup": setup, "app": kwargs})
