"""Promotion of datasets and models between buckets and contexts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import omfs
from omfs.errors import ConditionFailedError, PromotionError

X = np.arange(10, dtype=float).reshape(-1, 1)


def test_seed_examples_between_buckets(shared_root):
    """The omega|ml example exactly as written: ``prod`` was never written, and promoting
    into it creates it, as ``put`` would (issue 19, item 1)."""
    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    om["dev"].datasets.put(pd.DataFrame({"units": [1, 2, 3]}), "sales")
    om["dev"].models.put(LinearRegression().fit(X, X.ravel()), "sales-prediction")
    assert "prod" not in om.buckets

    # development
    om_dev = om["dev"]
    # production
    om_prod = om["prod"]
    om_dev.datasets.promote("sales", om_prod.datasets)
    om_dev.models.promote("sales-prediction", om_prod.models)

    assert "prod" in om.buckets and "prdo" not in om.buckets
    assert list(om_prod.datasets.get("sales")["units"]) == [1, 2, 3]
    meta = om_prod.models.metadata("sales-prediction")
    assert meta.lineage["promoted_from"] == {
        **meta.lineage["promoted_from"],
        "context": om.root,
        "bucket": "dev",
        "name": "sales-prediction",
        "version": 1,
    }
    assert meta["sha256"] == om_dev.models.metadata("sales-prediction")["sha256"]
    np.testing.assert_allclose(
        om_prod.models.get("sales-prediction").predict(X), X.ravel(), atol=1e-9
    )
    # the typo guard stays where typos happen: asked for (the CLI's --to-bucket asks)
    with pytest.raises(PromotionError, match="bucket 'prdo' does not exist"):
        om_dev.datasets.promote("sales", om["prdo"].datasets, create_bucket=False)
    assert "prod" in om.buckets and "prdo" not in om.buckets


def test_promoted_copy_is_independent_and_versioned(ctx):
    dev, prod = ctx["dev"], ctx["prod"]
    dev.datasets.put(pd.DataFrame({"a": [1]}), "d")
    dev.datasets.put(pd.DataFrame({"a": [2]}), "d")
    prod.datasets.put(pd.DataFrame({"a": [0]}), "d")
    meta = dev.datasets.promote("d@v1", prod.datasets)
    assert meta.version == 2 and meta.lineage["promoted_from"]["version"] == 1
    dev.datasets.drop("d")
    assert list(prod.datasets.get("d")["a"]) == [1]
    assert list(prod.datasets.get("d@v1")["a"]) == [0]


def test_asname_dry_run_and_self_promotion(ctx):
    ctx.datasets.put(pd.DataFrame({"a": [1]}), "d")
    with pytest.raises(PromotionError, match="onto itself"):
        ctx.datasets.promote("d", ctx.datasets)
    plan = ctx.datasets.promote("d", ctx["prod"].datasets, dry_run=True, create_bucket=True)
    assert plan["files"] == 1 and plan["bytes"] > 0 and plan["server_side"] is True
    assert not ctx["prod"].datasets.exists("d")
    ctx.datasets.promote("d", ctx.datasets, asname="d-copy")
    assert ctx.datasets.list() == ["d", "d-copy"]


def test_promote_says_whether_it_copied_and_a_second_one_is_a_no_op(ctx):
    """Every Metadata promote returns says ``unchanged``; it is not part of the record
    (``to_dict()``, what the CLI prints, stays as it was)."""
    ctx.datasets.put(pd.DataFrame({"a": [1]}), "d")
    prod = ctx["prod"].datasets
    first = ctx.datasets.promote("d", prod, create_bucket=True)
    again = ctx.datasets.promote("d", prod)
    assert first.unchanged is False and again.unchanged is True
    assert again.version == first.version == 1 and len(prod.versions("d")) == 1
    assert "unchanged" not in again.to_dict() and again == prod.metadata("d")
    plan = ctx.datasets.promote("d", prod, dry_run=True)
    assert plan == {
        "source": {"name": "d", "version": 1},
        "target": {"name": "d", "version": 1},
        "files": 0,
        "bytes": 0,
        "unchanged": True,
    }
    forced = ctx.datasets.promote("d", prod, force=True)
    assert forced.unchanged is False and forced.version == 2


def test_conditions(ctx):
    dev, prod = ctx["dev"], ctx["prod"]
    dev.models.put(LinearRegression(), "m")
    with pytest.raises(ConditionFailedError, match=r"'fitted'.*not fitted"):
        dev.models.promote("m", prod.models, conditions=["fitted"], create_bucket=True)
    dev.models.put(LinearRegression().fit(X, X.ravel()), "m")
    promoted = dev.models.promote("m", prod.models, conditions=["fitted"], create_bucket=True)
    assert promoted.version == 1

    dev.datasets.put(pd.DataFrame({"a": [1]}), "s")
    prod.datasets.put(pd.DataFrame({"a": ["x"]}), "s")
    with pytest.raises(ConditionFailedError, match="schema-matches"):
        dev.datasets.promote("s", prod.datasets, conditions=["schema-matches"])
    assert prod.datasets.metadata("s").version == 1

    def never(meta, source, target, name):
        return "frozen this week"

    with pytest.raises(ConditionFailedError, match=r"never.*frozen this week"):
        dev.datasets.promote("s", prod.datasets, conditions=[never])
    with pytest.raises(ValueError, match="Unknown promotion condition"):
        dev.datasets.promote("s", prod.datasets, conditions=["nope"])


def test_failure_halfway_leaves_target_unchanged(ctx, monkeypatch):
    dev, prod = ctx["dev"], ctx["prod"]
    frame = pd.DataFrame({"a": range(10)})
    dev.datasets.put(frame, "d")
    dev.datasets.put(frame, "d", append=True)  # two part files
    prod.datasets.put(pd.DataFrame({"a": [-1]}), "d")
    before = sorted(ctx.storage.list_names("prod/datasets/d/_data"))
    real_create = ctx.storage.create

    def crash(key, data):
        raise OSError("connection reset while committing")

    monkeypatch.setattr(ctx.storage, "create", crash)
    with pytest.raises(OSError, match="connection reset"):
        dev.datasets.promote("d", prod.datasets)
    monkeypatch.setattr(ctx.storage, "create", real_create)
    assert list(prod.datasets.get("d")["a"]) == [-1]
    assert sorted(ctx.storage.list_names("prod/datasets/d/_data")) == before
    with pytest.raises(OSError):
        monkeypatch.setattr(ctx.storage, "create", crash)
        dev.datasets.promote("d", ctx["fresh"].datasets, create_bucket=True)
    monkeypatch.setattr(ctx.storage, "create", real_create)
    assert not ctx["fresh"].datasets.exists("d")


def test_kinds_must_match(ctx):
    ctx.datasets.put(pd.DataFrame({"a": [1]}), "d")
    with pytest.raises(PromotionError, match="promote a dataset to another datasets store"):
        ctx.datasets.promote("d", ctx["prod"].models)


@pytest.mark.parametrize("direction", ["local->s3", "s3->local"])
def test_across_contexts_local_and_s3(direction, tmp_path, s3_root_factory, s3_options):
    local = omfs.setup(tmp_path / "local")
    s3 = omfs.setup(s3_root_factory(), storage_options=s3_options)
    source, target = (local, s3) if direction == "local->s3" else (s3, local)
    frame = pd.DataFrame({"a": np.arange(1000), "b": np.random.default_rng(0).random(1000)})
    source.datasets.put(frame, "sales")
    source.datasets.put(b"raw bytes", "blob")
    source.models.put(LinearRegression().fit(X, X.ravel()), "reg")

    plan = source.datasets.promote(
        "sales", target["prod"].datasets, dry_run=True, create_bucket=True
    )
    assert plan["server_side"] is False
    source.datasets.promote("sales", target["prod"].datasets, create_bucket=True)
    source.datasets.promote("blob", target["prod"].datasets)
    meta = source.models.promote("reg", target["prod"].models)

    pd.testing.assert_frame_equal(target["prod"].datasets.get("sales"), frame)
    assert target["prod"].datasets.get("blob") == b"raw bytes"
    assert meta.lineage["promoted_from"]["context"] == source.root
    assert meta.context == target.root
    np.testing.assert_allclose(target["prod"].models.get("reg").predict(X), X.ravel(), atol=1e-9)
