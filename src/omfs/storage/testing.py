"""``StorageContract``: the tests every storage backend passes, shipped with the package so
that each backend is checked the same way (on the model of zarr's ``StoreTests``).

A subclass gives a ``storage`` fixture (a ``Storage`` on a fresh, empty root) and raw
``get``/``set`` that reach the backend without the ``Storage`` under test, so its own
methods are checked against what the backend really holds::

    class TestMemoryStorage(StorageContract):
        @pytest.fixture
        def storage(self) -> Storage: ...

        def get(self, storage: Storage, key: str) -> bytes: ...

        def set(self, storage: Storage, key: str, data: bytes) -> None: ...

Needs pytest (the ``test`` extra).
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import threading
import time
from pathlib import Path

import pytest

from omfs.storage.base import Storage
from omfs.storage.verify import Expected

__all__ = ["StorageContract"]


class StorageContract:
    """The contract of ``Storage`` on one backend; subclass it once per backend."""

    #: How many keys the create race runs: a server in this process (moto) runs it with
    #: the interpreter switching threads as often as it can, over more keys.
    race_keys = 10
    race_in_process = False

    @pytest.fixture
    def storage(self) -> Storage:
        """A ``Storage`` on a fresh, empty root of the backend."""
        raise NotImplementedError

    def get(self, storage: Storage, key: str) -> bytes:
        """The bytes of ``key`` read from the backend directly (FileNotFoundError if none)."""
        raise NotImplementedError

    def set(self, storage: Storage, key: str, data: bytes) -> None:
        """Write ``key`` to the backend directly."""
        raise NotImplementedError

    def missing(self, storage: Storage, key: str) -> bool:
        """Whether the backend has no file ``key``."""
        try:
            self.get(storage, key)
        except FileNotFoundError:
            return True
        return False

    # -- reading ----------------------------------------------------------------------------
    def test_reads_what_the_backend_holds(self, storage: Storage) -> None:
        self.set(storage, "r/a.bin", b"\x00payload")
        assert storage.read_bytes("r/a.bin") == b"\x00payload"
        assert storage.cat_path(storage.path("r/a.bin")) == b"\x00payload"
        with storage.open("r/a.bin") as f:
            assert f.read() == b"\x00payload"
        assert list(storage.iter_chunks("r/a.bin", 3)) == [b"\x00pa", b"ylo", b"ad"]
        assert storage.exists("r/a.bin") and storage.size("r/a.bin") == 8

    def test_a_missing_file_is_file_not_found(self, storage: Storage) -> None:
        assert not storage.exists("r/none")
        with pytest.raises(FileNotFoundError):
            storage.read_bytes("r/none")
        with pytest.raises(FileNotFoundError):
            storage.open("r/none").close()

    # -- writing ----------------------------------------------------------------------------
    def test_write_bytes_replaces_whole(self, storage: Storage) -> None:
        storage.write_bytes("w/y", b"1")
        storage.write_bytes("w/y", b"22")
        assert self.get(storage, "w/y") == b"22"
        assert storage.list_names("w") == ["y"]  # no temporary file left beside it

    def test_open_for_writing(self, storage: Storage) -> None:
        with storage.open("w/z.bin", "wb") as f:
            f.write(b"abc")
        assert self.get(storage, "w/z.bin") == b"abc"

    def test_create_is_put_if_absent(self, storage: Storage) -> None:
        assert storage.conditional_create
        self.set(storage, "c/x.json", b"first")
        with pytest.raises(FileExistsError):
            storage.create("c/x.json", b"second")
        assert self.get(storage, "c/x.json") == b"first"
        storage.create("c/new.json", b"new")
        assert self.get(storage, "c/new.json") == b"new"

    def test_create_many_keeps_what_exists(self, storage: Storage) -> None:
        self.set(storage, "m/a", b"old")
        storage.create_many({"m/a": b"new", "m/b": b"2", "m/c": b"3"})
        assert [self.get(storage, k) for k in ("m/a", "m/b", "m/c")] == [b"old", b"2", b"3"]

    def test_create_has_one_winner_under_contention(self, storage: Storage) -> None:
        """Eight writers race to create each key: exactly one wins it, and the key holds
        the winner's bytes (this is the commit point: two winners lose an update). Against
        a server in this process the interpreter switches threads as often as it can: a
        server that checks, then writes, in two steps shows it within 100 keys (moto as
        it ships let two writers win 3 keys of 60)."""
        clones = [pickle.loads(pickle.dumps(storage)) for _ in range(8)]
        switch = sys.getswitchinterval()
        if self.race_in_process:
            sys.setswitchinterval(1e-6)
        try:
            for k in range(self.race_keys):
                key = f"race/k{k}.json"
                winners = _race(clones, key)
                assert len(winners) == 1, f"{key}: {len(winners)} writers created it"
                assert self.get(storage, key) == str(winners[0]).encode()
        finally:
            sys.setswitchinterval(switch)

    def test_delete(self, storage: Storage) -> None:
        for key in ("d/a", "d/b", "d/sub/c"):
            self.set(storage, key, b"x")
        storage.delete(["d/a", "d/missing"])
        assert self.missing(storage, "d/a") and not self.missing(storage, "d/b")
        storage.delete([])
        storage.delete_tree("d")
        assert self.missing(storage, "d/b") and self.missing(storage, "d/sub/c")
        storage.delete_tree("d")  # a missing tree is no error

    # -- listing ----------------------------------------------------------------------------
    def test_listing(self, storage: Storage) -> None:
        for key in ("p/a", "p/ab", "p/b", "p/sub/c"):
            self.set(storage, key, b"x" * len(key))
        assert sorted(storage.list_names("p")) == ["a", "ab", "b", "sub"]
        assert sorted(storage.list_names("p", startswith="a")) == ["a", "ab"]
        assert storage.list_dirs("p") == ["sub"]
        assert storage.list_names("nothing/here") == [] and storage.list_dirs("nothing") == []

    def test_walk_and_inventory(self, storage: Storage) -> None:
        for key in ("q/a", "q/sub/bb"):
            self.set(storage, key, key.encode())
        walked = sorted(storage.walk("q"))
        assert [(key, size) for key, size, _ in walked] == [("q/a", 3), ("q/sub/bb", 8)]
        assert all(stamp <= time.time() + 300 for _, _, stamp in walked)
        for key, size, md5 in storage.inventory("q"):
            assert size == len(key)
            assert md5 in (None, hashlib.md5(key.encode()).hexdigest())
        assert storage.walk("none") == [] and storage.inventory("none") == []

    def test_now_is_the_storage_clock(self, storage: Storage) -> None:
        assert abs(storage.now() - time.time()) < 300

    # -- copies -----------------------------------------------------------------------------
    def test_copy_verified_refuses_a_mismatch(self, storage: Storage, tmp_path: Path) -> None:
        good, bad = b"good bytes", b"bad"
        self.set(storage, "v/good", good)
        self.set(storage, "v/bad", bad)
        target = Storage(tmp_path / "target")
        sha = hashlib.sha256(good).hexdigest()
        files = [Expected("v/good", len(good), sha), Expected("v/bad", 99)]
        refused = storage.copy_verified(files, target)
        assert list(refused) == ["v/bad"] and "the log records 99" in refused["v/bad"]
        assert not target.exists("v/good")  # with a refusal, no small file is written
        assert storage.copy_verified(files[:1], target) == {}
        assert target.read_bytes("v/good") == good

    def test_copy(self, storage: Storage, tmp_path: Path) -> None:
        self.set(storage, "k/a", b"a")
        target = Storage(tmp_path / "target")
        storage.copy(["k/a"], target, ["copied/a"])
        assert target.read_bytes("copied/a") == b"a"
        target.copy(["copied/a"], storage, ["k/back"])
        assert self.get(storage, "k/back") == b"a"

    # -- identity ---------------------------------------------------------------------------
    def test_equality(self, storage: Storage) -> None:
        same = Storage(storage.url, storage.options)
        assert same == storage and hash(same) == hash(storage)
        assert Storage(storage.url + "-other", storage.options) != storage
        assert storage != storage.url

    def test_pickle_round_trip(self, storage: Storage) -> None:
        clone = pickle.loads(pickle.dumps(storage))
        assert clone == storage and clone.url == storage.url
        self.set(storage, "t/a", b"seen")
        assert clone.read_bytes("t/a") == b"seen"
        clone.write_bytes("t/b", b"written")
        assert self.get(storage, "t/b") == b"written"


def _race(clones: list[Storage], key: str) -> list[int]:
    """Every clone creates ``key`` at once; the indexes of those that succeeded."""
    winners: list[int] = []
    start = threading.Barrier(len(clones))

    def create(i: int) -> None:
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
    return winners
