"""``om cluster start|status|stop``: a Dask cluster on this machine that outlives commands."""

from __future__ import annotations

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
    return [
        {
            "name": w.name,
            "resources": w.resource_text() or "-",
            "pid": pid,
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
) -> None:
    """Start a scheduler and workers in the background.

    Only processes that can read the certificate made for the cluster in your omfs state
    folder (mode 0600) can connect: your own.
    """
    from omfs.compute.processes import WorkerSpec, parse_worker_spec, start_background

    app = get_app(ctx)
    specs = []
    for i, text in enumerate(worker or []):
        resources = parse_worker_spec(text)
        label = "-".join(sorted(resources)) or "worker"
        specs.append(WorkerSpec(f"{label}-{i}", resources))
    plain = workers if workers is not None else (0 if specs else 2)
    specs += [WorkerSpec(f"worker-{i}") for i in range(plain)]
    if not specs:
        app.fail("a cluster needs at least one worker: give --workers N or --worker RESOURCES", 2)
    began = time.monotonic()
    record = start_background(specs, port=port, host=host, dashboard=dashboard)
    if app.as_json:
        app.value(record.to_dict())
        return
    print(
        f"om: cluster started at {record.address} with {len(specs)} worker(s) in "
        f"{time.monotonic() - began:.1f} s; `om cluster stop` stops it",
    )
    if record.dashboard:
        print(f"om: dashboard at {record.dashboard}")


@cli.command()
def status(ctx: typer.Context) -> None:
    """Say whether the background cluster runs, where, and its workers."""
    from omfs.compute.processes import background, gateway

    app = get_app(ctx)
    record = background()
    if record is None:
        if app.as_json:
            app.value({"running": False})
            return
        app.fail("no background cluster runs; start one with `om cluster start`", 3)
    socket = gateway(record)
    if app.as_json:
        doc = record.to_dict()
        app.value({"running": True, **doc, "gateway": str(socket) if socket else None})
        return
    where = f"gateway {socket}" if socket else "no gateway: `om runtime` connects itself"
    print(f"running at {record.address}, {where} (log: {record.log})")
    if record.dashboard:
        print(f"dashboard at {record.dashboard}")
    app.table(_rows(record), ["name", "resources", "pid"])


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
    address = report.record.address
    if report.stopped:
        pids = ", ".join(map(str, report.stopped))
        print(f"om: stopped the cluster at {address} (pids {pids})")
    else:
        print(f"om: the cluster recorded at {address} no longer runs; removed its record")
    for pid, now in report.left_alone:
        print(f"om: left pid {pid} alone: not a process omfs started for this cluster (it {now})")
