"""``cluster.json`` is read, not trusted: a hostile or stale record never makes omfs signal a
process that is not one of its cluster's, nor talk to a socket it did not start."""

from __future__ import annotations

import json
import os

import pytest

from omfs.runtime import processes


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
    assert processes.gateway(processes._read_state(tmp_path / "cluster.json")) is None
    assert processes.stop_background() is None  # and this process is still alive
    os.kill(os.getpid(), 0)


def test_a_record_without_a_gateway_is_read(tmp_path, monkeypatch):
    """Records written before the gateway existed have no gateway_pid."""
    monkeypatch.setenv("OMFS_STATE_DIR", str(tmp_path))
    doc = json.loads(_record())
    del doc["gateway_pid"]
    (tmp_path / "cluster.json").write_text(json.dumps(doc))
    record = processes._read_state(tmp_path / "cluster.json")
    assert record is not None and record.gateway_pid is None
