"""om serve against the attacks on it: foreign Host names, wide bodies, forged names and
request ids, huge numbers, empty results, audit writes, a corrupt new version, workers."""

from __future__ import annotations

import asyncio
import inspect
import io
import os
import threading
import time

import pytest
from omfs_serving import running

httpx = pytest.importorskip("httpx")

READ, WRITE = "r-" + "a" * 30, "w-" + "b" * 30
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def store(tmp_path_factory, iris):
    import pandas as pd

    import omfs

    home = tmp_path_factory.mktemp("hardening")
    om = omfs.setup(str(home / "ctx"))
    om.models.put(iris[2], "iris", tag="prod")
    om.datasets.put(pd.DataFrame({"region": ["EU", "US"], "qty": [5, 20]}), "sales")
    tokens = home / "tokens"
    tokens.write_text(f"read {READ}\nwrite {WRITE}\n")
    tokens.chmod(0o600)
    return om, tokens


@pytest.fixture(scope="module")
def audited(store):
    """A server with tokens and its audit in ``serving/audit-h``; yields (url, read_audit)."""
    from omfs.serve import app

    om, tokens = store
    with running(app(om, token_file=tokens, audit="serving/audit-h")) as url:
        yield url


def _client(url, token=READ):
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})


def test_a_foreign_host_name_is_refused(store, audited):
    """DNS rebinding (attack #2): a page of evil.example resolving to 127.0.0.1."""
    from omfs.serve import app

    with _client(audited) as c:
        r = c.get("/v1/datasets/sales", headers={"Host": "evil.example"})
        assert r.status_code == 403 and "loopback" in r.json()["error"]
        assert c.get("/health", headers={"Host": "evil.example:80"}).status_code == 403
        assert c.get("/v1/datasets/sales", headers={"Host": "localhost"}).status_code == 200
    # listening on another address with a token: any name (a proxy, a DNS name) is fine
    om, tokens = store
    open_app = app(om, token_file=tokens, host="0.0.0.0", audit=False)
    with running(open_app) as url, _client(url) as c:
        assert c.get("/health", headers={"Host": "models.example.com"}).status_code == 200


def test_large_bodies_are_parsed_off_the_event_loop(store):
    """A wide or large body must not stall every other request (attack #3)."""
    from omfs.serve.server import INLINE_BYTES, Server

    seen = []

    def parse(body):
        seen.append(threading.current_thread() is threading.main_thread())
        return len(body)

    server = Server.__new__(Server)

    async def both():
        await server.parse(parse, b"x" * 10)
        await server.parse(parse, b"x" * (INLINE_BYTES + 1))

    asyncio.run(both())
    assert seen == [True, False]


def test_only_authorised_requests_reach_metrics_and_audit(store, audited):
    """No metrics series or audit rows for refused callers' names; unknown models under one
    label; request ids are the server's (attack #6)."""
    with httpx.Client(base_url=audited) as anonymous:
        for i in range(5):
            r = anonymous.post(f"/v1/models/made-up-{i}/predict", json={"instances": [ROW]})
            assert r.status_code == 401
    with _client(audited) as c:
        error_ids = []
        for name in ("nope-1", "nope-2"):
            r = c.post(f"/v1/models/{name}/predict", json={"instances": [ROW]})
            assert r.status_code == 404
            error_ids.append(r.headers["x-request-id"])  # an error answer names its audit row
        assert c.post("/v1/models/iris/fit", json={"instances": [ROW]}).status_code == 404
        forged = {"X-Request-Id": "forged-id"}
        ok = c.post("/v1/models/iris/predict", json={"instances": [ROW]}, headers=forged)
        assert ok.status_code == 200 and ok.headers["x-request-id"] != "forged-id"
        metrics = c.get("/metrics").text
    assert "made-up" not in metrics and "nope" not in metrics and '"fit"' not in metrics
    assert 'model="(unknown)",version="",action="predict",status="404"} 2' in metrics
    assert 'action="(unknown)",status="404"} 1' in metrics
    server_id = ok.headers["x-request-id"]
    om = store[0]
    deadline = time.monotonic() + 30
    while not om.datasets.exists("serving/audit-h") or server_id not in set(
        om.datasets.get("serving/audit-h")["request_id"]
    ):
        assert time.monotonic() < deadline, "the audit was not flushed"
        time.sleep(0.2)  # the audit appends every 2 s: wait for it
    audit = om.datasets.get("serving/audit-h")
    assert "forged-id" not in set(audit["request_id"])
    errors = audit.set_index("request_id").loc[error_ids]
    assert errors["status"].tolist() == [404, 404]
    assert not audit["model"].str.startswith(("made-up", "nope")).any()


