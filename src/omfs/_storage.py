"""The storage seam: one context's fsspec filesystem and root, addressed by relative keys.

Nothing above this module touches fsspec directly. Keys are ``/``-separated paths relative
to the context root, built from validated names, so they cannot leave the root.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import inspect
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import fsspec
from fsspec.callbacks import Callback
from fsspec.implementations.local import LocalFileSystem

from omfs.errors import (
    OmfsError,
    StorageAccessError,
    StorageUnavailableError,
    UnsafeStorageError,
)

__all__ = [
    "PUBLIC_OPTION_KEYS",
    "Storage",
    "connection_problem",
    "credentials_hint",
    "public_options",
    "unique_name",
]

#: Storage options known to be safe to pickle into Dask tasks and to show: where the data
#: is and how to talk to it, never who you are. Every other option (``key``, ``secret``,
#: ``token``, ``credential``, ``connection_string``, ``account_key``, ``sas_token``, any
#: option a backend adds later) stays in the process that was given it.
PUBLIC_OPTION_KEYS = frozenset(
    {
        # s3fs
        "anon",
        "endpoint_url",
        "client_kwargs",
        "config_kwargs",
        "region_name",
        "use_ssl",
        "verify",
        "requester_pays",
        "default_block_size",
        "default_fill_cache",
        "default_cache_type",
        "version_aware",
        "cache_regions",
        "use_listings_cache",
        "listings_expiry_time",
        "max_concurrency",
        "fixed_upload_size",
        "s3_additional_kwargs",
        "addressing_style",
        "profile",
        # gcsfs
        "project",
        "access",
        "consistency",
        "requests_timeout",
        "endpoint",
        "default_location",
        # adlfs
        "account_name",
        "account_host",
        "blocksize",
        "location_mode",
        # omfs and fsspec in general
        "auto_mkdir",
        "skip_instance_cache",
    }
)
#: The safe keys inside ``client_kwargs`` and ``config_kwargs`` (boto client and config).
_NESTED_PUBLIC = frozenset(
    {
        "endpoint_url",
        "region_name",
        "verify",
        "use_ssl",
        "signature_version",
        "s3",
        "retries",
        "connect_timeout",
        "read_timeout",
        "max_pool_connections",
        "addressing_style",
        "max_attempts",
        "mode",
        "tcp_keepalive",
        "request_checksum_calculation",
        "response_checksum_validation",
    }
)
_COPY_CHUNK = 8 * 2**20
_memory_lock = threading.Lock()
_S3 = ("s3", "s3a")
_GCS = ("gs", "gcs")
_AZURE = ("abfs", "abfss", "az")
#: Object stores with a conditional create: S3 ``If-None-Match: *``, Google Cloud Storage
#: ``ifGenerationMatch=0``, Azure Blob Storage ``If-None-Match: *``.
_OBJECT_STORES = _S3 + _GCS + _AZURE
#: Protocols on which omfs has an atomic put-if-absent (its commit point).
_ATOMIC_PROTOCOLS = ("file", "local", "memory", *_OBJECT_STORES)
#: The vendors' own servers, which honour conditional creates as documented.
_GCS_SERVER = "https://storage.googleapis.com"
_AZURE_HOST_SUFFIX = ".blob.core.windows.net"
#: Compatible servers (emulators, S3 look-alikes) already checked to honour the
#: conditional create in this process.
_checked_endpoints: dict[str, bool] = {}
_checked_lock = threading.Lock()
_F = TypeVar("_F", bound=Callable[..., Any])


def public_options(options: dict[str, Any], *, _nested: bool = False) -> dict[str, Any]:
    """Return the options of ``options`` known to hold no credentials (an allow-list,
    applied inside ``client_kwargs`` and ``config_kwargs`` too)."""
    allowed = _NESTED_PUBLIC if _nested else PUBLIC_OPTION_KEYS
    return {
        key: public_options(value, _nested=True) if isinstance(value, dict) else value
        for key, value in options.items()
        if key in allowed
    }


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


def credentials_hint(url: str) -> str:
    """Where the credentials of ``url``'s object store come from."""
    protocol = url.split("://", 1)[0]
    if protocol in _GCS:
        return "e.g. GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`"
    if protocol in _AZURE:
        return (
            "e.g. AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME and "
            "AZURE_STORAGE_ACCOUNT_KEY"
        )
    return "e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"


def _storage_error(exc: BaseException, url: str) -> OmfsError | None:
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
        return StorageAccessError(
            f"No usable credentials for {url} ({cause}). Set them in the environment "
            f"({credentials_hint(url)}) or in the context's storage_options."
        )
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
def _translating(url: str) -> Iterator[None]:
    """Failures of the storage of ``url`` leave the block as omfs errors."""
    try:
        yield
    except Exception as exc:
        error = _storage_error(exc, url)
        if error is None:
            raise
        raise error from exc


