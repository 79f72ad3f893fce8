"""What ``om ui`` adds to the servers' access rules (:mod:`omfs.access`): signed session
cookies, one-time sign-in codes, CSRF tokens and the same-origin rule of every POST.

Every browser gets a session: a random id and a scope (``read``, ``write`` or none: the
connection decides), signed with a key made when the process starts, in an HttpOnly,
SameSite=Strict cookie named after the port (``omfs_ui_8765``). A cookie this process did
not sign (planted by another port's page: cookies ignore ports) counts as no session.

A POST must carry the session's CSRF token (an HMAC of the session id with the same key,
so a cookie and field an attacker chose never match) and come from a page of the UI itself:
its ``Origin`` header, or without one its ``Referer``, names the scheme and ``Host`` the
request was sent to. A POST with neither header is refused too (give ``Origin`` when
scripting a POST).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from omfs.access import READ, WRITE

__all__ = [
    "CODE_TTL",
    "COOKIE_PREFIX",
    "CSRF_FIELD",
    "Grant",
    "Session",
    "Sessions",
    "same_origin",
]

#: the form field holding the CSRF token
CSRF_FIELD = "csrf"
#: the session cookie's name, before the port
COOKIE_PREFIX = "omfs_ui_"
#: seconds a one-time sign-in code stays valid
CODE_TTL = 900.0
_NONE = "-"  # a session without a scope of its own


@dataclass(frozen=True)
class Session:
    """One browser's session: its random id and the scope a token gave it (None: the scope
    the connection has)."""

    sid: str
    scope: str | None = None


@dataclass(frozen=True)
class Grant:
    """What one request may do: its session and its scope (``read``, ``write``, or None:
    nothing but sign in)."""

    session: Session
    scope: str | None

    @property
    def can_write(self) -> bool:
        """True when the request may move tags and promote."""
        return self.scope == WRITE


class Sessions:
    """The sessions of one process: its secret key, the cookies it signs, the CSRF tokens
    and the one-time sign-in codes."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._codes: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _sign(self, *parts: str) -> str:
        return hmac.new(self._key, "\n".join(parts).encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def cookie_name(port: Any) -> str:
        """The session cookie's name on ``port`` (one UI per port keeps its own session)."""
        return f"{COOKIE_PREFIX}{port}"

    def new(self, scope: str | None = None) -> Session:
        """A new session with a fresh random id."""
        return Session(secrets.token_urlsafe(24), scope)

    def cookie(self, session: Session) -> str:
        """The cookie value of ``session``: ``id.scope.signature``."""
        scope = session.scope or _NONE
        return f"{session.sid}.{scope}.{self._sign('session', session.sid, scope)}"

    def read(self, value: str | None) -> Session | None:
        """The session of a cookie value, or None when this process did not sign it."""
        sid, _, rest = (value or "").partition(".")
        scope, _, signature = rest.partition(".")
        if not sid or scope not in (READ, WRITE, _NONE):
            return None
        if not hmac.compare_digest(signature, self._sign("session", sid, scope)):
            return None
        return Session(sid, None if scope == _NONE else scope)

    def csrf(self, session: Session) -> str:
        """The CSRF token of ``session``'s forms."""
        return self._sign("csrf", session.sid)

    def csrf_ok(self, session: Session | None, given: object) -> bool:
        """True when ``given`` is ``session``'s CSRF token."""
        if session is None or not isinstance(given, str) or not given:
            return False
        return hmac.compare_digest(given.encode(), self.csrf(session).encode())

    def one_time_code(self, scope: str = WRITE, ttl: float = CODE_TTL) -> str:
        """A code that signs one browser in with ``scope`` once, within ``ttl`` seconds."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            now = time.monotonic()
            self._codes = {c: v for c, v in self._codes.items() if v[1] > now}
            self._codes[code] = (scope, now + ttl)
        return code

    def redeem(self, code: str) -> str | None:
        """The scope of a one-time code, which is then spent; None when unknown, spent or
        expired."""
        with self._lock:
            found = self._codes.pop(code, None)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]


def same_origin(scheme: str, headers: Any) -> bool:
    """True when the request's ``Origin`` (or, without one, its ``Referer``) is the
    ``scheme://Host`` it was sent to: a POST from the UI's own pages."""
    host = headers.get("host")
    if not host:
        return False
    expected = f"{scheme}://{host}".lower()
    origin = headers.get("origin")
    if origin is not None:
        return str(origin).lower() == expected
    referer = str(headers.get("referer") or "").lower()
    return referer == expected or referer.startswith(expected + "/")
