"""Who may use ``om ui``: loopback only unless a token is given, and CSRF on every POST.

The rules mirror ``om serve``'s (``omfs.serve.access``): a UI bound to anything but a
loopback address needs a token (``--token-file`` or ``$OMFS_SERVE_TOKEN``). A browser
presents the token once as ``/?token=…`` (``om ui`` prints that address); the UI then keeps
it in an HttpOnly, SameSite=Strict cookie. Without a token, requests must name a loopback
host (``Host: 127.0.0.1:…``), which stops a DNS-rebinding page from reaching the UI.

State-changing requests are POSTs that carry the session's CSRF token twice: in the
``omfs_csrf`` cookie (SameSite=Strict, set on the first page) and in the form's ``csrf``
field. A POST whose two copies are missing or differ is refused with 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from omfs.errors import ConfigError

__all__ = [
    "AUTH_COOKIE",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "TOKEN_ENV",
    "Tokens",
    "check_bind",
    "csrf_ok",
    "host_is_loopback",
    "is_loopback",
    "new_csrf_token",
]

#: the environment variable holding a token (the same as om serve's)
TOKEN_ENV = "OMFS_SERVE_TOKEN"
AUTH_COOKIE = "omfs_ui_auth"
CSRF_COOKIE = "omfs_csrf"
CSRF_FIELD = "csrf"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.1``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_is_loopback(header: str | None) -> bool:
    """True when a ``Host`` header (``127.0.0.1:8765``, ``[::1]:80``) names a loopback host."""
    if not header:
        return False
    host = header.rsplit(":", 1)[0] if header.count(":") == 1 or "]:" in header else header
    return is_loopback(host)


@dataclass
class Tokens:
    """The tokens the UI accepts (any scope of om serve's token file may browse and act)."""

    values: list[bytes] = field(default_factory=list)

    @property
    def required(self) -> bool:
        """True when requests must carry a token."""
        return bool(self.values)

    @classmethod
    def load(cls, token_file: str | os.PathLike[str] | None = None, env: bool = True) -> Tokens:
        """The tokens of ``token_file`` (private to its owner) and of ``$OMFS_SERVE_TOKEN``."""
        tokens = cls()
        if token_file is not None:
            tokens.values.extend(read_token_file(Path(token_file)))
        value = os.environ.get(TOKEN_ENV, "").strip() if env else ""
        if value:
            tokens.values.append(value.encode())
        return tokens

    def accepts(self, given: str | None) -> bool:
        """True when ``given`` is one of the tokens (every one compared in constant time)."""
        if not given:
            return False
        data = given.strip().encode()
        found = False
        for token in self.values:
            found |= hmac.compare_digest(token, data)
        return found


def read_token_file(path: Path) -> list[bytes]:
    """The tokens of a token file (``read TOKEN``, ``write TOKEN`` or bare ``TOKEN`` lines);
    ConfigError when it is missing, readable by others, or holds none."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read the token file {str(path)!r}: {exc.strerror}") from None
    if os.name == "posix" and stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"The token file {str(path)!r} is readable by others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it."
        )
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) > 2 or (len(words) == 2 and words[0] not in ("read", "write")):
            raise ConfigError(
                f"The token file {str(path)!r}, line {number}: use 'read TOKEN', "
                "'write TOKEN' or a bare TOKEN."
            )
        tokens.append(words[-1].encode())
    if not tokens:
        raise ConfigError(f"The token file {str(path)!r} holds no token.")
    return tokens


def check_bind(host: str, tokens: Tokens) -> None:
    """Refuse (ConfigError) to listen on a non-loopback address without a token."""
    if not is_loopback(host) and not tokens.required:
        raise ConfigError(
            f"Refusing to listen on {host!r} without a token: anyone who can reach it could "
            f"read and change the context. Give --token-file FILE or set ${TOKEN_ENV}, or "
            "listen on 127.0.0.1."
        )


def new_csrf_token() -> str:
    """A fresh random CSRF token for one browser session."""
    return secrets.token_urlsafe(32)


def csrf_ok(cookie: str | None, form_value: object) -> bool:
    """True when the form's CSRF field equals the session's cookie (both present)."""
    if not cookie or not isinstance(form_value, str) or not form_value:
        return False
    return hmac.compare_digest(cookie.encode(), form_value.encode())
