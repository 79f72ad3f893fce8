"""Transfers through fsspec between two storages (object stores, memory, local folders):
the backend's own concurrent put and get, streamed copies, concurrent whole-file reads."""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from fsspec.callbacks import Callback

from omfs.storage.backends import Backend
from omfs.storage.streams import unique_name

__all__ = [
    "COPY_CHUNK",
    "Side",
    "cat_many",
    "copy_files",
    "copy_paths",
    "whole_read_options",
]

#: The size of the chunks of a streamed copy.
COPY_CHUNK = 8 * 2**20


class Side(Protocol):
    """What a transfer needs of the storage at either end (``Storage`` is one)."""

    fs: Any
    url: str
    is_local: bool
    durable: bool
    backend: Backend

    def path(self, key: str) -> str: ...
    def local(self, path: str, whole: bool = False) -> str: ...
    def same_filesystem(self, other: Any) -> bool: ...
    def check_writable(self) -> None: ...
    def delete(self, keys: Iterable[str]) -> None: ...
    def create_many(
        self, files: dict[str, bytes], progress: Callable[[int], None] | None = None
    ) -> None: ...


def whole_read_options(fs: Any) -> dict[str, Any]:
    """The keywords of a whole-file read of ``fs`` in one request: s3fs asks for the size
    (a HEAD) first, to split a large file into parallel ranges, unless told not to."""
    if "max_concurrency" in inspect.signature(fs.cat_file).parameters:
        return {"max_concurrency": 1}
    return {}


def cat_many(fs: Any, paths: list[str]) -> dict[str, Any]:
    """The whole bytes of each file at ``paths``, or the exception reading it raised
    (concurrent requests on an asynchronous filesystem, in fsspec's batches)."""
    got = fs.cat(paths, on_error="return", **whole_read_options(fs))
    return {path: got[path] for path in paths}


def copy_files(
    source: Side,
    src_keys: list[str],
    target: Side,
    dst_keys: list[str],
    progress: Callable[[int], None] | None,
) -> None:
    """Copy files of ``source`` to ``target`` (see ``Storage.copy``): into a local folder
    beside their places first, then each renamed into place."""
    srcs = [source.local(source.path(k)) for k in src_keys]
    dsts = [target.local(target.path(k)) for k in dst_keys]
    if not target.is_local:
        copy_paths(source, srcs, target, dsts, progress)
        return
    tmps = []
    for dst in dsts:
        folder, base = os.path.split(dst)
        os.makedirs(folder, exist_ok=True)
        tmps.append(os.path.join(folder, f".{base}.{unique_name('.tmp')}"))
    try:
        copy_paths(source, srcs, target, tmps, progress)
        for tmp, dst in zip(tmps, dsts, strict=True):
            os.replace(tmp, dst)
    finally:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def copy_paths(
    source: Side,
    srcs: list[str],
    target: Side,
    dsts: list[str],
    progress: Callable[[int], None] | None,
) -> None:
    """Copy the files at ``srcs`` of ``source`` to ``dsts`` of ``target`` (no check)."""
    if source.is_local != target.is_local:
        callback = _BytesCallback(progress) if progress else None
        extra = {"callback": callback} if callback else {}
        if source.is_local:
            target.fs.put(srcs, dsts, **extra)
        else:
            source.fs.get(srcs, dsts, **extra)
    elif source.same_filesystem(target):
        source.fs.copy(srcs, dsts)
        if progress:
            progress(sum(int(source.fs.size(p)) for p in srcs))
    else:
        for src, dst in zip(srcs, dsts, strict=True):
            with source.fs.open(src, "rb") as fin, target.fs.open(dst, "wb") as fout:
                while chunk := fin.read(COPY_CHUNK):
                    fout.write(chunk)
                    if progress:
                        progress(len(chunk))


class _BytesCallback(Callback):  # type: ignore[misc]  # fsspec has no type hints
    """An fsspec callback that reports the bytes of every file of a ``put``/``get``."""

    def __init__(self, report: Callable[[int], None]):
        super().__init__()
        self._report = report

    def branched(self, path_1: str, path_2: str, **kwargs: Any) -> Callback:
        return _FileBytes(self._report)


class _FileBytes(Callback):  # type: ignore[misc]  # fsspec has no type hints
    def __init__(self, report: Callable[[int], None]):
        super().__init__()
        self._report = report

    def relative_update(self, inc: int = 1) -> None:
        self._report(inc)
