"""The ``om`` command as a user runs it: in this process (Click's CliRunner), and in a real
process where that matters (a traceback at exit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

import omfs


@pytest.fixture(params=["local", "s3"])
def om(request, tmp_path, cli):
    """Runs ``om`` with a context given by the environment, like a CI script would."""
    env = {"OMFS_ROOT": str(tmp_path / "ctx")}
    if request.param == "s3":
        options = request.getfixturevalue("s3_options")
        env["OMFS_ROOT"] = request.getfixturevalue("s3_root_factory")()
        env["OMFS_STORAGE_OPTIONS"] = json.dumps(options)

    def run(*args, ok=True):
        result = cli(*args, env=env)
        if ok:
            assert result.code == 0, result.stderr
        return result

    run.env = env
    return run


def test_help_lists_the_nouns(om):
    out = om("--help").stdout
    for noun in ("datasets", "buckets"):
        assert noun in out


def test_put_get_roundtrip_csv_parquet_jsonl(om, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).to_csv(src, index=False)
    assert om("datasets", "put", str(src), "sales/2024").stdout.split() == ["sales/2024", "v1", "3"]
    om("datasets", "put", str(src), "sales/2024", "--append")
    assert om("datasets", "list").stdout.split() == ["sales/2024"]
    om("datasets", "get", "sales/2024", str(tmp_path / "out.parquet"))
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 6
    om("datasets", "get", "sales/2024@v1", str(tmp_path / "out.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out.csv"), pd.read_csv(src))
    om("datasets", "get", "sales/2024", str(tmp_path / "out.jsonl"), "--columns", "b")
    assert pd.read_json(tmp_path / "out.jsonl", lines=True).columns.tolist() == ["b"]
    jl = tmp_path / "more.jsonl"
    jl.write_text('{"a": 7, "b": "q"}\n')
    om("datasets", "put", str(jl), "sales/2024", "--append")
    versions = json.loads(om("--json", "datasets", "versions", "sales/2024").stdout)
    assert [v["version"] for v in versions] == [1, 2, 3] and versions[-1]["rows"] == 7


def test_raw_files_and_metadata(om, tmp_path):
    blob = tmp_path / "model.bin"
    blob.write_bytes(os.urandom(3000))
    refused = om("datasets", "put", str(blob), "blobs/one", ok=False)
    assert "unknown table format" in refused.stderr and "--raw" in refused.stderr
    om("datasets", "put", str(blob), "blobs/one", "--raw", "--attr", "owner=ana", "--attr", "n=3")
    meta = json.loads(om("datasets", "metadata", "blobs/one").stdout)
    assert meta["kind"] == "raw" and meta["bytes"] == 3000
    assert meta["attributes"] == {"owner": "ana", "n": "3"}
    om("datasets", "get", "blobs/one", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == blob.read_bytes()


def test_buckets(om, tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("a\n1\n")
    om("--bucket", "dev", "datasets", "put", str(src), "x")
    assert om("buckets", "list").stdout.split() == ["dev", "omega"]
    assert om("datasets", "list").stdout == ""
    assert om("--bucket", "dev", "datasets", "list").stdout.split() == ["x"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["datasets", "get", "nope", "out.csv"], "Dataset 'nope' does not exist in bucket 'omega'"),
        (["datasets", "put", "missing.csv", "x"], "No such file"),
        (["datasets", "put", "/dev/null", "x"], "'/dev/null' is not a regular file"),
        (["models", "put", "/", "m"], "'/' is a folder: give the path of a file in it"),
        (["datasets", "drop", "nope"], "does not exist"),
        (["--bucket", "a/b", "datasets", "list"], "Invalid bucket name"),
    ],
)
def test_errors_are_one_line_without_traceback(om, args, message):
    result = om(*args, ok=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_names_and_appends_change_nothing(om, tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("a\n1\n")
    assert "Invalid name" in om("datasets", "put", str(src), "../escape", ok=False).stderr
    om("datasets", "put", str(src), "x")
    other = tmp_path / "y.csv"
    other.write_text("zz\nq\n")
    result = om("datasets", "put", str(other), "x", "--append", ok=False)
    assert "Cannot append to dataset 'x'" in result.stderr
    assert [v["version"] for v in json.loads(om("--json", "datasets", "versions", "x").stdout)] == [
        1
    ]
    assert not list(tmp_path.glob("**/escape*"))


def test_debug_shows_the_traceback(tmp_path, om_script):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMFS_")}
    env |= {"OMFS_ROOT": str(tmp_path / "ctx"), "OMFS_DEBUG": "1"}
    result = subprocess.run(
        [om_script, "datasets", "get", "nope", "x.csv"], capture_output=True, text=True, env=env
    )
    assert "Traceback" in result.stderr and result.returncode != 0


def test_a_bug_is_a_traceback_not_a_line(cli, tmp_path, monkeypatch):
    """Only omfs' own errors and OSError are one line: any other exception is a bug."""
    from omfs.objects.datasets import DatasetStore

    def broken(self, pattern=None):
        raise ValueError("a bug in list")

    monkeypatch.setattr(DatasetStore, "list", broken)
    with pytest.raises(ValueError, match="a bug in list"):
        cli("datasets", "list", env={"OMFS_ROOT": str(tmp_path / "ctx")})


def test_usage_errors_exit_2(om):
    assert om("datasets", "get", ok=False).returncode == 2


