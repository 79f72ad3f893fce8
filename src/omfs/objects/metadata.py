"""Metadata of one stored version, as read from its object's commit log."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

__all__ = ["Metadata", "utcnow"]

#: the format of the commit log this version is read from (``omfs.objects.log.FORMAT``;
#: a store of the first release is read through the same records). Nothing reads this
#: document back: it is what ``om ... info --json`` and the runtime's answers show.
FORMAT_VERSION = 2


def utcnow() -> str:
    """The current time as an ISO 8601 string in UTC, to the microsecond."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class Metadata(Mapping[str, Any]):
    """One version of a dataset or model.

    The common fields are attributes (``meta.version``); store-specific details such as a
    dataset's ``rows`` or a model's ``sha256`` are items (``meta["rows"]``). ``to_dict()``
    is the flat document ``om ... info --json`` prints.

    Two fields say "what": ``store`` is the store that holds the object (``"datasets"`` or
    ``"models"``, the same value as a store's own ``kind`` attribute, ``om.datasets.kind``),
    while ``kind`` is the Python type of the stored object (``"pandas.DataFrame"``,
    ``"sklearn.linear_model.LinearRegression"``).

    ``tags`` are the tags that point at this version now (as they were at ``at=`` when
    one was given); ``put_tag`` is the tag given to ``put(..., tag=)`` when the version was
    written, which may have moved since.
    """

    name: str
    bucket: str
    store: str
    kind: str
    version: int = 0
    created: str = field(default_factory=utcnow)
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    put_tag: str | None = None
    lineage: dict[str, Any] | None = None
    context: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    # -- mapping access over the whole flat document ---------------------------------------
    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": FORMAT_VERSION}
        for f in fields(self):
            if f.name != "info":
                doc[f.name] = getattr(self, f.name)
        doc.update(self.info)
        return doc

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __repr__(self) -> str:
        tag = f", tags={self.tags!r}" if self.tags else ""
        return (
            f"Metadata({self.store}:{self.bucket}/{self.name} v{self.version}, "
            f"kind={self.kind!r}{tag}, created={self.created!r})"
        )

    __hash__ = None  # type: ignore[assignment]
