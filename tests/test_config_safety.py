"""The config file keeps secrets to its owner (0600 in a 0700 folder, also when rewritten),
says once when a credential is stored as plain text, and a broken or hostile file (a
context named '../../etc', storage_options that are no table, nesting thousands of levels
deep) is one line naming the file and the key."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from omfs import config
from omfs.errors import ConfigError


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    """The default config location, in a fresh XDG_CONFIG_HOME (omfs creates the folder)."""
    monkeypatch.delenv("OMFS_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "omfs" / "config.toml"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _om(om_script, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMFS_")}
    env.update(env_extra or {})
    return subprocess.run([om_script, *args], capture_output=True, text=True, env=env)


def test_the_config_file_is_0600_in_a_0700_folder(config_file):
    old = os.umask(0o022)  # the usual umask, which made the file 0644 before
    try:
        config.add_context("prod", "s3://b/p", storage_options={"key": "K", "secret": "S"})
    finally:
        os.umask(old)
    assert _mode(config_file) == 0o600
    assert _mode(config_file.parent) == 0o700
    assert [p.name for p in config_file.parent.iterdir()] == ["config.toml"]  # no temp left


def test_rewriting_a_world_readable_file_makes_it_0600(config_file):
    config_file.parent.mkdir(parents=True)
    config_file.write_text('[contexts.dev]\nroot = "/tmp/dev"\n')
    config_file.chmod(0o644)  # written by an older omfs, or by hand
    config.add_context("prod", "s3://b/p", storage_options={"secret": "S"})
    assert _mode(config_file) == 0o600
    assert set(config.contexts()) == {"dev", "prod"}
    config.remove_context("prod")
    assert _mode(config_file) == 0o600 and set(config.contexts()) == {"dev"}


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_another_user_cannot_read_the_config_file(monkeypatch):
    """uid 65534 (nobody) in a subprocess can neither list the folder nor read the file;
    with the folder opened up, the file's own mode still stops it."""
    import shutil
    import tempfile

    home = tempfile.mkdtemp(prefix="omfs-config-")  # outside pytest's 0700 tmp folders
    try:
        os.chmod(home, 0o755)  # so only omfs' own modes stand in nobody's way
        monkeypatch.setenv("XDG_CONFIG_HOME", home)
        monkeypatch.delenv("OMFS_CONFIG", raising=False)
        path = config.add_context("prod", "s3://b/p", storage_options={"secret": "S3CR3T"})
        assert _as_nobody(path) == ["denied", "denied"]
        path.parent.chmod(0o755)  # a folder made wider by hand: the file is still 0600
        assert _as_nobody(path) == ["listed", "denied"]
    finally:
        shutil.rmtree(home)


def _as_nobody(path) -> list[str]:
    """What user 65534 can do with ``path``'s folder and file (plain sh, ls and cat)."""
    probe = (
        'ls "$1" >/dev/null 2>&1 && echo listed || echo denied; '
        'cat "$2" >/dev/null 2>&1 && echo READ || echo denied'
    )
    result = subprocess.run(
        ["/bin/sh", "-c", probe, "sh", str(path.parent), str(path)],
        capture_output=True,
        text=True,
        user=65534,
        group=65534,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_om_contexts_add_says_once_that_a_secret_is_plain_text(config_file, om_script):
    env = {"XDG_CONFIG_HOME": str(config_file.parent.parent)}
    result = _om(
        om_script,
        "contexts",
        "add",
        "prod",
        "--root",
        "s3://acme/prod",
        "--storage-option",
        "secret=S3CR3T",
        "--storage-option",
        "client_kwargs.endpoint_url=http://minio:9000",
        env_extra=env,
    )
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "plain text" in line]
    assert len(notes) == 1
    assert "'secret'" in notes[0] and str(config_file) in notes[0]
    assert "AWS_SECRET_ACCESS_KEY" in notes[0] and "profile" in notes[0]
    assert "endpoint_url" not in notes[0] and "S3CR3T" not in result.stderr
    assert _mode(config_file) == 0o600
    quiet = _om(om_script, "contexts", "add", "dev", "--root", "/tmp/dev", env_extra=env)
    assert quiet.returncode == 0 and "plain text" not in quiet.stderr


def test_secret_options_are_those_outside_the_allow_list():
    options = {
        "key": "K",
        "anon": False,
        "client_kwargs": {"endpoint_url": "http://x", "aws_session_token": "T"},
        "password": "p",
        "connection_string": "c",
        "profile": "team",
    }
    assert config.secret_options(options) == [
        "key",
        "client_kwargs.aws_session_token",
        "password",
        "connection_string",
    ]


@pytest.mark.parametrize("name", ["../../etc", "a/b", ".hidden", "", "x" * 65, "pr\u043ed"])
def test_bad_context_names_are_refused_in_add_and_in_the_file(config_file, name, om_script):
    with pytest.raises(ConfigError, match="not a simple name"):
        config.add_context(name, "/tmp/x")
    assert not config_file.exists()
    config_file.parent.mkdir(parents=True)
    config_file.write_text(f'[contexts."{name}"]\nroot = "/tmp/x"\n')
    with pytest.raises(ConfigError, match=r"config.toml'.*not a simple name"):
        config.contexts()
    result = _om(
        om_script, "contexts", "list", env_extra={"XDG_CONFIG_HOME": str(config_file.parents[1])}
    )
    assert result.returncode == 1
    assert result.stderr.startswith("om: error: In ") and "not a simple name" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            '[contexts.prod]\nroot = "/tmp/p"\nstorage_options = "abc"\n',
            r"\[contexts.prod\] storage_options must be a table.*got str 'abc'",
        ),
        ('root = "/tmp/p"\nstorage_options = 3\n', "the top level storage_options must be"),
        ('[contexts.prod]\nroot = "/tmp/p"\nbucket = 3\n', r"\[contexts.prod\] bucket must be"),
        ("a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n", "more than 32 levels deep"),
        ("a = " + "[" * 3000 + "]" * 3000 + "\n", "more than 32 levels deep"),
        ("[" + ".".join(["t"] * 40) + "]\nk = 1\n", "more than 32 levels deep"),
    ],
    ids=[
        "storage-options-string",
        "top-level-number",
        "bucket-number",
        "deep-inline",
        "deep-array",
        "deep-dotted",
    ],
)
def test_a_broken_config_file_is_one_line(config_file, om_script, text, says):
    config_file.parent.mkdir(parents=True)
    config_file.write_text(text)
    with pytest.raises(ConfigError, match=says):
        config.resolve()
    result = _om(
        om_script, "datasets", "list", env_extra={"XDG_CONFIG_HOME": str(config_file.parents[1])}
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("om: error:") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_deep_storage_options_from_the_environment_or_add_are_one_line(config_file, monkeypatch):
    monkeypatch.setenv("OMFS_STORAGE_OPTIONS", "[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match=r"OMFS_STORAGE_OPTIONS.*32 levels"):
        config.resolve()
    deep: dict = {}
    inner = deep
    for _ in range(40):
        inner["k"] = {}
        inner = inner["k"]
    with pytest.raises(ConfigError, match="32 levels"):
        config.add_context("prod", "/tmp/p", storage_options=deep)
    assert not config_file.exists()