def _translated(method: _F) -> _F:
    """Failures of the storage itself leave a Storage method as omfs errors."""

    @functools.wraps(method)
    def wrapper(self: Storage, *args: Any, **kwargs: Any) -> Any:
        with _translating(self.url):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def unique_name(suffix: str = "") -> str:
    """A fresh file name that no other writer can pick."""
    return f"{uuid.uuid4().hex}{suffix}"


def fsync_dir(folder: str) -> None:
    """Make the entries of ``folder`` (a new or renamed file) durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place_local(
    path: str, data: bytes, place: Callable[[str, str], None], durable: bool = True
) -> None:
    """Write ``data`` to a temporary file beside ``path``, then ``place`` it there whole.

    The temporary name starts with a dot, so no listing of omfs ever shows it. ``durable``
    fsyncs the file before placing it and the folder after, so a power loss cannot leave
    a placed name with missing content.
    """
    folder, base = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{base}.{unique_name('.tmp')}")
    if len(os.path.basename(tmp).encode()) > 255:  # a long name's index marker
        tmp = os.path.join(folder, f".{unique_name('.tmp')}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        place(tmp, path)
        if durable:
            fsync_dir(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _endpoint(options: dict[str, Any]) -> str | None:
    """The S3 endpoint URL named by storage options or the environment (None: AWS)."""
    client = options.get("client_kwargs") or {}
    return (
        options.get("endpoint_url")
        or client.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )


def _modified(info: dict[str, Any], unknown: float = float("inf")) -> float:
    """When a listed file was last written, in seconds since the epoch, by the storage's
    clock (s3fs ``LastModified``, gcsfs ``mtime``/``updated``, adlfs ``last_modified``).
    A file of unknown age counts as written in the future (``unknown``): gc must never
    take it for an old leftover."""
    for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
        stamp = info.get(key)
        if hasattr(stamp, "timestamp"):
            return float(stamp.timestamp())
        if isinstance(stamp, int | float) and stamp > 0:
            return float(stamp)
    return unknown


def _listed_md5(info: dict[str, Any]) -> str | None:
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


def _preflight(url: str, endpoint: str, timeout: float = 3.0) -> None:
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


def _normalise_url(url: str | os.PathLike[str]) -> str:
    text = os.fspath(url)
    if "://" not in text:
        text = os.path.abspath(os.path.expanduser(text))
    return text.rstrip("/") if len(text) > 1 and not text.endswith("://") else text


class Storage:
    """A context root URL resolved once into ``(fs, root)``; all I/O of omfs goes through it."""

    def __init__(
        self,
        url: str | os.PathLike[str],
        storage_options: dict[str, Any] | None = None,
        *,
        unsafe_commits: bool = False,
        durable: bool = True,
    ):
        self.url = _normalise_url(url)
        self.options: dict[str, Any] = dict(storage_options or {})
        #: write on a protocol without an atomic put-if-absent (concurrent writers may
        #: then overwrite each other's commits)
        self.unsafe_commits = unsafe_commits
        #: fsync files and folders of local commits
        self.durable = durable
        options = dict(self.options)
        protocol = self.url.split("://", 1)[0] if "://" in self.url else "file"
        if protocol in _OBJECT_STORES:
            # other writers change the bucket: never answer a listing from a stale cache
            options.setdefault("use_listings_cache", False)
        with _translating(self.url):  # e.g. adlfs without an account or credentials
            self.fs, root = fsspec.core.url_to_fs(self.url, **options)
        self.root = root.rstrip("/") or "/"
        protocols = self.fs.protocol
        self.protocol = protocols if isinstance(protocols, str) else protocols[0]
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self._arrow_fs: Any = None
        # s3fs asks for the size (a HEAD) before a whole-object GET, to split large ones
        # into parallel ranges; omfs' whole-object reads are small or of known size
        self._cat_options: dict[str, Any] = {}
        cat = getattr(self.fs, "_cat_file", None)
        if cat is not None and "max_concurrency" in inspect.signature(cat).parameters:
            self._cat_options = {"max_concurrency": 1}

    # -- identity -------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Storage)
            and self.url == other.url
            and public_options(self.options) == public_options(other.options)
        )

    def __hash__(self) -> int:
        return hash(self.url)

    def __reduce__(self) -> tuple[Any, ...]:
        # credentials never travel: the receiving process uses its own environment
        return (
            _rebuild,
            (self.url, public_options(self.options), self.unsafe_commits, self.durable),
        )

    @property
    def server(self) -> str | None:
        """The URL of the object store's server (None for other protocols)."""
        if self.protocol in _S3:
            return _endpoint(self.options) or "https://s3.amazonaws.com"
        if self.protocol in _GCS:
            return str(getattr(self.fs, "_location", "") or _GCS_SERVER).rstrip("/")
        if self.protocol in _AZURE:
            client = getattr(self.fs, "service_client", None)
            return str(client.url).rstrip("/") if client is not None else None
        return None

    @property
    def endpoint(self) -> str | None:
        """The server of an S3-, GCS- or Azure-compatible store that is not the vendor's
        own (an emulator, MinIO, Ceph, ...); None for AWS S3, Google Cloud Storage and
        Azure Blob Storage themselves, and for other protocols."""
        server = self.server
        if server is None:
            return None
        if self.protocol in _S3:
            return _endpoint(self.options)
        if self.protocol in _GCS:
            return None if server == _GCS_SERVER else server
        host = urlsplit(server).hostname or ""
        return None if host.endswith(_AZURE_HOST_SUFFIX) else server

    def same_filesystem(self, other: Storage) -> bool:
        """True when a copy between the two can be done by the storage itself."""
        return self.fs is other.fs or (
            type(self.fs) is type(other.fs) and self.options == other.options
        )

    # -- paths ----------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """The filesystem path of ``key``."""
        if not key:
            return self.root
        return f"{self.root}/{key}" if self.root != "/" else f"/{key}"

    def _key(self, path: str) -> str:
        path = self.fs._strip_protocol(path)
        prefix = self.root.rstrip("/") + "/"
        return path[len(prefix) :] if path.startswith(prefix) else path

    # -- reading --------------------------------------------------------------------------
    @_translated
    def read_bytes(self, key: str) -> bytes:
        """A whole object in one request."""
        return self.cat_path(self.path(key))

    @_translated
    def cat_path(self, path: str) -> bytes:
        """The whole file at filesystem ``path``, in one request (no size lookup first)."""
        return self.fs.cat_file(path, **self._cat_options)

    @_translated
    def open(self, key: str, mode: str = "rb", **kwargs: Any) -> IO[bytes]:
        if "w" in mode:
            self.check_writable()
        if "w" in mode and self.is_local:
            os.makedirs(os.path.dirname(self.path(key)), exist_ok=True)
        return self.fs.open(self.path(key), mode, **kwargs)

    @_translated
    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    @_translated
    def size(self, key: str) -> int:
        return int(self.fs.size(self.path(key)))

    @_translated
    def list(self, prefix: str) -> list[str]:
        """Names of the files directly below ``prefix`` (one listing call; [] if none)."""
        try:
            entries = self.fs.ls(self.path(prefix), detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "file"
        )

    @_translated
    def list_names(self, prefix: str, startswith: str = "") -> list[str]:
        """Names of the entries directly below ``prefix`` that start with ``startswith``, in
        no particular order, without a stat per entry: one directory read locally, one
        paginated LIST on object storage (narrowed to ``startswith`` where it can be)."""
        path = self.path(prefix)
        if self.is_local:
            try:
                names = os.listdir(path)
            except (FileNotFoundError, NotADirectoryError):
                return []
            return [n for n in names if n.startswith(startswith)] if startswith else names
        try:
            if startswith and self.protocol in _S3:
                found = self.fs.find(path, maxdepth=1, prefix=startswith)
            else:
                found = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        base = self.fs._strip_protocol(path).rstrip("/") + "/"
        names = []
        for entry in found:
            entry = entry.rstrip("/")
            if entry.startswith(base) and "/" not in entry[len(base) :]:
                name = entry[len(base) :]
                if name.startswith(startswith):
                    names.append(name)
        return names

    def _files_below(self, prefix: str) -> Iterator[tuple[str, int, float, str | None]]:
        """Every file below ``prefix`` as ``(key, size, modified, md5)``: one directory
        walk locally (md5 None), one recursive listing on object storage (md5 where the
        listing tells it, as hex)."""
        path = self.path(prefix)
        if self.is_local:
            for folder, _, files in os.walk(path):
                for name in files:
                    full = os.path.join(folder, name)
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(full)
                        yield self._key(full), st.st_size, st.st_mtime, None
            return
        try:
            found = self.fs.find(path, detail=True)
        except FileNotFoundError:
            return
        for name, info in found.items():
            if info.get("type") == "directory":
                continue
            yield self._key(name), int(info.get("size") or 0), _modified(info), _listed_md5(info)

    @_translated
    def walk(self, prefix: str) -> list[tuple[str, int, float]]:
        """Every file below ``prefix`` as ``(key, size, modified)``, ``modified`` in seconds
        since the epoch (one recursive listing on object storage; for gc)."""
        return [(key, size, stamp) for key, size, stamp, _ in self._files_below(prefix)]

    @_translated
    def inventory(self, prefix: str) -> list[tuple[str, int, str | None]]:
        """Every file below ``prefix`` as ``(key, size, md5)``, md5 the hex digest of the
        content where the listing tells it (else None): one recursive listing on object
        storage, for sync."""
        return [(key, size, md5) for key, size, _, md5 in self._files_below(prefix)]

    @_translated
    def now(self) -> float:
        """The storage's own clock, in seconds since the epoch: the modification time of a
        small file written for the purpose (gc compares file ages with it, never with the
        client's clock, which may be off)."""
        key = ".omfs-clock"
        self.write_bytes(key, b"")
        if self.is_local:
            return os.stat(self.path(key)).st_mtime
        return _modified(self.fs.info(self.path(key)), time.time())

    @_translated
    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the folders directly below ``prefix`` (one listing call)."""
        try:
            entries = self.fs.ls(self.path(prefix), detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
        )

    # -- writing --------------------------------------------------------------------------
    @_translated
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write a small object whole; readers see the old or the new content, never a mix."""
        self.check_writable()
        path = self.path(key)
        if self.is_local:
            _place_local(path, data, os.replace, self.durable)
        else:
            self.fs.pipe_file(path, data)

    @_translated
    def create(self, key: str, data: bytes) -> None:
        """Write ``key`` only if it does not exist yet (put-if-absent), else FileExistsError.

        This is the commit point of every write: locally a complete, fsynced temporary file
        is hard-linked into place (the link fails if the name exists); on S3 and Azure the
        PUT carries ``If-None-Match: *``, on Google Cloud Storage ``ifGenerationMatch=0``
        (a compatible server is first checked to honour it). Either way the object appears
        whole or not at all. Other protocols are refused unless ``unsafe_commits``.
        """
        self.check_writable()
        path = self.path(key)
        if self.is_local:
            _place_local(path, data, os.link, self.durable)  # link fails if the name exists
        elif self.protocol == "memory":
            with _memory_lock:
                self.fs.pipe_file(path, data, mode="create")
        elif self.protocol in _OBJECT_STORES and not self._conditional_writes_ignored():
            self.fs.pipe_file(path, data, mode="create")
        else:  # unsafe_commits: check, then write (another writer may slip in between)
            if self.fs.exists(path):
                raise FileExistsError(path)
            self.fs.pipe_file(path, data)

    def check_writable(self) -> None:
        """Refuse writes where omfs cannot commit atomically (before anything is written)."""
        if self.is_local or self.protocol in _ATOMIC_PROTOCOLS or self.unsafe_commits:
            return
        raise UnsafeStorageError(
            f"omfs cannot commit atomically on {self.protocol}:// storage ({self.url}): it "
            "has no put-if-absent for this protocol, so two writers could overwrite each "
            "other's versions. Reading works. To write anyway, open the context with "
            "unsafe_commits=True (and make sure only one writer runs at a time)."
        )

    def _conditional_writes_ignored(self) -> bool:
        """Once per process and compatible server: a second create of one key must fail.
        A server that ignores the condition is refused for writes (UnsafeStorageError),
        unless ``unsafe_commits``, where omfs then checks before it writes (True)."""
        endpoint = self.endpoint
        if endpoint is None:  # AWS S3, GCS and Azure themselves honour it
            return False
        with _checked_lock:
            known = _checked_endpoints.get(endpoint)
        if known is None:
            probe = self.path(f".omfs-probe-{unique_name()}")
            self.fs.pipe_file(probe, b"1", mode="create")
            try:
                self.fs.pipe_file(probe, b"2", mode="create")
            except FileExistsError:
                known = True
            else:
                known = False
            finally:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(probe)
            with _checked_lock:
                _checked_endpoints[endpoint] = known
        if known:
            return False
        if self.unsafe_commits:
            return True
        condition = "ifGenerationMatch=0" if self.protocol in _GCS else "If-None-Match"
        raise UnsafeStorageError(
            f"The server at {endpoint} ignores {condition} (a second create of one key "
            f"succeeded), so omfs cannot commit atomically to {self.url}. Use a server that "
            "supports conditional writes (AWS S3, Google Cloud Storage, Azure Blob Storage, "
            "Azurite, recent MinIO, Ceph RGW), or open the context with unsafe_commits=True "
            "for a single writer."
        )

    @_translated
    def delete(self, keys: Iterable[str]) -> None:
        """Delete files; missing ones are ignored. One batched call where the backend has it."""
        paths = [self.path(k) for k in keys]
        if not paths:
            return
        self.check_writable()
        try:
            self.fs.rm(paths)
        except FileNotFoundError:
            # some backends refuse the whole batch when one path is missing
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(path)

    @_translated
    def delete_tree(self, prefix: str) -> None:
        self.check_writable()
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(prefix), recursive=True)

    @_translated
    def copy(
        self,
        src_keys: list[str],
        target: Storage,
        dst_keys: list[str],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Copy files to ``target``: server-side on one filesystem; between a local folder
        and object storage by the backend's own concurrent upload or download (fsspec
        ``put``/``get``); streamed otherwise. Each file appears whole or not at all (object
        stores write so; into a local folder omfs copies beside the place, then renames)."""
        target.check_writable()
        if not src_keys:
            return
        srcs = [self.path(k) for k in src_keys]
        dsts = [target.path(k) for k in dst_keys]
        if not target.is_local:
            self._copy_paths(srcs, target, dsts, progress)
            return
        tmps = []
        for dst in dsts:
            folder, base = os.path.split(dst)
            os.makedirs(folder, exist_ok=True)
            tmps.append(os.path.join(folder, f".{base}.{unique_name('.tmp')}"))
        try:
            self._copy_paths(srcs, target, tmps, progress)
            for tmp, dst in zip(tmps, dsts, strict=True):
                os.replace(tmp, dst)
        finally:
            for tmp in tmps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _copy_paths(
        self,
        srcs: list[str],
        target: Storage,
        dsts: list[str],
        progress: Callable[[int], None] | None,
    ) -> None:
        if self.is_local != target.is_local:
            callback = _BytesCallback(progress) if progress else None
            extra = {"callback": callback} if callback else {}
            if self.is_local:
                target.fs.put(srcs, dsts, **extra)
            else:
                self.fs.get(srcs, dsts, **extra)
        elif self.same_filesystem(target):
            self.fs.copy(srcs, dsts)
            if progress:
                progress(sum(int(self.fs.size(p)) for p in srcs))
        else:
            for src, dst in zip(srcs, dsts, strict=True):
                with self.fs.open(src, "rb") as fin, target.fs.open(dst, "wb") as fout:
                    for chunk in iter(lambda f=fin: f.read(_COPY_CHUNK), b""):
                        fout.write(chunk)
                        if progress:
                            progress(len(chunk))

    def iter_chunks(self, key: str, chunksize: int = _COPY_CHUNK) -> Iterator[bytes]:
        with self.open(key, "rb") as f:
            yield from iter(lambda: f.read(chunksize), b"")

    # -- pyarrow --------------------------------------------------------------------------
    def arrow_filesystem(self) -> Any:
        """A pyarrow filesystem over the same storage (native for local folders)."""
        if self._arrow_fs is None:
            import pyarrow.fs as pafs

            if self.is_local:
                self._arrow_fs = pafs.LocalFileSystem()
            else:
                self._arrow_fs = pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        return self._arrow_fs

    @_translated
    def check_root(self) -> None:
        """Raise a clear error when the root cannot be used: an S3 endpoint that is down or
        unknown (at once, not after the client's retries), missing credentials, a missing
        S3 bucket, or access denied."""
        server = self.server
        if server is None:
            return
        with _checked_lock:
            seen = server in _checked_endpoints
        if not seen:
            _preflight(self.url, server)
        top = self.root.split("/", 1)[0]
        try:
            self.fs.ls(top, detail=False)
        except FileNotFoundError:
            raise StorageUnavailableError(
                f"The storage root {self.url!r} is not reachable: the bucket {top!r} does not "
                "exist. Create it first, or pass another root."
            ) from None


class _BytesCallback(Callback):
    """An fsspec callback that reports the bytes of every file of a ``put``/``get``."""

    def __init__(self, report: Callable[[int], None]):
        super().__init__()
        self._report = report

    def branched(self, path_1: str, path_2: str, **kwargs: Any) -> Callback:
        return _FileBytes(self._report)


class _FileBytes(Callback):
    def __init__(self, report: Callable[[int], None]):
        super().__init__()
        self._report = report

    def relative_update(self, inc: int = 1) -> None:
        self._report(inc)


def _rebuild(url: str, options: dict[str, Any], unsafe_commits: bool, durable: bool) -> Storage:
    return Storage(url, options, unsafe_commits=unsafe_commits, durable=durable)
