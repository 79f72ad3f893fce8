"""What omfs knows of each storage protocol: which ones have an atomic put-if-absent (its
commit point), their servers and where their credentials come from, what their listings
tell, and the one-time check that a compatible server honours the conditional create.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from omfs.errors import StorageUnavailableError, UnsafeStorageError

__all__ = [
    "AZURE",
    "GCS",
    "LOCAL",
    "MEMORY",
    "OBJECT_STORE_PROTOCOLS",
    "S3",
    "Backend",
    "backend_for",
    "connection_problem",
    "credentials_hint",
    "credentials_in_environment",
]


@dataclass(frozen=True)
class Backend:
    """One family of protocols as omfs sees it."""

    name: str
    protocols: tuple[str, ...]
    #: an atomic put-if-absent, as the protocol documents it (a compatible server of an
    #: object store is checked to honour it before the first write)
    conditional_create: bool
    #: how an object store spells the conditional create ("": not an object store)
    condition: str = ""
    #: where the credentials come from ("": none are needed)
    credentials: str = ""
    #: the vendor's own server, which honours the condition as documented
    vendor_server: str = ""
    #: the environment variables that give (or point at) credentials
    credential_variables: tuple[str, ...] = ()

    @property
    def object_store(self) -> bool:
        """An object store with a conditional create of its own (S3, GCS, Azure)."""
        return bool(self.condition)


S3 = Backend(
    "Amazon S3",
    ("s3", "s3a"),
    conditional_create=True,
    condition="If-None-Match",
    credentials="e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
    vendor_server="https://s3.amazonaws.com",
    credential_variables=(
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ),
)
GCS = Backend(
    "Google Cloud Storage",
    ("gs", "gcs"),
    conditional_create=True,
    condition="ifGenerationMatch=0",
    credentials="e.g. GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`",
    vendor_server="https://storage.googleapis.com",
    credential_variables=("GOOGLE_APPLICATION_CREDENTIALS",),
)
AZURE = Backend(
    "Azure Blob Storage",
    ("abfs", "abfss", "az"),
    conditional_create=True,
    condition="If-None-Match",
    credentials=(
        "e.g. AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME and "
        "AZURE_STORAGE_ACCOUNT_KEY"
    ),
    credential_variables=(
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_CLIENT_SECRET",
    ),
)
#: The protocols of the object stores with a conditional create of their own.
OBJECT_STORE_PROTOCOLS = S3.protocols + GCS.protocols + AZURE.protocols
LOCAL = Backend("local folder", ("file", "local"), conditional_create=True)
#: one process's memory: a lock makes its create atomic
MEMORY = Backend("memory", ("memory",), conditional_create=True)
_KNOWN = (S3, GCS, AZURE, LOCAL, MEMORY)
_AZURE_HOST_SUFFIX = ".blob.core.windows.net"


def backend_for(protocol: str) -> Backend:
    """The profile of ``protocol``; an unknown one has no conditional create."""
    for backend in _KNOWN:
        if protocol in backend.protocols:
            return backend
    return Backend(protocol, (protocol,), conditional_create=False)


def credentials_hint(url: str) -> str:
    """Where the credentials of ``url``'s object store come from."""
    return backend_for(url.split("://", 1)[0]).credentials or S3.credentials


