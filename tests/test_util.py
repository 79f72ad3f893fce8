"""The shared little helpers of omfs._util: one atomic write, one KEY=VALUE parser, one
parser each of durations and sizes (re-exported where they used to live)."""

from __future__ import annotations

import os
import stat
from datetime import timedelta

import pytest

from omfs import _util


def test_atomic_write_replaces_whole_with_the_mode_from_creation(tmp_path):
    target = tmp_path / "config.toml"
    target.write_bytes(b"old")
    old = os.umask(0)  # a permissive umask must not widen the file
    try:
        _util.atomic_write(target, b"new", mode=0o600, durable=True)
    finally:
        os.umask(old)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_atomic_path_leaves_the_old_file_and_no_temporary_on_failure(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("before")
    with pytest.raises(RuntimeError), _util.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "before"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_parse_kv_splits_at_the_first_equals_and_names_the_option():
    assert _util.parse_kv(["a=1", "b=x=y", "c="], "--param") == [
        ("a", "1"),
        ("b", "x=y"),
        ("c", ""),
    ]
    assert _util.parse_kv(None, "--param") == []
    with pytest.raises(ValueError, match=r"--attr takes KEY=VALUE, got 'novalue'"):
        _util.parse_kv(["novalue"], "--attr")
    with pytest.raises(ValueError, match=r"--dtype takes COLUMN=TYPE, got '=int'"):
        _util.parse_kv(["=int"], "--dtype", form="COLUMN=TYPE")


def test_durations_and_sizes_have_one_parser_each():
    from omfs.cli import _common
    from omfs.objects import versioned

    assert versioned.parse_duration is _util.parse_duration  # re-exported, not a copy
    assert _util.parse_duration("5min") == timedelta(minutes=5)
    assert _util.parse_size("128MB") == 128 * 10**6
    assert _util.parse_size("1GiB") == 2**30
    assert _common.parse_size("2KiB") == 2048
    for bad in ("0", "-1MB", "12 parsecs", ""):
        with pytest.raises(ValueError, match="Invalid size"):
            _util.parse_size(bad)


def test_a_duration_of_zero_needs_no_unit():
    """Newcomer's finding: the docs say `--task-retention 0`, and "0" was refused."""
    from datetime import timedelta

    from omfs._util import parse_duration
    from omfs.errors import UsageError

    assert parse_duration("0") == parse_duration("0s") == timedelta(0)
    with pytest.raises(UsageError, match="use a number and a unit"):
        parse_duration("5")
    with pytest.raises(UsageError, match="too long"):  # attacker's: an OverflowError
        parse_duration("9999999999999d")
