"""A newcomer's first week with `om`, each step run as a user would (in this process with
Click's CliRunner; a real process and terminal where that matters): CSV import, appends
that follow real data, tags, typos, CLI conventions, data semantics."""

from __future__ import annotations

import gzip
import json
import os
import unicodedata

import numpy as np
import pandas as pd
import pytest

import omfs
from omfs.errors import InvalidNameError, PromotionError


@pytest.fixture
def om(tmp_path, cli):
    """Runs `om ARGS...` on a context of this test; returns the result (code, stdout,
    stderr)."""
    root = tmp_path / "ctx"

    def run(*args, code=0, stdin=None, env=None):
        out = cli(*args, input=stdin, env={"OMFS_ROOT": str(root), **(env or {})})
        assert out.code == code, (out.stdout, out.stderr)
        return out

    run.root = root
    run.tmp = tmp_path
    return run


def one_error(out) -> str:
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("om: error: ")
    return lines[0][len("om: error: ") :]


# -- 1. import like pandas users expect -------------------------------------------------------
def test_csv_import_detects_separator_dates_and_types(om):
    (om.tmp / "sales.csv").write_text(
        "id;day;amount;region\n1;2024-03-01;1.5;EU\n2;2024-03-02;;US\n"
    )
    om("datasets", "put", "sales.csv", "sales")
    df = omfs.setup(om.root).datasets.get("sales")
    assert list(df.columns) == ["id", "day", "amount", "region"]
    assert str(df["day"].dtype).startswith("datetime64")
    assert df["id"].tolist() == [1, 2] and np.isnan(df["amount"][1])


def test_csv_options_encoding_dtype_parse_dates_and_compression(om):
    text = "code|when|name\n007|01.03.2024|J\xfcrgen\n010|02.03.2024|Zo\xeb\n"
    (om.tmp / "people.txt.gz").write_bytes(gzip.compress(text.encode("latin-1")))
    out = om("datasets", "put", "people.txt.gz", "people", code=1)
    assert "not UTF-8 text" in one_error(out) and "--encoding latin-1" in out.stderr
    om(
        "datasets", "put", "people.txt.gz", "people", "--encoding", "latin-1",
        "--sep", "|", "--dtype", "code=string", "--dtype", "when=string",
    )  # fmt: skip
    df = omfs.setup(om.root).datasets.get("people")
    assert df["code"].tolist() == ["007", "010"] and df["name"].tolist() == ["Jürgen", "Zoë"]
    (om.tmp / "iso.tsv").write_text("t\tv\n2024-03-01 10:00:00\t1\n")
    om("datasets", "put", "iso.tsv", "iso", "--parse-dates", "t")
    assert str(omfs.setup(om.root).datasets.get("iso")["t"].dtype).startswith("datetime64")


def test_bad_lines_name_file_and_line_or_are_skipped(om):
    (om.tmp / "bad.csv").write_text("a,b\n1,x\n2,y,extra\n3,z\n")
    out = om("datasets", "put", "bad.csv", "b", code=1)
    assert one_error(out).startswith("bad.csv, line 3: expected 2 fields, found 3")
    assert not omfs.setup(om.root).datasets.exists("b"), "nothing half-written"
    out = om("datasets", "put", "bad.csv", "b", "--skip-bad-lines")
    assert "skipped 1 bad line(s) of bad.csv" in out.stderr
    assert omfs.setup(om.root).datasets.get("b")["a"].tolist() == [1, 3]


def test_a_late_type_change_names_the_column_and_the_option(om):
    rows = "\n".join(str(i) for i in range(1_500_000))  # more than one 8 MB block
    (om.tmp / "late.csv").write_text(f"n\n{rows}\nnot-a-number\n")
    out = om("datasets", "put", "late.csv", "late", code=1)
    message = one_error(out)
    assert message.startswith("late.csv, line 1500002: column 'n' has 'not-a-number'")
    assert "--dtype n=string" in message
    assert not omfs.setup(om.root).datasets.exists("late")


def test_unknown_suffix_needs_raw_and_get_keeps_raw_payloads_raw(om):
    (om.tmp / "notes.xyz").write_text("hello")
    assert "unknown table format" in one_error(om("datasets", "put", "notes.xyz", "n", code=1))
    om("datasets", "put", "notes.xyz", "n", "--raw")
    assert "not a table" in one_error(om("datasets", "get", "n", "n.csv", code=1))
    om("datasets", "get", "n", "copy.xyz")
    assert (om.tmp / "copy.xyz").read_text() == "hello"


