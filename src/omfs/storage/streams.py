"""Payload streams: a fresh unique file name, and sha256 computed on a second thread while
bytes pass through (a payload's size and digest without reading it back)."""

from __future__ import annotations

import hashlib
import io
import queue
import threading
import uuid
from typing import Any

__all__ = ["HashingWriter", "StreamHasher", "unique_name"]


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
