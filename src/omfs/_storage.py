"""The storage seam: one context's fsspec filesystem and root, addressed by relative keys.

Nothing above this module touches fsspec directly. Keys are ``/``-separated paths relative
to the context root, built from validated names, so they cannot leave the root.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import hashlib
import inspect
import io
import os
import queue
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import fsspec
from fsspec.callbacks import Callback
from fsspec.implementations.local import LocalFileSystem

from omfs.errors import (
    IntegrityError,
    OmfsError,
    StorageAccessError,
    StorageUnavailableError,
    UnsafeStorageError,
)

__all__ = [
    "PUBLIC_OPTION_KEYS",
    "Expected",
    "HashingWriter",
    "Storage",
    "StreamHasher",
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
#: Verified copies read files up to this size whole (one request, checked in memory) and
#: stream larger ones; a small document of unknown size is refused beyond it.
_WHOLE_LIMIT = 64 * 2**20
#: A small document of unknown size (a sidecar, a schema) is refused beyond this.
_DOC_LIMIT = 64 * 2**20
#: How many bytes of small files a verified copy holds in memory at once.
_BATCH_BYTES = 256 * 2**20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
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


class StreamHasher:
    """sha256 computed on a second thread (hashlib releases the GIL), so hashing overlaps
    with writing or reading instead of adding a second pass. Chunks must be immutable."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name="omfs-sha256", daemon=True)
        self._thread.start()
        self._done: str | None = None

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self.digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        if self._done is None:
            self._queue.put(None)
            self._thread.join()
            self._done = self.digest.hexdigest()
        return self._done


class HashingWriter(io.RawIOBase):
    """A write-only file that counts and hashes (on a second thread) what passes through on
    its way to ``target``: a payload's size and sha256 without reading it back."""

    def __init__(self, target: Any):
        self._target = target
        self.hasher = StreamHasher()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:  # joblib aligns arrays by position, as it does for plain files
        return self.size

    def write(self, data: Any) -> int:
        chunk = data if isinstance(data, bytes) else bytes(data)  # immutable for the hasher
        self._target.write(chunk)
        self.hasher.update(chunk)
        self.size += len(chunk)
        return len(chunk)


@dataclass(frozen=True)
class Expected:
    """What a verified copy expects of one file: its size and sha256 as a validated log
    records them (None: not recorded), or for a small document a ``check`` of its bytes
    that returns why they are refused (None: they are fine)."""

    key: str
    size: int | None = None
    sha256: str | None = None
    check: Callable[[bytes], str | None] | None = None


def symlink_error(path: str) -> IntegrityError:
    """The error for a file or folder below a root that is a symbolic link (never followed)."""
    return IntegrityError(
        f"{path!r} is a symbolic link; omfs never follows links inside a context root (its "
        "payloads, logs and their folders must be regular files and folders), so it was "
        "neither read nor written through. Replace the link with the file or folder itself, "
        "or run 'om fsck' to see what is affected."
    )


def _refuse_links(root: str, path: str, whole: bool = False) -> str:
    """``path``, after checking that no folder between ``root`` and it (and with ``whole``,
    not ``path`` itself) is a symlink: IntegrityError naming the first that is. The root
    itself may be a link. One lstat per component (a file itself is opened O_NOFOLLOW)."""
    start = len(root.rstrip("/"))
    if not path.startswith(root) or path[start : start + 1] != "/":
        return path
    end = len(path) if whole else path.rfind("/")
    lstat, is_link = os.lstat, stat.S_ISLNK
    while start < end:
        start = path.find("/", start + 1)
        if start == -1 or start > end:
            start = end
        try:
            mode = lstat(path[:start]).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return path  # nothing below a missing folder to follow
        if is_link(mode):
            raise symlink_error(path[:start])
    return path


def size_error(path: str, size: int, recorded: int) -> IntegrityError:
    """The error for a payload whose size is not the one its log records."""
    return IntegrityError(
        f"{path!r} has {size} bytes, but the log records {recorded}: it was truncated or "
        "changed outside omfs, so it was not read. Restore it from a copy, or drop that "
        "version ('om fsck' lists every such problem)."
    )


def _open_local(path: str) -> int:
    """A descriptor of the regular file at ``path``, read-only; a symlink is refused."""
    if not _NOFOLLOW and os.path.islink(path):  # no O_NOFOLLOW (Windows): check first
        raise symlink_error(path)
    try:
        return os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink_error(path) from None
        raise


