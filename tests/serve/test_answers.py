"""What a newcomer to om serve met: answers JSON has no direct form for (sparse matrices,
pandas objects, arrays of objects), Starlette's own 404/405, error texts in HTTP terms,
CSV bodies with short rows or no header."""

from __future__ import annotations

import pytest
from omfs_serving import running

httpx = pytest.importorskip("httpx")

ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def url(tmp_path_factory, iris):
    """A server of several models whose answers are not plain float arrays."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    import omfs
    from omfs.serve import app

    om = omfs.setup(str(tmp_path_factory.mktemp("answers") / "ctx"))
    om.models.put(iris[2], "iris", tag="prod")
    kinds = pd.DataFrame({"b": ["x", "y", "x"]})
    om.models.put(OneHotEncoder().fit(kinds), "onehot")
    wide = OneHotEncoder(categories=[np.arange(300_000)]).fit(pd.DataFrame({"n": [0, 1]}))
    om.models.put(wide, "wide")
    days = pd.DataFrame({"year": [2024], "month": [1], "day": [2]})
    om.models.put(FunctionTransformer(pd.to_datetime).fit(days), "dates")
    om.models.put(FunctionTransformer(list).fit(np.zeros((1, 2))), "rows")
    om.models.put(FunctionTransformer(np.fft.fft).fit(np.zeros((1, 2))), "fft")
    labels = LogisticRegression().fit(np.array([[0.0], [1.0]]), pd.Series(["no", "yes"]))
    om.models.put(labels, "labels")
    om.datasets.put(pd.DataFrame({"region": ["EU", "US"], "qty": [5, 20]}), "sales")
    with running(app(om, audit=False)) as base:
        yield base


@pytest.fixture
def client(url):
    with httpx.Client(base_url=url) as c:
        yield c


@pytest.mark.parametrize(
    ("model", "body", "expected"),
    [
        ("onehot", {"columns": ["b"], "data": [["y"], ["x"]]}, [[0.0, 1.0], [1.0, 0.0]]),
        (
            "dates",
            {"columns": ["year", "month", "day"], "data": [[2024, 3, 5]]},
            ["2024-03-05T00:00:00"],
        ),
        ("rows", {"instances": [[1.0, 2.0], [3.0, 4.0]]}, [[1.0, 2.0], [3.0, 4.0]]),
    ],
    ids=["sparse", "pandas-timestamps", "list-of-arrays"],
)
def test_answers_json_has_no_direct_form_for_are_sent(client, model, body, expected):
    r = client.post(f"/v1/models/{model}/transform", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == expected


def test_arrays_of_objects_are_sent(client):
    r = client.post("/v1/models/labels/predict", json={"instances": [[0.0], [1.0]]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == ["no", "yes"]


def test_an_answer_json_cannot_carry_is_one_line_naming_model_action_and_type(client):
    r = client.post("/v1/models/wide/transform", json={"columns": ["n"], "data": [[0]] * 4})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert "model wide@v1's transform() answered a sparse 4 x 300000 matrix" in error
    assert "send at most 3 rows per request" in error
    r = client.post("/v1/models/fft/transform", json={"instances": [[1.0, 2.0]]})
    assert r.status_code == 500, r.text
    error = r.json()["error"]
    assert error.startswith("model fft@v1's transform() answered a numpy.ndarray of complex128")
    assert "complex values, which cannot be sent as JSON" in error
    assert "internal error" not in error


def test_starlette_errors_are_json(client):
    for method, path, status, fragment in [
        ("POST", "/invocations", 404, "om serve --model NAME@TAG"),
        ("GET", "/ping", 404, "POST /v1/models/{name}/predict"),
        ("GET", "/nope", 404, "no endpoint GET /nope; GET /docs lists the endpoints"),
        ("GET", "/v1/models/iris/predict", 405, "does not take GET; use POST"),
        ("DELETE", "/v1/models", 405, "does not take DELETE"),
    ]:
        r = client.request(method, path, json={"inputs": [ROW]})
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"] == "application/json", path
        assert fragment in r.json()["error"], path


def test_error_texts_speak_http_not_python(client):
    r = client.post("/v1/models/iris@gold/predict", json={"inputs": [ROW]})
    assert r.status_code == 404
    assert r.json()["error"].endswith("; GET /v1/models lists them.")
    assert "list()" not in r.json()["error"]
    # scikit-learn's NaN message is long: whole sentences, then an ellipsis
    r = client.post("/v1/models/iris/predict", json={"inputs": [[*ROW[:3], None]]})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error.startswith("model iris@v1 cannot predict this input: Input X contains NaN.")
    assert error.endswith(". …") and len(error) < 400
    r = client.get("/v1/datasets/sales", params={"where": "zz>1"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error.startswith("where='zz>1' names the column 'zz'")
    assert "Columns: ['region', 'qty']" in error and "__" not in error


def test_csv_rows_shorter_than_the_header_and_bodies_without_one(client):
    csv = {"content-type": "text/csv"}
    r = client.post("/v1/models/iris/predict", content="a,b,c,d\n1,2,3,4\n1,2,3\n", headers=csv)
    assert r.status_code == 422
    assert r.json()["error"] == "the CSV body: row 1 has 3 values, expected 4"
    r = client.post("/v1/models/iris/predict", content="1,2,3,4\n", headers=csv)
    assert r.status_code == 400
    assert "a header line naming the columns, then one line per row" in r.json()["error"]
    assert "looks like a row" in r.json()["error"]
