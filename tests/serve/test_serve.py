"""om serve against a real uvicorn server: bodies, paths, errors, tokens, datasets, metrics,
MLflow's and the Open Inference Protocol's requests."""

from __future__ import annotations

import io
import os

import pytest
from omfs_serving import running

httpx = pytest.importorskip("httpx")

READ_TOKEN, WRITE_TOKEN = "r-" + "x" * 30, "w-" + "y" * 30
ROW = [5.1, 3.5, 1.4, 0.2]
COLS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@pytest.fixture(scope="module")
def store(tmp_path_factory, iris):
    """A context with model iris (v1 plain, prod; v2 fitted on named columns, candidate)
    and dataset sales; its token file."""
    import pandas as pd

    import omfs

    _, _, plain, named = iris
    home = tmp_path_factory.mktemp("serve")
    om = omfs.setup(str(home / "ctx"))
    om.models.put(plain, "iris", tag="prod")
    om.models.put(named, "iris", tag="candidate")
    om.datasets.put(pd.DataFrame({"region": ["EU", "US", "EU"], "qty": [5, 20, 30]}), "sales")
    tokens = home / "tokens"
    tokens.write_text(f"read {READ_TOKEN}\nwrite {WRITE_TOKEN}\n")
    tokens.chmod(0o600)
    return om, tokens


@pytest.fixture(scope="module")
def server(store):
    from omfs.serve import app

    om, tokens = store
    with running(app(om, token_file=tokens, audit=False)) as url:
        yield url


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {READ_TOKEN}"}) as c:
        yield c


BODIES = {
    "omegaml": ({"columns": COLS, "data": [ROW]}, None),
    "dataframe_split": ({"dataframe_split": {"columns": COLS, "data": [ROW]}}, None),
    "dataframe_records": ({"dataframe_records": [dict(zip(COLS, ROW, strict=True))]}, None),
    "instances": ({"instances": [ROW]}, None),
    "inputs": ({"inputs": [ROW]}, None),
    "inputs-columnar": ({"inputs": {c: [v] for c, v in zip(COLS, ROW, strict=True)}}, None),
    "csv": (",".join(COLS) + "\n" + ",".join(map(str, ROW)) + "\n", "text/csv"),
}


@pytest.mark.parametrize("form", list(BODIES))
@pytest.mark.parametrize("spec", ["iris@prod", "iris@v2"])
def test_every_body_format(client, store, iris, form, spec):
    body, ctype = BODIES[form]
    if ctype:
        r = client.post(f"/v1/models/{spec}/predict", content=body, headers={"content-type": ctype})
    else:
        r = client.post(f"/v1/models/{spec}/predict", json=body)
    assert r.status_code == 200, r.text
    version = 1 if spec == "iris@prod" else 2
    assert r.json() == {"model": "iris", "version": version, "predictions": [0]}
    assert r.headers["x-omfs-model"] == f"iris@v{version}"
    meta = store[0].models.metadata(f"iris@v{version}")
    assert r.headers["x-omfs-sha256"] == meta.info["sha256"]


@pytest.mark.parametrize(
    ("spec", "action", "version"),
    [
        ("iris", "predict_proba", 2),  # latest
        ("iris@latest", "decision_function", 2),
        ("iris@candidate", "predict", 2),
        ("iris@v1", "predict_proba", 1),
    ],
)
def test_tags_versions_and_actions_in_the_path(client, iris, spec, action, version):
    r = client.post(f"/v1/models/{spec}/{action}", json={"columns": COLS, "data": [ROW, ROW]})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == version
    import numpy as np
    import pandas as pd

    X = pd.DataFrame([ROW, ROW], columns=COLS)
    model, X = (iris[2], X.to_numpy()) if version == 1 else (iris[3], X)
    expected = getattr(model, action)(X)
    assert np.allclose(r.json()["predictions"], expected)