def _read_local(path: str, limit: int | None = None) -> bytes:
    """The bytes of the local file at ``path`` (at most ``limit``), without following a
    symlink."""
    with os.fdopen(_open_local(path), "rb") as f:
        return f.read() if limit is None else f.read(limit)


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

    def local(self, path: str, whole: bool = False) -> str:
        """Locally, ``path`` once no folder below the root on the way to it (with ``whole``,
        nor ``path`` itself) is a symlink (IntegrityError naming it); as is elsewhere."""
        return _refuse_links(self.root, path, whole) if self.is_local else path

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
        """The whole file at filesystem ``path``, in one request (no size lookup first); a
        local symlink is refused (IntegrityError)."""
        if self.is_local:
            return _read_local(self.local(path))
        return self.fs.cat_file(path, **self._cat_options)

    @_translated
    def open(self, key: str, mode: str = "rb", **kwargs: Any) -> IO[bytes]:
        """``key`` opened for reading (a local symlink is refused) or writing."""
        if "w" in mode:
            self.check_writable()
        path = self.local(self.path(key))
        if "w" in mode and self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        if self.is_local and "r" in mode and "+" not in mode:
            return os.fdopen(_open_local(path), "rb")
        return self.fs.open(path, mode, **kwargs)

    @_translated
    def check_regular(self, items: Iterable[tuple[str, int | None]]) -> None:
        """Locally, refuse each ``(key, size)`` that is a symlink or whose size is not the one
        the log records (IntegrityError naming the file); a missing one is left to the read
        (which names it). A no-op on object storage (no request: reads there check what
        they get)."""
        if not self.is_local:
            return
        checked: set[str] = set()
        for key, size in items:
            path = self.path(key)
            folder = path.rsplit("/", 1)[0]
            if folder not in checked:  # the folders once (the parts of a version share one)
                self.local(folder, whole=True)
                checked.add(folder)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                raise symlink_error(path)
            if size is not None and st.st_size != size:
                raise size_error(path, st.st_size, size)

    @_translated
    def exists(self, key: str) -> bool:
        return self.fs.exists(self.local(self.path(key)))

    @_translated
    def size(self, key: str) -> int:
        return int(self.fs.size(self.local(self.path(key))))

    @_translated
    def list(self, prefix: str) -> list[str]:
        """Names of the files directly below ``prefix`` (one listing call; [] if none)."""
        try:
            entries = self.fs.ls(self.local(self.path(prefix), whole=True), detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1]
            for e in entries
            if e["type"] == "file" and not e.get("islink")
        )

    @_translated
    def list_names(self, prefix: str, startswith: str = "") -> list[str]:
        """Names of the entries directly below ``prefix`` that start with ``startswith``, in
        no particular order, without a stat per entry: one directory read locally, one
        paginated LIST on object storage (narrowed to ``startswith`` where it can be)."""
        path = self.local(self.path(prefix), whole=True)
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
        path = self.local(self.path(prefix), whole=True)
        if self.is_local:
            # symlinks are listed as what they are (never followed: a linked folder is not
            # walked, a linked file is read by no one, since reads refuse links)
            for folder, _, files in os.walk(path):
                for name in files:
                    full = os.path.join(folder, name)
                    with contextlib.suppress(FileNotFoundError):
                        st = os.lstat(full)
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
            entries = self.fs.ls(self.local(self.path(prefix), whole=True), detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1]
            for e in entries
            if e["type"] == "directory" and not e.get("islink")  # a linked folder: not ours
        )

    # -- writing --------------------------------------------------------------------------
    @_translated
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write a small object whole; readers see the old or the new content, never a mix."""
        self.check_writable()
        path = self.local(self.path(key))
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
        path = self.local(self.path(key))
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
        paths = [self.local(self.path(k)) for k in keys]
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
            self.fs.rm(self.local(self.path(prefix), whole=True), recursive=True)

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
        srcs = [self.local(self.path(k)) for k in src_keys]
        dsts = [target.local(target.path(k)) for k in dst_keys]
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

    @_translated
    def copy_verified(
        self,
        files: list[Expected],
        target: Storage,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, str]:
        """Copy each file to the same key of ``target``, checked while it travels against
        what ``files`` expects of it; returns ``{key: why}`` of the files refused, naming
        the source file. With a refusal, no small file was written.

        Nothing unchecked reaches the target: small files are read whole (one request) and
        all checked before the first is created; larger ones are hashed as they stream into
        a temporary place (a local temporary file, an S3 multipart upload) that becomes the
        file only when size and sha256 match. A file the target already has is never
        overwritten (its name is its content's id: the target keeps its own). A local
        symlink in the source is refused, never followed.
        """
        target.check_writable()
        refused: dict[str, str] = {}
        small = [f for f in files if f.size is None or f.size <= _WHOLE_LIMIT]
        held: dict[str, bytes] = {}
        hold = sum(f.size or 0 for f in small) <= _BATCH_BYTES
        for batch in _batches(small):
            got = self._read_many(batch)
            good: dict[str, bytes] = {}
            for f in batch:
                why = _refusal(f, got[f.key])
                if why is None:
                    good[f.key] = got[f.key]  # type: ignore[assignment]
                else:
                    refused[f.key] = f"{self.path(f.key)}: {why}"
            if hold:
                held.update(good)
            elif not refused:  # too many to hold: written batch by batch as they check
                target._create_many(good, progress)
        for f in files:
            if refused:
                return refused
            if f.size is not None and f.size > _WHOLE_LIMIT:
                try:
                    why = self._copy_large(f, target, progress)
                except FileNotFoundError:
                    why = "the file is missing"
                except IntegrityError as exc:
                    why = str(exc)
                if why is not None:
                    refused[f.key] = f"{self.path(f.key)}: {why}"
        if not refused:
            target._create_many(held, progress)
        return refused

    def _read_many(self, files: list[Expected]) -> dict[str, bytes | BaseException]:
        """The bytes of each file (or the exception reading it raised): concurrent requests
        on object storage; locally at most one byte more than expected, links refused."""
        out: dict[str, bytes | BaseException] = {}
        if self.is_local:
            for f in files:
                limit = (f.size if f.size is not None else _DOC_LIMIT) + 1
                try:
                    out[f.key] = _read_local(self.local(self.path(f.key)), limit)
                except (OSError, IntegrityError) as exc:
                    out[f.key] = exc
            return out
        paths = [self.path(f.key) for f in files]
        if getattr(self.fs, "async_impl", False):
            coros = [self.fs._cat_file(p, **self._cat_options) for p in paths]
            results = _gather(self.fs, coros)
        else:
            results = []
            for p in paths:
                try:
                    results.append(self.fs.cat_file(p))
                except Exception as exc:
                    results.append(exc)
        for f, result in zip(files, results, strict=True):
            if isinstance(result, BaseException) and _storage_error(result, self.url):
                raise result
            out[f.key] = result
        return out

    def _create_many(
        self, files: dict[str, bytes], progress: Callable[[int], None] | None = None
    ) -> None:
        """Create each file whole (put-if-absent); one the target already has is kept."""
        if not files:
            return
        if progress:
            progress(sum(len(d) for d in files.values()))
        if self.is_local or not getattr(self.fs, "async_impl", False):
            for key, data in files.items():
                with contextlib.suppress(FileExistsError):
                    self.create(key, data)
            return
        extra = {}
        if self.protocol in _OBJECT_STORES and not self._conditional_writes_ignored():
            extra = {"mode": "create"}
        coros = [self.fs._pipe_file(self.path(k), d, **extra) for k, d in files.items()]
        for result in _gather(self.fs, coros):
            if isinstance(result, BaseException) and not isinstance(result, FileExistsError):
                raise result

    def _copy_large(
        self, f: Expected, target: Storage, progress: Callable[[int], None] | None
    ) -> str | None:
        """Stream one large file to ``target``, hashed on the way; why it was refused."""
        assert f.size is not None
        check = _StreamCheck(f, progress)
        reader = (
            os.fdopen(_open_local(self.local(self.path(f.key))), "rb")
            if self.is_local
            else self.fs.open(self.path(f.key), "rb", size=f.size)
        )
        with reader:
            if (
                self.is_local
                and target.protocol in _S3
                and hasattr(target.fs, "_upload_file_part_concurrent")
            ):
                return target._upload_checked(f.key, reader, check)
            dst = target.local(target.path(f.key))
            if target.is_local:
                return _place_checked(dst, reader, check, target.durable)
            with target.fs.open(dst, "wb") as out:
                while chunk := check.read(reader):
                    out.write(chunk)
                why = check.verdict()
                if why is not None and hasattr(out, "discard"):
                    out.discard()  # an S3 multipart upload, aborted: nothing appears
                    return why
            if why is not None:  # a backend that wrote it anyway: the name was free
                target.delete([f.key])
            return why

    def _upload_checked(self, key: str, reader: IO[bytes], check: _StreamCheck) -> str | None:
        """An S3 multipart upload of ``reader`` (s3fs' concurrent part upload, as its own
        ``put`` does), completed only when the bytes check."""
        from fsspec.asyn import sync as run
        from s3fs.core import calculate_chunksize

        fs = self.fs
        bucket, path, _ = fs.split_path(self.path(key))
        chunksize = calculate_chunksize(check.expected.size)

        class Reader:
            def read(self, n: int = -1) -> bytes:
                return check.read(reader, n)

        async def upload() -> str | None:
            mpu = await fs._call_s3("create_multipart_upload", Bucket=bucket, Key=path)
            try:
                out = await fs._upload_file_part_concurrent(bucket, path, mpu, Reader(), chunksize)
                why = check.verdict()
                if why is not None:
                    await fs._abort_mpu(bucket, path, mpu["UploadId"])
                    return why
                parts = [{"PartNumber": i + 1, "ETag": o["ETag"]} for i, o in enumerate(out)]
                await fs._call_s3(
                    "complete_multipart_upload",
                    Bucket=bucket,
                    Key=path,
                    UploadId=mpu["UploadId"],
                    MultipartUpload={"Parts": parts},
                )
                return None
            except BaseException:
                await fs._abort_mpu(bucket, path, mpu["UploadId"])
                raise

        return run(fs.loop, upload)

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


def _gather(fs: Any, coros: list[Any]) -> list[Any]:
    """Run the coroutines of an async fsspec filesystem concurrently (in fsspec's batches);
    each result or the exception it raised."""
    from fsspec.asyn import _run_coros_in_chunks
    from fsspec.asyn import sync as run

    return list(run(fs.loop, _run_coros_in_chunks, coros, return_exceptions=True))


def _batches(files: list[Expected]) -> Iterator[list[Expected]]:
    """Groups of small files holding at most about _BATCH_BYTES together."""
    batch: list[Expected] = []
    held = 0
    for f in files:
        size = f.size if f.size is not None else 2**16
        if batch and held + size > _BATCH_BYTES:
            yield batch
            batch, held = [], 0
        batch.append(f)
        held += size
    if batch:
        yield batch


def _refusal(f: Expected, data: bytes | BaseException) -> str | None:
    """Why the bytes read for ``f`` (or the error reading them) are refused; None: fine."""
    if isinstance(data, FileNotFoundError):
        return "the file is missing"
    if isinstance(data, IntegrityError):
        return str(data)
    if isinstance(data, BaseException):
        return f"it cannot be read ({type(data).__name__}: {data})"
    why = _mismatch(f, len(data), lambda: hashlib.sha256(data).hexdigest())
    if why is None and f.check is not None:
        why = f.check(data)
    return why


def _mismatch(f: Expected, size: int, digest: Callable[[], str]) -> str | None:
    """Why a file of ``size`` bytes with sha256 ``digest()`` is not what ``f`` expects."""
    if f.size is not None and size != f.size:
        more = "or more " if size > f.size else ""
        return (
            f"it has {size} {more}bytes, the log records {f.size} (truncated or changed "
            "outside omfs)"
        )
    if f.size is None and size > _DOC_LIMIT:
        return f"it is larger than {_DOC_LIMIT} bytes, which no such file of omfs is"
    if f.sha256 is not None and digest() != f.sha256:
        return "its sha256 is not the one the log records (changed outside omfs)"
    return None


class _StreamCheck:
    """Counts and hashes the chunks of one file as they stream; refuses more than the
    expected size as soon as it is exceeded."""

    def __init__(self, expected: Expected, progress: Callable[[int], None] | None):
        self.expected = expected
        self.size = 0
        self.hasher = StreamHasher()
        self.progress = progress
        self.too_long = False

    def read(self, reader: Any, n: int = -1) -> bytes:
        if self.too_long:
            return b""
        chunk = reader.read(n if n and n > 0 else _COPY_CHUNK)
        if not chunk:
            return b""
        chunk = bytes(chunk)
        self.size += len(chunk)
        if self.size > (self.expected.size or 0):
            self.too_long = True
            return b""
        self.hasher.update(chunk)
        if self.progress:
            self.progress(len(chunk))
        return chunk

    def verdict(self) -> str | None:
        digest = self.hasher.hexdigest()  # always: it ends the hashing thread
        return _mismatch(self.expected, self.size, lambda: digest)


def _place_checked(path: str, reader: Any, check: _StreamCheck, durable: bool) -> str | None:
    """Stream ``reader`` to a temporary file beside ``path``; link it into place (never
    over an existing file) only when it checks. Returns why it was refused."""
    folder, base = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{base}.{unique_name('.tmp')}")
    try:
        with open(tmp, "wb") as out:
            while chunk := check.read(reader):
                out.write(chunk)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        why = check.verdict()
        if why is not None:
            return why
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        if durable:
            fsync_dir(folder)
        return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


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
