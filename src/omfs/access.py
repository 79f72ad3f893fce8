"""Who may talk to an omfs server: loopback binding, bearer tokens, read and write scopes.

Shared by ``om serve`` and ``om ui`` (a module of its own because the two servers may not
import each other; the UI's cookies and CSRF rules are :mod:`omfs.ui.access`). A server
bound to anything but a loopback address needs a token. Tokens come from a private token
file (``--token-file``) or from ``$OMFS_SERVE_TOKEN``; they are compared in constant time.

A token file holds one token per line, optionally preceded by its scope::

    # comments and blank lines are ignored
    write s3cr3t-for-the-pipeline
    read  s3cr3t-for-dashboards
    a-bare-token-is-a-write-token

A ``read`` token may call models and read datasets; a ``write`` token may also put and
append datasets. Without any token (loopback only) everyone may read and no one may write.
``om ui`` accepts a token of either scope.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from omfs.errors import ConfigError

__all__ = [
    "READ",
    "TOKEN_ENV",
    "WRITE",
    "AccessDenied",
    "Tokens",
    "check_bind",
    "host_is_loopback",
    "is_loopback",
    "read_token_file",
]

READ = "read"
WRITE = "write"
#: the environment variable holding a write token
TOKEN_ENV = "OMFS_SERVE_TOKEN"
_SCOPES = (READ, WRITE)


class AccessDenied(Exception):
    """A request without the right token: ``status`` 401 (none or unknown) or 403 (too
    weak for what it asks)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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
    """The tokens a server accepts, each with its scope (``read`` or ``write``)."""

    scopes: dict[bytes, str] = field(default_factory=dict)

    @property
    def required(self) -> bool:
        """True when requests must carry a token."""
        return bool(self.scopes)

    @classmethod
    def load(cls, token_file: str | os.PathLike[str] | None = None, env: bool = True) -> Tokens:
        """The tokens of ``token_file`` (which must be private to its owner) and of
        ``$OMFS_SERVE_TOKEN`` (a write token)."""
        tokens = cls()
        if token_file is not None:
            tokens.scopes.update(read_token_file(Path(token_file)))
        value = os.environ.get(TOKEN_ENV, "").strip() if env else ""
        if value:
            tokens.scopes[value.encode()] = WRITE
        return tokens

    def scope(self, authorization: str | None) -> str | None:
        """The scope of the ``Authorization: Bearer …`` header's token; None when it is
        missing or unknown."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        return self.lookup(authorization[7:])

    def accepts(self, given: str | None) -> bool:
        """True when ``given`` is one of the tokens, of either scope (``om ui``'s rule)."""
        return bool(given) and self.lookup(given or "") is not None

    def lookup(self, given: str) -> str | None:
        """The scope of token ``given``, None when unknown; every known token is compared,
        in constant time."""
        data = given.strip().encode()
        found = None
        for token, scope in self.scopes.items():
            if hmac.compare_digest(token, data):
                found = scope
        return found

    def check(self, authorization: str | None, needs: str = READ) -> str:
        """The scope the request has, or :class:`AccessDenied` when it has less than
        ``needs``. Without tokens every request may read, and none may write."""
        if not self.required:
            if needs == WRITE:
                raise AccessDenied(
                    403, "writes need a write token: start the server with --token-file"
                )
            return READ
        scope = self.scope(authorization)
        if scope is None:
            what = "a valid" if authorization else "an"
            raise AccessDenied(401, f"this server needs {what} 'Authorization: Bearer' token")
        if needs == WRITE and scope != WRITE:
            raise AccessDenied(403, "a read token cannot write; use a write token")
        return scope


def read_token_file(path: Path) -> dict[bytes, str]:
    """``{token: scope}`` from a token file; ConfigError when it is missing, readable by
    others, or malformed."""
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
    scopes: dict[bytes, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) == 1:
            words = [WRITE, words[0]]
        if len(words) != 2 or words[0] not in _SCOPES:
            raise ConfigError(
                f"The token file {str(path)!r}, line {number}: use 'read TOKEN', "
                "'write TOKEN' or a bare TOKEN (a write token)."
            )
        scopes[words[1].encode()] = words[0]
    if not scopes:
        raise ConfigError(f"The token file {str(path)!r} holds no token.")
    return scopes


def check_bind(host: str, tokens: Tokens, could: str = "call it") -> None:
    """Refuse (ConfigError) to bind to a non-loopback address without a token; ``could``:
    what anyone who reaches the server could do."""
    if not is_loopback(host) and not tokens.required:
        raise ConfigError(
            f"Refusing to listen on {host!r} without a token: anyone who can reach it could "
            f"{could}. Give --token-file FILE or set ${TOKEN_ENV}, or listen on 127.0.0.1."
        )