ERRORS = [
    ("unknown model", "/v1/models/nope/predict", {"instances": [ROW]}, 404, "'nope' does not"),
    ("unknown tag", "/v1/models/iris@gold/predict", {"instances": [ROW]}, 404, "tag 'gold'"),
    ("unknown version", "/v1/models/iris@v9/predict", {"instances": [ROW]}, 404, "version 9"),
    ("unknown action", "/v1/models/iris/fit", {"instances": [ROW]}, 404, "unknown action"),
    ("bad selector", "/v1/models/iris@@x/predict", {"instances": [ROW]}, 400, "Invalid"),
    ("empty body", "/v1/models/iris/predict", b"", 400, "empty"),
    ("not JSON", "/v1/models/iris/predict", b"{nope", 400, "not valid JSON"),
    ("no form", "/v1/models/iris/predict", {"rows": [ROW]}, 400, "accepted forms"),
    (
        "two forms",
        "/v1/models/iris/predict",
        {"inputs": [ROW], "instances": [ROW]},
        400,
        "send one",
    ),
    ("no rows", "/v1/models/iris/predict", {"instances": []}, 400, "non-empty"),
    (
        "wrong columns",
        "/v1/models/iris/predict",
        {"columns": ["a"] * 4, "data": [ROW]},
        422,
        "lacks",
    ),
    ("wrong width", "/v1/models/iris@v1/predict", {"instances": [[1.0, 2.0]]}, 422, "expects 4"),
    ("ragged", "/v1/models/iris/predict", {"instances": [ROW, [1.0]]}, 422, "row 1 has 1"),
    ("non-numeric", "/v1/models/iris@v1/predict", {"instances": [["x", 1, 2, 3]]}, 422, "'x'"),
    ("too large", "/v1/models/iris/predict", b"[" + b" " * (17 * 2**20) + b"]", 413, "bytes"),
    ("nested", "/v1/models/iris/predict", b"[" * 100_000 + b"]" * 100_000, 400, "nested"),
    ("too wide", "/v1/models/iris/predict", {"instances": [[1.0] * 10_001]}, 413, "most 10000"),
    (
        "too wide csv",
        "/v1/models/iris/predict",
        ",".join(f"c{i}" for i in range(200_000)).encode() + b"\n",
        413,
        "most 10000",
    ),
]


@pytest.mark.parametrize(
    ("what", "path", "body", "status", "fragment"), ERRORS, ids=[e[0] for e in ERRORS]
)
def test_every_user_error_is_json_naming_it(client, store, what, path, body, status, fragment):
    ctype = "text/csv" if what.endswith("csv") else "application/json"
    if isinstance(body, bytes):
        r = client.post(path, content=body, headers={"content-type": ctype})
    else:
        r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    assert "Traceback" not in r.text
    assert store[0].root not in r.text  # the bucket and the name, never where it lives


def test_columns_in_any_order_reach_the_model_in_its_order(client, iris):
    """A model fitted on named columns gets them in its order, named (no scikit-learn
    warning), whatever order the request gives; a column named twice is a 422."""
    import warnings

    import numpy as np

    from omfs.serve.bodies import Frame, model_input

    X, _, _, named = iris
    rows = X.iloc[[0, 60, 120]]  # one of each class
    order = [COLS[2], COLS[0], COLS[3], COLS[1]]
    body = {"columns": order, "data": rows[order].values.tolist()}
    r = client.post("/v1/models/iris@v2/predict_proba", json=body)
    assert r.status_code == 200, r.text
    assert np.allclose(r.json()["predictions"], named.predict_proba(rows))
    frame = model_input(Frame(order, [[1, 2.5, 3, 4]]), tuple(COLS), 4)
    assert list(frame.columns) == COLS
    assert frame.iloc[0].tolist() == [2.5, 4, 1, 3]
    assert [str(t) for t in frame.dtypes] == ["float64", "int64", "int64", "int64"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "X does not have valid feature names" would raise
        named.predict(frame)
    twice = {"columns": [*COLS, COLS[0]], "data": [[*ROW, 1.0]]}
    r = client.post("/v1/models/iris@v2/predict", json=twice)
    assert r.status_code == 422 and "more than once" in r.json()["error"]


def test_model_calls_are_matched_first(store):
    """Starlette tries routes in order: a prediction should not walk the others first."""
    from omfs.serve import app

    paths = [route.path for route in app(store[0], models=["iris@prod"], audit=False).routes]
    assert paths[:3] == ["/invocations", "/ping", "/v1/models/{name:path}/{action}"]
    paths = [route.path for route in app(store[0], audit=False).routes]
    assert paths[0] == "/v1/models/{name:path}/{action}" and "/invocations" not in paths


def test_a_corrupt_payload_is_a_500_in_one_line(client, store, iris, caplog):
    om, _ = store
    meta = om.models.put(iris[2], "broken")
    payload = om.models.data_key("broken", meta.info["payload"])
    path = os.path.join(om.root, payload)
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"garbage")
    r = client.post("/v1/models/broken/predict", json={"instances": [ROW]})
    assert r.status_code == 500
    assert "does not match its sidecar" in r.json()["error"]
    assert "\n" not in r.json()["error"]
    assert len([rec for rec in caplog.records if "integrity" in rec.getMessage()]) == 1


