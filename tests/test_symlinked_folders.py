"""No symlink below a local root is followed, whatever its depth (issue 17, item 10, as
attacked after it landed): a linked bucket, store, object, ``_log`` or ``_data`` folder is
refused as IntegrityError naming it, on read and on write. The root itself may be a link."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import omfs
from omfs.errors import IntegrityError
from omfs.objects import log as object_log
from omfs.ops.fsck import fsck


def frame(i):
    return pd.DataFrame({"x": [i]})


def test_an_object_folder_linked_to_another_root_is_not_read(tmp_path):
    other = omfs.setup(tmp_path / "other")
    other.datasets.put(frame(42), "e")
    om = omfs.setup(tmp_path / "a")
    om.datasets.put(frame(1), "d")
    link = tmp_path / "a" / "omega" / "datasets" / "e"
    os.symlink(tmp_path / "other" / "omega" / "datasets" / "e", link)
    (tmp_path / "a" / "omega" / "datasets" / "_index" / "e").write_bytes(b"")
    with pytest.raises(IntegrityError, match=f"{link}' is a symbolic link"):
        om.datasets.get("e")
    with pytest.raises(IntegrityError, match="symbolic link"):
        om.datasets.put(frame(2), "e", append=True)
    assert other.datasets.versions("e")[-1].version == 1


@pytest.mark.parametrize("folder", ["_data", "_log"])
def test_a_linked_data_or_log_folder_is_neither_read_nor_written(tmp_path, folder):
    om = omfs.setup(tmp_path / "a")
    om.datasets.put(frame(1), "d")
    om.models.put({"w": 1}, "m")
    outside = tmp_path / "outside"
    outside.mkdir()
    for store, name in (("datasets", "d"), ("models", "m")):
        real = tmp_path / "a" / "omega" / store / name / folder
        moved = outside / store
        os.rename(real, moved)
        os.symlink(moved, real)
    before = {p: sorted(os.listdir(outside / p)) for p in ("datasets", "models")}
    object_log.clear_cache()
    with pytest.raises(IntegrityError, match=f"d/{folder}' is a symbolic link"):
        om.datasets.get("d")
    with pytest.raises(IntegrityError, match=f"m/{folder}' is a symbolic link"):
        om.models.get("m")
    with pytest.raises(IntegrityError, match=f"d/{folder}' is a symbolic link"):
        om.datasets.put(frame(2), "d", append=True)
    with pytest.raises(IntegrityError, match=f"m/{folder}' is a symbolic link"):
        om.models.put({"w": 2}, "m")
    assert {p: sorted(os.listdir(outside / p)) for p in ("datasets", "models")} == before


def test_a_linked_bucket_or_store_folder_is_refused(tmp_path):
    om = omfs.setup(tmp_path / "a")
    om.datasets.put(frame(1), "d")
    outside = tmp_path / "outside"
    os.rename(tmp_path / "a" / "omega" / "datasets", outside)
    os.symlink(outside, tmp_path / "a" / "omega" / "datasets")
    before = sorted(os.walk(outside))
    object_log.clear_cache()
    with pytest.raises(IntegrityError, match="datasets' is a symbolic link"):
        om.datasets.get("d")
    with pytest.raises(IntegrityError, match="datasets' is a symbolic link"):
        om.datasets.put(frame(2), "new")
    assert sorted(os.walk(outside)) == before


def test_a_root_that_is_itself_a_link_works(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "root")
    om = omfs.setup(tmp_path / "root")
    om.datasets.put(frame(1), "d")
    om.datasets.put(frame(2), "d", append=True)
    om.models.put({"w": 1}, "m")
    assert om.datasets.get("d")["x"].tolist() == [1, 2]
    assert om.models.get("m") == {"w": 1}
    assert fsck(om) == []
