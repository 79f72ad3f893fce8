"""The storage seam: one context's fsspec filesystem and root, addressed by relative keys.

Nothing above this module touches fsspec directly. Keys are ``/``-separated paths relative
to the context root, built from validated names, so they cannot leave the root.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

__all__ = ["SECRET_OPTION_KEYS", "Storage", "public_options", "unique_name"]

#: Storage options that are credentials: never pickled into Dask tasks or written to metadata.
SECRET_OPTION_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "session_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "account_key",
        "sas_token",
        "client_secret",
        "credentials",
    }
)
_COPY_CHUNK = 8 * 2**20
_memory_lock = threading.Lock()


def public_options(options: dict[str, Any]) -> dict[str, Any]:
    """Return ``options`` without credentials (recursively, e.g. inside ``client_kwargs``)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key.lower() in SECRET_OPTION_KEYS:
            continue
        out[key] = public_options(value) if isinstance(value, dict) else value
    return out


def unique_name(suffix: str = "") -> str:
    """A fresh file name that no other writer can pick."""
    return f"{uuid.uuid4().hex}{suffix}"


def _place_local(path: str, data: bytes, place: Callable[[str, str], None]) -> None:
    """Write ``data`` to a temporary file beside ``path``, then ``place`` it there whole.

    The temporary name starts with a dot, so no listing of omfs ever shows it.
    """
    folder, base = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{base}.{unique_name('.tmp')}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        place(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _normalise_url(url: str | os.PathLike[str]) -> str:
    text = os.fspath(url)
    if "://" not in text:
        text = os.path.abspath(os.path.expanduser(text))
    return text.rstrip("/") if len(text) > 1 and not text.endswith("://") else text


class Storage:
    """A context root URL resolved once into ``(fs, root)``; all I/O of omfs goes through it."""

    def __init__(self, url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None):
        self.url = _normalise_url(url)
        self.options: dict[str, Any] = dict(storage_options or {})
        options = dict(self.options)
        protocol = self.url.split("://", 1)[0] if "://" in self.url else "file"
        if protocol in ("s3", "s3a"):
            # other writers change the bucket: never answer a listing from a stale cache
            options.setdefault("use_listings_cache", False)
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
        return (Storage, (self.url, public_options(self.options)))

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
    def read_bytes(self, key: str) -> bytes:
        """A whole object in one request."""
        return self.cat_path(self.path(key))

    def cat_path(self, path: str) -> bytes:
        """The whole file at filesystem ``path``, in one request (no size lookup first)."""
        return self.fs.cat_file(path, **self._cat_options)

    def open(self, key: str, mode: str = "rb", **kwargs: Any) -> IO[bytes]:
        if "w" in mode and self.is_local:
            os.makedirs(os.path.dirname(self.path(key)), exist_ok=True)
        return self.fs.open(self.path(key), mode, **kwargs)

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def size(self, key: str) -> int:
        return int(self.fs.size(self.path(key)))

    def list(self, prefix: str) -> list[str]:
        """Names of the files directly below ``prefix`` (one listing call; [] if none)."""
        try:
            entries = self.fs.ls(self.path(prefix), detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "file"
        )

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
            if startswith and self.protocol in ("s3", "s3a"):
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

    def walk(self, prefix: str) -> list[tuple[str, int, float]]:
        """Every file below ``prefix`` as ``(key, size, modified)``, ``modified`` in seconds
        since the epoch (one recursive listing on object storage; for gc)."""
        path = self.path(prefix)
        out: list[tuple[str, int, float]] = []
        if self.is_local:
            for folder, _, files in os.walk(path):
                for name in files:
                    full = os.path.join(folder, name)
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(full)
                        out.append((self._key(full), st.st_size, st.st_mtime))
            return out
        try:
            found = self.fs.find(path, detail=True)
        except FileNotFoundError:
            return []
        for name, info in found.items():
            if info.get("type") == "directory":
                continue
            stamp = info.get("LastModified") or info.get("mtime") or info.get("created") or 0
            if hasattr(stamp, "timestamp"):
                stamp = stamp.timestamp()
            out.append((self._key(name), int(info.get("size") or 0), float(stamp)))
        return out

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
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write a small object whole; readers see the old or the new content, never a mix."""
        path = self.path(key)
        if self.is_local:
            _place_local(path, data, os.replace)
        else:
            self.fs.pipe_file(path, data)

    def create(self, key: str, data: bytes) -> None:
        """Write ``key`` only if it does not exist yet (put-if-absent), else FileExistsError.

        This is the commit point of every write: locally a complete temporary file is
        hard-linked into place (the link fails if the name exists); on S3 the PUT carries
        ``If-None-Match: *``. Either way the object appears whole or not at all.
        """
        path = self.path(key)
        if self.is_local:
            _place_local(path, data, os.link)  # link fails if the name exists
        elif self.protocol == "memory":
            with _memory_lock:
                self.fs.pipe_file(path, data, mode="create")
        else:
            self.fs.pipe_file(path, data, mode="create")

    def delete(self, keys: Iterable[str]) -> None:
        """Delete files; missing ones are ignored. One batched call where the backend has it."""
        paths = [self.path(k) for k in keys]
        if not paths:
            return
        try:
            self.fs.rm(paths)
        except FileNotFoundError:
            # some backends refuse the whole batch when one path is missing
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(path)

    def delete_tree(self, prefix: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(prefix), recursive=True)

    def copy(
        self,
        src_keys: list[str],
        target: Storage,
        dst_keys: list[str],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Copy files to ``target``: server-side on one filesystem, streamed otherwise."""
        if self.same_filesystem(target):
            if target.is_local:
                for dst in dst_keys:
                    os.makedirs(os.path.dirname(target.path(dst)), exist_ok=True)
            self.fs.copy([self.path(k) for k in src_keys], [target.path(k) for k in dst_keys])
            if progress:
                progress(sum(self.size(k) for k in src_keys))
            return
        for src, dst in zip(src_keys, dst_keys, strict=True):
            with self.open(src, "rb") as fin, target.open(dst, "wb") as fout:
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

    def check_root(self) -> None:
        """Raise a clear error when the root cannot be used (e.g. a missing S3 bucket)."""
        from omfs.errors import ConfigError

        if self.is_local or self.protocol == "memory":
            return
        top = self.root.split("/", 1)[0]
        try:
            self.fs.ls(top, detail=False)
        except FileNotFoundError:
            raise ConfigError(
                f"The storage root {self.url!r} is not reachable: the bucket {top!r} does not "
                "exist. Create it first, or pass another root."
            ) from None
        except PermissionError as exc:
            raise ConfigError(
                f"Access to the storage root {self.url!r} was denied ({exc}). Check the "
                "credentials in the environment or the storage_options."
            ) from None
