"""Named contexts in the config file: setup(context=), $OMFS_CONTEXT, the default, om
--context, om contexts list|add|remove, and promotion to a context by name."""

from __future__ import annotations

import json
import os
import subprocess

import pandas as pd
import pytest

import omfs
from omfs import config
from omfs.errors import ConfigError


@pytest.fixture
def two_contexts(tmp_path, monkeypatch, request):
    """A config file naming 'dev' (local, the default) and 'prod' (S3 on the test server)."""
    options = request.getfixturevalue("s3_options")
    prod_root = request.getfixturevalue("s3_root_factory")()
    path = tmp_path / "config.toml"
    monkeypatch.setenv("OMFS_CONFIG", str(path))
    monkeypatch.delenv("OMFS_CONTEXT", raising=False)
    config.add_context("dev", str(tmp_path / "dev"), default=True)
    config.add_context("prod", prod_root, storage_options=options, cluster="tcp://sched:8786")
    return path, prod_root


@pytest.mark.s3
def test_setup_by_name_environment_and_default(two_contexts, monkeypatch):
    path, prod_root = two_contexts
    text = path.read_text()
    assert 'default = "dev"' in text and "[contexts.prod.storage_options.client_kwargs]" in text
    dev = omfs.setup()  # the file's default
    assert dev.root.endswith("/dev")
    prod = omfs.setup(context="prod")
    assert prod.root == prod_root
    settings = config.resolve(context="prod")
    assert settings.cluster == "tcp://sched:8786" and settings.context == "prod"
    assert "context 'prod'" in settings.sources["root"]
    monkeypatch.setenv("OMFS_CONTEXT", "prod")
    assert omfs.setup().root == prod_root
    assert omfs.setup(context="dev").root.endswith("/dev")  # the argument wins
    monkeypatch.setenv("OMFS_ROOT", "/somewhere/else")
    assert omfs.setup().root == "/somewhere/else"  # a root is more specific than a context
    assert omfs.setup("/explicit").root == "/explicit"  # plain root= keeps working
    with pytest.raises(ConfigError, match="not both"):
        omfs.setup("/x", context="prod")
    with pytest.raises(ConfigError, match=r"no context 'staging'.*'dev', 'prod'"):
        omfs.setup(context="staging")


@pytest.mark.s3
def test_promote_to_a_context_by_name(two_contexts):
    dev = omfs.setup(context="dev")
    dev.datasets.put(pd.DataFrame({"a": [1, 2]}), "sales")
    dev.models.put({"m": 1}, "model", tag="prod")
    dev.models.promote("model", "prod")
    dev.datasets.promote("sales", "prod:team", create_bucket=True)
    prod = omfs.setup(context="prod")
    assert prod.models.get("model@prod") == {"m": 1}
    assert prod["team"].datasets.get("sales")["a"].tolist() == [1, 2]
    assert prod.models.metadata("model").lineage["promoted_from"]["context"] == dev.root


