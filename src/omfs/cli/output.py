"""Everything ``om`` prints: documents, tables, progress bars, notes and the error line.

A table on a terminal, tab-separated lines when piped, JSON with ``--json``; one
:class:`Output` per command run (the :class:`~omfs.cli.app.App` is one).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

__all__ = ["Output", "is_terminal", "jsonable", "summarise"]

_SUMMARY_AT = 100


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def is_terminal() -> bool:
    return sys.stdout.isatty()


def jsonable(value: Any) -> Any:
    """What a value prints as: its ``to_dict()`` where it has one (metadata, frames)."""
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return value.to_dict()
    return value


def summarise(value: Any) -> str | None:
    """A one-paragraph summary of a long list (None when it is short enough to show)."""
    if not isinstance(value, list) or len(value) <= _SUMMARY_AT:
        return None
    head = ", ".join(json.dumps(v, default=str) for v in value[:5])
    tail = ", ".join(json.dumps(v, default=str) for v in value[-3:])
    return (
        f"[{head}, ..., {tail}]  ({len(value):,} values; pipe the output or use --json for "
        "all of them, or --result NAME to store them)"
    )


class Output:
    """How one ``om`` run prints: as JSON (``--json``) or for people."""

    as_json: bool = False

    def value(self, value: Any) -> None:
        """A document: JSON (highlighted on a terminal; a long list is summarised there)."""
        value = jsonable(value)
        if is_terminal() and not self.as_json:
            summary = summarise(value)
            if summary is not None:
                print(summary)
                return
            _console().print_json(data=value, default=str)
        else:
            print(json.dumps(value, indent=None if self.as_json else 2, default=str))

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str],
        *,
        title: str | None = None,
        plain: Callable[[Mapping[str, Any]], str] | None = None,
        empty: str | None = None,
        header: bool = False,
    ) -> None:
        """Rows: a table on a terminal, JSON with --json, tab-separated lines when piped.

        ``empty`` is said (on stderr) instead of an empty table. ``header``: the rows are
        data (``datasets head``), so the piped lines start with the column names; listings
        stay bare.
        """
        if self.as_json:
            print(json.dumps([{c: r.get(c) for c in columns} for r in rows], default=str))
            return
        if header and columns and not is_terminal():
            print("\t".join(columns))
        if not rows and empty is not None:
            self.note(empty)
            return
        if is_terminal():
            from rich.table import Table

            table = Table(title=title)
            for c in columns:
                table.add_column(c)
            for r in rows:
                table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
            _console().print(table)
            return
        for r in rows:
            print(plain(r) if plain else "\t".join(_cell(r.get(c)) for c in columns))

    def note(self, message: str) -> None:
        """One line for people on stderr: ``om: message``."""
        print(f"om: {message}", file=sys.stderr)

    def fail(self, message: str, code: int = 1) -> NoReturn:
        """Print one line to stderr (a JSON object with --json) and exit."""
        if self.as_json:
            print(json.dumps({"error": message, "exit_code": code}), file=sys.stderr)
        else:
            print(f"om: error: {message}", file=sys.stderr)
        raise SystemExit(code)

    def shows_progress(self) -> bool:
        """Whether :meth:`progress` shows anything (worth planning a transfer's total for)."""
        return sys.stderr.isatty() and not self.as_json

    @contextmanager
    def progress(
        self, description: str, total: int | None, objects: int | None = None
    ) -> Iterator[Callable[..., None]]:
        """Yields ``advance(nbytes=0, objects=0)``: shows a bar of bytes on a terminal (and of
        objects done out of ``objects``, where given), nothing otherwise."""
        if not self.shows_progress():
            yield lambda nbytes=0, objects=0: None
            return
        with _bar(description, total, objects) as advance:
            yield advance


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


@contextmanager
def _bar(description: str, total: int | None, objects: int | None) -> Iterator[Callable[..., None]]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    ]
    if objects is not None:
        columns.insert(2, TextColumn(f"{{task.fields[done]}}/{objects} objects"))
    with Progress(*columns, console=_console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total, done=0)
        done = 0

        def advance(nbytes: int = 0, objects: int = 0) -> None:
            nonlocal done
            done += objects
            progress.update(task, advance=nbytes, done=done)

        yield advance
