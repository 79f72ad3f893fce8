"""What the pages of datasets, models and jobs show, read from the logs' heads.

A list page reads one listing of the bucket's index and then the head of each object it
shows (a page of them): never every version. A detail page reads one object's full log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omfs.errors import NotFoundError, OmfsError

__all__ = [
    "PAGE_SIZE",
    "Page",
    "dataset_detail",
    "dataset_rows",
    "model_detail",
    "model_rows",
    "paginate",
    "preview",
]

#: rows of a list page
PAGE_SIZE = 50
#: rows of a dataset preview
PREVIEW_ROWS = 50


@dataclass
class Page:
    """One page of a sorted list of names."""

    names: list[str]
    number: int
    pages: int
    total: int


def paginate(names: list[str], number: int, size: int = PAGE_SIZE) -> Page:
    """Page ``number`` (from 1, clamped to the pages there are) of ``names``."""
    pages = max(1, math.ceil(len(names) / size))
    number = min(max(1, number), pages)
    start = (number - 1) * size
    return Page(names[start : start + size], number, pages, len(names))


def _head(store: Any, name: str) -> Any:
    """The head state of ``name`` (latest and tagged versions), or None when it is gone."""
    try:
        state = store.state(name)
    except (OmfsError, OSError):
        return None
    return state if state.exists else None


def _latest_rows(store: Any, names: list[str]) -> list[tuple[dict[str, Any], Any]]:
    """For each object still there: the row a list page shows of every kind (name, latest
    version, kind, created, tags) and its latest version record."""
    rows = []
    for name in names:
        state = _head(store, name)
        if state is None:
            continue
        rec = state.latest_record()
        row = {"name": name, "latest": rec.version, "kind": rec.kind, "created": rec.created}
        rows.append(({**row, "tags": sorted(state.tags.items())}, rec))
    return rows


def model_rows(store: Any, names: list[str]) -> list[dict[str, Any]]:
    """One row per model of a list page: latest version, kind, created, tags."""
    return [row for row, _ in _latest_rows(store, names)]


def dataset_rows(store: Any, names: list[str]) -> list[dict[str, Any]]:
    """One row per dataset of a list page: latest version, rows, size, tags, last change."""
    return [
        {**row, "rows": rec.info.get("rows"), "bytes": rec.info.get("bytes")}
        for row, rec in _latest_rows(store, names)
    ]


def _versions(store: Any, name: str) -> tuple[list[Any], dict[str, int]]:
    """Every live version's metadata (newest first) and the tags, from one full read."""
    name, _, state = store.select(name, full=True)
    return [store.metadata_for(name, r) for r in reversed(state.live())], dict(state.tags)


def model_detail(store: Any, name: str) -> dict[str, Any]:
    """A model's page: its latest metadata, versions, tags, tag history and route."""
    versions, tags = _versions(store, name)
    latest = versions[0]
    require = latest.attributes.get("require")
    return {
        "name": name,
        "meta": latest,
        "versions": versions,
        "tags": sorted(tags.items()),
        "history": list(reversed(store.tag_history(name))),
        "route": require,
    }


def dataset_detail(store: Any, name: str) -> dict[str, Any]:
    """A dataset's page: its latest metadata (schema), versions, tags and tag history."""
    versions, tags = _versions(store, name)
    latest = versions[0]
    return {
        "name": name,
        "meta": latest,
        "columns": latest.info.get("columns") or {},
        "versions": versions,
        "tags": sorted(tags.items()),
        "history": list(reversed(store.tag_history(name))),
    }


def preview(
    store: Any, name: str, filters: dict[str, Any], rows: int = PREVIEW_ROWS
) -> tuple[list[str], list[list[Any]]]:
    """The first ``rows`` rows of dataset ``name`` that pass ``filters`` (the stores'
    keyword filters, as ``--where`` gives them): column names and rows. Reads chunk by chunk
    and stops at ``rows``."""
    meta = store.metadata(name)
    if not meta.info.get("columns"):
        raise NotFoundError(f"Dataset {name!r} is a raw file: it has no rows to preview")
    chunks = store.get(name, chunksize=rows, **filters)
    first = next(iter(chunks), None)
    if first is None:
        return list(meta.info["columns"]), []
    first = first.head(rows)
    frame = first.reset_index() if _named_index(first) else first
    values = frame.astype(object).where(frame.notna(), None).values.tolist()
    return [str(c) for c in frame.columns], values


def _named_index(frame: Any) -> bool:
    return any(n is not None for n in frame.index.names)