def test_stdin_and_stdout_with_dash(om):
    om("datasets", "put", "-", "piped", stdin="a,b\n1,2\n3,4\n")
    out = om("datasets", "get", "piped", "-")
    assert out.stdout.splitlines() == ["a,b", "1,2", "3,4"]
    out = om("datasets", "get", "piped", "-", "--format", "jsonl")
    assert [json.loads(line) for line in out.stdout.splitlines()] == [
        {"a": 1, "b": 2},
        {"a": 3, "b": 4},
    ]


def test_streaming_put_writes_a_part_at_a_time(om, monkeypatch):
    import pyarrow as pa

    from omfs.objects.datasets import write as store

    monkeypatch.setattr(store, "_STREAM_PART_BYTES", 64 * 1024)
    batches = [pa.record_batch({"i": np.arange(k, k + 10_000)}) for k in range(0, 50_000, 10_000)]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, iter(batches))
    ctx = omfs.setup(om.root)
    meta = ctx.datasets.put(reader, "big")
    assert meta["parts"] == 5 and meta["rows"] == 50_000
    assert ctx.datasets.get("big")["i"].tolist() == list(range(50_000))

    def failing():
        yield batches[0]
        yield batches[1]
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        ctx.datasets.put(pa.RecordBatchReader.from_batches(batches[0].schema, failing()), "x")
    assert not list((om.root / "omega" / "datasets").glob("x/_data/*.parquet"))


# -- 2. appends that follow real data ---------------------------------------------------------
def test_appends_widen_safely_and_refuse_lossy_changes(om):
    ctx = omfs.setup(om.root)
    ctx.datasets.put(pd.DataFrame({"n": [1, 2], "note": [None, None]}), "m")
    (om.tmp / "march.csv").write_text("n,note\n3,late\n,\n")  # a gap in n, text in note
    om("datasets", "put", "march.csv", "m", "--append")
    df = ctx.datasets.get("m")
    assert df["n"].tolist()[:3] == [1, 2, 3] and np.isnan(df["n"][3])
    assert df["note"].tolist()[2] == "late"
    (om.tmp / "april.csv").write_text("n,note\n1.5,x\n")
    message = one_error(om("datasets", "put", "april.csv", "m", "--append", code=1))
    assert "column 'n' is int64" in message and "cannot be converted without loss" in message
    (om.tmp / "may.csv").write_text("n,note\nabc,x\n")
    message = one_error(om("datasets", "put", "may.csv", "m", "--append", code=1))
    assert "--dtype n=Int64" in message
    assert len(ctx.datasets.versions("m")) == 2


# -- 3. tags and selectors --------------------------------------------------------------------
def test_one_tag_rule_latest_and_promoting_twice_is_a_no_op(om):
    ctx = omfs.setup(om.root)
    ctx.datasets.put(pd.DataFrame({"a": [1]}), "d")
    for bad in ("v3", "2024", "latest"):
        for store in (ctx.datasets, ctx.models):
            with pytest.raises(InvalidNameError, match="would read as a version selector"):
                store.tag("d@v1", bad) if store is ctx.datasets else store.tag("x", bad)
    om("datasets", "tag", "d@v1", "prod")
    assert om("datasets", "get", "d@latest", "-").stdout.splitlines() == ["a", "1"]
    first = om("datasets", "promote", "d@prod", "--to-bucket", "live", "--create-bucket")
    assert first.stdout.split()[:2] == ["d", "v1"]
    again = om("datasets", "promote", "d@prod", "--to-bucket", "live")
    assert "already has d@prod as d v1; nothing was copied" in again.stderr
    assert omfs.setup(om.root)["live"].datasets.tags("d") == {"prod": 1}
    forced = om("datasets", "promote", "d@prod", "--to-bucket", "live", "--force")
    assert forced.stdout.split()[:2] == ["d", "v2"]


