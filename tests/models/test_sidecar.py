"""The model's JSON sidecar names its model (issue 19, item 2): someone reading the folder
without omfs sees the name, bucket, version, the attributes at put time and the lineage
beside the payload's own facts. It stays immutable (later updates live in the log); sync,
bundles and rebase copy it byte for byte, so it says where the payload was first written;
a promotion writes its copy's own; sidecars written before these fields still verify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import omfs
from omfs.ops.fsck import fsck, upgrade

LEGACY = Path(__file__).parent.parent / "fixtures" / "omfs-0.1-store"


def sidecar_key(om, name, version):
    stem = om.models.metadata(f"{name}@v{version}")["payload"].removesuffix(".joblib")
    return f"{om.bucket}/models/{name}/_data/{stem}.json"


def sidecar(om, name, version):
    """The sidecar as a person reads it: plain JSON, no omfs."""
    return json.loads(om.storage.read_bytes(sidecar_key(om, name, version)))


def test_the_sidecar_names_its_model_and_stays_as_written(shared_root, tmp_path):
    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    dev = om["dev"]
    lineage = {"trained_on": [{"dataset": "iris", "bucket": "dev", "version": 3}]}
    dev.models.put({"w": 1}, "churn", attributes={"owner": "ana"}, lineage=lineage)
    dev.models.put({"w": 2}, "churn", attributes={"owner": "bo"})
    doc = sidecar(dev, "churn", 1)
    assert {k: doc[k] for k in ("name", "bucket", "version", "attributes", "lineage")} == {
        "name": "churn",
        "bucket": "dev",
        "version": 1,
        "attributes": {"owner": "ana"},
        "lineage": lineage,
    }
    assert (
        doc["kind"] == "builtins.dict"
        and doc["sha256"] == dev.models.metadata("churn@v1")["sha256"]
    )
    assert (sidecar(dev, "churn", 2)["version"], sidecar(dev, "churn", 2)["lineage"]) == (2, None)

    written = dev.storage.read_bytes(sidecar_key(dev, "churn", 2))
    dev.models.update_attributes("churn", {"owner": "cy"})
    assert dev.storage.read_bytes(sidecar_key(dev, "churn", 2)) == written, "immutable"
    assert dev.models.metadata("churn").attributes == {"owner": "cy"}, "the log has it"

    promoted = dev.models.promote("churn", om["prod"].models)  # a copy writes its own
    doc = sidecar(om["prod"], "churn", 1)
    assert (doc["name"], doc["bucket"], doc["version"]) == ("churn", "prod", 1)
    assert doc["attributes"] == {"owner": "cy"} == promoted.attributes
    assert doc["lineage"]["promoted_from"]["bucket"] == "dev"
    assert doc["lineage"]["promoted_from"]["version"] == 2

    laptop = omfs.setup(tmp_path / "laptop")  # sync and bundles copy it byte for byte
    omfs.sync(om, laptop)
    omfs.export(dev, ["churn"], tmp_path / "b.tar")
    omfs.import_(tmp_path / "b.tar", omfs.setup(tmp_path / "air"), bucket="elsewhere")
    air = omfs.setup(tmp_path / "air")["elsewhere"]
    for copy in (laptop["dev"], air):
        assert copy.storage.read_bytes(sidecar_key(copy, "churn", 2)) == written
        assert copy.models.get("churn") == {"w": 2} and copy.models.fsck("churn") == []
    assert fsck(om) == [] and fsck(laptop) == []


def test_a_retried_commit_renumbers_the_sidecar(tmp_path):
    """Another writer commits between this put's sidecar and its commit: the retry is v2,
    and so says its sidecar."""
    om = omfs.setup(tmp_path / "om")
    store = om.models
    real = type(store).describe_version
    raced = []

    def racing(self, name, rec):
        real(self, name, rec)
        if not raced:
            raced.append(rec.version)
            omfs.setup(om.root).models.put({"w": "other"}, name)

    store.describe_version = racing.__get__(store)
    store.put({"w": "mine"}, "m")
    assert raced == [1] and store.get("m") == {"w": "mine"}
    assert [sidecar(om, "m", v)["version"] for v in (1, 2)] == [1, 2]
    assert store.fsck("m") == []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_sidecars_written_before_and_the_0_1_store_still_read(where, tmp_path, request):
    """A sidecar of the earlier format 2 (the payload's facts only) reads, verifies and
    syncs; 'om upgrade' of an omfs 0.1 store writes the new one."""
    om = omfs.setup(tmp_path / "old")
    om.models.put({"w": 1}, "m")
    key = sidecar_key(om, "m", 1)
    doc = json.loads(om.storage.read_bytes(key))
    old = {
        k: doc[k] for k in ("format", "kind", "size", "sha256", "libraries", "fitted", "created")
    }
    om.storage.write_bytes(key, json.dumps(old).encode())
    assert om.models.get("m") == {"w": 1} and fsck(om) == []
    if where == "local":
        target = omfs.setup(tmp_path / "target")
    else:
        options = request.getfixturevalue("s3_options")
        target = omfs.setup(request.getfixturevalue("s3_root_factory")(), storage_options=options)
    assert omfs.sync(om, target).copied == 1 and target.models.fsck("m") == []
    assert json.loads(target.storage.read_bytes(key)) == old

    legacy = tmp_path / "legacy"
    shutil.copytree(LEGACY, legacy)
    om = omfs.setup(legacy)
    assert fsck(om) == [] and om.models.get("reg") is not None
    upgrade(om)
    doc = sidecar(om, "reg", 1)
    assert (doc["name"], doc["bucket"], doc["version"]) == ("reg", "omega", 1)
    assert fsck(om) == []
