"""What every page handler shares: :class:`UI` (the context, templates, rendering, the
CSRF-checked form) and :class:`CsrfError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from omfs.ui.access import CSRF_COOKIE, CSRF_FIELD, csrf_ok, new_csrf_token

__all__ = ["UI", "CsrfError"]

_MAX_FORM = 64 * 1024  # bytes of a POSTed form


class CsrfError(Exception):
    """A POST without the session's CSRF token (answered with 403)."""


@dataclass
class UI:
    """What every page handler needs: the context, the templates, the page size."""

    om: Any
    templates: Environment
    page_size: int = 50

    def omega(self, request: Request) -> Any:
        """The context on the bucket the request names (``?bucket=``), else om's own."""
        bucket = request.query_params.get("bucket") or request.path_params.get("bucket")
        return self.om[bucket] if bucket and bucket != self.om.bucket else self.om

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        """The page ``template`` with ``values``, the CSRF token, the bucket and links."""
        csrf = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
        om = self.omega(request)
        page = self.templates.get_template(template).render(
            request=request, csrf=csrf, csrf_field=CSRF_FIELD, om=om, bucket=om.bucket,
            default_bucket=self.om.bucket,
            url=_url_maker(om.bucket, self.om.bucket), **values,
        )  # fmt: skip
        response = HTMLResponse(page, status_code=status)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        return response

    async def form(self, request: Request) -> dict[str, str]:
        """The POSTed form (URL-encoded), after its CSRF field matched the session's cookie
        (else :class:`CsrfError`, a 403)."""
        body = await request.body()
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind != "application/x-www-form-urlencoded" or len(body) > _MAX_FORM:
            raise CsrfError("actions take a form of the UI's own pages")
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            raise CsrfError("actions take a form of the UI's own pages") from None
        data = dict(pairs)
        if not csrf_ok(request.cookies.get(CSRF_COOKIE), data.get(CSRF_FIELD)):
            raise CsrfError("this form needs the page's CSRF token: reload the page and retry")
        return data


def _url_maker(bucket: str, default: str) -> Any:
    """``url(path, **params)`` for templates: the path with the current bucket kept."""

    def url(path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v is not None and v != ""}
        if bucket != default:
            query.setdefault("bucket", bucket)
        return path + ("?" + urlencode(query) if query else "")

    return url
