"""Who may talk to an omfs server: the owner's connections on loopback, bearer tokens with
read and write scopes, loopback ``Host`` names.

Shared by ``om serve`` and ``om ui`` (a module of its own because the two servers may not
import each other; the UI's cookies and CSRF rules are :mod:`omfs.ui.access`).

Private by default: a server on a loopback address without a token answers only
connections opened by the OS user who started it. On Linux each connection's owner is
looked up once, when it opens (:func:`peer_uid`, :mod:`omfs.peers`), in uvicorn's
protocol layer (:func:`owner_only_protocol`); another user's connection gets a 403 and is
closed. Where the owner of a connection cannot be told, a token is required instead
(:func:`generated_token_file`). ``--allow-other-users`` opens a loopback server to every
local user on purpose. A server bound to anything but loopback needs a token.

Tokens come from a private token file (``--token-file``, owned by the user, mode 600) or
from ``$OMFS_SERVE_TOKEN`` (a write token); they are compared in constant time. A token
file holds one ``SCOPE TOKEN`` line per token::

    # comments and blank lines are ignored
    write s3cr3t-for-the-pipeline
    read  s3cr3t-for-dashboards

A ``read`` token may call models and read datasets; a ``write`` token may also put and
append datasets. Without any token no one may write.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omfs.errors import ConfigError
from omfs.peers import peer_uid, peer_uid_supported

__all__ = [
    "OPEN",
    "OWNER",
    "READ",
    "TOKEN",
    "TOKEN_ENV",
    "WRITE",
    "AccessDenied",
    "Tokens",
    "check_bind",
    "connection_uid",
    "generated_token_file",
    "host_allowed",
    "host_is_loopback",
    "is_loopback",
    "loopback_guard",
    "owner_only_protocol",
    "peer_uid",
    "peer_uid_supported",
    "read_token_file",
    "refuse_unless_owner",
]

log = logging.getLogger("omfs.access")

READ = "read"
WRITE = "write"
#: the environment variable holding a write token
TOKEN_ENV = "OMFS_SERVE_TOKEN"
_SCOPES = (READ, WRITE)
#: :func:`loopback_guard`'s answers: check each connection's OS user, require a
#: (generated) token, or nothing more to do (tokens, not loopback, or opened on purpose)
OWNER, TOKEN, OPEN = "owner", "token", "open"


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


def host_allowed(header: str | None, bind: str, tokens: Tokens) -> bool:
    """True when a request's ``Host`` header may be answered by a server listening on
    ``bind``: a loopback name, or anything on a non-loopback address that needs a token (a
    page of another site, DNS-rebound to 127.0.0.1, cannot reach a loopback server)."""
    if host_is_loopback(header):
        return True
    return tokens.required and not is_loopback(bind)


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
        """The scope of the ``Authorization: Bearer …`` header's token (the scheme in any
        case); None when it is missing or unknown."""
        if not authorization:
            return None
        scheme, _, given = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        return self.lookup(given)

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
    """``{token: scope}`` from a token file; ConfigError when it is missing, not the
    user's own, readable by others, or has a line that is not ``SCOPE TOKEN``."""
    text = _private_text(path)
    scopes: dict[bytes, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) != 2 or words[0] not in _SCOPES:
            raise ConfigError(
                f"The token file {str(path)!r}, line {number}: write 'read TOKEN' or "
                "'write TOKEN' (a scope, a space, the token)."
            )
        scopes[words[1].encode()] = words[0]
    if not scopes:
        raise ConfigError(f"The token file {str(path)!r} holds no token.")
    return scopes


def _private_text(path: Path) -> str:
    """The text of a file only its owner, the user running this, can read or replace."""
    try:
        link, info = path.lstat(), path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read the token file {str(path)!r}: {exc.strerror}") from None
    if os.name != "posix":
        return text
    me = os.geteuid()
    if info.st_uid != me or link.st_uid != me:
        raise ConfigError(
            f"The token file {str(path)!r} is not yours (owner uid {info.st_uid}, link owner "
            f"uid {link.st_uid}); use a file you own (chown it or write your own)."
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"The token file {str(path)!r} is readable by others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it."
        )
    return text


def check_bind(host: str, tokens: Tokens, could: str = "call it") -> None:
    """Refuse (ConfigError) to bind to a non-loopback address without a token; ``could``:
    what anyone who reaches the server could do."""
    if not is_loopback(host) and not tokens.required:
        raise ConfigError(
            f"Refusing to listen on {host!r} without a token: anyone who can reach it could "
            f"{could}. Give --token-file FILE or set ${TOKEN_ENV}, or listen on 127.0.0.1."
        )


