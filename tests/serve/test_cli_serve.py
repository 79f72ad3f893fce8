"""``om serve``: refusals in one line, and a real process answering MLflow's clients, its
audit flushed when it stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest
from omfs_serving import get_as_other_user

from omfs import access

httpx = pytest.importorskip("httpx")


@pytest.fixture
def root(tmp_path, iris):
    import omfs

    om = omfs.setup(str(tmp_path / "ctx"))
    om.models.put(iris[2], "m", tag="prod")
    return str(tmp_path / "ctx")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "Refusing to listen on '0.0.0.0' without a token"),
        (["--model", "nope@prod"], "Model 'nope' does not exist"),
        (["--model", "m@gold"], "with tag 'gold'"),
        (["--route", "m=prod:x"], "is not TAG:WEIGHT"),
        (["--model", "m@prod", "--shadow", "n=challenger"], "is not served"),
        (["--token-file", "missing"], "Cannot read the token file"),
    ],
)
def test_refusals_are_one_line(cli, root, monkeypatch, args, message):
    monkeypatch.delenv("OMFS_SERVE_TOKEN", raising=False)
    result = cli("--root", root, "serve", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("stop", ["INT", "HUP"])
def test_om_serve_process(om_script, root, stop):
    import omfs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [om_script, "--root", root, "serve", "--port", str(port), "--model", "m@prod"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/ping").status_code == 200:
                    break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "om serve did not start"
                time.sleep(0.1)
        r = httpx.post(f"{url}/invocations", json={"inputs": [[5.1, 3.5, 1.4, 0.2]]})
        assert r.json() == {"predictions": [0]} and r.headers["x-omfs-model"] == "m@v1"
        if access.peer_uid_supported() and os.geteuid() == 0:  # another user: refused
            assert get_as_other_user(url, "/ping").startswith(b"HTTP/1.1 403")
    finally:
        if os.name != "posix":
            proc.send_signal(signal.SIGTERM)
        else:  # a HUP (terminal closed) stops it as TERM does
            proc.send_signal(getattr(signal, f"SIG{stop}"))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode in ((0,) if stop == "INT" else (0, -signal.SIGTERM)), err
    audit = omfs.setup(root).datasets.get("serving/audit")  # flushed at shutdown
    assert audit[["model", "version", "status"]].values.tolist() == [["m", 1, 200]]
    import pandas as pd

    age = pd.Timestamp.now(tz="UTC") - audit["time"].iloc[0]
    assert pd.Timedelta(0) <= age < pd.Timedelta(minutes=10)  # epoch seconds -> UTC time
