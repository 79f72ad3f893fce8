"""``om cluster start|status|stop``: a Dask cluster on this machine that outlives commands."""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

import typer

from omfs.cli.app import get_app

cli = typer.Typer(
    rich_markup_mode=None,
    help="A local Dask cluster in the background, used by every context without a cluster "
    "of its own.",
    no_args_is_help=True,
)


def _rows(record: Any) -> list[dict[str, Any]]:
    """The workers, each ``running`` or ``stopped`` (its process is gone, or not ours)."""
    return [
        {
            "name": w.name,
            "resources": w.resource_text() or "-",
            "pid": pid,
            "state": "running" if record.is_ours(pid) else "stopped",
        }
        for w, pid in zip(record.workers, record.worker_pids, strict=False)
    ]


@cli.command()
def start(
    ctx: typer.Context,
    worker: Annotated[
        list[str] | None,
        typer.Option(
            "--worker",
            metavar="RESOURCES",
            help="add a worker offering RESOURCES, e.g. gpu=1 or gpu=1,memory=16e9 (repeatable)",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=0, help="plain workers (default: 2, or 0 when --worker is given)"
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="scheduler port (0: any free port)")] = 0,
    host: Annotated[
        str | None,
        typer.Option(
            help="address every process listens on (default 127.0.0.1: this machine only)"
        ),
    ] = None,
    dashboard: Annotated[
        bool,
        typer.Option(
            "--dashboard",
            help="also serve the scheduler's dashboard (port 8787 on --host); any local "
            "user can read it",
        ),
    ] = False,
    schedules: Annotated[
        bool,
        typer.Option(
            "--schedules/--no-schedules",
            help="also fire the job schedules of the context in effect (--root, --context "
            "or the config file), running them on this cluster",
        ),
    ] = True,
) -> None:
    """Start a scheduler and workers in the background.

    Only processes that can read the certificate made for the cluster in your omfs state
    folder (mode 0600) can connect: your own. Unless --no-schedules, a job scheduler runs
    beside them for the context in effect, as `om scheduler run` would, while it runs.
    """
    from omfs.compute.processes import start_background

    app = get_app(ctx)
    specs = _worker_specs(worker or [], workers)
    if not specs:
        app.fail("a cluster needs at least one worker: give --workers N or --worker RESOURCES", 2)
    began = time.monotonic()
    context = _schedules_context(app) if schedules else None
    record = start_background(specs, port=port, host=host, dashboard=dashboard, schedules=context)
    _say_started(app, record, time.monotonic() - began)


def _say_started(app: Any, record: Any, took: float) -> None:
    if app.as_json:
        app.value(record.to_dict())
        return
    print(
        f"om: cluster started at {record.address} with {len(record.workers)} worker(s) in "
        f"{took:.1f} s; `om cluster stop` stops it",
    )
    if record.dashboard:
        print(f"om: dashboard at {record.dashboard}")
    if record.schedules_root:
        print(f"om: job scheduler fires the schedules of {record.schedules_root}")


def _worker_specs(worker: list[str], workers: int | None) -> list[Any]:
    """The workers ``--worker RESOURCES`` and ``--workers N`` ask for."""
    from omfs.compute.processes import WorkerSpec, parse_worker_spec

    specs = []
    for i, text in enumerate(worker):
        resources = parse_worker_spec(text)
        label = "-".join(sorted(resources)) or "worker"
        specs.append(WorkerSpec(f"{label}-{i}", resources))
    plain = workers if workers is not None else (0 if specs else 2)
    return specs + [WorkerSpec(f"worker-{i}") for i in range(plain)]


def _schedules_context(app: Any) -> dict[str, Any] | None:
    """The context whose schedules the cluster's job scheduler fires (None: a memory root,
    which no other process sees)."""
    from omfs import config

    settings = config.resolve(app.root, app.bucket, app.cluster, None, app.context)
    if str(settings.root).startswith("memory://"):
        app.note("no job scheduler: the context lives in this process's memory")
        return None
    root = str(settings.root)
    return {
        "root": root if "://" in root else os.path.abspath(root),
        "storage_options": settings.storage_options,
        "bucket": settings.bucket,
        "cluster": settings.cluster,
    }


