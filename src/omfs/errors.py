"""The exceptions omfs raises, rooted at :class:`OmfsError`.

Each also subclasses the builtin a caller would naturally catch: a missing object is a
``FileNotFoundError``, a bad name or value a ``ValueError``.
"""

from __future__ import annotations

__all__ = [
    "CommitConflictError",
    "ConditionFailedError",
    "ConfigError",
    "FormatError",
    "IntegrityError",
    "InvalidNameError",
    "NotFoundError",
    "OmfsError",
    "PromotionError",
    "ResourceUnavailableError",
    "SchemaMismatchError",
]


class OmfsError(Exception):
    """Base class of every error omfs raises on purpose."""


class NotFoundError(OmfsError, FileNotFoundError):
    """A dataset, model, version or bucket that does not exist."""

    def __str__(self) -> str:  # OSError would print "[Errno None] ..." for some arg shapes
        return str(self.args[0]) if self.args else ""


class InvalidNameError(OmfsError, ValueError):
    """A name that omfs refuses, because it is malformed or could escape its bucket."""


class SchemaMismatchError(OmfsError, ValueError):
    """Data whose columns or types do not match the dataset it is appended or promoted to."""


class CommitConflictError(OmfsError):
    """Another writer committed a new version first; nothing of this write became visible."""


class IntegrityError(OmfsError):
    """A stored payload or sidecar that is corrupt, truncated or tampered with."""


class FormatError(IntegrityError):
    """A store written in a format this omfs does not read (newer, or the old layout on write)."""


class PromotionError(OmfsError):
    """A promotion that was refused before anything was copied."""


class ConditionFailedError(PromotionError):
    """A promotion condition that did not hold."""


class ConfigError(OmfsError, ValueError):
    """A configuration file, environment variable or setup() argument that cannot be used."""


class ResourceUnavailableError(OmfsError):
    """A runtime task that no worker of the cluster can run."""
