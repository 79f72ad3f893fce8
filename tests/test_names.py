"""Names are checked in one place; no accepted name can leave its bucket and store."""

from __future__ import annotations

import contextlib
import os
import posixpath

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import omfs
from omfs.errors import InvalidNameError
from omfs.names import check_bucket, check_name, split_selector

HOSTILE = [
    "..",
    "../etc",
    "a/../../b",
    "./a",
    "/abs",
    "a//b",
    "a/",
    "C:\\x",
    "C:x",
    "a\\b",
    "tab\there",
    "nl\nx",
    "nul\x00",
    "\u202eevil",
    "s3://bucket/x",
    "_versions",
    "a/_data",
    "trailing.",
    "a b",
    "",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_with_the_reason(name):
    with pytest.raises(InvalidNameError) as info:
        check_name(name)
    assert repr(name) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["sales", "sales/2024/q1", "v1.2-final", "Zürich_data", "a.b/c-d"])
def test_ordinary_names_pass(name):
    assert check_name(name) == name


def test_selectors():
    assert split_selector("m@v3") == ("m", 3)
    assert split_selector("m@12") == ("m", 12)
    assert split_selector("m@prod-2024") == ("m", "prod-2024")
    assert split_selector("m") == ("m", None)
    with pytest.raises(InvalidNameError):
        split_selector("m@")
    with pytest.raises(InvalidNameError):
        split_selector("m@../x")


def test_bucket_is_one_part():
    with pytest.raises(InvalidNameError, match="contains '/'"):
        check_bucket("a/b")


name_text = st.lists(
    st.sampled_from([*"ab./\\_-@~:", "..", "\x00", "\n", "é", " ", "/..", "C:"]),
    max_size=12,
).map("".join)


@given(name=name_text)
def test_every_accepted_name_stays_inside_its_prefix(name):
    try:
        check_name(name)
    except InvalidNameError:
        return
    joined = posixpath.normpath(posixpath.join("/root/bucket/datasets", name))
    assert joined.startswith("/root/bucket/datasets/")
    assert ".." not in name.split("/") and "\\" not in name and not name.startswith("/")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=name_text)
def test_hostile_names_write_nothing_outside_the_bucket(tmp_path, name):
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    with contextlib.suppress(InvalidNameError):
        om.datasets.put(pd.DataFrame({"a": [1]}), name)
    for dirpath, _dirs, files in os.walk(tmp_path):
        for f in files:
            path = os.path.realpath(os.path.join(dirpath, f))
            assert path.startswith(str(root / "omega" / "datasets") + os.sep), path


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.lists(
        st.tuples(
            st.integers(-(2**62), 2**62),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=8),
            st.none() | st.booleans(),
        ),
        max_size=30,
    )
)
def test_dataframe_roundtrip_property(data):
    om = omfs.setup(f"memory://prop-{abs(hash(str(data)))}")
    df = pd.DataFrame(data, columns=["i", "f", "s", "b"]).astype(
        {"i": "int64", "f": "float64", "s": "str", "b": "boolean"}
    )
    om.datasets.put(df, "p")
    pd.testing.assert_frame_equal(om.datasets.get("p"), df)
    om.datasets.put(df, "p", append=True)
    assert len(om.datasets.get("p")) == 2 * len(df)
    np.testing.assert_array_equal(
        om.datasets.get("p", i__gt=0)["i"], np.concatenate([df.i[df.i > 0]] * 2)
    )
