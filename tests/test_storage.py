"""The storage seam's contract, run against every backend."""

from __future__ import annotations

import pickle

import pytest

from omfs.storage import Storage, public_options


@pytest.fixture
def storage(ctx):
    return ctx.storage


def test_create_is_put_if_absent(storage):
    storage.create("b/x.json", b"first")
    with pytest.raises(FileExistsError):
        storage.create("b/x.json", b"second")
    assert storage.read_bytes("b/x.json") == b"first"


def test_create_has_one_winner_under_contention(storage):
    """Eight writers race to create each of many keys: exactly one wins each key, and the
    key holds the winner's bytes (this is the commit point: two winners lose an update).

    The S3 server runs in this process, so the interpreter is made to switch threads as
    often as it can meanwhile: a server that checks, then writes, in two steps shows it
    within 100 keys (moto as it ships let two writers win 3 keys of 60). The other servers
    run in processes of their own, at their own pace; 10 keys each keep the test short."""
    import sys
    import threading

    in_process = storage.protocol == "s3"
    clones = [pickle.loads(pickle.dumps(storage)) for _ in range(8)]
    switch = sys.getswitchinterval()
    if in_process:
        sys.setswitchinterval(1e-6)
    try:
        for k in range(100 if in_process else 10):
            key = f"race/k{k}.json"
            winners: list[int] = []
            start = threading.Barrier(len(clones))

            def create(i: int, key: str = key, winners: list[int] = winners, start=start) -> None:
                start.wait()
                try:
                    clones[i].create(key, str(i).encode())
                except FileExistsError:
                    return
                winners.append(i)

            threads = [threading.Thread(target=create, args=(i,)) for i in range(len(clones))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(winners) == 1, f"{key}: {len(winners)} writers created it"
            assert storage.read_bytes(key) == str(winners[0]).encode()
    finally:
        sys.setswitchinterval(switch)


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