def _scheduler_line(record: Any) -> tuple[str, bool]:
    """What ``status`` says of the job scheduler, and whether it runs."""
    pid = record.jobs_scheduler_pid
    if pid is None:
        return "no job scheduler (started with --no-schedules)", False
    if not record.is_ours(pid):
        return f"job scheduler (pid {pid}) stopped; see the log", False
    return f"job scheduler pid {pid} fires the schedules of {record.schedules_root}", True


@cli.command()
def status(ctx: typer.Context) -> None:
    """Say whether the background cluster runs, where, and its workers."""
    from omfs.compute.processes import background, gateway

    app = get_app(ctx)
    record = background()
    if record is None:
        _say_not_running(app)
        return
    socket = gateway(record)
    line, jobs_running = _scheduler_line(record)
    if app.as_json:
        doc = record.to_dict() | {"jobs_scheduler_running": jobs_running}
        doc["stopped_workers"] = [r["pid"] for r in _rows(record) if r["state"] == "stopped"]
        app.value({"running": True, **doc, "gateway": str(socket) if socket else None})
        return
    where = f"gateway {socket}" if socket else "no gateway: `om runtime` connects itself"
    print(f"running at {record.address}, {where} (log: {record.log})")
    if record.dashboard:
        print(f"dashboard at {record.dashboard}")
    print(line)
    rows = _rows(record)
    app.table(rows, ["name", "resources", "pid", "state"])
    if rows and all(r["state"] == "stopped" for r in rows):
        app.note(
            "none of its workers runs: tasks wait for one. Restart the cluster "
            "(`om cluster stop && om cluster start`, with the --worker options it had)"
        )


def _say_not_running(app: Any) -> None:
    """``status`` without a running cluster: none, or one whose Dask scheduler died while
    its other processes run on (exit code 3 either way)."""
    from omfs.compute.processes import orphaned

    left = orphaned()
    if app.as_json:
        doc: dict[str, Any] = {"running": False}
        if left is not None:
            doc |= {"scheduler_died": True, "address": left.address}
            doc["still_running"] = [{"pid": p, "what": left.role(p)} for p in left.survivors()]
        app.value(doc)
        return
    if left is not None:
        app.fail(
            f"the Dask scheduler of the background cluster at {left.address} died; "
            f"{', '.join(map(left.role, left.survivors()))} still run: `om cluster stop` "
            "stops them",
            3,
        )
    app.fail("no background cluster runs; start one with `om cluster start`", 3)


@cli.command()
def stop(ctx: typer.Context) -> None:
    """Stop the background cluster."""
    from omfs.compute.processes import stop_background

    app = get_app(ctx)
    report = stop_background()
    if app.as_json:
        app.value(
            {
                "stopped": bool(report and report.stopped),
                "signalled": list(report.stopped) if report else [],
                "left_alone": [{"pid": p, "now": w} for p, w in report.left_alone]
                if report
                else [],
            }
        )
        return
    if report is None:
        print("om: no background cluster was running")
        return
    record, address = report.record, report.record.address
    if report.stopped and record.scheduler_pid not in report.stopped:
        what = ", ".join(map(record.role, report.stopped))
        print(f"om: the Dask scheduler of the cluster at {address} had died; stopped {what}")
    elif report.stopped:
        pids = ", ".join(map(str, report.stopped))
        print(f"om: stopped the cluster at {address} (pids {pids})")
    else:
        print(f"om: the cluster recorded at {address} no longer runs; removed its record")
    for pid, now in report.left_alone:
        print(f"om: left pid {pid} alone: not a process omfs started for this cluster (it {now})")
