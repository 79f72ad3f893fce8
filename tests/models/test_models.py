"""Models: joblib payloads with readable JSON sidecars, verified on load."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from omfs.errors import IntegrityError, InvalidNameError, NotFoundError

X = np.arange(40, dtype=float).reshape(20, 2)
Y = X @ np.array([1.5, -2.0]) + 3


def fitted():
    return LinearRegression().fit(X, Y)


def test_put_get_and_sidecar(ctx):
    meta = ctx.models.put(fitted(), "reg", attributes={"owner": "ana"})
    assert meta.version == 1 and meta.attributes == {"owner": "ana"} and meta["fitted"] is True
    # the payload describes itself: <id>.json beside <id>.joblib
    stem = meta["payload"].removesuffix(".joblib")
    doc = json.loads(ctx.storage.read_bytes(f"{ctx.bucket}/models/reg/_data/{stem}.json"))
    assert doc["kind"] == "sklearn.linear_model.LinearRegression"
    assert doc["fitted"] is True and doc["sha256"] == meta["sha256"]
    assert len(doc["sha256"]) == 64 and doc["size"] == meta["size"] > 0
    assert {"python", "joblib", "scikit-learn"} <= set(doc["libraries"])
    assert doc["created"].endswith("+00:00") and doc["created"] == meta.created
    # the commit names the object and the version it adds
    commit = json.loads(ctx.storage.read_bytes(f"{ctx.bucket}/models/reg/_log/{1:020d}.json"))
    assert commit["format"] == 2 and commit["seq"] == 1
    assert (commit["store"], commit["bucket"], commit["name"]) == ("models", "omega", "reg")
    assert commit["actions"][0]["add_version"]["v"] == 1
    model = ctx.models.get("reg")
    np.testing.assert_allclose(model.predict(X), Y, atol=1e-9)


def test_pipelines_and_unfitted_estimators(ctx):
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3, random_state=0))
    assert ctx.models.put(pipe, "pipe").info["fitted"] is False
    pipe.fit(X, (Y > 0).astype(int))
    meta = ctx.models.put(pipe, "pipe")
    assert meta.kind == "sklearn.pipeline.Pipeline" and meta["fitted"] is True
    np.testing.assert_array_equal(ctx.models.get("pipe").predict(X), pipe.predict(X))
    ctx.models.put({"any": "object joblib can save"}, "plain")
    assert ctx.models.get("plain") == {"any": "object joblib can save"}
    assert ctx.models.metadata("plain")["fitted"] is None


def test_versions_tags_and_selection(ctx):
    ctx.models.put(LinearRegression(), "m")
    ctx.models.put(fitted(), "m", tag="prod-2024")
    ctx.models.put(LinearRegression(fit_intercept=False), "m")
    versions = ctx.models.versions("m")
    assert [(v.version, v.tags) for v in versions] == [(1, []), (2, ["prod-2024"]), (3, [])]
    assert [v.put_tag for v in versions] == [None, "prod-2024", None]
    assert ctx.models.get("m").fit_intercept is False
    assert ctx.models.metadata("m@prod-2024").version == 2
    assert hasattr(ctx.models.get("m@v2"), "coef_")
    assert hasattr(ctx.models.get("m", version=2), "coef_")
    with pytest.raises(NotFoundError, match="tag 'nope'"):
        ctx.models.get("m@nope")
    with pytest.raises(InvalidNameError, match="version selector"):
        ctx.models.put(fitted(), "m", tag="v7")


def test_drop_one_version_and_whole(ctx):
    for _ in range(3):
        ctx.models.put(fitted(), "d")
    ctx.models.drop("d@v2")
    assert [v.version for v in ctx.models.versions("d")] == [1, 3]
    # two payloads left, each with its sidecar
    assert len(ctx.storage.list_names(f"{ctx.bucket}/models/d/_data")) == 4
    ctx.models.drop("d")
    assert not ctx.models.exists("d") and ctx.models.list() == []


def test_update_attributes_is_recorded_without_rewriting_payload(ctx):
    meta = ctx.models.put(fitted(), "a", attributes={"stage": "dev"})
    updated = ctx.models.update_attributes("a", {"stage": "review", "by": "bo"})
    assert updated.attributes == {"stage": "review", "by": "bo"}
    assert updated["payload"] == meta["payload"] and updated["sha256"] == meta["sha256"]
    history = ctx.models.metadata("a").history
    assert history[-1]["before"] == {"stage": "dev"} and history[-1]["op"] == "update-attributes"


def _payload_key(ctx, name, version=1):
    return (
        f"{ctx.bucket}/models/{name}/_data/{ctx.models.metadata(name, version=version)['payload']}"
    )


def test_tampered_payload_is_never_unpickled(ctx):
    ctx.models.put(fitted(), "t")
    key = _payload_key(ctx, "t")
    data = bytearray(ctx.storage.read_bytes(key))
    data[-10] ^= 0xFF
    ctx.storage.write_bytes(key, bytes(data))
    with pytest.raises(IntegrityError, match="does not match its sidecar"):
        ctx.models.get("t")


def test_truncated_payload(ctx):
    ctx.models.put(fitted(), "t")
    key = _payload_key(ctx, "t")
    ctx.storage.write_bytes(key, ctx.storage.read_bytes(key)[:50])
    with pytest.raises(IntegrityError, match="truncated or changed"):
        ctx.models.get("t")


def test_missing_payload_and_missing_or_corrupt_sidecar(ctx):
    ctx.models.put(fitted(), "s")
    ctx.models.put(fitted(), "s")
    ctx.storage.delete([_payload_key(ctx, "s", 2)])
    with pytest.raises(IntegrityError, match="is missing"):
        ctx.models.get("s")
    commit = f"{ctx.bucket}/models/s/_log/{2:020d}.json"
    ctx.storage.write_bytes(commit, b"{not json")
    with pytest.raises(IntegrityError, match="is corrupt"):
        ctx.models.get("s")
    ctx.storage.delete([commit])
    assert ctx.models.metadata("s").version == 1, "without its commit, v2 does not exist"
    assert hasattr(ctx.models.get("s"), "coef_")


def test_concurrent_puts_get_distinct_versions(tmp_path):
    root = tmp_path / "ctx"
    code = (
        "import sys, omfs; from sklearn.linear_model import LinearRegression\n"
        "om = omfs.setup(sys.argv[1])\n"
        "for i in range(10):\n"
        "    om.models.put(LinearRegression(), 'race', attributes={'w': sys.argv[2], 'i': i})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root), str(w)]) for w in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    import omfs

    versions = omfs.setup(root).models.versions("race")
    assert [v.version for v in versions] == list(range(1, 31))
    assert sorted((v.attributes["w"], v.attributes["i"]) for v in versions) == sorted(
        (str(w), i) for w in range(3) for i in range(10)
    )
