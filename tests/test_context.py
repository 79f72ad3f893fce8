"""Contexts, buckets, the default instance and configuration."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import omfs
from omfs import config
from omfs.errors import ConfigError


def test_default_context_needs_no_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    omfs._reset_default()
    omfs.datasets.put(pd.DataFrame({"a": [1]}), "x")
    assert (tmp_path / ".omfs" / "omega" / "datasets" / "x").is_dir()
    assert omfs.datasets.list() == ["x"]
    assert omfs["user1"].bucket == "user1"
    assert omfs.buckets == ["omega"]


def test_environment_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("OMFS_ROOT", str(tmp_path / "r"))
    monkeypatch.setenv("OMFS_BUCKET", "dev")
    om = omfs.setup()
    assert om.root == str(tmp_path / "r") and om.bucket == "dev"
    assert omfs.setup(bucket="prod").bucket == "prod", "an argument beats the environment"


def test_config_file(tmp_path, monkeypatch):
    cfg = tmp_path / "omfs.toml"
    cfg.write_text(f'root = "{tmp_path / "fromfile"}"\nbucket = "team"\n')
    monkeypatch.setenv("OMFS_CONFIG", str(cfg))
    om = omfs.setup()
    assert om.root == str(tmp_path / "fromfile") and om.bucket == "team"
    monkeypatch.setenv("OMFS_ROOT", str(tmp_path / "env"))
    assert omfs.setup().root == str(tmp_path / "env")


def test_config_file_default_location(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "omfs").mkdir()
    (tmp_path / "omfs" / "config.toml").write_text('bucket = "fromxdg"\n')
    assert config.config_path() == tmp_path / "omfs" / "config.toml"
    assert omfs.setup(tmp_path / "r").bucket == "fromxdg"


@pytest.mark.parametrize(
    ("text", "message"),
    [("root = [", "not valid TOML"), ('rooot = "x"', "unknown keys")],
)
def test_bad_config_is_explained(tmp_path, monkeypatch, text, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    monkeypatch.setenv("OMFS_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match=message):
        omfs.setup()


def test_getitem_shares_storage_and_runtime(ctx):
    dev = ctx["dev"]
    assert dev.storage is ctx.storage and dev._cluster is ctx._cluster
    assert dev.bucket == "dev" and ctx.bucket == "omega"
    with pytest.raises(ValueError, match="Invalid bucket name"):
        ctx["../x"]


def test_import_is_lazy():
    code = (
        "import sys, omfs; heavy = {'pyarrow', 'pandas', 's3fs', 'dask', 'distributed', "
        "'sklearn', 'joblib'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_metadata_says_the_log_format_it_was_read_from(tmp_path):
    """``to_dict()["format"]`` said 1 while every version is read from a format-2 log."""
    from omfs.objects import log
    from omfs.objects.metadata import Metadata

    om = omfs.setup(tmp_path / "root")
    meta = om.datasets.put(pd.DataFrame({"a": [1]}), "x")
    assert meta["format"] == meta.to_dict()["format"] == log.FORMAT == 2
    assert not hasattr(Metadata, "from_json") and not hasattr(Metadata, "to_json")


def test_config_and_state_folders_follow_the_platform_and_the_overrides(tmp_path, monkeypatch):
    """On Linux: ~/.config/omfs/config.toml and ~/.local/state/omfs, XDG variables first,
    OMFS_CONFIG and OMFS_STATE_DIR above all."""
    from omfs.compute.processes import state_dir

    for name in ("OMFS_CONFIG", "OMFS_STATE_DIR", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert config.config_path() == tmp_path / ".config" / "omfs" / "config.toml"
        assert state_dir() == tmp_path / ".local" / "state" / "omfs"
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "c"))
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "s"))
        assert config.config_path() == tmp_path / "c" / "omfs" / "config.toml"
        assert state_dir() == tmp_path / "s" / "omfs"
    monkeypatch.setenv("OMFS_CONFIG", str(tmp_path / "mine.toml"))
    monkeypatch.setenv("OMFS_STATE_DIR", str(tmp_path / "state"))
    assert config.config_path() == tmp_path / "mine.toml"
    assert state_dir() == tmp_path / "state"
