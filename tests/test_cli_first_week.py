"""The small stumbles of a newcomer's first week with `om` (issue 19, item 15), each run
in this process with Click's CliRunner: readable help, one line after a drop, JSON usage
errors, task values as rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import omfs


@pytest.fixture
def om(tmp_path, cli):
    """Runs `om ARGS...` on a context of this test (asserting its exit status)."""
    root = tmp_path / "ctx"

    def run(*args, code=0):
        out = cli(*args, env={"OMFS_ROOT": str(root)})
        assert out.code == code, (out.stdout, out.stderr)
        return out

    run.root = root
    return run


def test_help_shows_readable_metavars_and_everyday_nouns_first(om):
    usage = om("runtime", "model", "--help").stdout
    assert "Usage: om runtime model [OPTIONS] NAME ACTION [X] [Y]" in usage
    assert "--param KEY=VALUE" in usage and "--result RESULT" in usage
    assert "<str>" not in usage and "<list[str]>" not in usage and "{name}" not in usage
    put = om("datasets", "put", "--help").stdout
    assert "Usage: om datasets put [OPTIONS] PATH NAME" in put and "{path}" not in put
    listing = om("--help").stdout.split("Commands:")[1].splitlines()
    commands = [line.split()[0] for line in listing if line.startswith("  ")]
    nouns = [w for w in commands if w in ("datasets", "models", "fsck", "upgrade", "gc")]
    assert nouns == ["datasets", "models", "fsck", "upgrade", "gc"]


def test_drop_says_what_it_dropped_and_how_to_restore(om):
    store = omfs.setup(om.root)
    store.datasets.put(pd.DataFrame({"a": [1]}), "d")
    store.datasets.put(pd.DataFrame({"a": [2]}), "d")
    out = om("datasets", "drop", "d@v1")
    assert out.stdout == "dropped dataset version 'd@v1' from bucket 'omega'\n"
    out = om("datasets", "drop", "d")
    assert out.stdout == (
        "dropped dataset 'd' with all its versions from bucket 'omega'; "
        "`om --bucket omega datasets restore d` brings it back until gc collects it\n"
    )
    om("datasets", "restore", "d")
    out = om("datasets", "drop", "nope", "--force")
    assert out.stdout == "no dataset 'nope' in bucket 'omega'; nothing was dropped\n"
    assert json.loads(om("--json", "datasets", "drop", "d").stdout) == {
        "name": "d",
        "dropped": True,
    }


@pytest.mark.parametrize(
    "args",
    [
        ("--json", "datasets", "put"),
        ("datasets", "list", "--bogus", "--json"),
        ("--json", "nocommand"),
    ],
)
def test_usage_errors_are_json_with_json(om, args):
    out = om(*args, code=2)
    error = json.loads(out.stderr)
    assert error["exit_code"] == 2 and error["error"]
    assert out.stdout == ""


def test_task_values_print_as_rows(om):
    store = omfs.setup(om.root)
    store.datasets.put(pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]}), "X")
    store.datasets.put(pd.DataFrame({"y": [0, 0, 1, 1]}), "Y")
    fit_x = pd.DataFrame({"x": [0.0, 1.0]})
    store.models.put(LinearRegression().fit(fit_x, [1.0, 3.0]), "lin")
    store.models.put(LogisticRegression().fit(fit_x * 3, [0, 1]), "log")
    task = ("runtime", "model")
    header, *lines = om(*task, "lin", "predict", "X", "--local").stdout.splitlines()
    assert header == "predict"  # piped data keeps a header row
    assert [round(float(v), 6) for v in lines] == [1.0, 3.0, 5.0, 7.0]
    header, *proba = om(*task, "log", "predict_proba", "X", "--local").stdout.splitlines()
    assert header == "predict_proba_0\tpredict_proba_1"
    assert len(proba) == 4 and all(len(line.split("\t")) == 2 for line in proba)
    assert om(*task, "log", "score", "X", "Y", "--local").stdout.strip() == "1.0"
    as_json = json.loads(om("--json", *task, "lin", "predict", "X", "--local").stdout)
    assert [round(v, 6) for v in as_json] == [1.0, 3.0, 5.0, 7.0]


def test_global_storage_option_beside_root(cli, tmp_path, s3_root, s3_server):
    """`--storage-option KEY=VALUE` gives --root's storage options (dotted keys nest), also
    after the command; a malformed one is a usage error."""
    (tmp_path / "a.csv").write_text("a\n1\n")
    endpoint = f"client_kwargs.endpoint_url={s3_server}"
    out = cli("--root", s3_root, "--storage-option", endpoint, "datasets", "put", "a.csv", "a")
    assert out.code == 0, out.stderr
    out = cli("datasets", "list", "--root", s3_root, "--storage-option", endpoint)
    assert out.code == 0 and out.stdout.split() == ["a"], out.stderr
    out = cli("--root", s3_root, "--storage-option", "nonsense", "datasets", "list")
    assert out.code == 2 and "--storage-option" in out.stderr


def test_shell_completion_offers_names(cli, tmp_path):
    """`om datasets get <TAB>` offers the context's dataset names; models, buckets and
    contexts likewise."""
    store = omfs.setup(tmp_path / "ctx")
    store.datasets.put({"a": [1]}, "sales")
    store.datasets.put({"a": [1]}, "salaries")
    store.models.put({"w": 1}, "churn")
    omfs.setup(tmp_path / "ctx", bucket="team").datasets.put({"a": [1]}, "x")
    omfs.config.add_context("prod", str(tmp_path / "prod"))

    def complete(line):
        words = line.split(" ")
        env = {"_OM_COMPLETE": "complete_bash", "COMP_WORDS": line}
        out = cli(*[], env={**env, "COMP_CWORD": str(len(words) - 1)})
        assert out.code == 0, out.stderr
        return out.stdout.split()

    assert complete("om --root ctx datasets get sa") == ["salaries", "sales"]
    assert complete("om --root ctx models drop ") == ["churn"]
    assert complete("om --root ctx --bucket ") == ["omega", "team"]
    assert complete("om --context ") == ["prod"]
    assert complete("om --root nowhere-at-all datasets get ") == []
    assert not (tmp_path / "nowhere-at-all").exists()  # completing creates nothing


def test_promote_dry_run_prints_a_plan_for_people(om):
    """`promote --dry-run` says in lines what would be copied where, as which version, with
    which tags; the plan as JSON only with --json; nothing is copied."""
    store = omfs.setup(om.root)
    store.datasets.put(pd.DataFrame({"a": [1, 2]}), "sales")
    store.datasets.tag("sales", "prod")
    to_prod = ("--to-bucket", "prod", "--create-bucket")
    lines = om("datasets", "promote", "sales", *to_prod, "--dry-run").stdout.splitlines()
    assert lines[0] == "would promote dataset sales v1 -> sales v1 in bucket prod"
    assert lines[3].split()[:3] == ["copy", "1", "file(s),"] and "  tags      prod" in lines
    assert "prod" not in store.buckets
    plan = json.loads(om("--json", "datasets", "promote", "sales", *to_prod, "--dry-run").stdout)
    assert plan["target"]["version"] == 1 and plan["tags"] == ["prod"]
    om("datasets", "promote", "sales", *to_prod)
    again = om("datasets", "promote", "sales", "--to-bucket", "prod", "--dry-run").stdout
    assert again.startswith("prod already has dataset sales v1 as sales v1; nothing would")


def test_get_writes_json_and_xlsx_that_put_reads_back(om, tmp_path):
    """`get NAME out.json|out.xlsx` writes the formats `put` reads: put -> get -> put gives
    the same table."""
    pytest.importorskip("openpyxl")
    frame = pd.DataFrame({"n": [1, 2, 3], "x": [0.5, None, 2.25], "s": ["a", "b", None]})
    omfs.setup(om.root).datasets.put(frame, "t")
    for out in ("out.json", "out.xlsx"):
        assert om("datasets", "get", "t", out).stdout.strip() == out
        om("datasets", "put", out, f"back-{out.split('.')[1]}")
        back = omfs.setup(om.root).datasets.get(f"back-{out.split('.')[1]}")
        pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert json.loads((tmp_path / "out.json").read_text())[1] == {"n": 2, "x": None, "s": "b"}


def test_get_xlsx_without_openpyxl_names_the_package(om, tmp_path, monkeypatch):
    """Without openpyxl, `get x out.xlsx` is one line naming `pip install openpyxl`; no file."""
    omfs.setup(om.root).datasets.put(pd.DataFrame({"a": [1]}), "t")
    monkeypatch.setitem(__import__("sys").modules, "openpyxl", None)
    out = om("datasets", "get", "t", "out.xlsx", code=1)
    assert "pip install openpyxl" in out.stderr and len(out.stderr.splitlines()) == 1
    assert not (tmp_path / "out.xlsx").exists()


def test_an_int_column_with_nulls_is_written_as_ints(om, tmp_path):
    """An integer column with missing values prints `5`, not `5.0`: `get -`, a .jsonl file,
    `head` piped and `om sql --format csv` alike."""
    (tmp_path / "in.csv").write_text("id,qty\n1,5\n2,\n3,7\n")
    om("datasets", "put", "in.csv", "t")
    assert om("datasets", "get", "t", "-").stdout.splitlines() == ["id,qty", "1,5", "2,", "3,7"]
    assert om("datasets", "head", "t").stdout.splitlines()[1:] == ["1\t5", "2\t", "3\t7"]
    sql = om("sql", "select * from t order by id", "--format", "csv").stdout
    assert sql.splitlines() == ["id,qty", "1,5", "2,", "3,7"]
    om("datasets", "get", "t", "t.jsonl")
    assert '"qty":5' in (tmp_path / "t.jsonl").read_text()