# -- 4. typos caught ----------------------------------------------------------------------------
def test_typos_in_root_and_bucket_name_what_exists(om):
    omfs.setup(om.root).datasets.put(pd.DataFrame({"a": [1]}), "d")
    omfs.setup(om.root)["team"].models.put({"x": 1}, "m")
    message = one_error(om("--bucket", "tema", "datasets", "list", code=1))
    assert "bucket 'tema' does not exist" in message and "omega, team" in message
    message = one_error(om("datasets", "list", "--root", str(om.tmp / "typo"), code=1))
    assert "does not exist (nothing was ever stored there)" in message
    assert "does not exist" in one_error(om("buckets", "list", "--root", "typo", code=1))
    message = one_error(om("datasets", "promote", "d", "--to-bucket", "prdo", code=1))
    assert "bucket 'prdo' does not exist" in message and "--create-bucket" in message
    with pytest.raises(PromotionError, match="create_bucket=True"):  # Python: when asked
        omfs.setup(om.root).datasets.promote(
            "d", omfs.setup(om.root)["prdo"].datasets, create_bucket=False
        )


def test_om_info_says_what_is_in_effect_and_why(om, tmp_path):
    out = om("info", env={"OMFS_BUCKET": "team"})
    lines = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert lines["root"] == f"{om.root}  ($OMFS_ROOT)"
    assert lines["bucket"] == "team  ($OMFS_BUCKET)"
    assert lines["cluster"].startswith("private cluster")
    found = json.loads(om("info", "--json").stdout)
    assert found["sources"]["bucket"] == "built-in default" and found["storage"] == "file"
    assert omfs.info(tmp_path / "x", bucket="b")["sources"]["root"] == "argument"


def test_buckets_drop_with_confirmation(om):
    ctx = omfs.setup(om.root)
    ctx["old"].datasets.put(pd.DataFrame({"a": [1]}), "d")
    ctx["old"].models.put({"x": 1}, "m")
    out = om("buckets", "drop", "old", "--yes")
    assert "dropped bucket old (1 dataset(s), 1 model(s))" in out.stdout
    assert omfs.setup(om.root).buckets == ["omega"] or "old" not in omfs.setup(om.root).buckets
    assert "does not exist" in one_error(om("buckets", "drop", "old", "--yes", code=1))


# -- 5. CLI conventions -----------------------------------------------------------------------
def test_global_options_anywhere_and_json_errors(om):
    omfs.setup(om.root).datasets.put(pd.DataFrame({"a": [1]}), "d")
    out = om("datasets", "list", "--json", "--bucket", "omega")
    assert json.loads(out.stdout) == [{"name": "d"}]
    out = om("datasets", "get", "nosuch", "x.csv", "--json", code=1)
    error = json.loads(out.stderr)
    assert error["exit_code"] == 1 and "Dataset 'nosuch' does not exist" in error["error"]
    assert "`om datasets list` shows them" in error["error"], "CLI terms, not Python"
    # a subcommand's own option of the same name is left alone
    out = om("contexts", "add", "dev", "--root", str(om.tmp / "dev"), "--json",
             env={"OMFS_CONFIG": str(om.tmp / "c.toml")})  # fmt: skip
    assert "dev" in (om.tmp / "c.toml").read_text()


def test_help_version_and_completion(om):
    top = om("--help").stdout
    assert "[env: OMFS_ROOT]" in top and "--json " in top and "<bool>" not in top
    assert "--install-completion" in top
    runtime = om("runtime", "model", "--help").stdout
    assert "'sales[a,b]'" in runtime
    assert om("--version").stdout.strip() == f"omfs {omfs.__version__}"


def test_get_refuses_to_overwrite_and_drop_takes_yes(om):
    omfs.setup(om.root).datasets.put(pd.DataFrame({"a": [1]}), "d")
    (om.tmp / "d.csv").write_text("mine")
    assert "pass --force" in one_error(om("datasets", "get", "d", "d.csv", code=1))
    assert (om.tmp / "d.csv").read_text() == "mine"
    om("datasets", "get", "d", "d.csv", "--force")
    assert (om.tmp / "d.csv").read_text().splitlines() == ["a", "1"]
    om("datasets", "drop", "d", "--yes")
    assert not omfs.setup(om.root).datasets.exists("d")


def test_drop_asks_on_a_terminal(om, om_script):
    import pty

    omfs.setup(om.root).datasets.put(pd.DataFrame({"a": [1]}), "d")
    env = {**os.environ, "OMFS_ROOT": str(om.root)}
    for answer, kept in ((b"n\n", True), (b"y\n", False)):
        pid, fd = pty.fork()
        if pid == 0:  # the child: om on a terminal
            os.execve(om_script, [om_script, "datasets", "drop", "d"], env)
        output = b""
        while b"[y/N]" not in output:
            output += os.read(fd, 1024)
        assert b"Drop dataset 'd' in bucket 'omega' with all its 1 version(s)?" in output
        os.write(fd, answer)
        try:
            while os.read(fd, 1024):
                pass
        except OSError:
            pass
        os.waitpid(pid, 0)
        assert omfs.setup(om.root).datasets.exists("d") is kept


