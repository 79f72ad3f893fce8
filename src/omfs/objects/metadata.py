"""Metadata of one stored version: what the JSON sidecar of a dataset or model holds."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from omfs.errors import IntegrityError

__all__ = ["Metadata", "utcnow"]

FORMAT_VERSION = 1


def utcnow() -> str:
    """The current time as an ISO 8601 string in UTC, to the microsecond."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class Metadata(Mapping[str, Any]):
    """One version of a dataset or model.

    The common fields are attributes (``meta.version``); store-specific details such as a
    dataset's ``rows`` or a model's ``sha256`` are items (``meta["rows"]``). ``to_dict()``
    is exactly the JSON written to storage.
    """

    name: str
    bucket: str
    store: str
    kind: str
    version: int = 0
    created: str = field(default_factory=utcnow)
    attributes: dict[str, Any] = field(default_factory=dict)
    tag: str | None = None
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

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str).encode()

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Metadata:
        doc = dict(doc)
        doc.pop("format", None)
        known = {f.name for f in fields(cls)} - {"info"}
        kwargs = {k: doc.pop(k) for k in list(doc) if k in known}
        return cls(**kwargs, info=doc)

    @classmethod
    def from_json(cls, data: bytes, where: str = "") -> Metadata:
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            return cls.from_dict(doc)
        except (ValueError, TypeError) as exc:
            raise IntegrityError(
                f"The metadata file {where!r} is corrupt ({exc}). Restore it from a backup or "
                "drop that version."
            ) from None

    def __repr__(self) -> str:
        tag = f", tag={self.tag!r}" if self.tag else ""
        return (
            f"Metadata({self.store}:{self.bucket}/{self.name} v{self.version}, "
            f"kind={self.kind!r}{tag}, created={self.created!r})"
        )

    __hash__ = None  # type: ignore[assignment]
