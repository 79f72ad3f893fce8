"""Which buckets a context holds, and why a bucket cannot be read (naming what exists)."""

from __future__ import annotations

from omfs.storage import Storage

__all__ = ["bucket_names", "bucket_problem"]


def bucket_names(storage: Storage) -> list[str]:
    """The buckets of a context: its top-level folders, omfs' own and hidden ones aside
    (one listing)."""
    return sorted(b for b in storage.list_dirs("") if not b.startswith((".", "_")))


def bucket_problem(storage: Storage, bucket: str, creating: bool = False) -> str | None:
    """Why ``bucket`` of ``storage`` does not exist (naming what does), or None when it
    exists, or is the default bucket of an empty or new root."""
    from omfs.config import DEFAULT_BUCKET, default_root

    buckets = bucket_names(storage)
    if bucket in buckets:
        return None
    if bucket == DEFAULT_BUCKET and (buckets or storage.exists("")):
        return None  # the default bucket of an existing context always reads (maybe empty)
    if not buckets:
        if creating:
            return None
        if not storage.exists(""):
            if bucket == DEFAULT_BUCKET and storage.url == default_root():
                return None  # a fresh install: nothing stored yet
            return (
                f"the context root {storage.url!r} does not exist (nothing was ever stored "
                "there). Check the root; writing creates it."
            )
        return (
            f"bucket {bucket!r} does not exist in context {storage.url!r}, which has no "
            "buckets yet. Writing creates it."
        )
    return (
        f"bucket {bucket!r} does not exist in context {storage.url!r}; its buckets are "
        f"{', '.join(buckets)}. Check the name; writing creates a new bucket."
    )