def test_attr_values_are_text_unless_attr_json(om):
    (om.tmp / "a.csv").write_text("a\n1\n")
    om("datasets", "put", "a.csv", "d", "--attr", "v=1.10", "--attr", "n=3")
    assert omfs.setup(om.root).datasets.metadata("d").attributes == {"v": "1.10", "n": "3"}
    om("datasets", "put", "a.csv", "d", "--attr", "n=3", "--attr", "l=[1,2]", "--attr-json")
    assert omfs.setup(om.root).datasets.metadata("d").attributes == {"n": 3, "l": [1, 2]}
    assert "not JSON" in one_error(om("datasets", "put", "a.csv", "d", "--attr-json",
                                      "--attr", "v=abc", code=2))  # fmt: skip


def test_head_schema_and_where(om):
    frame = pd.DataFrame({"qty": np.arange(100), "region": ["EU", "US"] * 50})
    omfs.setup(om.root).datasets.put(frame, "s")
    head = om("datasets", "head", "s", "-n", "2").stdout.splitlines()
    assert head == ["qty\tregion", "0\tEU", "1\tUS"]  # data piped keeps its header
    assert om("datasets", "schema", "s").stdout.splitlines() == ["qty\tint64", "region\tstring"]
    out = om("datasets", "get", "s", "-", "--where", "qty>=96", "--where", "region==EU")
    assert out.stdout.splitlines() == ["qty,region", "96,EU", "98,EU"]
    message = one_error(om("datasets", "get", "s", "-", "--where", "qty>lots", code=1))
    assert "column 'qty' is int64" in message
    assert "--where" in one_error(om("datasets", "get", "s", "-", "--where", "qty", code=2))


def test_large_results_are_summarised_on_a_terminal():
    from omfs.cli.output import summarise

    lines = summarise(list(range(10_000)))
    assert lines is not None and "10,000 values" in lines


# -- 6. data semantics ------------------------------------------------------------------------
def test_filters_cast_to_the_column_type_and_work_on_categoricals(tmp_path):
    ctx = omfs.setup(tmp_path / "ctx")
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=120),
            "fruit": pd.Categorical(["apple", "banana", "cherry"] * 40),
        }
    )
    ctx.datasets.put(frame, "f")
    assert len(ctx.datasets.get("f", date__gte="2024-03-01")) == 120 - 60
    assert set(ctx.datasets.get("f", fruit__startswith="ba")["fruit"]) == {"banana"}
    with pytest.raises(ValueError, match=r"column 'date' is timestamp\[\w+\].*'soon'"):
        ctx.datasets.get("f", date__gte="soon")


def test_names_are_nfc_and_case_collisions_are_refused(tmp_path):
    ctx = omfs.setup(tmp_path / "ctx")
    nfd = unicodedata.normalize("NFD", "café")
    ctx.datasets.put(pd.DataFrame({"a": [1]}), nfd)
    assert ctx.datasets.list() == ["café"] and ctx.datasets.exists("café")
    ctx.datasets.put(pd.DataFrame({"a": [1]}), "Sales")
    with pytest.raises(InvalidNameError, match="'Sales' exists in bucket 'omega'"):
        ctx.datasets.put(pd.DataFrame({"a": [1]}), "sales")
    ctx.datasets.put(pd.DataFrame({"a": [2]}), "Sales", append=True)  # the same name is fine


def test_stored_predictions_keep_the_input_index(tmp_path):
    from sklearn.linear_model import LogisticRegression

    ctx = omfs.setup(tmp_path / "ctx")
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]}, index=pd.Index([10, 11, 12, 13], name="id"))
    ctx.datasets.put(X, "X")
    ctx.models.put(LogisticRegression().fit(X, [0, 0, 1, 1]), "clf")
    local = ctx.runtime.mode(local=True).model("clf")
    local.predict("X", rName="p").get()
    local.predict_proba("X", rName="pp").get()
    p = ctx.datasets.get("p")
    assert p.index.tolist() == [10, 11, 12, 13] and p.index.name == "id"
    assert list(p.columns) == ["predict"] and p["predict"].tolist() == [0, 0, 1, 1]
    assert list(ctx.datasets.get("pp").columns) == ["predict_proba_0", "predict_proba_1"]
    assert X.join(p).shape == (4, 2)
