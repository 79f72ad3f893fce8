"""Three scheduler processes on one S3 root (two laptops and a server): each slot is
claimed exactly once and none is missed, also when one of them is killed with SIGKILL.

Why ``every="1s"`` for 12 s: twelve slots with three schedulers up and six more after the
kill give the same evidence as ``2s`` for 20 s (each slot is one independent race of three
or two claimants), in about half the time; this is the suite's one long scheduler test.
"""

from __future__ import annotations

import calendar
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omfs_scheduling import __file__ as HELPER

import omfs
from omfs.objects.jobs import schedule_book as book

pytestmark = [pytest.mark.s3, pytest.mark.slow]


def start(root: str, options: dict, out: Path, until: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, HELPER, root, json.dumps(options), str(out), str(until)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_three_schedulers_fire_each_slot_exactly_once_and_survive_a_kill(
    s3_root, s3_options, tmp_path
):
    om = omfs.setup(s3_root, storage_options=s3_options)
    book.put_schedule(om.storage, "omega", "tick", every="1s")
    procs, outs = [], []
    until = time.time() + 60  # a bound: the test stops them itself
    for i in range(3):
        outs.append(tmp_path / f"fired-{i}.txt")
        procs.append(start(s3_root, s3_options, outs[-1], until))
    try:
        for p in procs:  # all three running (imports take a while on a busy machine)
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        up = time.time()
        time.sleep(6)  # the three race for six slots (not a synchronisation: the run itself)
        procs[0].send_signal(signal.SIGKILL)
        killed = time.time()
        time.sleep(6)
        for p in procs[1:]:
            assert p.poll() is None, p.stderr.read()
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    claims = sorted(
        n[: -len(".json")] for n in om.storage.list_names("omega/jobs/_runs/tick") if n[0] != "."
    )
    fired = [line.split() for out in outs if out.exists() for line in out.read_text().splitlines()]
    fired_ids = [f[0] for f in fired]
    # each slot fired once: no slot in two lines (three processes appended)
    assert len(fired_ids) == len(set(fired_ids))
    # none missed: the claims are every second from the first to the last
    stamps = sorted(float(f[1]) for f in fired)
    seconds = [calendar.timegm(time.strptime(c, "%Y%m%dT%H%M%SZ")) for c in claims]
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds))), claims
    assert len(claims) >= 10 and stamps[0] < up + 2 and stamps[-1] > killed + 4
    # a claim without its line can only be the slot the killed process had in hand
    assert len(set(claims) - set(fired_ids)) <= 1
    assert set(fired_ids) <= set(claims)
    pids = {int(f[3]) for f in fired}
    assert len(pids) >= 2, "the schedulers should have shared the slots"
    assert os.getpid() not in pids
