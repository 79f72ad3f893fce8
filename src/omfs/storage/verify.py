"""The verified copy: files travel between two storages checked against what a validated
log records of them (size, sha256, or a check of a small document's bytes), and only files
that check are created in the target."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from omfs.errors import IntegrityError
from omfs.storage.backends import S3
from omfs.storage.errors import storage_error
from omfs.storage.local import fsync_dir, open_local, read_local
from omfs.storage.remote import COPY_CHUNK, Side, cat_many
from omfs.storage.streams import StreamHasher, unique_name

__all__ = ["Expected", "StreamCheck", "copy_verified"]

#: Verified copies read files up to this size whole (one request, checked in memory) and
#: stream larger ones.
_WHOLE_LIMIT = 64 * 2**20
#: A small document of unknown size (a sidecar, a schema) is refused beyond this.
_DOC_LIMIT = 64 * 2**20
#: How many bytes of small files a verified copy holds in memory at once.
_BATCH_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Expected:
    """What a verified copy expects of one file: its size and sha256 as a validated log
    records them (None: not recorded), or for a small document a ``check`` of its bytes
    that returns why they are refused (None: they are fine)."""

    key: str
    size: int | None = None
    sha256: str | None = None
    check: Callable[[bytes], str | None] | None = None


def copy_verified(
    source: Side,
    files: list[Expected],
    target: Side,
    progress: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """Copy each file of ``source`` to the same key of ``target``, checked while it travels
    against what ``files`` expects of it; returns ``{key: why}`` of the files refused (see
    ``Storage.copy_verified``)."""
    target.check_writable()
    refused: dict[str, str] = {}
    small = [f for f in files if f.size is None or f.size <= _WHOLE_LIMIT]
    held: dict[str, bytes] = {}
    hold = sum(f.size or 0 for f in small) <= _BATCH_BYTES
    for batch in _batches(small):
        got = _read_many(source, {f.key: _read_limit(f) for f in batch})
        good: dict[str, bytes] = {}
        for f in batch:
            data = got[f.key]
            why = _refusal(f, data)
            if why is None and isinstance(data, bytes):
                good[f.key] = data
            else:
                refused[f.key] = f"{source.path(f.key)}: {why}"
        if hold:
            held.update(good)
        elif not refused:  # too many to hold: written batch by batch as they check
            target.create_many(good, progress)
    for f in files:
        if refused:
            return refused
        if f.size is not None and f.size > _WHOLE_LIMIT:
            try:
                why = _copy_large(source, f, target, progress)
            except FileNotFoundError:
                why = "the file is missing"
            except IntegrityError as exc:
                why = str(exc)
            if why is not None:
                refused[f.key] = f"{source.path(f.key)}: {why}"
    if not refused:
        target.create_many(held, progress)
    return refused


def _read_many(source: Side, limits: dict[str, int]) -> dict[str, bytes | BaseException]:
    """The bytes of each key (or the exception reading it raised): concurrent requests on
    object storage; locally at most ``limits[key]`` bytes, a symlink refused."""
    out: dict[str, bytes | BaseException] = {}
    if source.is_local:
        for key, limit in limits.items():
            try:
                out[key] = read_local(source.local(source.path(key)), limit)
            except (OSError, IntegrityError) as exc:
                out[key] = exc
        return out
    got = cat_many(source.fs, [source.path(key) for key in limits])
    for key in limits:
        result = got[source.path(key)]
        if isinstance(result, BaseException) and storage_error(result, source.url):
            raise result
        out[key] = result
    return out


def _read_limit(f: Expected) -> int:
    """How many bytes of ``f`` a local read takes: one more than expected shows a longer
    file without reading all of it."""
    return (f.size if f.size is not None else _DOC_LIMIT) + 1


def _copy_large(
    source: Side, f: Expected, target: Side, progress: Callable[[int], None] | None
) -> str | None:
    """Stream one large file to ``target``, hashed on the way; why it was refused."""
    assert f.size is not None
    check = StreamCheck(f, progress)
    reader = (
        os.fdopen(open_local(source.local(source.path(f.key))), "rb")
        if source.is_local
        else source.fs.open(source.path(f.key), "rb", size=f.size)
    )
    with reader:
        if source.is_local and target.backend is S3:
            return _upload_checked(target.fs, target.path(f.key), reader, check)
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


class StreamCheck:
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
        chunk = reader.read(n if n and n > 0 else COPY_CHUNK)
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


def _place_checked(path: str, reader: Any, check: StreamCheck, durable: bool) -> str | None:
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


def _upload_checked(fs: Any, path: str, reader: IO[bytes], check: StreamCheck) -> str | None:
    """An S3 multipart upload of ``reader`` to ``path``, completed only when the bytes
    check (else aborted: nothing appears); returns why it was refused.

    Parts go up concurrently, ``fs.max_concurrency`` at a time, as s3fs' own ``put`` does;
    the reading (and so the hashing) stays in order.
    """
    from s3fs.core import calculate_chunksize

    bucket, key, _ = fs.split_path(path)
    chunksize = calculate_chunksize(check.expected.size)
    upload_id = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]

    def part(number: int, chunk: bytes) -> dict[str, Any]:
        answer = fs.call_s3(
            "upload_part",
            Bucket=bucket,
            Key=key,
            PartNumber=number,
            UploadId=upload_id,
            Body=chunk,
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    parts: list[dict[str, Any]] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, int(fs.max_concurrency))) as pool:
            while chunks := _read_chunks(reader, check, chunksize, int(fs.max_concurrency)):
                first = len(parts) + 1
                parts.extend(pool.map(part, range(first, first + len(chunks)), chunks))
        why = check.verdict()
        if why is not None:
            fs.abort_mpu(bucket, key, upload_id)
            return why
        fs.call_s3(
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
        return None
    except BaseException:
        fs.abort_mpu(bucket, key, upload_id)
        raise


def _read_chunks(reader: IO[bytes], check: StreamCheck, size: int, count: int) -> list[bytes]:
    """Up to ``count`` chunks of ``size`` bytes, read through ``check``."""
    chunks: list[bytes] = []
    while len(chunks) < max(1, count) and (chunk := check.read(reader, size)):
        chunks.append(chunk)
    return chunks