# -- the owner's connections only -------------------------------------------------------


def loopback_guard(host: str, tokens: Tokens, allow_other_users: bool = False) -> str:
    """How a server listening on ``host`` keeps other OS users of this machine out:
    :data:`OWNER` (serve with :func:`owner_only_protocol`), :data:`TOKEN` (this system
    cannot tell who opened a connection: require :func:`generated_token_file`) or
    :data:`OPEN` (tokens are required anyway, or ``allow_other_users``)."""
    if tokens.required or allow_other_users or not is_loopback(host):
        return OPEN
    return OWNER if peer_uid_supported() else TOKEN


def connection_uid(transport: Any) -> int | None:
    """The OS user who opened the connection of an asyncio ``transport``; None when it
    cannot be told (not TCP, not Linux, already gone)."""
    peer = transport.get_extra_info("peername")
    own = transport.get_extra_info("sockname")
    if not isinstance(peer, tuple) or not isinstance(own, tuple):
        return None
    return peer_uid(peer[0], peer[1], own[0], own[1])


_REFUSAL = (
    "this server answers only connections from the OS user who started it; ask them to "
    "start it with a token (--token-file) or --allow-other-users"
)


class _Refused(asyncio.Protocol):
    """Takes over a refused connection: reads the request head, answers 403, closes (or
    closes after 10 s of silence)."""

    def __init__(self, transport: Any):
        self.transport, self.head = transport, b""
        self.timer = asyncio.get_event_loop().call_later(10.0, transport.close)

    def data_received(self, data: bytes) -> None:
        self.head += data
        if b"\r\n\r\n" in self.head or len(self.head) > 65536:
            self.answer()

    def eof_received(self) -> bool | None:
        self.answer()
        return None

    def answer(self) -> None:
        if self.transport.is_closing():
            return
        body = json.dumps({"error": _REFUSAL}).encode()
        self.transport.write(
            b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()


def refuse_unless_owner(transport: Any, owner: int) -> bool:
    """True when the connection is ``owner``'s; else hand it to a protocol that answers
    403 and closes it, and return False."""
    uid = connection_uid(transport)
    if uid == owner:
        return True
    log.warning("refused a connection from %s (uid %s): not uid %d's", _peer(transport), uid, owner)
    refused = _Refused(transport)
    transport.set_protocol(refused)
    return False


def _peer(transport: Any) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else repr(peer)


#: uvicorn's ``http=`` names -> the name of this module's owner-only class of it
_OWNER_CLASSES = {
    "auto": "OwnerOnlyProtocol",
    "h11": "OwnerOnlyH11Protocol",
    "httptools": "OwnerOnlyHttpToolsProtocol",
}
_made: dict[str, type] = {}


def owner_only_protocol(http: str = "auto") -> type:
    """uvicorn's HTTP protocol ``http`` (``auto``, ``h11``, ``httptools``) serving only
    connections opened by this process's OS user; give it as ``uvicorn.Config(http=...)``.
    Each connection is checked once, when it opens; another user's gets a 403 and is
    closed. Needs :func:`peer_uid_supported` (else every connection is refused)."""
    name = _OWNER_CLASSES[http]
    if name not in _made:
        from uvicorn.config import HTTP_PROTOCOLS
        from uvicorn.importer import import_from_string

        base: Any = import_from_string(HTTP_PROTOCOLS[http])
        owner = os.geteuid() if hasattr(os, "geteuid") else -1

        def connection_made(self: Any, transport: Any) -> None:
            if refuse_unless_owner(transport, owner):
                base.connection_made(self, transport)

        _made[name] = type(
            name,
            (base,),
            {"connection_made": connection_made, "__module__": __name__, "__doc__": base.__doc__},
        )
    return _made[name]


def __getattr__(name: str) -> Any:
    """The owner-only protocol classes by name (``omfs.access:OwnerOnlyProtocol``), so a
    uvicorn worker process finds them too."""
    for http, known in _OWNER_CLASSES.items():
        if name == known:
            return owner_only_protocol(http)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def generated_token_file(name: str = "serve", scope: str = READ) -> Path:
    """A private token file (mode 600, in the user's config folder) holding one ``scope``
    token, made the first time and kept: for a loopback server on a system where
    :func:`peer_uid` cannot tell who connects."""
    import platformdirs

    path = platformdirs.user_config_path("omfs", appauthor=False) / f"{name}-token"
    if path.exists():
        read_token_file(path)  # still private and well-formed
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write("# made by omfs for a loopback server; delete it for a new token\n")
        out.write(f"{scope} {secrets.token_urlsafe(32)}\n")
    return path
