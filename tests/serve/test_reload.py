"""Hot reload by tag under load, canary weights, shadows and the audit (joined to lineage)."""

from __future__ import annotations

import threading
import time

import pytest
from omfs_serving import running

httpx = pytest.importorskip("httpx")

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def _load(url: str, stop: threading.Event, answers: list, errors: list) -> None:
    """One client asking m@prod again and again: (time, version) per answer."""
    with httpx.Client(base_url=url) as c:
        while not stop.is_set():
            try:
                r = c.post("/v1/models/m@prod/predict", json=ROW)
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
                continue
            if r.status_code != 200:
                errors.append(r.text)
                continue
            version = r.json()["version"]
            assert r.headers["x-omfs-model"] == f"m@v{version}"
            answers.append((time.monotonic(), version))


def test_hot_reload_by_tag_under_load(shared_root, iris):
    """10 moves of prod under 3 concurrent clients: no error, each move answered within
    1 s, each client sees the versions in order."""
    import omfs
    from omfs.serve import app

    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    for _ in range(11):
        om.models.put(iris[2], "m")
    om.models.tag("m@v1", "prod")
    mover = omfs.setup(root, storage_options=options)  # another handle, as another process
    stop = threading.Event()
    clients = [([], []) for _ in range(3)]
    with running(app(om, models=["m@prod"], audit=False, poll=0.1)) as url:
        threads = [threading.Thread(target=_load, args=(url, stop, *c)) for c in clients]
        for t in threads:
            t.start()
        delays = []
        for version in range(2, 12):
            mover.models.tag(f"m@v{version}", "prod")
            moved = time.monotonic()
            while not any(v == version for a, _ in clients for _, v in a[-3:]):
                assert time.monotonic() - moved < 5, f"v{version} never answered"
                time.sleep(0.01)
            delays.append(time.monotonic() - moved)
        stop.set()
        for t in threads:
            t.join()
    errors = [e for _, errs in clients for e in errs]
    assert errors == []
    assert max(delays) < 1.0, delays
    for answers, _ in clients:
        versions = [v for _, v in answers]
        assert versions == sorted(versions)  # never back to an older version
        assert set(versions) <= set(range(1, 12))


def test_canary_weights_over_1000_requests(tmp_path, iris):
    import omfs
    from omfs.serve import app

    om = omfs.setup(str(tmp_path / "ctx"))
    om.models.put(iris[2], "m", tag="prod")
    om.models.put(iris[2], "m", tag="candidate")
    served = app(om, route=["m=prod:90,candidate:10"], audit=False)
    import random

    with running(served) as url, httpx.Client(base_url=url) as c:
        state = random.getstate()  # a user's seeded sequence is not the server's to draw from
        versions = [c.post("/v1/models/m/predict", json=ROW).json()["version"] for _ in range(1000)]
        assert random.getstate() == state
        pinned = c.post("/v1/models/m@prod/predict", json=ROW).json()["version"]
    assert 60 <= versions.count(2) <= 140  # 10% of 1000, ±4 standard deviations
    assert versions.count(1) + versions.count(2) == 1000
    assert pinned == 1  # a tag in the path is never rerouted


def test_shadow_answers_go_to_the_audit_only(tmp_path, iris):
    import omfs
    from omfs.serve import app

    om = omfs.setup(str(tmp_path / "ctx"))
    om.models.put(iris[2], "m", tag="prod")
    om.models.put(iris[3], "m", tag="challenger")
    served = app(om, models=["m@prod"], shadow=["m=challenger"])
    with running(served) as url, httpx.Client(base_url=url) as c:
        answers = [c.post("/v1/models/m/predict_proba", json=ROW) for _ in range(5)]
    assert all(set(a.json()) == {"model", "version", "predictions"} for a in answers)
    assert {a.json()["version"] for a in answers} == {1}
    audit = om.datasets.get("serving/audit")
    assert len(audit) == 5
    assert set(audit["version"]) == {1} and set(audit["shadow_version"]) == {2}
    assert set(audit["request_id"]) == {a.headers["x-request-id"] for a in answers}
    import json

    shadow = json.loads(audit["shadow_predictions"].iloc[0])
    assert len(shadow) == 1 and len(shadow[0]) == 3  # the challenger's probabilities


def test_audit_joins_the_lineage(shared_root, iris):
    """Which training data produced the answer to request X: audit ⋈ model lineage."""
    import pandas as pd

    import omfs
    from omfs.serve import app

    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    X, _, plain, _ = iris
    for n, rows in ((1, 100), (2, 150)):
        data = om.datasets.put(X.iloc[:rows], "train")
        om.models.put(
            plain,
            "m",
            tag="prod",
            lineage={"trained_on": [{"role": "X", "dataset": "train", "version": data.version}]},
        )
        assert data.version == n
    with running(app(om, models=["m@prod"])) as url, httpx.Client(base_url=url) as c:
        first = c.post("/v1/models/m@v1/predict", json=ROW).headers["x-request-id"]
        forged = {"X-Request-Id": first}  # the server names requests, not the caller
        second = c.post("/v1/models/m/predict", json=ROW, headers=forged).headers["x-request-id"]
        bad = c.post("/v1/models/m/predict", json={"instances": [["x", 1, 2, 3]]})
    assert second != first and bad.status_code == 422
    audit = om.datasets.get("serving/audit")
    lineage = pd.DataFrame(
        [
            {
                "model": "m",
                "version": meta.version,
                "trained_on": meta.lineage["trained_on"][0]["dataset"],
                "trained_version": meta.lineage["trained_on"][0]["version"],
            }
            for meta in om.models.versions("m")
        ]
    )
    joined = audit.merge(lineage, on=["model", "version"]).set_index("request_id")
    assert joined.loc[first, "trained_version"] == 1
    assert joined.loc[second, "trained_version"] == 2
    assert len(om.datasets.get("train", version=int(joined.loc[second, "trained_version"]))) == 150
    errors = audit[audit["status"] == 422]
    assert len(errors) == 1 and "non-numeric" in errors["error"].iloc[0]
