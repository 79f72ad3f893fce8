"""Running the UI: uvicorn on the chosen address, and the browser opened once it listens."""

from __future__ import annotations

import threading
import webbrowser
from typing import Any, TextIO

from omfs.access import Tokens

__all__ = ["address", "serve"]


def address(host: str, port: int, token_file: str | None) -> str:
    """The URL to open: with ``?token=`` when the UI needs a token (the first one)."""
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    tokens = Tokens.load(token_file)
    if tokens.required:
        url += "?token=" + next(iter(tokens.scopes)).decode()
    return url


def serve(
    uvicorn: Any,
    app: Any,
    host: str,
    port: int,
    token_file: str | None,
    *,
    open_browser: bool = True,
    out: TextIO,
) -> None:
    """Serve ``app`` until interrupted; print the address (and open it) once listening."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.05)
        if not server.started:
            return
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        url = address(host, bound, token_file)
        print(f"om ui: {url}  (Ctrl-C stops it)", file=out, flush=True)
        if open_browser:
            webbrowser.open(url)

    threading.Thread(target=announce, daemon=True, name="om-ui-announce").start()
    server.run()
