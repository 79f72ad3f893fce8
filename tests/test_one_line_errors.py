"""Bad input that used to end in a library's traceback is one line naming what is wrong:
a filter operator that does not apply to a column's type, a deep --attr-json, and a
--cluster address where another kind of server answers."""

from __future__ import annotations

import os
import socket
import subprocess
import threading

import pandas as pd
import pytest

import omfs
from omfs.errors import ClusterUnavailableError, InvalidFilterError


@pytest.fixture
def cli(tmp_path, om_script):
    """Runs ``om`` on a local folder; returns (run, root)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMFS_")}
    env["OMFS_ROOT"] = str(tmp_path / "ctx")

    def run(*args):
        return subprocess.run([om_script, *args], capture_output=True, text=True, env=env)

    return run


def _one_line_error(result, *says):
    assert result.returncode != 0, result.stdout
    assert result.stderr.startswith("om: error:"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for text in says:
        assert text in result.stderr, result.stderr


@pytest.fixture
def table(shared_root):
    root, options = shared_root
    ctx = omfs.setup(root, storage_options=options)
    frame = pd.DataFrame(
        {"a": [1, 2, 3], "s": ["x", "y", "xy"], "f": [0.5, 1.5, 2.5], "b": [True, False, True]}
    )
    ctx.datasets.put(frame, "t")
    return ctx


@pytest.mark.parametrize(
    ("keywords", "says"),
    [
        ({"a__contains": "1"}, "'contains' (a string containing) does not apply to column 'a', "),
        ({"f__startswith": "1"}, "column 'f', which is double"),
        ({"b__endswith": "e"}, "column 'b', which is bool"),
        ({"s__gt": 1}, "'gt' (greater than) does not apply to column 's'"),
    ],
)
def test_an_operator_that_does_not_apply_to_the_column_type_is_named(table, keywords, says):
    with pytest.raises(InvalidFilterError, match=says.replace("(", r"\(").replace(")", r"\)")):
        table.datasets.get("t", **keywords)
    with pytest.raises(ValueError):  # still a ValueError for callers that catch that
        list(table.datasets.get("t", chunksize=1, **keywords))
    assert table.datasets.get("t", s__contains="x")["a"].tolist() == [1, 3]


def test_where_contains_on_an_int_column_is_one_line(cli, tmp_path):
    omfs.setup(tmp_path / "ctx").datasets.put(pd.DataFrame({"a": [1, 2], "s": ["x", "y"]}), "t")
    _one_line_error(
        cli("datasets", "get", "t", "-", "--where", "a~=1"),
        "'contains'",
        "column 'a', which is int64",
    )
    assert cli("datasets", "get", "t", "-", "--where", "s~=x").stdout.split() == ["a,s", "1,x"]


def test_a_deep_attr_json_is_one_line(cli, tmp_path):
    source = tmp_path / "t.csv"
    source.write_text("a\n1\n")
    deep = "[" * 20000 + "]" * 20000
    result = cli("datasets", "put", str(source), "x", "--attr-json", "--attr", f"n={deep}")
    _one_line_error(result, "--attr n=", "more than 32 levels deep")
    assert result.returncode == 2
    assert not omfs.setup(tmp_path / "ctx").datasets.exists("x")


@pytest.fixture
def not_dask():
    """A TCP server on loopback that answers every connection as an HTTP server would."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    socket.create_connection(server.getsockname()).close()  # wakes the accept() to stop
    thread.join(5)
    server.close()


def test_a_cluster_address_that_is_not_dask_is_one_line(not_dask, cli, tmp_path):
    _one_line_error(
        cli("--cluster", not_dask, "runtime", "workers"),
        f"{not_dask} is not a Dask scheduler",
        "b'HTTP/1.1'",
    )
    ctx = omfs.setup(tmp_path / "api", cluster=not_dask)
    with pytest.raises(ClusterUnavailableError, match="is not a Dask scheduler"):
        ctx.runtime.workers()


def test_a_cluster_address_that_stays_silent_is_one_line(cli, tmp_path):
    """An HTTP server waits for a request and says nothing: Dask's client waited for ever
    (found by a first-week trial with moto's port as --cluster)."""
    server = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        _one_line_error(
            cli("--cluster", address, "runtime", "workers"),
            f"{address} is not a Dask scheduler",
            "no Dask handshake",
        )
    finally:
        server.close()
