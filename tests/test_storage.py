"""The storage seam's contract (``omfs.storage.testing.StorageContract``), run against every
backend with raw reads and writes that bypass the ``Storage`` under test."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path

import fsspec
import pytest

from omfs.storage import Storage, public_options
from omfs.storage.testing import StorageContract


class TestMemoryStorage(StorageContract):
    @pytest.fixture
    def storage(self) -> Storage:
        return Storage(f"memory://omfs-{uuid.uuid4().hex[:12]}")

    def _raw(self, storage: Storage, key: str) -> tuple[fsspec.AbstractFileSystem, str]:
        fs = fsspec.filesystem("memory")
        return fs, f"{storage.url.removeprefix('memory://')}/{key}"

    def get(self, storage: Storage, key: str) -> bytes:
        fs, path = self._raw(storage, key)
        return fs.cat_file(path)

    def set(self, storage: Storage, key: str, data: bytes) -> None:
        fs, path = self._raw(storage, key)
        fs.pipe_file(path, data)


class TestLocalStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Storage:
        return Storage(tmp_path / "root")

    def get(self, storage: Storage, key: str) -> bytes:
        return Path(storage.url, key).read_bytes()

    def set(self, storage: Storage, key: str, data: bytes) -> None:
        path = Path(storage.url, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class TestS3Storage(StorageContract):
    """On the session's moto server, which runs in this process: the create race runs
    over 100 keys with the interpreter switching threads as often as it can."""

    race_keys = 100
    race_in_process = True

    @pytest.fixture
    def storage(self, s3_root: str, s3_options: dict, s3_server: str) -> Storage:
        import boto3

        self.client = boto3.client("s3", endpoint_url=s3_server)
        return Storage(s3_root, s3_options)

    def _where(self, storage: Storage, key: str) -> dict[str, str]:
        bucket, root = storage.url.removeprefix("s3://").split("/", 1)
        return {"Bucket": bucket, "Key": f"{root}/{key}"}

    def get(self, storage: Storage, key: str) -> bytes:
        try:
            return self.client.get_object(**self._where(storage, key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None

    def set(self, storage: Storage, key: str, data: bytes) -> None:
        self.client.put_object(Body=data, **self._where(storage, key))


class _EmulatorContract(StorageContract):
    """An object store emulator, reached by a filesystem of its own (not the Storage's)."""

    protocol = ""

    def options(self, request: pytest.FixtureRequest) -> dict:
        raise NotImplementedError

    @pytest.fixture
    def storage(self, request: pytest.FixtureRequest) -> Storage:
        from omfs_emulators import new_bucket_root

        options = self.options(request)
        root = new_bucket_root(self.protocol, options)
        self.fs = fsspec.filesystem(self.protocol, skip_instance_cache=True, **options)
        return Storage(root, options)

    def get(self, storage: Storage, key: str) -> bytes:
        return self.fs.cat_file(f"{storage.root}/{key}")

    def set(self, storage: Storage, key: str, data: bytes) -> None:
        self.fs.pipe_file(f"{storage.root}/{key}", data)


class TestGcsStorage(_EmulatorContract):
    protocol = "gs"

    def options(self, request: pytest.FixtureRequest) -> dict:
        from omfs_emulators import gcs_options

        return gcs_options(request.getfixturevalue("gcs_server"))


class TestAzureStorage(_EmulatorContract):
    protocol = "abfs"

    def options(self, request: pytest.FixtureRequest) -> dict:
        from omfs_emulators import azure_options

        return azure_options(request.getfixturevalue("azurite"))


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
