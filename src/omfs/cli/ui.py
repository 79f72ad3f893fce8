"""``om ui``: the context in a local web page (the ``serve`` extra)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from omfs.cli.app import get_app
from omfs.cli.errors import OptionError


def ui(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="port to listen on (0: any free port)")] = 8765,
    host: Annotated[
        str, typer.Option(help="address to listen on (not loopback: needs a token)")
    ] = "127.0.0.1",
    no_browser: Annotated[bool, typer.Option("--no-browser", help="do not open a browser")] = False,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="private file of SCOPE TOKEN lines, as om serve's ($OMFS_SERVE_TOKEN is "
            "itself a write token)"
        ),
    ] = None,
) -> None:
    """Open the context in a web page: environments, datasets, models (tag history,
    lineage, promotion), jobs and serving. Listens on 127.0.0.1 until Ctrl-C, answering
    only your own OS user's connections; with a token file, prints a one-time sign-in link."""
    try:
        import uvicorn
    except ImportError:
        raise OptionError("om ui needs the serve extra: pip install 'omfs[serve]'") from None
    from omfs.ui.serving import serve

    om = get_app(ctx).omega()
    token = str(token_file) if token_file else None
    # refuses a non-loopback host without a token (ConfigError: one line, exit non-zero)
    serve(uvicorn, om, host, port, token, open_browser=not no_browser, out=sys.stderr)
