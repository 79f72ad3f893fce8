"""Worker resources in the Dask way (``{"gpu": 1, "memory": 16e9}``): one place that
parses them from every form a user gives and formats them for every message.

The forms: ``require("gpu")`` / ``require(gpu=2)`` in Python, a model's
``attributes["require"]``, ``om cluster start --worker gpu=1,memory=16e9`` and
``om runtime --require gpu --require memory=16e9``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from omfs.errors import ConfigError, UsageError

__all__ = ["ResourceSpec"]


@dataclass(frozen=True)
class ResourceSpec:
    """Named amounts of worker resources; empty means "any worker"."""

    amounts: dict[str, float] = field(default_factory=dict)

    # -- parsing --------------------------------------------------------------------------
    @classmethod
    def of(cls, label: str | None = None, **amounts: float) -> ResourceSpec:
        """``of("gpu")`` -> ``{"gpu": 1}``; ``of(gpu=2, memory=16e9)`` -> as given (the
        arguments of ``runtime.require``). A UsageError for a blank label or an amount
        that is not a positive number."""
        resources: dict[str, float] = {}
        if label is not None:
            if not isinstance(label, str) or not label.strip():
                raise UsageError(
                    f"A resource label is a non-empty string such as 'gpu', got {label!r}"
                )
            resources[label.strip()] = 1
        for name, amount in amounts.items():
            if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
                raise UsageError(f"Resource {name}={amount!r} must be a positive number")
            resources[name] = amount
        return cls(resources)

    @classmethod
    def from_attribute(cls, require: Any) -> ResourceSpec:
        """A model's ``attributes["require"]``: ``"gpu"``, ``{"label": "gpu"}`` or
        ``{"gpu": 1}`` (None: no requirement)."""
        if require is None:
            return cls()
        if isinstance(require, str):
            return cls.of(require)
        if isinstance(require, dict):
            spec = dict(require)
            label = spec.pop("label", None)
            return cls.of(label, **spec)
        raise UsageError(
            f"The model attribute require={require!r} is not understood: use 'gpu', "
            "{'label': 'gpu'} or a resources dict such as {'gpu': 1}"
        )

    @classmethod
    def from_options(cls, items: Iterable[str]) -> ResourceSpec:
        """``--require`` items: ``LABEL`` or ``NAME=AMOUNT`` each (the first label is what
        ``require(label)`` takes, any further one counts 1 too); ``none`` requires nothing
        (any worker, whatever the model's attributes say)."""
        label = None
        amounts: dict[str, float] = {}
        for item in items:
            if item.strip().lower() == "none":
                continue
            name, sep, amount = item.partition("=")
            if sep:
                try:
                    amounts[name] = float(amount)
                except ValueError:
                    raise UsageError(f"--require {item!r}: the amount must be a number") from None
            elif label is None:
                label = name
            else:
                amounts[name] = 1
        return cls.of(label, **amounts)

    @classmethod
    def parse(cls, text: str) -> ResourceSpec:
        """A worker's resources as ``om cluster start --worker`` takes them: ``"gpu=1,
        memory=16e9"`` or ``"gpu"`` (amount 1). A ConfigError names a bad item."""
        resources: dict[str, float] = {}
        for item in text.split(","):
            item = item.strip()
            if item:
                name, value = _parse_item(item)
                resources[name] = value
        return cls(resources)

    # -- formatting -----------------------------------------------------------------------
    def text(self, *, sort: bool = True) -> str:
        """``gpu=1,memory=1.6e+10``: what ``dask worker --resources`` takes ("" when empty)."""
        items = sorted(self.amounts.items()) if sort else self.amounts.items()
        return ",".join(f"{k}={v:g}" for k, v in items)

    def describe(self) -> str:
        """``gpu=1, memory=1.6e+10`` (sorted), or ``no resources``: for messages."""
        return ", ".join(f"{k}={v:g}" for k, v in sorted(self.amounts.items())) or "no resources"

    def as_dict(self) -> dict[str, float]:
        return dict(self.amounts)

    def __bool__(self) -> bool:
        return bool(self.amounts)


def _parse_item(item: str) -> tuple[str, float]:
    """One ``NAME`` or ``NAME=AMOUNT`` of a worker's resources."""
    name, sep, amount = item.partition("=")
    name = name.strip()
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"Invalid worker resource {item!r}: use NAME or NAME=AMOUNT, e.g. gpu=1")
    try:
        value = float(amount) if sep else 1.0
    except ValueError:
        raise ConfigError(
            f"Invalid worker resource {item!r}: the amount must be a number, e.g. gpu=1"
        ) from None
    if value <= 0:
        raise ConfigError(f"Invalid worker resource {item!r}: the amount must be positive")
    return name, value
