"""``cluster.json`` is read, not trusted: a hostile or stale record never makes omfs signal a
process that is not one of its cluster's, nor talk to a socket it did not start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from omfs.compute import background, processes


def _record(**changes):
    doc = {
        "address": "tcp://127.0.0.1:8786",
        "scheduler_pid": os.getpid(),
        "worker_pids": [os.getpid()],
        "workers": [{"name": "worker-0", "resources": {}}],
        "started": 0.0,
        "log": "/tmp/x.log",
        "gateway_pid": os.getpid(),
    }
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        _record(scheduler_pid="1234"),
        _record(worker_pids=[1]),
        _record(gateway_pid=-5),
        _record(gateway_pid=True),
        _record(address="http://example.com/../../"),
        _record(workers=[{"name": "w", "resources": {"gpu": "lots"}}]),
        # well formed, but this pid runs pytest, not a Dask process of omfs
        _record(),
    ],
)
def test_a_bad_or_stale_record_is_ignored_and_nothing_is_signalled(tmp_path, monkeypatch, text):
    monkeypatch.setenv("OMFS_STATE_DIR", str(tmp_path))
    (tmp_path / "cluster.json").write_text(text)
    (tmp_path / "runtime.sock").write_text("")  # not a socket the gateway made
    assert processes.background() is None
    # nor does the record's gateway pid, nor a plain file in the socket's place, count
    assert processes.gateway(background._read_state(tmp_path / "cluster.json")) is None
    report = processes.stop_background()
    assert report is None or report.stopped == ()  # and this process is still alive
    os.kill(os.getpid(), 0)


def test_a_record_without_a_gateway_is_read(tmp_path, monkeypatch):
    """Records written before the gateway existed have no gateway_pid."""
    monkeypatch.setenv("OMFS_STATE_DIR", str(tmp_path))
    doc = json.loads(_record())
    del doc["gateway_pid"]
    (tmp_path / "cluster.json").write_text(json.dumps(doc))
    record = background._read_state(tmp_path / "cluster.json")
    assert record is not None and record.gateway_pid is None


def _started(proc: subprocess.Popen) -> processes.ProcessIdentity:
    """The identity of ``proc`` once it runs its own command (not the forked parent's)."""
    while True:
        identity = processes.ProcessIdentity.of(proc.pid)
        assert identity is not None, "the process exited"
        if list(identity.cmdline) == proc.args:
            return identity


def _shown(command: str) -> str:
    return command if len(command) <= 80 else command[:77] + "..."


_DASK_SCHEDULER = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]


@pytest.mark.parametrize(
    "identity",
    [
        "none",  # a record of an older omfs, or one whose identities were removed
        "other command",  # the pid's start time, but the command of a Dask scheduler
        "other start time",  # the pid's command, started at another time: a reused pid
    ],
)
def test_stop_never_signals_a_process_the_record_merely_names(
    tmp_path, monkeypatch, om_script, identity
):
    """Issue 17, item 9: a cluster.json pointing at `tail -f .../distributed.cli.notes` got
    it killed (a substring test on its command line). It must survive, and `om cluster
    stop` says what it did."""
    notes = tmp_path / "distributed.cli.notes"
    notes.write_text("")
    tail = subprocess.Popen(["tail", "-f", str(notes)])
    try:
        real = _started(tail)
        identities = {
            "none": [],
            "other command": [{**real.to_dict(), "cmdline": _DASK_SCHEDULER}],
            "other start time": [{**real.to_dict(), "create_time": real.create_time - 3600}],
        }[identity]
        state = tmp_path / "state"
        state.mkdir()
        doc = json.loads(_record(scheduler_pid=tail.pid, worker_pids=[tail.pid]))
        (state / "cluster.json").write_text(
            json.dumps({**doc, "gateway_pid": None, "processes": identities})
        )
        env = {**os.environ, "OMFS_STATE_DIR": str(state)}
        out = subprocess.run(
            [om_script, "cluster", "stop"], capture_output=True, text=True, env=env, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert tail.poll() is None, "om cluster stop killed a process it did not start"
        lines = out.stdout.splitlines()
        assert lines[0] == (
            "om: the cluster recorded at tcp://127.0.0.1:8786 no longer runs; removed its record"
        )
        assert lines[1:] == [
            f"om: left pid {tail.pid} alone: not a process omfs started for this cluster "
            f"(it runs `{_shown(f'tail -f {notes}')}`)"
        ]
        assert not (state / "cluster.json").exists()
    finally:
        tail.kill()
        tail.wait()


def test_stop_signals_the_processes_whose_start_time_and_command_match(tmp_path, monkeypatch):
    """The counterpart: a process recorded at its start is stopped, and said so."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        real = _started(proc)
        doc = json.loads(_record(scheduler_pid=proc.pid, worker_pids=[proc.pid]))
        doc.update(gateway_pid=None, processes=[real.to_dict()])
        monkeypatch.setenv("OMFS_STATE_DIR", str(tmp_path))
        (tmp_path / "cluster.json").write_text(json.dumps(doc))
        assert processes.background() is not None
        report = processes.stop_background()
        assert report is not None and report.stopped == (proc.pid,)
        assert processes.ProcessIdentity.of(proc.pid) is None  # stopped (and reaped)
    finally:
        proc.kill()
        proc.wait()


def test_a_start_time_one_second_off_is_the_same_start_but_not_half_a_second(tmp_path):
    """psutil adds /proc/stat's boot time (whole seconds, recomputed from the wall clock on
    each read) to the process's tick count: while the clock is slewed, two readings of one
    process differ by exactly a second. The job scheduler once read as stopped that way."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        real = _started(proc)
        for apart, same in [(0.0, True), (1.0, True), (-1.0, True), (0.5, False), (2.0, False)]:
            moved = processes.ProcessIdentity(real.pid, real.create_time + apart, real.cmdline)
            assert (moved.process() is not None) is same, apart
    finally:
        proc.kill()
        proc.wait()


def test_a_process_identity_is_taken_once_its_own_command_shows(tmp_path, monkeypatch):
    """Popen returns when the new program replaced the forked one, which may be a moment
    before /proc shows its arguments; an identity read then names no command, and the
    process reads as stopped ever after. The kernel's window cannot be hit on demand, so
    the first two readings here show what it shows in it: an empty command line."""
    log = tmp_path / "log"
    log.write_text("")
    read = background.ProcessIdentity.of
    seen = []

    def of(pid):
        seen.append(pid)
        identity = read(pid)
        return identity if len(seen) > 2 else background.ProcessIdentity(pid, 0.0, ())

    monkeypatch.setattr(background.ProcessIdentity, "of", of)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        identity = background._identity_of(proc, log)
        assert list(identity.cmdline) == proc.args and len(seen) >= 3
        assert identity.process() is not None
    finally:
        proc.kill()
        proc.wait()
