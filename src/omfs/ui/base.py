"""What every page handler shares: :class:`UI` (the context, templates, rendering, the
checked form) and the refusals it raises (:class:`CsrfError`, :class:`Forbidden`,
:class:`TooLarge`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from omfs.access import Tokens
from omfs.ui.access import CSRF_FIELD, Grant, Sessions, same_origin

__all__ = ["GRANT", "MAX_FORM", "UI", "CsrfError", "Forbidden", "TooLarge"]

#: bytes of a POSTed form
MAX_FORM = 64 * 1024
#: the key of the request's :class:`~omfs.ui.access.Grant` in the ASGI scope's state
GRANT = "omfs_ui_grant"
_FORM = "application/x-www-form-urlencoded"


class CsrfError(Exception):
    """A POST that is not from one of the UI's own pages (answered with 403)."""


class Forbidden(Exception):
    """A request its scope does not allow, e.g. an action with a read token (403)."""


class TooLarge(Exception):
    """A POSTed form over :data:`MAX_FORM` bytes (413)."""


@dataclass
class UI:
    """What every page handler needs: the context, the templates, the page size, the
    sessions."""

    om: Any
    templates: Environment
    page_size: int = 50
    tokens: Tokens = field(default_factory=Tokens)
    sessions: Sessions = field(default_factory=Sessions)

    def omega(self, request: Request) -> Any:
        """The context on the bucket the request names (``?bucket=``), else om's own."""
        bucket = request.query_params.get("bucket") or request.path_params.get("bucket")
        return self.om[bucket] if bucket and bucket != self.om.bucket else self.om

    @staticmethod
    def grant(request: Request) -> Grant:
        """What the request may do (set by the access middleware)."""
        grant: Grant = request.scope["state"][GRANT]
        return grant

    def require_write(self, request: Request) -> None:
        """Forbidden unless the request may change the store."""
        if not self.grant(request).can_write:
            raise Forbidden(
                "Moving tags and promoting need write access: sign in with a write token "
                "(/login) or ask whoever runs om ui"
            )

    def render(
        self, request: Request, template: str, status: int = 200, om: Any = None, **values: Any
    ) -> Response:
        """The page ``template`` with ``values``, the CSRF token, the bucket and links;
        ``om``: the context to show (default: the request's bucket)."""
        grant = self.grant(request)
        om = self.omega(request) if om is None else om
        page = self.templates.get_template(template).render(
            request=request, csrf=self.sessions.csrf(grant.session), csrf_field=CSRF_FIELD,
            can_write=grant.can_write, om=om, bucket=om.bucket, default_bucket=self.om.bucket,
            url=_url_maker(om.bucket, self.om.bucket), **values,
        )  # fmt: skip
        return HTMLResponse(page, status_code=status)

    def render_error(self, request: Request, status: int, message: str) -> Response:
        """The error page, on om's own bucket (the request's may be what went wrong)."""
        return self.render(request, "error.html", status, om=self.om, message=message)

    async def form(self, request: Request) -> dict[str, str]:
        """The POSTed form of one of the UI's own pages: same origin, at most
        :data:`MAX_FORM` bytes (read no further: :class:`TooLarge`), with the session's
        CSRF token (else :class:`CsrfError`)."""
        if not same_origin(request.url.scheme, request.headers):
            raise CsrfError("actions take a form of the UI's own pages (Origin does not match)")
        if request.headers.get("content-type", "").split(";")[0].strip() != _FORM:
            raise CsrfError("actions take a form of the UI's own pages")
        body = await read_limited(request, MAX_FORM)
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            raise CsrfError("actions take a form of the UI's own pages") from None
        data = dict(pairs)
        if not self.sessions.csrf_ok(self.grant(request).session, data.get(CSRF_FIELD)):
            raise CsrfError("this form needs the page's CSRF token: reload the page and retry")
        return data


async def read_limited(request: Request, limit: int) -> bytes:
    """The request's body, read chunk by chunk; :class:`TooLarge` as soon as it passes
    ``limit`` bytes (a declared ``Content-Length`` over it is refused unread)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"a form takes at most {limit // 1024} KB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"a form takes at most {limit // 1024} KB")
        chunks.append(chunk)
    return b"".join(chunks)


def _url_maker(bucket: str, default: str) -> Any:
    """``url(path, **params)`` for templates: the path with the current bucket kept."""

    def url(path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v is not None and v != ""}
        if bucket != default:
            query.setdefault("bucket", bucket)
        return path + ("?" + urlencode(query) if query else "")

    return url