def test_writes_to_the_audit_and_huge_numbers_are_refused(store, audited):
    """The audit is the server's (attack #20); a number no column holds is a 400 (#10)."""
    with _client(audited, WRITE) as w:
        row = {"columns": ["request_id"], "data": [["forged"]]}
        for name in ("serving/audit", "serving/audit-h"):
            r = w.post(f"/v1/datasets/{name}?append=true", json=row)
            assert r.status_code == 403 and "only the server writes it" in r.json()["error"]
        for body in ({"columns": ["a"], "data": [[10**30]]}, [{"a": 10**30}]):
            r = w.post("/v1/datasets/big", json=body)
            assert r.status_code == 400 and "too large" in r.json()["error"], r.text
        assert not store[0].datasets.exists("big")


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet", "arrow"])
def test_an_empty_result_keeps_the_columns(audited, fmt):
    """A filter matching no row (attack #14): a valid empty table in every format."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _client(audited) as c:
        r = c.get("/v1/datasets/sales", params={"where": "qty>1000", "format": fmt})
    assert r.status_code == 200
    if fmt == "json":
        assert r.json() == {"columns": ["region", "qty"], "data": []}
    elif fmt == "csv":
        assert r.text == "region,qty\n"
    else:
        read = pq.read_table if fmt == "parquet" else lambda b: pa.ipc.open_stream(b).read_all()
        table = read(io.BytesIO(r.content) if fmt == "parquet" else r.content)
        assert table.num_rows == 0 and table.schema.names == ["region", "qty"]
        assert pa.types.is_integer(table.schema.field("qty").type)


def test_a_corrupt_new_version_leaves_the_old_one_serving(tmp_path, iris):
    """prod moves to a version whose payload fails its check (attack #21): the previous
    version keeps answering, and the failure is logged and counted."""
    import omfs
    from omfs.serve import app

    om = omfs.setup(str(tmp_path / "ctx"))
    om.models.put(iris[2], "m", tag="prod")
    server = app(om, models=["m@prod"], audit=False, poll=0.05)
    with running(server) as url, httpx.Client(base_url=url) as c:
        assert c.post("/v1/models/m/predict", json={"instances": [ROW]}).status_code == 200
        meta = om.models.put(iris[3], "m")
        path = os.path.join(om.root, om.models.data_key("m", meta.info["payload"]))
        with open(path, "r+b") as f:
            f.seek(100)
            f.write(b"garbage")
        om.models.tag("m@v2", "prod")
        registry = server.state.server.registry
        deadline = time.monotonic() + 20
        while not registry.reload_failures:
            assert time.monotonic() < deadline, "the move was not seen"
            time.sleep(0.05)
        r = c.post("/v1/models/m/predict", json={"instances": [ROW]})
        assert r.status_code == 200 and r.headers["x-omfs-model"] == "m@v1"
        assert 'omfs_reload_failures_total{model="m"}' in c.get("/metrics").text


def test_served_models_are_loaded_before_the_first_request(tmp_path, iris):
    """Every model serving (no --model): loaded as the server starts (attack #22)."""
    import omfs
    from omfs.serve import app

    om = omfs.setup(str(tmp_path / "ctx"))
    om.models.put(iris[2], "a")
    om.models.put(iris[2], "b")
    server = app(om, audit=False)
    with running(server):
        registry = server.state.server.registry
        deadline = time.monotonic() + 20
        while len(registry.bindings) < 2:
            assert time.monotonic() < deadline, "the models were not preloaded"
            time.sleep(0.05)
        assert {key[0] for key in registry.bindings} == {"a", "b"}


def test_workers_get_every_setting(shared_root, monkeypatch):
    """``--workers N``: each worker opens the same context, storage options included, and
    --max-body means the same in the CLI and in app() (attack #22)."""
    import omfs
    from omfs._util import parse_size
    from omfs.cli import serve as cli_serve
    from omfs.cli.app import App
    from omfs.serve.asgi import CONFIG_ENV, DEFAULT_MAX_BODY, from_environment

    default = inspect.signature(cli_serve.serve).parameters["max_body"].default
    assert parse_size(default) == DEFAULT_MAX_BODY
    root, options = shared_root
    omfs.setup(root, storage_options=options).datasets.put({"a": [1]}, "d")
    run = App(root=root, storage_options=options or {})
    kwargs = {"audit": False, "host": "127.0.0.1", "max_body": 123}
    monkeypatch.setenv(CONFIG_ENV, cli_serve._settings(run, kwargs))
    worker = from_environment()
    server = worker.state.server
    assert server.max_body == 123 and server.om.datasets.exists("d")
