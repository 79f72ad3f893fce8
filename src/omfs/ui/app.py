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
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from omfs.access import Tokens, check_bind, host_is_loopback
from omfs.errors import NotFoundError, OmfsError
from omfs.ui.access import AUTH_COOKIE
from omfs.ui.base import UI, CsrfError

__all__ = ["create_app"]

_HERE = Path(__file__).parent


class Access:
    """ASGI middleware: the token (when one is required) or a loopback ``Host``."""

    def __init__(self, app: ASGIApp, tokens: Tokens):
        self.app, self.tokens = app, tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not self.tokens.required:
            if not host_is_loopback(request.headers.get("host")):
                await PlainTextResponse("om ui answers loopback hosts only", 403)(
                    scope, receive, send
                )
                return
            await self.app(scope, receive, send)
            return
        given = request.query_params.get("token")
        if given is not None and self.tokens.accepts(given):
            response = RedirectResponse(request.url.remove_query_params("token"), 303)
            response.set_cookie(AUTH_COOKIE, given, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        bearer = self.tokens.scope(request.headers.get("authorization"))
        if self.tokens.accepts(request.cookies.get(AUTH_COOKIE)) or bearer is not None:
            await self.app(scope, receive, send)
            return
        await PlainTextResponse("om ui needs its token: open the address om ui printed", 401)(
            scope, receive, send
        )


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


def _error_page(ui: UI) -> Any:
    async def handler(request: Request, exc: Exception) -> Response:
        if isinstance(exc, CsrfError):
            return PlainTextResponse(str(exc), 403)
        status = 404 if isinstance(exc, NotFoundError) else 400
        message = " ".join(str(exc).split())
        return ui.render(request, "error.html", status, message=message)

    return handler


def create_app(
    om: Any,
    *,
    host: str = "127.0.0.1",
    token_file: str | os.PathLike[str] | None = None,
    page_size: int = 50,
) -> Starlette:
    """The ``om ui`` web application for context ``om`` (its bucket first).

    ``host`` is where it will listen: anything but loopback needs a token
    (``token_file`` or ``$OMFS_SERVE_TOKEN``), else ConfigError. ``page_size`` rows per list
    page.
    """
    from omfs.ui.routes import routes

    tokens = Tokens.load(token_file)
    check_bind(host, tokens, could="read and change the context")
    ui = UI(om, _templates(), page_size)
    static = Mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    handler = _error_page(ui)
    return Starlette(
        routes=[*routes(ui), static],
        middleware=[Middleware(Access, tokens=tokens)],
        exception_handlers={OmfsError: handler, CsrfError: handler, ValueError: handler},
    )
