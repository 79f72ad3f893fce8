"""Signing a browser in: a one-time code from ``om ui``'s own link, or a token typed into
the sign-in form (never a token in an address). Either way the browser gets a new session
(a fresh id: a session planted before signing in is not kept) with the code's or token's
scope."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from omfs.ui.access import CSRF_FIELD, Session, Sessions
from omfs.ui.base import UI

__all__ = ["login_routes"]


def _page(ui: UI, request: Request, status: int = 200, problem: str | None = None) -> Response:
    """The sign-in form (it shows nothing of the context)."""
    session = ui.grant(request).session
    page = ui.templates.get_template("login.html").render(
        csrf=ui.sessions.csrf(session), csrf_field=CSRF_FIELD, problem=problem
    )
    return HTMLResponse(page, status_code=status)


def _signed_in(request: Request, sessions: Sessions, scope: str) -> Response:
    """Home, with a new session of ``scope`` in the session cookie."""
    server = request.scope.get("server")
    name = sessions.cookie_name(server[1] if server else 0)
    session: Session = sessions.new(scope)
    response = RedirectResponse("/", 303)
    response.set_cookie(name, sessions.cookie(session), httponly=True, samesite="strict", path="/")
    return response


def login_routes(ui: UI) -> list[Route]:
    """``GET /login`` (the form, or ``?code=`` from om ui's link) and ``POST /login``."""

    async def show(request: Request) -> Response:
        code = request.query_params.get("code")
        if code is None:
            if not ui.tokens.required:
                return RedirectResponse("/", 303)
            return _page(ui, request)
        scope = ui.sessions.redeem(code)
        if scope is None:
            problem = "This sign-in link was used already or has expired: sign in with a token."
            return _page(ui, request, 403, problem)
        return _signed_in(request, ui.sessions, scope)

    async def submit(request: Request) -> Response:
        form = await ui.form(request)
        scope = ui.tokens.lookup(form.get("token", "")) if form.get("token") else None
        if scope is None:
            return _page(ui, request, 401, "That is not a token of this om ui.")
        return _signed_in(request, ui.sessions, scope)

    return [Route("/login", show, methods=["GET"]), Route("/login", submit, methods=["POST"])]
