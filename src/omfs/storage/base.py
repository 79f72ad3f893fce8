"""The storage seam: one context's root URL resolved once into an fsspec filesystem and a
root path, addressed by relative keys. Nothing above this package touches fsspec directly.

One class serves every backend: a local folder (fsspec's local filesystem, with reads that
never follow a link and writes placed whole by os.link/os.replace), memory, and the object
stores (S3, Google Cloud Storage, Azure Blob Storage) with their conditional create. What
differs between protocols is in ``backends``; the local file primitives in ``local``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, cast

import fsspec
from fsspec.implementations.local import LocalFileSystem, make_path_posix

from omfs.storage import local
from omfs.storage.backends import (
    MEMORY,
    OBJECT_STORE_PROTOCOLS,
    S3,
    backend_for,
    check_root,
    endpoint_of,
    honours_condition,
    ignored_condition_error,
    listed_md5,
    modified,
    no_conditional_create_error,
    server_of,
)
from omfs.storage.errors import translated, translating
from omfs.storage.local import size_error, symlink_error
from omfs.storage.options import public_options
from omfs.storage.remote import COPY_CHUNK, copy_files, whole_read_options
from omfs.storage.streams import unique_name
from omfs.storage.verify import Expected, copy_verified

__all__ = ["Storage"]

_memory_lock = threading.Lock()
# Module-private names for what the I/O methods below call (the local primitives
# live in ``local``, the protocol facts in ``backends``).
_open_local = local.open_local
_place_local = local.place_local
_read_local = local.read_local
_OBJECT_STORES = OBJECT_STORE_PROTOCOLS


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
        if backend_for(protocol).object_store:
            # other writers change the bucket: never answer a listing from a stale cache
            options.setdefault("use_listings_cache", False)
        with translating(self.url):  # e.g. adlfs without an account or credentials
            self.fs, root = fsspec.core.url_to_fs(self.url, **options)
        self.root = root.rstrip("/") or "/"
        protocols = self.fs.protocol
        self.protocol = protocols if isinstance(protocols, str) else protocols[0]
        self.is_local = isinstance(self.fs, LocalFileSystem)
        #: what omfs knows of the protocol (conditional create, servers, credentials)
        self.backend = backend_for(self.protocol)
        self._arrow_fs: Any = None
        # whole-object reads are small or of known size: no HEAD first (see remote)
        self._cat_options: dict[str, Any] = whole_read_options(self.fs)

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
        return server_of(self.backend, self.fs, self.options)

    @property
    def endpoint(self) -> str | None:
        """The server of an S3-, GCS- or Azure-compatible store that is not the vendor's
        own (an emulator, MinIO, Ceph, ...); None for AWS S3, Google Cloud Storage and
        Azure Blob Storage themselves, and for other protocols."""
        return endpoint_of(self.backend, self.server, self.options)

    # -- capabilities ---------------------------------------------------------------------
    @property
    def conditional_create(self) -> bool:
        """The protocol has an atomic put-if-absent, omfs' commit point (a compatible
        server of an object store is checked to honour it before the first write)."""
        return self.is_local or self.backend.conditional_create

    @property
    def in_memory(self) -> bool:
        """The files live in this process's memory: no other process sees them, and a
        read costs no request."""
        return self.backend is MEMORY

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
        return local.refuse_links(self.root, path, whole) if self.is_local else path

    def _key(self, path: str) -> str:
        """The key of a listed filesystem ``path`` (listings give paths without the
        protocol; local ones are made posix, as the root is)."""
        if self.is_local:
            path = make_path_posix(path)
        prefix = self.root.rstrip("/") + "/"
        return path[len(prefix) :] if path.startswith(prefix) else path

    # -- reading --------------------------------------------------------------------------
    @translated
    def read_bytes(self, key: str) -> bytes:
        """A whole object in one request."""
        return self.cat_path(self.path(key))

    @translated
    def cat_path(self, path: str) -> bytes:
        """The whole file at filesystem ``path``, in one request (no size lookup first); a
        local symlink is refused (IntegrityError)."""
        if self.is_local:
            return _read_local(self.local(path))
        return cast(bytes, self.fs.cat_file(path, **self._cat_options))

    @translated
    def open(self, key: str, mode: str = "rb", **kwargs: Any) -> IO[bytes]:
        """``key`` opened for reading (a local symlink is refused) or writing."""
        if "w" in mode:
            self.check_writable()
        path = self.local(self.path(key))
        if "w" in mode and self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        if self.is_local and "r" in mode and "+" not in mode:
            return os.fdopen(_open_local(path), "rb")
        return cast(IO[bytes], self.fs.open(path, mode, **kwargs))

    @translated
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

    @translated
    def exists(self, key: str) -> bool:
        """Whether a file (or folder) ``key`` exists."""
        return bool(self.fs.exists(self.local(self.path(key))))

    @translated
    def size(self, key: str) -> int:
        """The size of file ``key`` in bytes."""
        return int(self.fs.size(self.local(self.path(key))))

    @translated
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
            if startswith and self.backend is S3:
                found = self.fs.find(path, maxdepth=1, prefix=startswith)
            else:
                found = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        base = path.rstrip("/") + "/"  # listings name entries as the root names itself
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
            yield self._key(name), int(info.get("size") or 0), modified(info), listed_md5(info)

    @translated
    def walk(self, prefix: str) -> list[tuple[str, int, float]]:
        """Every file below ``prefix`` as ``(key, size, modified)``, ``modified`` in seconds
        since the epoch (one recursive listing on object storage; for gc)."""
        return [(key, size, stamp) for key, size, stamp, _ in self._files_below(prefix)]

    @translated
    def inventory(self, prefix: str) -> list[tuple[str, int, str | None]]:
        """Every file below ``prefix`` as ``(key, size, md5)``, md5 the hex digest of the
        content where the listing tells it (else None): one recursive listing on object
        storage, for sync."""
        return [(key, size, md5) for key, size, _, md5 in self._files_below(prefix)]

    @translated
    def now(self) -> float:
        """The storage's own clock, in seconds since the epoch: the modification time of a
        small file written for the purpose (gc compares file ages with it, never with the
        client's clock, which may be off)."""
        key = ".omfs-clock"
        self.write_bytes(key, b"")
        if self.is_local:
            return os.stat(self.path(key)).st_mtime
        return modified(self.fs.info(self.path(key)), time.time())

    @translated
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
    @translated
    def write_bytes(self, key: str, data: bytes, *, durable: bool | None = None) -> None:
        """Write a small object whole; readers see the old or the new content, never a mix.
        ``durable=False`` skips the fsyncs of a local write (records that may be lost)."""
        self.check_writable()
        path = self.local(self.path(key))
        if self.is_local:
            _place_local(path, data, os.replace, self.durable if durable is None else durable)
        else:
            self.fs.pipe_file(path, data)

    @translated
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
        if self.conditional_create or self.unsafe_commits:
            return
        raise no_conditional_create_error(self.protocol, self.url)

    def _conditional_writes_ignored(self) -> bool:
        """Once per process and compatible server: a second create of one key must fail.
        A server that ignores the condition is refused for writes (UnsafeStorageError),
        unless ``unsafe_commits``, where omfs then checks before it writes (True)."""
        endpoint = self.endpoint
        if endpoint is None:  # AWS S3, GCS and Azure themselves honour it
            return False
        if honours_condition(self.fs, endpoint, self.path(f".omfs-probe-{unique_name()}")):
            return False
        if self.unsafe_commits:
            return True
        raise ignored_condition_error(self.backend, endpoint, self.url)

    @translated
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

    @translated
    def delete_tree(self, prefix: str) -> None:
        self.check_writable()
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.local(self.path(prefix), whole=True), recursive=True)

    @translated
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
        if src_keys:
            copy_files(self, src_keys, target, dst_keys, progress)

    @translated
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
        return copy_verified(self, files, target, progress)

    @translated
    def create_many(
        self, files: dict[str, bytes], progress: Callable[[int], None] | None = None
    ) -> None:
        """Create each file whole (put-if-absent; concurrent requests on object storage);
        a file that exists already is kept as it is."""
        if not files:
            return
        self.check_writable()
        if progress:
            progress(sum(len(d) for d in files.values()))
        if self.is_local or not getattr(self.fs, "async_impl", False):
            for key, data in files.items():
                with contextlib.suppress(FileExistsError):
                    self.create(key, data)
            return
        extra = {}
        if self.backend.object_store and not self._conditional_writes_ignored():
            extra = {"mode": "create"}
        paths = {self.path(key): data for key, data in files.items()}
        try:
            self.fs.pipe(paths, **extra)
        except FileExistsError:  # the batch stops at the first: the rest one by one
            for path, data in paths.items():
                with contextlib.suppress(FileExistsError):
                    self.fs.pipe_file(path, data, **extra)

    def iter_chunks(self, key: str, chunksize: int = COPY_CHUNK) -> Iterator[bytes]:
        """The bytes of ``key`` in chunks of ``chunksize``."""
        with self.open(key, "rb") as f:
            while chunk := f.read(chunksize):
                yield chunk

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

    @translated
    def check_root(self) -> None:
        """Raise a clear error when the root cannot be used: an S3 endpoint that is down or
        unknown (at once, not after the client's retries), missing credentials, a missing
        S3 bucket, or access denied."""
        check_root(self.url, self.server, self.fs, self.root)


def _rebuild(url: str, options: dict[str, Any], unsafe_commits: bool, durable: bool) -> Storage:
    """An unpickled Storage: one per root and options in a process (a worker unpickles one
    with every task; making it anew costs a filesystem lookup each time)."""
    try:
        key = json.dumps([url, options, unsafe_commits, durable], sort_keys=True)
    except (TypeError, ValueError):  # options that are not plain values: not shared
        return Storage(url, options, unsafe_commits=unsafe_commits, durable=durable)
    return _rebuilt(key)


@functools.lru_cache(maxsize=16)
def _rebuilt(key: str) -> Storage:
    url, options, unsafe_commits, durable = json.loads(key)
    return Storage(url, options, unsafe_commits=unsafe_commits, durable=durable)
