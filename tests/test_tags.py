"""Movable tags with history, for datasets and models: tag, untag, tags, tag_history,
time travel with ``at=``, rollback, tags travelling with promotion, and the CLI."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from datetime import UTC, datetime

import pandas as pd
import pytest

import omfs
from omfs.errors import InvalidNameError, NotFoundError


def put_versions(store, name, n):
    for i in range(n):
        if store.kind == "models":
            store.put({"i": i + 1}, name)
        else:
            store.put(pd.DataFrame({"i": [i + 1]}), name)


def value(store, spec, **kw):
    got = store.get(spec, **kw)
    return got["i"] if store.kind == "models" else int(got["i"].iloc[0])


@pytest.fixture(params=["datasets", "models"])
def store(request, ctx):
    return getattr(ctx, request.param)


def test_tags_move_and_are_followed(store):
    put_versions(store, "m", 4)
    assert store.tags("m") == {}
    meta = store.tag("m@v3", "prod", reason="AUC 0.91")
    assert meta.version == 3 and store.tags("m") == {"prod": 3}
    assert value(store, "m@prod") == 3 and store.metadata("m@prod").version == 3
    store.tag("m@v2", "prod")
    store.tag("m", "staging")  # the latest
    assert store.tags("m") == {"prod": 2, "staging": 4}
    assert value(store, "m@latest") == 4
    store.untag("m", "staging", reason="done")
    assert store.tags("m") == {"prod": 2}
    with pytest.raises(NotFoundError, match="tag 'staging'"):
        store.get("m@staging")
    with pytest.raises(NotFoundError, match="tag 'nope'"):
        store.untag("m", "nope")
    for bad in ("v3", "3", "latest", "a/b", ""):
        with pytest.raises(InvalidNameError):
            store.tag("m@v1", bad)
    with pytest.raises(NotFoundError, match="version 9"):
        store.tag("m@v9", "x")


def test_history_is_complete_and_oldest_first(store):
    put_versions(store, "m", 3)
    store.tag("m@v1", "prod", reason="first")
    store.tag("m@v2", "prod")
    store.tag("m@v3", "prod", reason="better")
    store.untag("m", "prod")
    history = store.tag_history("m", "prod")
    assert [(h["version"], h["previous"]) for h in history] == [
        (1, None),
        (2, 1),
        (3, 2),
        (None, 3),
    ]
    assert [h["reason"] for h in history] == ["first", None, "better", None]
    assert all(h["user"] and h["at"].endswith("+00:00") for h in history)
    assert history == sorted(history, key=lambda h: h["at"])


def test_put_with_tag_moves_it_and_dropping_the_version_untags(store):
    if store.kind == "models":
        store.put({"i": 1}, "m", tag="prod")
        store.put({"i": 2}, "m", tag="prod")
    else:
        store.put(pd.DataFrame({"i": [1]}), "m", tag="prod")
        store.put(pd.DataFrame({"i": [2]}), "m", tag="prod")
    assert store.tags("m") == {"prod": 2}
    store.drop("m@v2")
    assert store.tags("m") == {}
    last = store.tag_history("m", "prod")[-1]
    assert last["version"] is None and "dropped" in last["reason"]


def test_at_answers_what_a_tag_pointed_to_then(store):
    put_versions(store, "m", 3)
    store.tag("m@v1", "prod")
    time.sleep(0.02)
    t1 = datetime.now(UTC)
    time.sleep(0.02)
    store.tag("m@v3", "prod")
    assert value(store, "m@prod") == 3
    assert value(store, "m@prod", at=t1) == 1
    assert value(store, "m@prod", at=t1.isoformat().replace("+00:00", "Z")) == 1
    assert store.metadata("m@prod", at=t1).version == 1
    assert value(store, "m", at=t1) == 3  # the latest then
    before = "2000-01-01T00:00:00Z"
    with pytest.raises(NotFoundError, match="tag 'prod' at 2000"):
        store.get("m@prod", at=before)
    with pytest.raises(NotFoundError):
        store.versions("m", at=before)
    put_versions(store, "m", 1)
    assert [v.version for v in store.versions("m", at=t1)] == [1, 2, 3]
    with pytest.raises(ValueError, match="Invalid time"):
        store.get("m@prod", at="yesterday")


def test_rollback_moves_back_and_is_recorded(store):
    put_versions(store, "m", 3)
    store.tag("m@v2", "prod")
    store.tag("m@v3", "prod")
    assert store.rollback("m", "prod").version == 2
    assert store.tags("m") == {"prod": 2}
    last = store.tag_history("m", "prod")[-1]
    assert (last["version"], last["previous"]) == (2, 3)
    assert last["reason"] == "rollback from version 3"
    store.tag("m@v1", "first")
    with pytest.raises(ValueError, match="no previous version"):
        store.rollback("m", "first")


def test_rollback_twice_goes_further_back(store):
    """Each rollback undoes one more move of the tag (it does not toggle between the last
    two versions); a move after a rollback is undone first."""
    put_versions(store, "m", 4)
    for v in (1, 2, 3):
        store.tag(f"m@v{v}", "prod")
    assert store.rollback("m", "prod").version == 2
    assert store.rollback("m", "prod").version == 1
    with pytest.raises(ValueError, match="no previous version"):
        store.rollback("m", "prod")
    store.tag("m@v4", "prod")
    assert store.rollback("m", "prod").version == 1
    assert [e["version"] for e in store.tag_history("m", "prod")] == [1, 2, 3, 2, 1, 4, 1]


def test_tags_travel_with_promotion(store, ctx):
    put_versions(store, "m", 2)
    store.tag("m@v1", "prod")
    store.tag("m@v1", "gold")
    target = getattr(ctx["prod"], store.kind)
    put_versions(target, "m", 2)  # the target has history of its own
    target.tag("m@v1", "prod")
    meta = store.promote("m@v1", target)  # (the target bucket exists: it was written to)
    assert meta.version == 3
    assert target.tags("m") == {"gold": 3, "prod": 3}
    moved = target.tag_history("m", "prod")
    assert [(h["version"], h["previous"]) for h in moved] == [(1, None), (3, 1)]
    assert moved[-1]["source"]["version"] == 1 and moved[-1]["source"]["bucket"] == "omega"
    assert moved[-1]["reason"] == "promoted"


@pytest.mark.slow
def test_concurrent_tag_moves_are_never_lost(shared_root):
    """4 processes x 25 moves of the same tag: all 100 moves are in the history."""
    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    put_versions(om.models, "m", 4)
    script = f"""
