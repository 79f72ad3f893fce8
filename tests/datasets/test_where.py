"""`--where` as its help writes it: operator characters never swallowed into the column,
columns with spaces and brackets in backticks, `in (...)`, `not in (...)`, `is [not] null`,
an operator that does not fit the column's type refused in one line naming the operators that
do, and a repeated column's advice that works."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

import omfs
from omfs.errors import InvalidFilterError
from omfs.objects.datasets.where import parse_where


@pytest.mark.parametrize(
    ("condition", "keywords"),
    [
        ("name^=A", {"name__startswith": "A"}),
        ("name$=l", {"name__endswith": "l"}),
        ("`sepal length (cm)`>5", {"sepal length (cm)__gt": "5"}),
        ("`a b` == 'x y'", {"a b__eq": "x y"}),
        ("clinic in (east, south)", {"clinic__in": ["east", "south"]}),
        ('clinic NOT IN ("a,b", c)', {"clinic__nin": ["a,b", "c"]}),
        ("bmi is null", {"bmi__isnull": True}),
        ("`b m i` is not null", {"b m i__notnull": True}),
    ],
)
def test_every_form_parses(condition, keywords):
    assert parse_where([condition]) == keywords


@pytest.mark.parametrize("bad", ["sepal length (cm)>5", "a", "a in ()", "a in (1,)", "a=="])
def test_a_condition_that_does_not_parse_says_the_forms(bad):
    with pytest.raises(InvalidFilterError, match="--where"):
        parse_where([bad])


@pytest.fixture
def om(shared_root, cli):
    """`om ARGS` on a dataset of sklearn-like columns, on a local folder and on S3."""
    root, options = shared_root
    frame = pd.DataFrame(
        {
            "name": ["Ann", "Bob", "Al", "Cy"],
            "a": [1, 2, 3, 4],
            "bmi": [2.5, np.nan, 3.1, None],
            "sepal length (cm)": [5.1, 6.2, 4.9, 5.5],
            "clinic": pd.Categorical(["east", "south", "west", "east"]),
        }
    )
    omfs.setup(root, storage_options=options).datasets.put(frame, "t")
    env = {"OMFS_ROOT": root, "OMFS_STORAGE_OPTIONS": json.dumps(options) if options else None}
    return lambda *args: cli(*args, env=env)


def _names(out, sep: str = ",") -> list[str]:
    assert out.code == 0, out.stderr
    return sorted(pd.read_csv(io.StringIO(out.stdout), sep=sep)["name"])


def test_where_filters_through_the_command_line(om):
    def names(*conditions):
        args = [a for c in conditions for a in ("--where", c)]
        return _names(om("datasets", "get", "t", "-", *args))

    assert names("name^=A") == ["Al", "Ann"]  # the help's own example
    assert names("`sepal length (cm)`>5") == ["Ann", "Bob", "Cy"]
    assert names("clinic in (east,south)") == ["Ann", "Bob", "Cy"]
    assert names("clinic not in (east)") == ["Al", "Bob"]
    assert names("a in (1, 3)") == ["Al", "Ann"]
    assert names("bmi is null") == ["Bob", "Cy"]
    assert names("bmi is not null", "`sepal length (cm)`<5.2") == ["Al", "Ann"]
    assert _names(om("datasets", "head", "t", "--where", "name$=y"), sep="\t") == ["Cy"]


def test_an_operator_that_does_not_fit_the_type_is_one_line(om):
    out = om("datasets", "get", "t", "-", "--where", "a~=1")
    assert out.code == 1 and out.stdout == ""
    line = out.stderr.strip()
    assert "\n" not in line and line.startswith("om: error: --where 'a~=1': ")
    assert "column 'a', which is int64" in line and "Arrow" not in line
    assert "--where operators that do: ==, !=, <, <=, >, >=, in (a,b)" in line
    assert "~=" not in line.split("do:")[1]


def test_a_repeated_column_suggests_what_works(om):
    out = om("datasets", "get", "t", "-", "--where", "name==Ann", "--where", "name==Al")
    assert out.code == 2
    suggested = out.stderr.split("write '")[1].split("'")[0]
    assert suggested == "name in (Ann,Al)"
    assert _names(om("datasets", "get", "t", "-", "--where", suggested)) == ["Al", "Ann"]
    out = om("datasets", "get", "t", "-", "--where", "a>1", "--where", "a>2")
    assert out.code == 2 and "tighter bound" in out.stderr


def test_python_keywords_take_the_same_operators(shared_root):
    root, options = shared_root
    ds = omfs.setup(root, storage_options=options).datasets
    ds.put(pd.DataFrame({"c": ["x", "y", None], "sepal length (cm)": [1.0, 2.0, 3.0]}), "k")
    assert ds.get("k", c__in=["x", "y"])["c"].tolist() == ["x", "y"]
    assert ds.get("k", c__isnull=True)["sepal length (cm)"].tolist() == [3.0]
    assert ds.get("k", **{"sepal length (cm)__gt": 1.5})["sepal length (cm)"].tolist() == [2.0, 3.0]
    with pytest.raises(InvalidFilterError, match=r"Operators that do: __eq, __ne.*__isnull"):
        ds.get("k", **{"sepal length (cm)__contains": "1"})


def test_a_time_that_is_no_time_says_to_write_iso(tmp_path):
    """`--where 'when>=25/03/2024'` on a timestamp column says how to write a time."""
    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(pd.DataFrame({"when": pd.to_datetime(["2024-03-01", "2024-04-01"])}), "t")
    with pytest.raises(InvalidFilterError, match=r"ISO 8601: 2024-03-25"):
        om.datasets.get("t", **parse_where(["when>=25/03/2024"]))
    assert len(om.datasets.get("t", **parse_where(["when>=2024-03-25"]))) == 1
