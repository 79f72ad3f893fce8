"""Names that travel: a root synced to a laptop (macOS, Windows) or read by a person keeps
every object apart. Look-alike names, names Windows reserves and names longer than a file
name may be are refused when they are *new*, with one line; existing objects still read."""

from __future__ import annotations

import os
import subprocess

import pandas as pd
import pytest

import omfs
from omfs.errors import InvalidNameError
from omfs.names import MAX_NAME_BYTES, check_name, skeleton
from omfs.objects.versioned import VersionedStore

SALES = "sales"
CYRILLIC = "s\u0430les"  # Cyrillic a
FULLWIDTH = "\uff53\uff41\uff4c\uff45\uff53"  # fullwidth s a l e s
GREEK = "\u03bfrders"  # Greek omicron
CJK_90 = "\u5b57" * 90  # 90 characters, 270 bytes in UTF-8


def _open(shared_root):
    root, options = shared_root
    return omfs.setup(root, storage_options=options)


def test_skeleton_folds_width_case_and_scripts():
    assert skeleton(SALES) == skeleton(CYRILLIC) == skeleton(FULLWIDTH) == skeleton("SALES")
    assert skeleton(GREEK) == "orders"
    # ASCII letters and digits stay apart: 'model1' is not 'modell'
    assert skeleton("model1") != skeleton("modell")
    assert skeleton("caf\u00e9") != skeleton("cafe")  # an accent is a different letter


@pytest.mark.parametrize("other", [CYRILLIC, FULLWIDTH, "Sales"])
def test_a_look_alike_of_an_existing_name_is_refused(shared_root, other):
    ctx = _open(shared_root)
    ctx.datasets.put(pd.DataFrame({"a": [1]}), SALES)
    with pytest.raises(InvalidNameError, match=r"Cannot create dataset .*'sales' exists") as info:
        ctx.datasets.put(pd.DataFrame({"a": [2]}), other)
    assert "\n" not in str(info.value)
    if other == CYRILLIC:
        assert "CYRILLIC SMALL LETTER A" in str(info.value)
    with pytest.raises(InvalidNameError, match="'sales' exists"):
        ctx.datasets.put(b"raw bytes", other)  # the raw-file path checks too
    assert ctx.datasets.list() == [SALES]  # nothing of the refused writes is listed
    ctx.datasets.put(pd.DataFrame({"a": [3]}), SALES, append=True)  # the same name is fine
    assert ctx.datasets.get(SALES)["a"].tolist() == [1, 3]


def test_look_alikes_are_refused_in_either_order_and_per_store(shared_root):
    ctx = _open(shared_root)
    ctx.models.put({"m": 1}, GREEK)
    with pytest.raises(InvalidNameError, match="look alike"):
        ctx.models.put({"m": 2}, "orders")
    ctx.datasets.put(pd.DataFrame({"a": [1]}), "orders")  # another store: no collision
    assert ctx.models.list() == [GREEK] and ctx.datasets.list() == ["orders"]


@pytest.mark.parametrize("name", ["CON", "nul", "Aux.csv", "com1", "LPT9.tar.gz", "a/prn"])
def test_names_windows_reserves_are_refused_for_new_objects(shared_root, name):
    ctx = _open(shared_root)
    with pytest.raises(InvalidNameError, match="Windows reserves"):
        ctx.datasets.put(pd.DataFrame({"a": [1]}), name)
    with pytest.raises(InvalidNameError, match="Windows reserves"):
        ctx.models.put({"m": 1}, name)
    assert ctx.datasets.list() == [] and ctx.models.list() == []
    for fine in ("console", "nullable", "com10", "lpt", "aux_data"):
        check_name(fine)


