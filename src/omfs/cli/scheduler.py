"""``om scheduler run``: fire the context's job schedules in the foreground.

Each slot this scheduler wins (the run record keyed by job and slot, created with
put-if-absent: of several schedulers on one context exactly one wins) becomes a run, on the
context's cluster when it has one (routed by the job's attributes), else in this process
in a thread of its own (see :mod:`omfs.compute.firing`). Ctrl-C (or SIGTERM) stops it
cleanly: no new slot fires, runs executing here are waited for (a second Ctrl-C leaves
them; their records then read as lost).

The background cluster of ``om cluster start`` runs the same loop as
``python -m omfs.cli.scheduler``, which reads the context (root, storage options, bucket,
cluster) as one JSON line on its standard input, so no secret shows on a command line.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import typer

from omfs.cli.app import get_app

__all__ = ["serve_schedules"]

cli = typer.Typer(
    rich_markup_mode=None,
    help="The job scheduler: fires each slot of the context's schedules exactly once.",
    no_args_is_help=True,
)


def serve_schedules(
    om: Any,
    buckets: list[str] | None = None,
    stop: threading.Event | None = None,
    *,
    as_json: bool = False,
    say: Any = None,
) -> None:
    """Run a scheduler on ``om``'s context (``buckets``, default all) until ``stop`` is set
    or Ctrl-C; print one line per run it starts; then wait for the runs executing here."""
    from omfs.compute.firing import JobFiring
    from omfs.compute.scheduler import Scheduler

    say = say or (lambda line: print(f"om: {line}", file=sys.stderr, flush=True))

    def started(ctx: Any, run_id: str, job: str, slot: datetime, where: str) -> None:
        row = {"bucket": ctx.bucket, "job": job, "slot": slot.isoformat(), "run": run_id}
        row["where"] = where
        print(json.dumps(row) if as_json else "\t".join(row.values()), flush=True)

    firing = JobFiring(on_start=started)
    scheduler = Scheduler(om, firing, is_running=firing.is_running, buckets=buckets or None)
    scheduler.refresh()
    what = ", ".join(buckets) if buckets else "all buckets"
    say(f"scheduler watching {om.storage.url} ({what}); Ctrl-C or SIGTERM stops it")
    stop = stop or threading.Event()
    with contextlib.suppress(KeyboardInterrupt), _terminate_sets(stop):
        scheduler.run(stop)
    left = firing.running()
    if left:
        say(f"scheduler stopped; waiting for {left} run(s) executing here (Ctrl-C leaves them)")
    firing.wait()
    say("scheduler stopped")


@contextlib.contextmanager
def _terminate_sets(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (``om cluster stop``, a service manager) sets ``stop`` while inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@cli.command("run")
def run(
    ctx: typer.Context,
    bucket: Annotated[
        list[str] | None,
        typer.Option("--bucket", help="watch only this bucket (repeatable; default: all)"),
    ] = None,
) -> None:
    """Fire the context's job schedules in the foreground until Ctrl-C or SIGTERM.

    Either stops it cleanly: no new slot fires, and the runs executing here are waited for
    (a second Ctrl-C leaves them; their records then read as lost).

    Prints one line per run it starts: bucket, job, slot, run id, and where it runs
    (`here`: in this process; `cluster`: on the context's cluster). Several schedulers on
    one context fire each slot exactly once.
    """
    app = get_app(ctx)
    om = app.omega()
    for name in bucket or []:
        om[name].check_location()  # a typo would watch nothing, silently
    serve_schedules(om, list(bucket or []), as_json=app.as_json)


def _serve_from_stdin() -> None:
    """The background cluster's scheduler: the context as one JSON line on stdin."""
    import logging

    import omfs

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    spec = json.loads(sys.stdin.readline())
    om = omfs.setup(
        spec["root"],
        bucket=spec.get("bucket"),
        storage_options=spec.get("storage_options") or {},
        cluster=spec.get("cluster"),
    )
    serve_schedules(om, spec.get("buckets") or None, say=lambda line: print(f"om: {line}"))


if __name__ == "__main__":  # python -m omfs.cli.scheduler < context.json
    _serve_from_stdin()
