"""Promotion conditions: callables ``condition(meta, source, target, target_name)`` that
return why a promotion is refused (None: it may go ahead), and the two omfs ships."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from omfs.errors import InvalidTypeError, NotFoundError, UsageError
from omfs.objects.metadata import Metadata

if TYPE_CHECKING:
    from omfs.objects.versioned import VersionedStore

__all__ = ["CONDITIONS", "Condition", "conditions_of", "model_is_fitted", "schema_matches_target"]

Condition = Callable[[Metadata, "VersionedStore", "VersionedStore", str], "str | None"]


def model_is_fitted(meta: Metadata, source: Any, target: Any, target_name: str) -> str | None:
    """Refuse a model that is not a fitted estimator."""
    if meta.store != "models":
        return "the 'fitted' condition applies to models"
    if meta.info.get("fitted") is not True:
        state = "not fitted" if meta.info.get("fitted") is False else "not known to be fitted"
        return f"model {meta.name!r} version {meta.version} is {state}"
    return None


def schema_matches_target(meta: Metadata, source: Any, target: Any, target_name: str) -> str | None:
    """Refuse a dataset whose columns and types differ from the target's latest version."""
    if meta.store != "datasets":
        return "the 'schema-matches' condition applies to datasets"
    try:
        current = target.metadata(target_name)
    except NotFoundError:
        return None
    if current.kind != meta.kind or current.info.get("columns") != meta.info.get("columns"):
        return (
            f"the schema of {meta.name!r} v{meta.version} ({meta.info.get('columns')}) differs "
            f"from {target_name!r} v{current.version} in the target ({current.info.get('columns')})"
        )
    return None


CONDITIONS: dict[str, Condition] = {
    "fitted": model_is_fitted,
    "schema-matches": schema_matches_target,
}


def conditions_of(conditions: Sequence[str | Condition] | None) -> list[tuple[str, Condition]]:
    out = []
    for cond in conditions or ():
        if isinstance(cond, str):
            if cond not in CONDITIONS:
                raise UsageError(
                    f"Unknown promotion condition {cond!r}; known: {sorted(CONDITIONS)}, or "
                    "pass a callable"
                )
            out.append((cond, CONDITIONS[cond]))
        elif callable(cond):
            out.append((getattr(cond, "__name__", repr(cond)), cond))
        else:
            raise InvalidTypeError(f"A promotion condition is a name or a callable, got {cond!r}")
    return out
