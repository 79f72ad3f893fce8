"""Who a process is: what omfs saw of a process it started, so that it signals only
that very process later (never a reused pid)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omfs._util import pid_exists, same_start

__all__ = ["ProcessIdentity", "pid_exists"]


@dataclass(frozen=True)
class ProcessIdentity:
    """What omfs saw of a process it started: its pid, start time and exact command line.
    A pid is signalled only while both still match (never a reused pid, nor another
    process named in an edited ``cluster.json``)."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The identity of the running process ``pid`` (None when it does not run)."""
        import psutil

        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                return cls(pid, proc.create_time(), tuple(proc.cmdline()))
        except psutil.Error:
            return None

    def process(self) -> Any:
        """The ``psutil.Process`` of ``pid`` while it runs the very process recorded (same
        start time and command line), else None. psutil re-checks the start time before it
        signals, so a pid reused after this check is not signalled either."""
        import psutil

        try:
            proc = psutil.Process(self.pid)
            with proc.oneshot():
                same = same_start(proc.create_time(), self.create_time)
                same = same and tuple(proc.cmdline()) == self.cmdline
        except psutil.Error:
            return None
        return proc if same else None

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time, "cmdline": list(self.cmdline)}