def credentials_in_environment(url: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The variables of ``environ`` (this process's environment) that give credentials for
    ``url``'s object store (names only, never values)."""
    environ = os.environ if environ is None else environ
    variables = backend_for(url.split("://", 1)[0]).credential_variables
    return [name for name in variables if environ.get(name)]


def s3_endpoint(options: dict[str, Any]) -> str | None:
    """The S3 endpoint URL named by storage options or the environment (None: AWS)."""
    client = options.get("client_kwargs") or {}
    found = (
        options.get("endpoint_url")
        or client.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    return str(found) if found else None


def server_of(backend: Backend, fs: Any, options: dict[str, Any]) -> str | None:
    """The URL of an object store's server (None for other protocols)."""
    if backend is S3:
        return s3_endpoint(options) or S3.vendor_server
    if backend is GCS:
        # gcsfs resolves endpoint_url and STORAGE_EMULATOR_HOST into this attribute only
        return str(getattr(fs, "_location", "") or GCS.vendor_server).rstrip("/")
    if backend is AZURE:
        client = getattr(fs, "service_client", None)
        return str(client.url).rstrip("/") if client is not None else None
    return None


def endpoint_of(backend: Backend, server: str | None, options: dict[str, Any]) -> str | None:
    """The server of a compatible store that is not the vendor's own (an emulator, MinIO,
    Ceph, ...); None for the vendors' servers and for other protocols."""
    if server is None:
        return None
    if backend is S3:
        return s3_endpoint(options)
    if backend is GCS:
        return None if server == GCS.vendor_server else server
    host = urlsplit(server).hostname or ""
    return None if host.endswith(_AZURE_HOST_SUFFIX) else server


# -- the conditional create of compatible servers -----------------------------------------
#: Compatible servers (emulators, S3 look-alikes) already checked in this process: True
#: when a second create of one key failed, as it must.
_checked_endpoints: dict[str, bool] = {}
_checked_lock = threading.Lock()


def was_checked(endpoint: str) -> bool:
    """Whether ``endpoint`` was already probed in this process."""
    with _checked_lock:
        return endpoint in _checked_endpoints


def honours_condition(fs: Any, endpoint: str, probe: str) -> bool:
    """Once per process and compatible server: does a second create of the file ``probe``
    fail, as a conditional create must? (The probe file is removed again.)"""
    with _checked_lock:
        known = _checked_endpoints.get(endpoint)
    if known is not None:
        return known
    fs.pipe_file(probe, b"1", mode="create")
    try:
        fs.pipe_file(probe, b"2", mode="create")
    except FileExistsError:
        known = True
    else:
        known = False
    finally:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(probe)
    with _checked_lock:
        _checked_endpoints[endpoint] = known
    return known


def ignored_condition_error(backend: Backend, endpoint: str, url: str) -> UnsafeStorageError:
    """The error for a compatible server that ignores the conditional create."""
    return UnsafeStorageError(
        f"The server at {endpoint} ignores {backend.condition} (a second create of one key "
        f"succeeded), so omfs cannot commit atomically to {url}.",
        hint="Use a server that supports conditional writes (AWS S3, Google Cloud "
        "Storage, Azure Blob Storage, Azurite, recent MinIO, Ceph RGW), or open the "
        "context with unsafe_commits=True for a single writer.",
        cli_hint="Use a server that supports conditional writes (AWS S3, Google Cloud "
        "Storage, Azure Blob Storage, Azurite, recent MinIO, Ceph RGW), or use the API "
        "with unsafe_commits=True for a single writer.",
    )


def no_conditional_create_error(protocol: str, url: str) -> UnsafeStorageError:
    """The error for a write to a protocol without an atomic put-if-absent."""
    return UnsafeStorageError(
        f"omfs cannot commit atomically on {protocol}:// storage ({url}): it "
        "has no put-if-absent for this protocol, so two writers could overwrite each "
        "other's versions. Reading works.",
        hint="To write anyway, open the context with unsafe_commits=True (and make sure "
        "only one writer runs at a time).",
        cli_hint="To write anyway, use the API with unsafe_commits=True (and make sure "
        "only one writer runs at a time).",
    )


# -- reaching a server --------------------------------------------------------------------
def check_root(url: str, server: str | None, fs: Any, root: str) -> None:
    """Raise a clear error when the root of an object store cannot be used: an endpoint
    that is down or unknown (at once, not after the client's retries), or a missing S3
    bucket (missing credentials and access denied raise from the listing)."""
    if server is None:
        return
    if not was_checked(server):
        preflight(url, server)
    top = root.split("/", 1)[0]
    try:
        fs.ls(top, detail=False)
    except FileNotFoundError:
        raise StorageUnavailableError(
            f"The storage root {url!r} is not reachable: the bucket {top!r} does not "
            "exist. Create it first, or pass another root."
        ) from None


def connection_problem(host: str, port: int, timeout: float = 3.0) -> tuple[str, str] | None:
    """Open and close one TCP connection to ``host:port``: None when it works, else
    ``(kind, cause)`` with kind ``dns``, ``refused``, ``timeout`` or ``other`` (servers of
    omfs, S3 endpoints and Dask schedulers, are checked so before their clients retry)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return "dns", f"the host name {host!r} does not resolve ({exc.strerror})"
    except ConnectionRefusedError:
        return "refused", f"{host}:{port} refused the connection"
    except TimeoutError:
        return "timeout", f"{host}:{port} did not answer within {timeout:g} s"
    except OSError as exc:
        return "other", str(exc.strerror or exc)


_PREFLIGHT_ADVICE = {
    "dns": "Check the endpoint_url and the network (DNS).",
    "refused": "Start the server or fix the endpoint_url.",
    "timeout": "Check the network.",
    "other": "Check the network.",
}


def preflight(url: str, endpoint: str, timeout: float = 3.0) -> None:
    """Fail at once, with the cause, when ``endpoint``'s host is unknown or refuses
    connections (the S3 client would retry for several seconds first)."""
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    host = parts.hostname
    if not host:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    problem = connection_problem(host, port, timeout)
    if problem is not None:
        kind, cause = problem
        raise StorageUnavailableError(
            f"Cannot reach the endpoint {endpoint} of {url}: {cause}. {_PREFLIGHT_ADVICE[kind]}"
        )


# -- what listings tell -------------------------------------------------------------------
def modified(info: dict[str, Any], unknown: float = float("inf")) -> float:
    """When a listed file was last written, in seconds since the epoch, by the storage's
    clock (s3fs ``LastModified``, gcsfs ``mtime``/``updated``, adlfs ``last_modified``).
    A file of unknown age counts as written in the future (``unknown``): gc must never
    take it for an old leftover."""
    for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
        stamp = info.get(key)
        if stamp is not None and hasattr(stamp, "timestamp"):
            return float(stamp.timestamp())
        if isinstance(stamp, int | float) and stamp > 0:
            return float(stamp)
    return unknown


def listed_md5(info: dict[str, Any]) -> str | None:
    """The MD5 of a file's content as hex, where its listing entry tells it: an S3 ETag of
    a single-part upload, GCS ``md5Hash``, Azure ``content_md5``; else None."""
    etag = str(info.get("ETag") or "").strip('"')
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):
        return etag
    raw: Any = info.get("md5Hash")
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            raw = base64.b64decode(raw, validate=True)
    else:
        raw = (info.get("content_settings") or {}).get("content_md5")
    if isinstance(raw, bytes | bytearray) and len(raw) == 16:
        return bytes(raw).hex()
    return None