def test_existing_objects_with_reserved_or_look_alike_names_still_read(shared_root, monkeypatch):
    """A store written before these checks (here: with the check switched off, as the old
    omfs had none) keeps reading, appending and dropping such objects."""
    ctx = _open(shared_root)
    ctx.datasets.put(pd.DataFrame({"a": [1]}), SALES)
    with monkeypatch.context() as old_omfs:
        old_omfs.setattr(VersionedStore, "_check_new_name", lambda self, name: None)
        ctx.datasets.put(pd.DataFrame({"a": [1]}), "CON")
        ctx.datasets.put(pd.DataFrame({"a": [1]}), CYRILLIC)
    ctx = _open(shared_root)
    assert sorted(ctx.datasets.list()) == sorted(["CON", SALES, CYRILLIC])
    ctx.datasets.put(pd.DataFrame({"a": [2]}), "CON", append=True)
    ctx.datasets.put(pd.DataFrame({"a": [2]}), CYRILLIC, append=True)
    assert ctx.datasets.get("CON")["a"].tolist() == [1, 2]
    assert ctx.datasets.get(CYRILLIC)["a"].tolist() == [1, 2]
    assert ctx.datasets.drop("CON")


@pytest.mark.parametrize(
    "name",
    ["a" * (MAX_NAME_BYTES + 1), f"team/{CJK_90}", "x" * 200 + "/" + "y" * 60],
    ids=["one-part", "cjk-part", "nested-marker"],
)
def test_names_over_255_bytes_are_refused_up_front(shared_root, name):
    ctx = _open(shared_root)
    size = len(name.encode())
    with pytest.raises(InvalidNameError, match=rf"{size} bytes .* at most 255 bytes"):
        ctx.datasets.put(pd.DataFrame({"a": [1]}), name)
    with pytest.raises(InvalidNameError, match="at most 255 bytes"):
        ctx.datasets.get(name)  # reads say so too, not 'File name too long'
    assert ctx.datasets.list() == []


def test_a_name_of_exactly_255_bytes_is_stored_and_listed(shared_root):
    """The longest name whose index file ('/' as '~') the file system takes, also when the
    index file is first written under a temporary name beside it."""
    ctx = _open(shared_root)
    name = "t/" + "\u5b57" * 84 + "x"  # 2 + 252 + 1 = 255 bytes
    assert len(name.encode()) == MAX_NAME_BYTES
    ctx.datasets.put(pd.DataFrame({"a": [1]}), name)
    assert ctx.datasets.list() == [name]
    assert ctx.datasets.get(name)["a"].tolist() == [1]


@pytest.mark.s3
def test_the_new_name_check_costs_no_request_on_a_put_of_an_existing_name(
    s3_counter, s3_root_factory, s3_options
):
    """A new name costs the one listing of the index that the case check always took;
    a put to an existing name lists nothing, however many (look-alike-prone) names exist."""

    def put_cost(ctx, name):
        s3_counter.reset()
        ctx.datasets.put(pd.DataFrame({"a": [1]}), name, append=True)
        return s3_counter.total

    few = omfs.setup(s3_root_factory(), storage_options=s3_options)
    many = omfs.setup(s3_root_factory(), storage_options=s3_options)
    for ctx in (few, many):
        ctx.datasets.put(pd.DataFrame({"a": [0]}), SALES)
    for i in range(20):
        many.datasets.put(pd.DataFrame({"a": [0]}), f"\u0434\u0430\u0442\u0430-{i}")
    assert put_cost(many, SALES) == put_cost(few, SALES)
    assert put_cost(many, "orders") == put_cost(few, "orders")


def test_the_cli_refuses_look_alikes_and_reserved_names_in_one_line(tmp_path, om_script):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMFS_")}
    env["OMFS_ROOT"] = str(tmp_path / "ctx")
    csv = tmp_path / "t.csv"
    csv.write_text("a\n1\n")

    def om(*args):
        return subprocess.run(
            [om_script, *args], capture_output=True, text=True, env=env, check=False
        )

    assert om("datasets", "put", str(csv), SALES).returncode == 0
    for name, says in [
        (CYRILLIC, "'sales' exists"),
        ("NUL", "Windows reserves"),
        (f"a/{CJK_90}", "at most 255 bytes"),
    ]:
        result = om("datasets", "put", str(csv), name)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("om: error:") and says in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert om("datasets", "list").stdout.split() == [SALES]