def test_tokens_read_and_write(server, store):
    base = {"base_url": server}
    with httpx.Client(**base) as anonymous:
        r = anonymous.post("/v1/models/iris/predict", json={"instances": [ROW]})
        assert r.status_code == 401 and "Bearer" in r.json()["error"]
        r = anonymous.get("/v1/models", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "valid" in r.json()["error"]
        assert anonymous.get("/health").status_code == 200  # probes need no token
    upload = {"columns": ["region", "qty"], "data": [["US", 7]]}
    with httpx.Client(headers={"Authorization": f"Bearer {READ_TOKEN}"}, **base) as reader:
        assert reader.get("/v1/datasets/sales").status_code == 200
        r = reader.post("/v1/datasets/sales?append=true", json=upload)
        assert r.status_code == 403 and "read token cannot write" in r.json()["error"]
    with httpx.Client(headers={"Authorization": f"Bearer {WRITE_TOKEN}"}, **base) as writer:
        r = writer.post("/v1/datasets/sales2", json=upload)
        assert r.status_code == 200 and r.json()["rows"] == 1
        r = writer.post(
            "/v1/datasets/sales2?append=true",
            content="region,qty\nEU,3\n",
            headers={"content-type": "text/csv"},
        )
        assert r.json()["version"] == 2
    assert store[0].datasets.get("sales2")["qty"].tolist() == [7, 3]


def test_access_rules_when_the_app_is_made(store, tmp_path, monkeypatch):
    from omfs.errors import ConfigError
    from omfs.serve import app

    om, tokens = store
    monkeypatch.delenv("OMFS_SERVE_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"Refusing to listen on '0\.0\.0\.0' without a token"):
        app(om, host="0.0.0.0", audit=False)
    app(om, host="0.0.0.0", token_file=tokens, audit=False)  # a token: fine
    monkeypatch.setenv("OMFS_SERVE_TOKEN", "from-the-environment")
    app(om, host="0.0.0.0", audit=False)
    shared = tmp_path / "shared-tokens"
    shared.write_text("write abc\n")
    shared.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        app(om, token_file=shared, audit=False)


def test_without_tokens_loopback_reads_but_never_writes(store):
    from omfs.serve import app

    with running(app(store[0], audit=False)) as url, httpx.Client(base_url=url) as c:
        assert c.post("/v1/models/iris/predict", json={"instances": [ROW]}).status_code == 200
        r = c.post("/v1/datasets/x", json={"columns": ["a"], "data": [[1]]})
        assert r.status_code == 403 and "write token" in r.json()["error"]


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet", "arrow"])
def test_datasets_by_format_columns_and_where(client, fmt):
    import pandas as pd
    import pyarrow as pa

    r = client.get(
        "/v1/datasets/sales", params={"format": fmt, "columns": "qty", "where": "qty>10"}
    )
    assert r.status_code == 200, r.text
    if fmt == "json":
        got = pd.DataFrame(r.json()["data"], columns=r.json()["columns"])
    elif fmt == "csv":
        got = pd.read_csv(io.StringIO(r.text))
    elif fmt == "parquet":
        got = pd.read_parquet(io.BytesIO(r.content))
    else:
        got = pa.ipc.open_stream(r.content).read_all().to_pandas()
    assert got.to_dict("list") == {"qty": [20, 30]}


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({"format": "xml"}, 400, "format='xml'"),
        ({"where": "qty"}, 400, "where= 'qty': use COLUMN OP VALUE"),
        ({"where": "qty>x"}, 400, "cannot be read as int64"),
        ({"columns": "nope"}, 422, "nope"),
    ],
)
def test_dataset_request_errors(client, params, status, fragment):
    r = client.get("/v1/datasets/sales", params=params)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    assert client.get("/v1/datasets/missing").status_code == 404


