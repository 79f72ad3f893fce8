"""The ASGI application of ``om ui``: :func:`create_app` wires pages, access and templates.

Pages are rendered on the server with Jinja2 (autoescape on for every template, SVG
included: nothing read from storage reaches a page unescaped). htmx is vendored under
``static/``; there is no JavaScript build step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omfs.access import READ, WRITE, Tokens, check_bind, host_allowed
from omfs.errors import NotFoundError, OmfsError
from omfs.ui.access import Grant, Session, Sessions
from omfs.ui.base import GRANT, UI, CsrfError, Forbidden, TooLarge

__all__ = ["create_app"]

_HERE = Path(__file__).parent
#: what a request without any access may still ask for: the sign-in page, styles, icons
_OPEN_PATHS = ("/login", "/static/", "/favicon.ico")
_SIGN_IN = (
    "<!doctype html><title>Sign in · om ui</title><p>om ui needs a token: "
    '<a href="/login">sign in</a>.</p>'
)


class Access:
    """ASGI middleware: the ``Host`` the request names, its session (a signed cookie, made
    when missing) and its scope (a token's, or the connection's)."""

    def __init__(
        self, app: ASGIApp, tokens: Tokens, sessions: Sessions, host: str, owner_only: bool
    ):
        self.app, self.tokens, self.sessions = app, tokens, sessions
        self.host, self.owner_only = host, owner_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not host_allowed(request.headers.get("host"), self.host, self.tokens):
            await PlainTextResponse("om ui answers loopback hosts only", 403)(scope, receive, send)
            return
        name = Sessions.cookie_name(_port(scope))
        session = self.sessions.read(request.cookies.get(name))
        fresh = session is None
        session = session or self.sessions.new()
        grant = Grant(session, self.scope_of(request, session))
        scope.setdefault("state", {})[GRANT] = grant
        if grant.scope is None and not scope["path"].startswith(_OPEN_PATHS):
            await HTMLResponse(_SIGN_IN, 401)(scope, receive, send)
            return
        if fresh:
            send = _setting_cookie(send, name, self.sessions.cookie(session))
        await self.app(scope, receive, send)

    def scope_of(self, request: Request, session: Session) -> str | None:
        """``write``, ``read`` or None: the strongest of the bearer token's and the session's
        scopes; without tokens, ``write`` when the server answers its owner's connections
        only, else ``read``."""
        if not self.tokens.required:
            return WRITE if self.owner_only else READ
        found = {self.tokens.scope(request.headers.get("authorization")), session.scope}
        return WRITE if WRITE in found else READ if READ in found else None


def _port(scope: Scope) -> int:
    server = scope.get("server")
    return int(server[1]) if server and server[1] is not None else 0


def _setting_cookie(send: Send, name: str, value: str) -> Send:
    """``send``, setting the session cookie on the response unless it sets that cookie."""
    header = f"{name}={value}; HttpOnly; Path=/; SameSite=Strict".encode("latin-1")
    prefix = name.encode() + b"="

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(k.lower() == b"set-cookie" and v.startswith(prefix) for k, v in headers):
                headers.append((b"set-cookie", header))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _templates() -> Environment:
    """The Jinja environment: autoescape on for every template, whatever its suffix."""
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from omfs.ui import render

    env.filters.update(render.FILTERS)
    return env


def _status(exc: Exception) -> int:
    if isinstance(exc, CsrfError | Forbidden):
        return 403
    if isinstance(exc, TooLarge):
        return 413
    return 404 if isinstance(exc, NotFoundError) else 400


def _error_page(ui: UI) -> Any:
    async def handler(request: Request, exc: Exception) -> Response:
        return ui.render_error(request, _status(exc), " ".join(str(exc).split()))

    return handler


def create_app(
    om: Any,
    *,
    host: str = "127.0.0.1",
    token_file: str | os.PathLike[str] | None = None,
    page_size: int = 50,
    owner_only: bool = False,
) -> Starlette:
    """The ``om ui`` web application for context ``om`` (its bucket first).

    ``host`` is where it will listen: anything but loopback needs a token
    (``token_file`` or ``$OMFS_SERVE_TOKEN``), else ConfigError. Without tokens, requests
    may change the store only with ``owner_only`` (the server answers its OS user's
    connections only: :func:`omfs.access.owner_only_protocol`, as ``om ui`` serves);
    otherwise they may browse. ``page_size`` rows per list page. ``app.state.sessions``
    makes one-time sign-in codes.
    """
    from omfs.ui.login import login_routes
    from omfs.ui.routes import routes

    tokens = Tokens.load(token_file)
    check_bind(host, tokens, could="read and change the context")
    ui = UI(om, _templates(), page_size, tokens=tokens)
    static = Mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    handler = _error_page(ui)
    access = Middleware(
        Access, tokens=tokens, sessions=ui.sessions, host=host, owner_only=owner_only
    )
    app = Starlette(
        routes=[*routes(ui), *login_routes(ui), static],
        middleware=[access],
        exception_handlers={
            exc: handler for exc in (OmfsError, CsrfError, Forbidden, TooLarge, ValueError)
        },
    )
    app.state.sessions = ui.sessions
    return app