import json, sys, omfs
om = omfs.setup({root!r}, storage_options=json.loads({json.dumps(json.dumps(options))}))
w = int(sys.argv[1])
for i in range(25):
    om.models.tag(f"m@v{{(w + i) % 4 + 1}}", "prod", reason=f"w{{w}}-{{i}}")
"""
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    history = om.models.tag_history("m", "prod")
    assert len(history) == 100
    assert {h["reason"] for h in history} == {f"w{w}-{i}" for w in range(4) for i in range(25)}
    # each move's 'previous' is the move before it: a chain, nothing overwritten
    for before, after in itertools.pairwise(history):
        assert after["previous"] == before["version"]
    assert om.models.tags("m")["prod"] == history[-1]["version"]


def test_tag_commands(tmp_path, om_script):
    import os

    root = tmp_path / "ctx"
    om = omfs.setup(root)
    put_versions(om.models, "m", 3)
    put_versions(om.datasets, "d", 2)
    env = {**os.environ, "OMFS_ROOT": str(root)}

    def run(*args, ok=True):
        out = subprocess.run([om_script, *args], capture_output=True, text=True, env=env)
        assert (out.returncode == 0) == ok, (args, out.stderr)
        return out

    for noun, name in (("models", "m"), ("datasets", "d")):
        run(noun, "tag", f"{name}@v1", "prod", "--reason", "first")
        run(noun, "tag", f"{name}@v2", "prod")
        assert run(noun, "tags", name).stdout.split() == ["prod", "2"]
        rows = json.loads(run("--json", noun, "history", name, "--tag", "prod").stdout)
        assert [(r["version"], r["previous"], r["reason"]) for r in rows] == [
            (1, None, "first"),
            (2, 1, None),
        ]
        assert "prod\t1" in run(noun, "rollback", name, "prod").stdout
        run(noun, "untag", name, "prod")
        assert run(noun, "tags", name).stdout == ""
        out = run(noun, "tag", f"{name}@v1", "v2", ok=False)
        assert out.stderr.count("\n") == 1 and "Invalid tag 'v2'" in out.stderr


def test_versions_and_metadata_show_each_versions_current_tags(shared_root):
    """Issue 19.4: the tags a version has now (a list), not the tag given at put time;
    ``at=``: the tags as they were then."""
    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    for store in (om.datasets, om.models):
        if store.kind == "models":
            store.put({"i": 1}, "t", tag="prod")
            store.put({"i": 2}, "t")
        else:
            store.put(pd.DataFrame({"i": [1]}), "t", tag="prod")
            store.put(pd.DataFrame({"i": [2]}), "t")
        store.tag("t@v2", "prod")
        store.tag("t@v2", "candidate")
        assert [m.tags for m in store.versions("t")] == [[], ["candidate", "prod"]]
        v1 = store.metadata("t@v1")
        assert v1.tags == [] and v1.put_tag == "prod"
        assert store.metadata("t@prod").tags == ["candidate", "prod"]
        doc = store.metadata("t").to_dict()
        assert doc["tags"] == ["candidate", "prod"] and "tag" not in doc
        # before prod moved: it was on v1, and v2 (not yet written) had none
        then = store.tag_history("t", "prod")[0]["at"]
        assert [(m.version, m.tags) for m in store.versions("t", at=then)] == [(1, ["prod"])]
        assert store.metadata("t@prod", at=then).tags == ["prod"]


def test_cli_versions_show_current_tags_and_at_selects_by_time(cli, tmp_path):
    """Issue 19.4 and 19.12: ``versions`` lists current tags; ``--at`` for get, metadata
    and versions of datasets and models (ISO 8601, a time without zone read as UTC)."""
    import joblib

    root = str(tmp_path / "root")
    om = omfs.setup(root)
    om.datasets.put(pd.DataFrame({"i": [1]}), "t", tag="prod")
    om.datasets.put(pd.DataFrame({"i": [2]}), "t")
    om.models.put({"i": 1}, "m", tag="prod")
    om.models.put({"i": 2}, "m")
    om.datasets.tag("t@v2", "prod")
    om.models.tag("m@v2", "prod")
    for noun, name in (("datasets", "t"), ("models", "m")):
        run = cli("--root", root, "--json", noun, "versions", name)
        assert [r["tags"] for r in json.loads(run.stdout)] == [[], ["prod"]], run.stderr
        assert "\tprod\t" in cli("--root", root, noun, "versions", name).stdout
        then = getattr(om, noun).tag_history(name, "prod")[0]["at"]
        naive = datetime.fromisoformat(then).astimezone(UTC).replace(tzinfo=None).isoformat()
        for when in (then, naive):
            run = cli("--root", root, "--json", noun, "versions", name, "--at", when)
            assert [(r["version"], r["tags"]) for r in json.loads(run.stdout)] == [(1, ["prod"])]
            run = cli("--root", root, "--json", noun, "metadata", f"{name}@prod", "--at", when)
            assert json.loads(run.stdout)["version"] == 1, run.stderr
        run = cli("--root", root, noun, "metadata", f"{name}@prod", "--at", "last week")
        assert run.code != 0 and "Invalid time 'last week'" in run.stderr
        assert "Traceback" not in run.stderr
        run = cli("--root", root, noun, "versions", name, "--at", "2020-01-01")
        assert run.code != 0 and "at 2020-01-01T00:00:00+00:00" in run.stderr
    then = om.datasets.tag_history("t", "prod")[0]["at"]
    run = cli("--root", root, "datasets", "get", "t@prod", "-", "--at", then)
    assert run.stdout.split() == ["i", "1"], run.stderr
    assert cli("--root", root, "datasets", "get", "t@prod", "-").stdout.split() == ["i", "2"]
    then = om.models.tag_history("m", "prod")[0]["at"]
    run = cli("--root", root, "models", "get", "m@prod", "old.joblib", "--at", then)
    assert run.code == 0, run.stderr
    assert joblib.load(tmp_path / "old.joblib") == {"i": 1}
