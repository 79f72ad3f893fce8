"""Running the UI: who may connect, uvicorn on the chosen address, the addresses printed
and the browser opened once it listens.

Private by default: on a loopback address without a token, uvicorn answers only
connections of the OS user who ran ``om ui`` (:func:`omfs.access.owner_only_protocol`);
where that cannot be told, a token is made (:func:`omfs.access.generated_token_file`).
With tokens, ``om ui`` prints a one-time sign-in link (never a token in an address).
"""

from __future__ import annotations

import socket
import threading
import webbrowser
from typing import Any, TextIO

from omfs.access import (
    OWNER,
    TOKEN,
    WRITE,
    Tokens,
    generated_token_file,
    loopback_guard,
    owner_only_protocol,
)

__all__ = ["addresses", "serve"]

_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def _url(host: str, port: int, path: str = "/") -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def addresses(host: str, port: int, code: str | None) -> tuple[str, str | None]:
    """The address to open on this machine (with the one-time sign-in ``code``), and, for
    a server listening on every address, the one other machines use (by host name)."""
    path = f"/login?code={code}" if code else "/"
    if host in _ANY:
        return _url(_ANY[host], port, path), _url(socket.gethostname(), port)
    return _url(host, port, path), None


def serve(
    uvicorn: Any,
    om: Any,
    host: str,
    port: int,
    token_file: str | None,
    *,
    open_browser: bool = True,
    out: TextIO,
) -> None:
    """Serve the UI of ``om`` until interrupted; print the address (and open it) once it
    listens."""
    from omfs.ui.app import create_app

    guard = loopback_guard(host, Tokens.load(token_file))
    if guard == TOKEN:
        token_file = str(generated_token_file("ui", WRITE))
    owner_only = guard == OWNER
    app = create_app(om, host=host, token_file=token_file, owner_only=owner_only)
    http = owner_only_protocol() if owner_only else "auto"
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", http=http)
    )
    needs_code = not owner_only

    def announce() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.05)
        if not server.started:
            return
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        code = app.state.sessions.one_time_code(WRITE) if needs_code else None
        here, elsewhere = addresses(host, bound, code)
        note = "one-time sign-in link; " if code else ""
        print(f"om ui: {here}  ({note}Ctrl-C stops it)", file=out, flush=True)
        if elsewhere:
            print(f"om ui: from other machines {elsewhere} (sign in with a token)", file=out)
        if open_browser:
            webbrowser.open(here)

    threading.Thread(target=announce, daemon=True, name="om-ui-announce").start()
    server.run()
