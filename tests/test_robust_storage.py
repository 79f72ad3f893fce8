"""Storage in the real world: unreachable endpoints, missing credentials, bad model files,
concurrent writers, servers without conditional writes, fsync, credentials by allow-list."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from omfs_updater import update_many

import omfs
from omfs.errors import (
    InvalidModelError,
    StorageAccessError,
    StorageUnavailableError,
    UnsafeStorageError,
)
from omfs.objects.models.store import load_model_file
from omfs.storage import Storage, public_options
from omfs.storage.errors import storage_error

DOWN = {"client_kwargs": {"endpoint_url": "http://127.0.0.1:1"}}
NO_DNS = {"client_kwargs": {"endpoint_url": "http://no-such-host.invalid:9000"}}


@pytest.mark.parametrize(
    ("options", "cause"),
    [(DOWN, "127.0.0.1:1 refused the connection"), (NO_DNS, "does not resolve")],
)
def test_unreachable_endpoint_is_reported_at_once(options, cause, om_script):
    began = time.monotonic()
    with pytest.raises(StorageUnavailableError, match=cause):
        omfs.setup("s3://bucket/root", storage_options=options)
    assert time.monotonic() - began < 2, "no retries before saying so"
    endpoint = options["client_kwargs"]["endpoint_url"]
    env = {**os.environ, "OMFS_STORAGE_OPTIONS": f'{{"endpoint_url": "{endpoint}"}}'}
    out = subprocess.run(
        [om_script, "--root", "s3://bucket/root", "datasets", "list"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 1
    assert len(out.stderr.splitlines()) == 1 and out.stdout == ""
    assert out.stderr.startswith(f"om: error: Cannot reach the endpoint {endpoint} of s3://")
    assert cause in out.stderr


def test_a_failure_after_setup_is_an_omfs_error_too(s3_root, s3_options):
    om = omfs.setup(s3_root, storage_options=s3_options)
    storage = om.storage
    # the same context, now pointed at a server that went away (setup checked it earlier)
    gone = Storage(
        s3_root,
        {
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:1"},
            "config_kwargs": {"retries": {"max_attempts": 1}},
        },
    )
    with pytest.raises(StorageUnavailableError, match="Cannot reach the storage of s3://"):
        gone.read_bytes("omega/anything")
    assert storage.list_names("omega") == []


def test_missing_credentials_are_one_line(s3_server, om_script, tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") or k in ("AWS_DEFAULT_REGION",)
    }
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        OMFS_STORAGE_OPTIONS=f'{{"endpoint_url": "{s3_server}"}}',
    )
    out = subprocess.run(
        [om_script, "--root", "s3://any-bucket/root", "models", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "om: error: No usable credentials for s3://any-bucket/root (Unable to locate "
        "credentials). Set them in the environment (e.g. AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) or in the context's storage_options."
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_denied_is_a_storage_access_error(tmp_path):
    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(pd.DataFrame({"a": [1]}), "d")
    os.chmod(tmp_path / "ctx" / "omega", 0o500)
    try:
        with pytest.raises(StorageAccessError, match="Access denied"):
            om.datasets.put(pd.DataFrame({"a": [2]}), "e")
    finally:
        os.chmod(tmp_path / "ctx" / "omega", 0o700)


def test_permission_errors_translate(tmp_path):
    error = storage_error(PermissionError(13, "Permission denied"), "s3://b/r")
    assert isinstance(error, StorageAccessError) and isinstance(error, PermissionError)
    assert str(error).startswith("Access denied by s3://b/r (")


# -- model files -----------------------------------------------------------------------------
def _om_put(om_script, root, file):
    return subprocess.run(
        [om_script, "--root", str(root), "models", "put", str(file), "m"],
        capture_output=True,
        text=True,
    )


def test_bad_model_files_are_one_line_and_store_nothing(tmp_path, om_script):
    import joblib
    from sklearn.linear_model import LinearRegression

    root = tmp_path / "ctx"
    csv = tmp_path / "customers.csv"
    csv.write_text("customer_id\tname\n1\tAda\n")
    empty = tmp_path / "empty.joblib"
    empty.write_bytes(b"")
    good = tmp_path / "model.joblib"
    joblib.dump(LinearRegression(), good)
    truncated = tmp_path / "truncated.joblib"
    truncated.write_bytes(good.read_bytes()[:40])
    cases = {
        csv: "it is not a joblib or pickle file",
        empty: "is empty",
        truncated: "it is truncated",
    }
    for file, reason in cases.items():
        out = _om_put(om_script, root, file)
        assert out.returncode == 1, out
        assert len(out.stderr.splitlines()) == 1, out.stderr
        assert str(file) in out.stderr and reason in out.stderr
        with pytest.raises(InvalidModelError, match=reason):
            load_model_file(file)
    assert not omfs.setup(root).models.exists("m")


def test_a_file_needing_a_missing_module_says_which(tmp_path, om_script):
    pickled = tmp_path / "needs.joblib"
    script = (
        "import joblib, sys, types\n"
        "mod = types.ModuleType('private_lib'); sys.modules['private_lib'] = mod\n"
        "class Model: pass\n"
        "Model.__module__ = 'private_lib'; mod.Model = Model\n"
        f"joblib.dump(Model(), {str(pickled)!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    out = _om_put(om_script, tmp_path / "ctx", pickled)
    assert out.returncode == 1
    assert "needs the module 'private_lib', which is not installed here" in out.stderr


def test_a_non_estimator_is_stored_with_a_warning(tmp_path, om_script):
    import joblib

    file = tmp_path / "lookup.joblib"
    joblib.dump({"a": 1}, file)
    out = _om_put(om_script, tmp_path / "ctx", file)
    assert out.returncode == 0
    assert out.stderr.startswith("om: warning: ") and "builtins.dict" in out.stderr
    assert omfs.setup(tmp_path / "ctx").models.get("m") == {"a": 1}


# -- no lost update: 4 processes x 25 changes each -------------------------------------------
@pytest.mark.slow
def test_concurrent_attribute_updates_tag_moves_and_drops_all_land(contended_root):
    """4 processes x (25 attribute updates of v2, 25 moves of a tag of their own, 5 drops
    of versions of their own), all at once on one model: every change is in the log."""
    from omfs_updater import dropped_by

    root, options = contended_root
    om = omfs.setup(root, storage_options=options)
    for v in range(max(dropped_by(3))):  # v1, v2, then those the four workers drop
        om.models.put({"v": v + 1}, "m")
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=update_many, args=(root, options, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0
    # every drop landed, and nothing else was dropped: v2 is the latest again
    assert [m.version for m in om.models.versions("m")] == [1, 2]
    for w in range(4):
        for v in dropped_by(w):
            assert not om.models.exists(f"m@v{v}")
    meta = om.models.metadata("m")
    assert meta.version == 2
    assert {k for k in meta.attributes if k.startswith("w")} == {
        f"w{w}-{i}" for w in range(4) for i in range(25)
    }
    history = om.models.tag_history("m")
    for w in range(4):
        moves = [h for h in history if h["tag"] == f"t{w}"]
        assert len(moves) == 25, (w, len(moves))
    assert om.models.tags("m") == {f"t{w}": 1 + (24 % 2) for w in range(4)}


def test_an_update_of_a_tagged_version_survives_the_tag_moving_away(tmp_path, monkeypatch):
    """update_attributes of v2 starts from the head (v2 is there because a tag points at
    it); another writer moves the tag away and wins the commit. The retry must read every
    record, not report v2 missing."""
    from omfs.objects.log import ObjectLog

    om = omfs.setup(tmp_path / "ctx")
    for v in range(3):
        om.models.put({"v": v}, "m")
    om.models.tag("m@v2", "t")
    other = omfs.setup(tmp_path / "ctx")
    try_commit = ObjectLog.try_commit
    raced = []

    def commit_after_another_writer(self, state, commit, head=None):
        if not raced:
            raced.append(True)
            other.models.tag("m@v1", "t")  # takes the commit this writer read up to
        return try_commit(self, state, commit, head)

    monkeypatch.setattr(ObjectLog, "try_commit", commit_after_another_writer)
    meta = om.models.update_attributes("m", {"checked": True}, version=2)
    assert raced and meta.version == 2 and meta.attributes["checked"] is True
    assert om.models.metadata("m@v2").attributes["checked"] is True
    assert om.models.tags("m") == {"t": 1}


# -- atomic commits per protocol ---------------------------------------------------------------
class _PlainMemory(MemoryFileSystem):
    """A filesystem without any put-if-absent of its own (as many fsspec backends)."""

    protocol = "plainmem"
    store: dict = {}
    pseudo_dirs = [""]


def test_a_protocol_without_atomic_create_is_refused_for_writes():
    import fsspec

    fsspec.register_implementation("plainmem", _PlainMemory, clobber=True)
    om = omfs.setup("plainmem://ctx")
    with pytest.raises(UnsafeStorageError, match=r"cannot commit atomically on plainmem://"):
        om.datasets.put(pd.DataFrame({"a": [1]}), "d")
    assert not _PlainMemory.store, "nothing was written before the refusal"
    assert om.datasets.list() == []  # reading works
    unsafe = omfs.setup("plainmem://ctx", unsafe_commits=True)
    unsafe.datasets.put(pd.DataFrame({"a": [1]}), "d")
    assert unsafe.datasets.get("d")["a"].tolist() == [1]
    storage = unsafe.storage
    storage.create("x", b"1")
    with pytest.raises(FileExistsError):
        storage.create("x", b"2")


def test_an_s3_server_ignoring_if_none_match_is_refused(s3_options, s3_root_factory):
    import s3fs
    from omfs_s3counter import CountingMotoServer

    server = CountingMotoServer(ignore_conditions=True)
    server.start()
    try:
        options = {"client_kwargs": {"endpoint_url": server.url}}
        s3fs.S3FileSystem(**options).mkdir("lax-bucket")
        om = omfs.setup("s3://lax-bucket/root", storage_options=options)
        with pytest.raises(UnsafeStorageError, match=f"server at {server.url} ignores If-None"):
            om.models.put({"a": 1}, "m")
        assert om.models.list() == []
        # a compliant server (the session's) is checked once and accepted
        good = omfs.setup(s3_root_factory(), storage_options=s3_options)
        good.models.put({"a": 1}, "m")
        assert good.models.get("m") == {"a": 1}
    finally:
        server.stop()


def test_a_gcs_server_ignoring_if_generation_match_is_refused(tmp_path, gcs_server):
    """gcp-storage-emulator as it ships ignores ifGenerationMatch, as a GCS look-alike
    might: writes are refused, naming the server, unless unsafe_commits (one writer)."""
    from omfs_emulators import Emulator, gcs_options, new_bucket_root

    lax = Emulator.gcs(tmp_path, honour_preconditions=False)
    try:
        options = gcs_options(lax)
        om = omfs.setup(new_bucket_root("gs", options), storage_options=options)
        with pytest.raises(UnsafeStorageError, match=f"server at {lax.url} ignores ifGeneration"):
            om.models.put({"a": 1}, "m")
        assert om.models.list() == []
        unsafe = omfs.setup(om.storage.url, storage_options=options, unsafe_commits=True)
        unsafe.models.put({"a": 1}, "m")
        unsafe.models.put({"a": 2}, "m")
        assert unsafe.models.get("m") == {"a": 2} and len(unsafe.models.versions("m")) == 2
        # the honouring server (the session's) is checked once and accepted
        good_options = gcs_options(gcs_server)
        good = omfs.setup(new_bucket_root("gs", good_options), storage_options=good_options)
        good.models.put({"a": 1}, "m")
        with pytest.raises(FileExistsError):
            good.storage.create("omega/models/m/_log/00000000000000000001.json", b"{}")
    finally:
        lax.stop()


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("gs://bucket/root", {"endpoint_url": "http://127.0.0.1:1", "token": "anon"}),
        (
            "abfs://container/root",
            {
                "connection_string": "DefaultEndpointsProtocol=http;AccountName=a;"
                "AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/a;"
            },
        ),
    ],
    ids=["gcs", "azure"],
)
def test_unreachable_gcs_and_azure_are_reported_at_once(url, options):
    began = time.monotonic()
    with pytest.raises(StorageUnavailableError, match=r"127\.0\.0\.1:1 refused the connection"):
        omfs.setup(url, storage_options=options)
    assert time.monotonic() - began < 2, "no retries before saying so"


@pytest.mark.parametrize("backend", ["gcs", "azure"])
def test_a_missing_gcs_bucket_or_azure_container_is_one_clear_error(backend, request):
    from omfs_emulators import azure_options, gcs_options

    if backend == "gcs":
        url, options = (
            "gs://no-such-bucket-x/root",
            gcs_options(request.getfixturevalue("gcs_server")),
        )
    else:
        url, options = (
            "abfs://no-such-container/root",
            azure_options(request.getfixturevalue("azurite")),
        )
    with pytest.raises(StorageUnavailableError, match=r"does not exist\. Create it first"):
        omfs.setup(url, storage_options=options)


def test_a_refused_azure_key_is_one_line_naming_azure_credentials(azurite):
    from omfs_emulators import azure_options, new_bucket_root

    options = azure_options(azurite)
    root = new_bucket_root("abfs", options)
    wrong = {
        "connection_string": options["connection_string"].replace("AccountKey=E", "AccountKey=A")
    }
    with pytest.raises(StorageAccessError) as caught:
        omfs.setup(root, storage_options=wrong)
    message = str(caught.value)
    assert message.startswith(f"No usable credentials for {root} (Server failed to authenticate")
    assert "AZURE_STORAGE_CONNECTION_STRING" in message and "\n" not in message


def test_azure_without_credentials_is_one_clear_error(monkeypatch):
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StorageAccessError, match=r"No usable credentials for abfs://c/r .*AZURE"):
        Storage("abfs://c/r")


def test_gcs_refusals_translate():
    from gcsfs.retry import HttpError

    bad_token = storage_error(HttpError({"code": 401, "message": "Invalid"}), "gs://b/r")
    assert isinstance(bad_token, StorageAccessError)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(bad_token)
    forbidden = storage_error(OSError("Forbidden: b/r\nno access"), "gs://b/r")
    assert isinstance(forbidden, StorageAccessError) and "Access denied by gs://b/r" in str(
        forbidden
    )
    assert storage_error(HttpError({"code": 500, "message": "x"}), "gs://b/r") is None


def test_gcs_and_azure_endpoints_are_told_from_the_vendors(monkeypatch):
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)  # Azurite's
    assert Storage("gs://b/r", {"token": "anon"}).endpoint is None
    assert Storage("gs://b/r", {"token": "anon"}).server == "https://storage.googleapis.com"
    emulator = Storage("gs://b/r", {"token": "anon", "endpoint_url": "http://127.0.0.1:9"})
    assert emulator.endpoint == "http://127.0.0.1:9"
    azure = Storage("abfs://c/r", {"account_name": "acct", "anon": True})
    assert azure.endpoint is None and azure.server == "https://acct.blob.core.windows.net"
    assert Storage("s3://b/r").endpoint is None and Storage("memory://x").server is None


# -- durability --------------------------------------------------------------------------------
def test_local_commits_are_fsynced(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real(fd))
    om = omfs.setup(tmp_path / "ctx")
    om.datasets.put(pd.DataFrame({"a": [1]}), "d")
    assert len(calls) >= 4, "commit file and folder, index marker and folder"

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        om.datasets.put(pd.DataFrame({"a": [2]}), "d")
    monkeypatch.setattr(os, "fsync", real)
    assert om.datasets.get("d")["a"].tolist() == [1], "a failed fsync commits nothing"
    leftovers = [p.name for p in (tmp_path / "ctx").rglob(".*.tmp")]
    assert leftovers == []


# -- credentials by allow-list -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "kept"),
    [
        (  # s3fs
            {
                "key": "AKIA",
                "secret": "s3cr3t",
                "token": "tok",
                "profile": "team",
                "client_kwargs": {
                    "endpoint_url": "http://minio:9000",
                    "aws_secret_access_key": "s3cr3t",
                },
                "config_kwargs": {"signature_version": "s3v4", "proxies": {"http": "u:p@h"}},
            },
            {
                "profile": "team",
                "client_kwargs": {"endpoint_url": "http://minio:9000"},
                "config_kwargs": {"signature_version": "s3v4"},
            },
        ),
        (  # gcsfs
            {"project": "p", "token": "/home/u/key.json", "access": "read_write"},
            {"project": "p", "access": "read_write"},
        ),
        (  # adlfs
            {
                "account_name": "acct",
                "account_key": "k",
                "credential": "c",
                "connection_string": "DefaultEndpointsProtocol=https;AccountKey=k",
                "sas_token": "s",
                "client_secret": "cs",
                "tenant_id": "t",
                "client_id": "c",
            },
            {"account_name": "acct"},
        ),
    ],
    ids=["s3fs", "gcsfs", "adlfs"],
)
def test_only_known_safe_options_travel(options, kept):
    import pickle

    assert public_options(options) == kept
    storage = Storage("memory://allow", options)
    payload = pickle.dumps(storage)
    for secret in ("AKIA", "s3cr3t", "tok", "key.json", "AccountKey", b"cs"):
        assert (secret if isinstance(secret, bytes) else secret.encode()) not in payload
    assert pickle.loads(payload).options == kept
