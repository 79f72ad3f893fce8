"""``om scheduler run`` for real: three scheduler processes of the real CLI on one S3 root
run a real job ``every="1s"``; each slot gets exactly one run record and one run, none is
missed, one scheduler is killed with SIGKILL halfway, the others stop cleanly on Ctrl-C.
And a winner killed between its claim and its run leaves no record stuck in ``running``.

Why ``1s`` for about 12 s (not ``2s`` for 20 s): each slot is one independent race of
three (then two) claimants, so twelve slots give the evidence in half the time.
"""

from __future__ import annotations

import calendar
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

import omfs
from omfs.objects.jobs.runs import LOST_AFTER

pytestmark = [pytest.mark.s3, pytest.mark.slow]

TICK = "import time\nprint('tick', params)\ntime.sleep(0.3)\n"


def env_for(options: dict, tmp_path) -> dict:
    env = {**os.environ, "OMFS_STORAGE_OPTIONS": json.dumps(options)}
    env["OMFS_STATE_DIR"] = str(tmp_path / "state")  # no background cluster: runs here
    env.pop("OMFS_CLUSTER", None)
    return env


def test_three_cli_schedulers_run_each_slot_exactly_once_and_survive_a_kill(
    s3_root, s3_options, tmp_path, om_script
):
    om = omfs.setup(s3_root, storage_options=s3_options)
    (tmp_path / "tick.py").write_text(TICK)
    om.jobs.put(tmp_path / "tick.py", "tick")
    om.jobs.schedule("tick", every="1s", params={"n": 1}, overlap="allow")
    env = env_for(s3_options, tmp_path)
    procs = [
        subprocess.Popen(
            [om_script, "--root", s3_root, "scheduler", "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        for p in procs:  # each has read the schedules (imports take a while on a busy machine)
            assert "scheduler watching" in p.stderr.readline(), p.stderr.read()
        up = time.time()
        time.sleep(6)  # the three race for six slots (the run itself, not a synchronisation)
        procs[0].send_signal(signal.SIGKILL)
        killed = time.time()
        time.sleep(6)
        for p in procs[1:]:
            assert p.poll() is None
            p.send_signal(signal.SIGINT)  # Ctrl-C: stops cleanly
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    for p, (_, err) in zip(procs[1:], outs[1:], strict=True):
        assert p.returncode == 0 and err.rstrip().endswith("om: scheduler stopped"), err
        assert "Traceback" not in err
    started = [line.split("\t") for out, _ in outs for line in out.splitlines()]
    run_ids = [row[3] for row in started]
    assert len(run_ids) == len(set(run_ids)), "a slot started twice"
    assert {row[4] for row in started} == {"here"}
    runs = {r.id: r for r in om.jobs.runs("tick")}
    # every run any scheduler said it started has its record; the records are one per slot
    # (the killed one may have won a slot and died before it printed)
    assert set(run_ids) <= set(runs) and len(set(runs) - set(run_ids)) <= 1
    seconds = sorted(calendar.timegm(time.strptime(i[:16], "%Y%m%dT%H%M%SZ")) for i in runs)
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds))), "a slot missed"
    assert len(seconds) >= 10 and seconds[0] < up + 2 and seconds[-1] > killed + 4
    # none stuck: each succeeded, but a run the killed scheduler had in hand reads lost
    statuses = [r.status for r in runs.values()]
    assert "running" not in statuses
    lost = [r for r in runs.values() if r.status != "succeeded"]
    assert len(lost) <= 1 and all("lost:" in r.error for r in lost)
    assert all(r.params == {"n": 1} for r in runs.values())
    winners = {r.pid for r in runs.values()}
    assert len(winners) >= 2, "the schedulers should have shared the slots"


CLAIM_AND_DIE = """\
import os, signal, sys, json
from datetime import datetime
import omfs
om = omfs.setup(sys.argv[1], storage_options=json.loads(sys.argv[2]))
slot = datetime.fromisoformat(sys.argv[3])
worker = f"scheduler on test (pid {os.getpid()})"
claimed = om.runtime.mode(local=True).job("tick").claim({}, slot=slot, worker=worker)
assert claimed is not None
os.kill(os.getpid(), signal.SIGKILL)  # between the claim and the run
"""


def test_a_winner_killed_between_claim_and_run_leaves_no_record_running(
    s3_root, s3_options, tmp_path
):
    om = omfs.setup(s3_root, storage_options=s3_options)
    (tmp_path / "tick.py").write_text(TICK)
    om.jobs.put(tmp_path / "tick.py", "tick")
    slot = datetime(2024, 1, 5, 6, tzinfo=UTC)
    script = tmp_path / "claim.py"
    script.write_text(textwrap.dedent(CLAIM_AND_DIE))
    done = subprocess.run(
        [sys.executable, str(script), s3_root, json.dumps(s3_options), slot.isoformat()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    (rec,) = om.jobs.runs("tick")
    # on this host: its process is gone, so it reads failed at once
    assert rec.status == "failed" and "stopped before the run finished" in rec.error
    assert rec.slot == slot.isoformat()
    # seen from another machine: its heartbeat (the claim's) goes stale
    raw = om.jobs.run_store.read("tick", rec.id, seen=False)
    assert raw.status == "running"
    elsewhere = replace(raw, host="another-machine")
    assert elsewhere.seen().status == "running"  # fresh: it may still run there
    stale = datetime.now(UTC) + timedelta(seconds=LOST_AFTER + 1)
    seen = elsewhere.seen(at=stale)
    assert seen.status == "failed" and "no heartbeat" in seen.error
    # and a scheduler does not take the dead run for one still running (overlap)
    from omfs.compute.firing import JobFiring

    assert not JobFiring().is_running(om, "tick")