def test_config_errors_name_the_file_and_the_fix(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("OMFS_CONFIG", str(path))
    path.write_text('default = "nope"\n[contexts.dev]\nroot = "/x"\n')
    with pytest.raises(ConfigError, match=r"default = 'nope' names no context"):
        omfs.setup()
    path.write_text("[contexts.dev]\nbucket = 'b'\n")
    with pytest.raises(ConfigError, match=r"\[contexts.dev\] needs a root"):
        omfs.setup()
    path.write_text("[contexts.dev]\nroot = '/x'\ncolour = 'red'\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        omfs.setup()
    with pytest.raises(ConfigError, match="Invalid context name"):
        config.add_context("../evil", "/x")


def test_first_release_config_files_still_work(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("OMFS_CONFIG", str(path))
    path.write_text(f'root = "{tmp_path / "old"}"\nbucket = "team"\n')
    om = omfs.setup()
    assert om.root == str(tmp_path / "old") and om.bucket == "team"


@pytest.mark.s3
def test_contexts_commands(two_contexts, om_script, tmp_path):
    path, prod_root = two_contexts
    env = {**os.environ, "OMFS_CONFIG": str(path)}

    def run(*args):
        return subprocess.run([om_script, *args], capture_output=True, text=True, env=env)

    rows = json.loads(run("--json", "contexts", "list").stdout)
    assert [(r["name"], r["default"]) for r in rows] == [("dev", True), ("prod", False)]
    assert rows[1]["root"] == prod_root and rows[1]["cluster"] == "tcp://sched:8786"
    src = tmp_path / "in.csv"
    pd.DataFrame({"a": [1, 2, 3]}).to_csv(src, index=False)
    assert run("datasets", "put", str(src), "sales").returncode == 0  # into 'dev'
    out = run("datasets", "promote", "sales", "--to-context", "prod")
    assert out.returncode == 0, out.stderr
    assert run("--context", "prod", "datasets", "list").stdout.split() == ["sales"]
    out = run("contexts", "add", "qa", "--root", str(tmp_path / "qa"), "--default")
    assert out.returncode == 0 and "saved" in out.stderr
    assert run("datasets", "list").stdout == ""  # qa is the default now, and empty
    assert run("contexts", "remove", "qa").returncode == 0
    out = run("contexts", "remove", "qa")
    assert out.returncode == 1 and "no context 'qa'" in out.stderr
    out = run("--context", "nope", "datasets", "list")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "'nope'" in out.stderr


def test_adding_a_context_switches_nothing(tmp_path, monkeypatch, om_script):
    """A newcomer working in the per-user default adds the team's context: their own
    context stays the default (nothing vanishes from `om models list`) until --default, and
    --remote makes `om push` / `om pull` work with no further option."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in ("OMFS_CONFIG", "OMFS_CONTEXT", "OMFS_ROOT"):
        monkeypatch.delenv(name, raising=False)
    env = dict(os.environ)

    def run(*args, code=0):
        out = subprocess.run([om_script, *args], capture_output=True, text=True, env=env)
        assert out.returncode == code, (args, out.stderr)
        return out

    mine = omfs.setup(home / ".omfs")
    mine.models.put({"w": 1}, "churn")
    assert run("models", "list").stdout.split() == ["churn"]
    out = run("contexts", "add", "team", "--root", str(tmp_path / "team"))
    assert "use it with --context team" in out.stderr
    assert run("models", "list").stdout.split() == ["churn"], "still the user's own context"
    out = run("push", code=2)
    assert "no remote context" in out.stderr
    out = run("contexts", "add", "team", "--root", str(tmp_path / "team"), "--remote")
    assert "as the remote" in out.stderr
    rows = json.loads(run("--json", "contexts", "list").stdout)
    assert [(r["name"], r["default"], r["remote"]) for r in rows] == [("team", False, True)]
    run("push")
    assert omfs.setup(context="team").models.list() == ["churn"]
    run("contexts", "add", "team", "--root", str(tmp_path / "team"), "--default")
    assert config.resolve().context == "team"


def test_adding_a_context_of_an_existing_name_needs_force(cli, tmp_path):
    """`om contexts add dev` refuses to replace another `dev` (naming its root) unless
    --force; the same entry again only changes its role. A relative folder is stored
    absolute; a URL as given."""
    (tmp_path / "work").mkdir()
    out = cli("contexts", "add", "dev", "--root", "./reldata")
    assert out.code == 0, out.stderr
    first = str(tmp_path / "reldata")
    assert config.contexts()["dev"]["root"] == first
    out = cli("contexts", "add", "dev", "--root", "s3://acme/dev")
    assert out.code == 1
    assert f"A context 'dev' already exists in {str(config.config_path())!r} (root {first!r})" in (
        out.stderr
    )
    assert "Give --force to replace it" in out.stderr
    assert config.contexts()["dev"]["root"] == first  # nothing changed
    assert cli("contexts", "add", "dev", "--root", "./reldata", "--default").code == 0
    out = cli("contexts", "add", "dev", "--root", "s3://acme/dev", "--force")
    assert out.code == 0, out.stderr
    assert config.contexts()["dev"]["root"] == "s3://acme/dev"
    with pytest.raises(ConfigError, match="Pass replace=True"):
        config.add_context("dev", "s3://acme/other")
    rows = json.loads(cli("--json", "contexts", "list").stdout)
    assert [(r["name"], r["default"], r["remote"]) for r in rows] == [("dev", True, False)]
