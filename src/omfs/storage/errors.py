"""Failures of the storage itself (botocore, aiohttp, the Azure and Google SDKs, the OS)
translated into omfs errors: no credentials, access denied, cannot reach."""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar, cast

from omfs.errors import (
    MissingCredentialsError,
    OmfsError,
    StorageAccessError,
    StorageUnavailableError,
)
from omfs.storage.backends import credentials_hint

__all__ = ["storage_error", "translated", "translating"]

_UNREACHABLE = {
    "EndpointConnectionError",
    "ServiceRequestError",
    "ServiceResponseError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ProxyConnectionError",
    "SSLError",
    "ClientConnectorError",
    "ClientConnectionError",
    "ServerDisconnectedError",
    "ServerTimeoutError",
    "FSTimeoutError",
}
_NO_CREDENTIALS = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "NoAuthTokenError",
    "DefaultCredentialsError",
    "ClientAuthenticationError",
}
#: HTTP errors of the Azure SDK and gcsfs, which carry the status (``status_code``/``code``)
_HTTP_ERRORS = {"HttpResponseError", "HttpError"}
_F = TypeVar("_F", bound=Callable[..., Any])


def storage_error(exc: BaseException, url: str) -> OmfsError | None:
    """The omfs error for a failure of the storage itself (None: not such a failure)."""
    if isinstance(exc, OmfsError):
        return None
    names = {t.__name__ for t in type(exc).__mro__}
    # the first line: Azure appends the server's whole XML answer
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    cause = " ".join(first.split()) or type(exc).__name__
    status = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    if (
        names & _NO_CREDENTIALS
        or (status in (401, 403) and names & _HTTP_ERRORS)
        or (isinstance(exc, ValueError) and "with credentials" in cause)  # adlfs
    ):
        # Azure answers a wrong key with 403 AuthorizationFailure, GCS a bad token with 401
        summary = f"No usable credentials for {url} ({cause})."
        error = MissingCredentialsError(
            summary,
            hint=f"Set them in the environment ({credentials_hint(url)}) or in the context's "
            "storage_options.",
        )
        error.summary = summary
        return error
    if isinstance(exc, PermissionError) or (type(exc) is OSError and first.startswith("Forbidden")):
        # gcsfs raises a plain OSError("Forbidden: ...") for a 403
        return StorageAccessError(
            f"Access denied by {url} ({cause}). Check the credentials and that they may "
            "read and write this location."
        )
    if names & _UNREACHABLE or isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return StorageUnavailableError(
            f"Cannot reach the storage of {url} ({cause}). Check the network and the "
            "endpoint, or work on a local context meanwhile."
        )
    return None


@contextlib.contextmanager
def translating(url: str) -> Iterator[None]:
    """Failures of the storage of ``url`` leave the block as omfs errors."""
    try:
        yield
    except Exception as exc:
        error = storage_error(exc, url)
        if error is None:
            raise
        raise error from exc


class _HasUrl(Protocol):
    url: str


def translated(method: _F) -> _F:
    """Failures of the storage itself leave a Storage method as omfs errors."""

    @functools.wraps(method)
    def wrapper(self: _HasUrl, *args: Any, **kwargs: Any) -> Any:
        with translating(self.url):
            return method(self, *args, **kwargs)

    return cast(_F, wrapper)