def test_models_commands_and_promotion(om, tmp_path):
    import joblib
    import numpy as np
    from sklearn.linear_model import LinearRegression

    X = np.arange(10.0).reshape(-1, 1)
    joblib.dump(LinearRegression().fit(X, X.ravel()), tmp_path / "reg.joblib")
    out = om("models", "put", str(tmp_path / "reg.joblib"), "reg", "--tag", "prod").stdout
    assert out.split() == ["reg", "v1", "sklearn.linear_model.LinearRegression"]
    assert om("models", "list").stdout.split() == ["reg"]
    meta = json.loads(om("models", "metadata", "reg@prod").stdout)
    assert meta["fitted"] is True and meta["kind"].endswith("LinearRegression")
    om("models", "get", "reg", str(tmp_path / "back.joblib"))
    import hashlib

    back = (tmp_path / "back.joblib").read_bytes()
    assert hashlib.sha256(back).hexdigest() == meta["sha256"]
    assert joblib.load(tmp_path / "back.joblib").coef_[0] == pytest.approx(1.0)
    assert (
        "--create-bucket" in om("models", "promote", "reg", "--to-bucket", "prod", ok=False).stderr
    )
    new_bucket = ("--to-bucket", "prod", "--create-bucket")
    plan = json.loads(om("--json", "models", "promote", "reg", *new_bucket, "--dry-run").stdout)
    assert plan["files"] == 1 and plan["target"]["bucket"] == "prod"
    assert "prod" not in om("buckets", "list").stdout
    out = om("models", "promote", "reg", *new_bucket, "--condition", "fitted").stdout
    assert out.split()[:2] == ["reg", "v1"]
    promoted = json.loads(om("--bucket", "prod", "models", "metadata", "reg").stdout)
    assert promoted["lineage"]["promoted_from"]["bucket"] == "omega"
    om("models", "drop", "reg@v1")
    assert "does not exist" in om("models", "get", "reg", "x.joblib", ok=False).stderr


def test_datasets_promote_to_another_root(om, tmp_path):
    src = tmp_path / "s.csv"
    src.write_text("a\n1\n2\n")
    om("datasets", "put", str(src), "sales")
    other = tmp_path / "prod-root"
    out = om(
        "datasets",
        "promote",
        "sales",
        "--to-root",
        str(other),
        "--to-bucket",
        "live",
        "--as",
        "sales-live",
    ).stdout
    assert out.split() == ["sales-live", "v1", str(other), "live"]
    result = om(
        "--root",
        str(other),
        "--bucket",
        "live",
        "datasets",
        "get",
        "sales-live",
        str(tmp_path / "o.csv"),
    )
    assert result.returncode == 0 and (tmp_path / "o.csv").read_text() == "a\n1\n2\n"
    assert (
        "onto itself" in om("datasets", "promote", "sales", "--to-bucket", "omega", ok=False).stderr
    )


def test_a_bug_in_a_real_process_is_a_traceback(tmp_path):
    """An exception that is not omfs' own (nor an OSError) is a bug: `om` shows its
    traceback instead of turning it into one line."""
    script = (
        "import sys\n"
        "from omfs.objects.datasets import DatasetStore\n"
        "def broken(self, pattern=None):\n"
        "    raise ValueError('a bug in list')\n"
        "DatasetStore.list = broken\n"
        "from omfs.cli import main\n"
        "sys.argv = ['om', 'datasets', 'list']\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMFS_")}
    env["OMFS_ROOT"] = str(tmp_path / "ctx")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ValueError: a bug in list" in result.stderr
    assert "om: error" not in result.stderr


def test_user_errors_are_omfs_errors_that_are_still_builtins(tmp_path):
    from omfs.errors import InvalidTypeError, OmfsError, UnknownColumnError, UsageError

    ctx = omfs.setup(tmp_path / "ctx")
    ctx.datasets.put(pd.DataFrame({"a": [1]}), "t")
    ctx.datasets.put(b"raw bytes", "r")
    with pytest.raises(UsageError, match="needs keep_last=, older_than= or both") as err:
        ctx.datasets.prune("t")
    assert isinstance(err.value, ValueError)
    with pytest.raises(InvalidTypeError, match="is a raw file") as err:
        ctx.datasets.get("r", columns=["a"])
    assert isinstance(err.value, TypeError)
    with pytest.raises(UnknownColumnError) as err:
        ctx.datasets.get("t", columns=["zz"])
    assert isinstance(err.value, KeyError) and isinstance(err.value, OmfsError)
    assert str(err.value).startswith("Dataset 't' has no columns ['zz']"), "not quoted"
    with pytest.raises(UsageError, match="Unknown promotion condition"):
        ctx.datasets.promote("t", ctx["b"].datasets, conditions=["bogus"], create_bucket=True)


def test_errors_carry_their_cli_wording(cli, tmp_path):
    """The advice of an error is in the API's terms in Python and in the command line's
    from `om`; both travel with the error (a worker's error is pickled)."""
    import pickle

    from omfs.errors import SchemaMismatchError

    ctx = omfs.setup(tmp_path / "ctx")
    ctx.datasets.put(b"raw", "r")
    with pytest.raises(SchemaMismatchError) as err:
        ctx.datasets.put(pd.DataFrame({"a": [1]}), "r", append=True)
    assert "without append=True" in str(err.value)
    for error in (err.value, pickle.loads(pickle.dumps(err.value))):
        assert "without --append" in error.cli_message()
        assert "append=True" not in error.cli_message()
    (tmp_path / "a.csv").write_text("a\n1\n")
    env = {"OMFS_ROOT": str(tmp_path / "ctx")}
    out = cli("datasets", "put", "a.csv", "r", "--append", env=env)
    assert out.code == 1 and out.stderr == f"om: error: {err.value.cli_message()}\n"
    with pytest.raises(FileNotFoundError) as missing:
        ctx.models.get("nope")
    assert "list() shows the models there" in str(missing.value)
    moved = pickle.loads(pickle.dumps(missing.value))
    assert moved.cli_message().endswith("`om models list` shows them.")
