"""How late scheduled slots fire: one and three scheduler processes on one local folder.

    python benchmarks/scheduler_bench.py [--slots 100] [--schedulers 1 3] [--fire claim|real]

Each run schedules one job ``every="1s"`` and starts the scheduler processes
(``tests/helpers/omfs_scheduling.py``: a ``Scheduler`` whose ``fire`` claims the slot with the
storage's put-if-absent, as the job store's run record does). Once all are up, it counts
the next ``--slots`` slots and prints the lateness of each slot's winning claim (the time
the claim was written minus the slot's time): p50, p99 and max, and checks that every slot
was claimed exactly once.

``--fire real`` starts ``om scheduler run`` processes instead, on a real job
(``def run(om): return 1``): lateness is then the time the slot's run record was created
(the claim, before the run starts in the scheduler's process) minus the slot's time, and
each slot must have exactly one run, succeeded.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELPER = Path(__file__).parent.parent / "tests" / "helpers" / "omfs_scheduling.py"


def run(schedulers: int, slots: int) -> dict[str, float]:
    import omfs
    from omfs.objects.jobs.schedule_book import put_schedule

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ctx"
        om = omfs.setup(root)
        put_schedule(om.storage, "omega", "bench", every="1s")
        until = time.time() + slots + 120
        outs = [Path(tmp) / f"fired-{i}.txt" for i in range(schedulers)]
        cmd = [sys.executable, str(HELPER), str(root), "{}"]
        procs = [subprocess.Popen([*cmd, str(o), str(until)], stdout=subprocess.PIPE) for o in outs]
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
            first = int(time.time()) + 2  # every scheduler has looked at least once
            time.sleep(first + slots - time.time() + 1.5)
        finally:
            for p in procs:
                p.kill()
                p.wait()
        lines = [line.split() for o in outs if o.exists() for line in o.read_text().splitlines()]
    counted = [x for x in lines if first <= float(x[1]) < first + slots]
    slot_times = sorted(float(x[1]) for x in counted)
    assert slot_times == [float(first + i) for i in range(slots)], "a slot missed or doubled"
    late = sorted(float(x[2]) - float(x[1]) for x in counted)
    return {
        "p50": statistics.median(late),
        "p99": late[min(len(late) - 1, round(0.99 * (len(late) - 1)))],
        "max": late[-1],
        "winners": len({x[3] for x in counted}),
    }


def run_real(schedulers: int, slots: int) -> dict[str, float]:
    """The same with ``om scheduler run`` processes and a real job."""
    import os
    from datetime import datetime

    import omfs

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ctx"
        om = omfs.setup(root)
        (Path(tmp) / "job.py").write_text("def run(om):\n    return 1\n")
        om.jobs.put(Path(tmp) / "job.py", "bench")
        om.jobs.schedule("bench", every="1s")
        env = {**os.environ, "OMFS_STATE_DIR": str(Path(tmp) / "state")}  # no cluster: here
        om_cmd = [str(Path(sys.executable).parent / "om"), "--root", str(root), "scheduler", "run"]
        procs = [
            subprocess.Popen(om_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            for _ in range(schedulers)
        ]
        try:
            for p in procs:
                assert p.stderr is not None and b"watching" in p.stderr.readline()
            first = int(time.time()) + 2
            time.sleep(first + slots - time.time() + 1.5)
        finally:
            for p in procs:
                p.kill()
                p.wait()
        runs = om.jobs.runs("bench")
    counted = []
    for r in runs:
        slot = datetime.fromisoformat(r.slot or "").timestamp()
        if first <= slot < first + slots:
            assert r.status == "succeeded", r
            counted.append((slot, datetime.fromisoformat(r.started).timestamp() - slot, r.pid))
    assert sorted(c[0] for c in counted) == [float(first + i) for i in range(slots)], "missed"
    late = sorted(c[1] for c in counted)
    return {
        "p50": statistics.median(late),
        "p99": late[min(len(late) - 1, round(0.99 * (len(late) - 1)))],
        "max": late[-1],
        "winners": len({c[2] for c in counted}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--schedulers", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--fire", choices=["claim", "real"], default="claim")
    args = parser.parse_args()
    what = "claim = put-if-absent" if args.fire == "claim" else "om scheduler run, a real job"
    print(f"lateness of {args.slots} slots, every=1s, local folder, {what}")
    print("| schedulers | p50 | p99 | max | processes that won slots |")
    print("| --- | --- | --- | --- | --- |")
    for n in args.schedulers:
        r = (run if args.fire == "claim" else run_real)(n, args.slots)
        print(
            f"| {n} | {r['p50'] * 1000:.1f} ms | {r['p99'] * 1000:.1f} ms "
            f"| {r['max'] * 1000:.1f} ms | {r['winners']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
