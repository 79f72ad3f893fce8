"""The exceptions omfs raises, rooted at :class:`OmfsError`.

Each also subclasses the builtin a caller would naturally catch: a missing object is a
``FileNotFoundError``, a bad name or value a ``ValueError``. Each carries what the ``om``
command needs to report it as data: its wording in the command line's terms
(:meth:`OmfsError.cli_message`) and an exit status (:attr:`OmfsError.exit_code`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClusterUnavailableError",
    "CommitConflictError",
    "ConditionFailedError",
    "ConfigError",
    "DivergedError",
    "FormatError",
    "IntegrityError",
    "InvalidFilterError",
    "InvalidJobError",
    "InvalidModelError",
    "InvalidNameError",
    "InvalidTypeError",
    "JobFailedError",
    "MissingCredentialsError",
    "MissingExtraError",
    "NotFoundError",
    "OmfsError",
    "PromotionError",
    "QueryError",
    "ResourceUnavailableError",
    "RestoreError",
    "ScheduleError",
    "SchemaMismatchError",
    "StorageAccessError",
    "StorageUnavailableError",
    "SyncError",
    "TableFileError",
    "TaskCancelledError",
    "TaskFailedError",
    "UnknownColumnError",
    "UnsafeStorageError",
    "UnstorableResultError",
    "UsageError",
]


class OmfsError(Exception):
    """Base class of every error omfs raises on purpose: a user's mistake or refused input,
    never a bug.

    ``hint`` says what to do, in the API's terms, and ends the message; ``cli_hint`` says it
    in the ``om`` command's terms where they differ (``--append`` for ``append=True``).

    Example:
        >>> err = UsageError("No dataset.", hint="Pass x=.", cli_hint="Give X.")
        >>> str(err), err.cli_message()
        ('No dataset. Pass x=.', 'No dataset. Give X.')
    """

    #: the exit status of ``om`` when this error ends a command
    exit_code: int = 1

    def __init__(self, *args: object, hint: str | None = None, cli_hint: str | None = None) -> None:
        message = str(args[0]) if args else ""
        if hint is not None:
            args = (f"{message} {hint}".strip(), *args[1:])
        super().__init__(*args)
        if cli_hint is not None:
            self.cli_text = f"{message} {cli_hint}".strip()

    def cli_message(self) -> str:
        """What ``om`` prints: the message on one line, its advice in the command's terms."""
        text = getattr(self, "cli_text", None) or str(self)
        return " ".join(text.split()) or type(self).__name__


class NotFoundError(OmfsError, FileNotFoundError):
    """A dataset, model, version or bucket that does not exist."""

    def __str__(self) -> str:  # OSError would print "[Errno None] ..." for some arg shapes
        return str(self.args[0]) if self.args else ""


class InvalidNameError(OmfsError, ValueError):
    """A name that omfs refuses, because it is malformed or could escape its bucket."""


class UsageError(OmfsError, ValueError):
    """An argument omfs refuses: an unknown action or condition, a malformed duration, time,
    amount or option, or arguments that contradict each other."""


class InvalidTypeError(OmfsError, TypeError):
    """An object or operation of a kind omfs does not take here: data it cannot store as a
    dataset, a table read of a raw file, attributes that are not a dict."""


class UnknownColumnError(OmfsError, KeyError):
    """Columns that a dataset does not have."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class TableFileError(OmfsError, ValueError):
    """A table file that cannot be read (or written) as asked; the message names it."""


class SyncError(OmfsError):
    """A sync that could not run (bad arguments, contexts that cannot be synced)."""


class DivergedError(OmfsError):
    """A sync that left objects unchanged because both sides have versions the other lacks.

    Raised by :func:`omfs.sync` once every other object was synced, unless ``rebase=True``;
    ``report`` is the whole :class:`~omfs.ops.reports.SyncReport` (its ``diverged`` rows
    name the objects and the versions each side holds)."""

    def __init__(self, *args: object, report: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the :class:`~omfs.ops.reports.SyncReport` of the sync that raised it
        self.report = report


class InvalidFilterError(OmfsError, ValueError):
    """A row filter that names no column of the dataset, or does not apply to its type
    (``contains`` on a number, a date compared with text that is no date)."""


class SchemaMismatchError(OmfsError, ValueError):
    """Data whose columns or types do not match the dataset it is appended or promoted to."""


class ScheduleError(OmfsError, ValueError):
    """A job schedule omfs refuses: a malformed cron expression, an unknown time zone, an
    interval under one second, an unknown catch-up or overlap policy."""


class CommitConflictError(OmfsError):
    """Another writer committed a new version first; nothing of this write became visible."""


class IntegrityError(OmfsError):
    """A stored payload or sidecar that is corrupt, truncated or tampered with."""


class RestoreError(OmfsError):
    """A dropped object that cannot be brought back: it exists, was never stored, or gc
    already collected its files."""


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


class StorageUnavailableError(OmfsError, ConnectionError):
    """The storage of a context cannot be reached: endpoint down or unknown, network or DNS
    failure, a timeout, or a missing storage bucket."""


class StorageAccessError(StorageUnavailableError, PermissionError):
    """The storage refused omfs: credentials missing, wrong or without permission."""


class MissingCredentialsError(StorageAccessError):
    """No usable credentials for an object store. ``summary`` is the first sentence (what
    failed), without the advice that follows it."""

    summary: str = ""


class UnsafeStorageError(OmfsError):
    """A storage on which omfs cannot commit atomically, refused for writes."""


class ClusterUnavailableError(OmfsError, ConnectionError):
    """The Dask cluster of a context cannot be reached or started."""


class TaskCancelledError(OmfsError):
    """A runtime task that was cancelled before it could write anything."""


class TaskFailedError(OmfsError):
    """A runtime task, read back by its id, that failed: the message is its error line."""


class UnstorableResultError(OmfsError, TypeError):
    """A task result that omfs cannot store safely (only frames, arrays and plain values)."""


class InvalidModelError(OmfsError, ValueError):
    """A file or object that is not a model omfs can store or run (not joblib, empty,
    truncated, or without the method a task calls)."""


class InvalidJobError(OmfsError, ValueError):
    """A file that is not a job omfs can store or run: a script that does not compile, a
    notebook that is not valid nbformat, another kind of file, or a result that is not JSON."""


class JobFailedError(OmfsError):
    """A job run that raised: the message names the job, its version, the run id and the
    exception's last line (the run record keeps the output up to the failure)."""


class MissingExtraError(OmfsError, ImportError):
    """A feature whose optional dependencies are not installed; the message names the extra
    (``pip install 'omfs[notebooks]'``)."""


class QueryError(OmfsError, ValueError):
    """A SQL query (``om.sql``, ``om sql``) that DuckDB cannot parse or run: its first line."""