def test_models_metrics_and_docs(client):
    client.post("/v1/models/iris@prod/predict", json={"instances": [ROW]})
    models = client.get("/v1/models").json()["models"]
    iris = next(m for m in models if m["name"] == "iris")
    assert iris["versions"] == [1, 2] and iris["tags"] == {"prod": 1, "candidate": 2}
    text = client.get("/metrics").text
    assert 'omfs_requests_total{model="iris",version="1",action="predict",status="200"}' in text
    assert 'omfs_request_seconds_count{model="iris",version="1"}' in text
    schema = client.get("/openapi.json").json()
    assert "/v1/models/{name}/{action}" in schema["paths"]
    docs = client.get("/docs").text
    assert "/openapi.json" in docs and "/v1/models/{name}/{action}" in docs
    assert "<script" not in docs and "unpkg" not in docs  # made here: works offline


# MLflow's own request examples (its docs: "Deploy MLflow Model as a Local Inference Server"
# and the scoring server's docstring), unchanged
MLFLOW_EXAMPLES = [
    {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, 3, 4], [5, 6, 7, 8]]}},
    {"dataframe_records": [{"a": 1, "b": 2, "c": 3, "d": 4}, {"a": 5, "b": 6, "c": 7, "d": 8}]},
    {"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]},
    {"inputs": [[1, 2, 3, 4], [5, 6, 7, 8]]},
    {"inputs": {"a": [1, 5], "b": [2, 6], "c": [3, 7], "d": [4, 8]}},
]


def test_mlflow_scoring_protocol(store, iris):
    from omfs.serve import app

    expected = iris[2].predict([[1, 2, 3, 4], [5, 6, 7, 8]]).tolist()
    served = app(store[0], models=["iris@prod"], audit=False)
    with running(served) as url, httpx.Client(base_url=url) as c:
        if True:
            assert c.get("/ping").status_code == 200
            for body in MLFLOW_EXAMPLES:
                r = c.post("/invocations", json=body)
                assert r.status_code == 200, (body, r.text)
                assert r.json() == {"predictions": expected}
            r = c.post(
                "/invocations",
                content="a,b,c,d\n1,2,3,4\n5,6,7,8\n",
                headers={"Content-Type": "text/csv"},
            )
            assert r.json() == {"predictions": expected}
            r = c.post("/invocations", json={"data": "nope"})
            assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST"
            r = c.post("/invocations", content=b"x", headers={"Content-Type": "text/plain"})
            assert r.status_code == 415
            # only the served model answers
            r = c.post("/v1/models/other/predict", json={"instances": [[1, 2, 3, 4]]})
            assert r.status_code == 404 and "not served" in r.json()["error"]


def test_open_inference_protocol_v2(client, iris):
    body = {
        "id": "r1",
        "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROW + ROW}],
    }
    r = client.post("/v2/models/iris@v1/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["model_name"], out["model_version"]) == ("iris", "1")
    assert out["outputs"][0]["data"] == [0, 0] and out["outputs"][0]["shape"] == [2]
    columns = {
        "inputs": [
            {"name": c, "shape": [1], "datatype": "FP64", "data": [v]}
            for c, v in zip(COLS, ROW, strict=True)
        ],
        "outputs": [{"name": "predict_proba"}],
    }
    r = client.post("/v2/models/iris/versions/2/infer", json=columns)
    assert r.json()["outputs"][0]["shape"] == [1, 3]
    r = client.post(
        "/v2/models/iris/infer", json={"inputs": [{"name": "x", "shape": [3, 4], "data": ROW}]}
    )
    assert r.status_code == 422 and "do not fill" in r.json()["error"]
