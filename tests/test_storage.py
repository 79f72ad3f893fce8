"""The storage seam's contract, run against every backend."""

from __future__ import annotations

import pickle

import pytest

from omfs._storage import Storage, public_options


@pytest.fixture
def storage(ctx):
    return ctx.storage


def test_create_is_put_if_absent(storage):
    storage.create("b/x.json", b"first")
    with pytest.raises(FileExistsError):
        storage.create("b/x.json", b"second")
    assert storage.read_bytes("b/x.json") == b"first"


def test_write_bytes_replaces_whole(storage):
    storage.write_bytes("b/y", b"1")
    storage.write_bytes("b/y", b"22")
    assert storage.read_bytes("b/y") == b"22"
    assert storage.list("b") == ["y"]  # no temporary files left beside it


def test_list_delete_and_missing(storage):
    assert storage.list("nothing/here") == []
    for k in ["p/a", "p/b", "p/sub/c"]:
        storage.write_bytes(k, b"")
    assert storage.list("p") == ["a", "b"]
    assert storage.list_dirs("p") == ["sub"]
    storage.delete(["p/a", "p/missing"])
    assert storage.list("p") == ["b"]
    storage.delete_tree("p")
    assert storage.list("p") == [] and not storage.exists("p/b")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("p/b")


def test_pickle_roundtrip_and_equality(storage):
    clone = pickle.loads(pickle.dumps(storage))
    assert clone == storage
    assert clone.url == storage.url


def test_credentials_never_pickle():
    options = {
        "key": "AKIA-secret",
        "secret": "shh",
        "client_kwargs": {"endpoint_url": "http://x", "aws_secret_access_key": "shh"},
        "anon": False,
    }
    assert public_options(options) == {"client_kwargs": {"endpoint_url": "http://x"}, "anon": False}
    s = Storage("memory://creds", options)
    data = pickle.dumps(s)
    assert b"shh" not in data and b"AKIA" not in data


def test_missing_s3_bucket_is_a_clear_error(s3_options):
    import omfs
    from omfs.errors import StorageUnavailableError

    with pytest.raises(StorageUnavailableError, match="bucket 'no-such-bucket' does not exist"):
        omfs.setup("s3://no-such-bucket/x", storage_options=s3_options)
