"""The storage seam: one context's fsspec filesystem and root, addressed by relative keys.

Nothing above this package touches fsspec directly. Keys are ``/``-separated paths relative
to the context root, built from validated names, so they cannot leave the root.

- ``base``: ``Storage``, the one seam every backend goes through;
- ``backends``: what differs between protocols (conditional create, servers, credentials);
- ``local``: the local-folder primitives (no symlink followed, files placed whole);
- ``remote``: transfers through fsspec (put/get, streamed, checked S3 multipart upload);
- ``verify``: the verified copy between two storages;
- ``errors``: storage failures translated into omfs errors;
- ``options``: the storage options that may travel (an allow-list);
- ``streams``: unique names and hashing on a second thread;
- ``testing``: ``StorageContract``, the tests every backend passes.
"""

from __future__ import annotations

from omfs.storage.backends import connection_problem, credentials_hint, credentials_in_environment
from omfs.storage.base import Storage
from omfs.storage.local import fsync_dir, size_error, symlink_error
from omfs.storage.options import PUBLIC_OPTION_KEYS, public_options
from omfs.storage.streams import HashingWriter, StreamHasher, unique_name
from omfs.storage.verify import Expected

__all__ = [
    "PUBLIC_OPTION_KEYS",
    "Expected",
    "HashingWriter",
    "Storage",
    "StreamHasher",
    "connection_problem",
    "credentials_hint",
    "credentials_in_environment",
    "fsync_dir",
    "public_options",
    "size_error",
    "symlink_error",
    "unique_name",
]
