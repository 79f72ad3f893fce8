"""What ``om ui`` adds to the servers' access rules (:mod:`omfs.access`): its session cookie
and CSRF on every POST.

As ``om serve``, a UI bound to anything but a loopback address needs a token
(``--token-file`` or ``$OMFS_SERVE_TOKEN``, of either scope). A browser presents the token
once as ``/?token=…`` (``om ui`` prints that address); the UI then keeps it in an HttpOnly,
SameSite=Strict cookie. Without a token, requests must name a loopback host (``Host:
127.0.0.1:…``), which stops a DNS-rebinding page from reaching the UI.

State-changing requests are POSTs that carry the session's CSRF token twice: in the
``omfs_csrf`` cookie (SameSite=Strict, set on the first page) and in the form's ``csrf``
field. A POST whose two copies are missing or differ is refused with 403.
"""

from __future__ import annotations

import hmac
import secrets

__all__ = ["AUTH_COOKIE", "CSRF_COOKIE", "CSRF_FIELD", "csrf_ok", "new_csrf_token"]

AUTH_COOKIE = "omfs_ui_auth"
CSRF_COOKIE = "omfs_csrf"
CSRF_FIELD = "csrf"


def new_csrf_token() -> str:
    """A fresh random CSRF token for one browser session."""
    return secrets.token_urlsafe(32)


def csrf_ok(cookie: str | None, form_value: object) -> bool:
    """True when the form's CSRF field equals the session's cookie (both present)."""
    if not cookie or not isinstance(form_value, str) or not form_value:
        return False
    return hmac.compare_digest(cookie.encode(), form_value.encode())
