"""Shared fixtures: one moto S3 server per session, and a ``ctx`` fixture that runs a test
against ``memory://``, a local folder and ``s3://`` on that server."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path

import pytest

# Fake credentials for the loopback S3 server, set before boto reads the environment. Worker
# and writer subprocesses inherit them: credentials never travel inside omfs tasks.
os.environ["AWS_ACCESS_KEY_ID"] = "omfs-test-key"
os.environ["AWS_SECRET_ACCESS_KEY"] = "omfs-test-secret"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("OMFS_ROOT", None)
os.environ.pop("OMFS_BUCKET", None)
os.environ.pop("OMFS_CLUSTER", None)

HELPERS = Path(__file__).parent / "helpers"
# subprocesses (writers, Dask workers) import the test helpers from here
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(HELPERS), os.environ.get("PYTHONPATH", "")) if p
)
sys.path.insert(0, str(HELPERS))


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API server (moto) over HTTP on a free loopback port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_options(s3_server):
    return {"client_kwargs": {"endpoint_url": s3_server}}


def new_s3_root(options: dict) -> str:
    """Create a fresh S3 bucket on the moto server; return an ``s3://`` root inside it."""
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    bucket = f"omfs-test-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    return f"s3://{bucket}/root"


@pytest.fixture
def s3_root(s3_options):
    return new_s3_root(s3_options)


@pytest.fixture
def s3_root_factory(s3_options):
    """Makes fresh ``s3://`` roots, each in a bucket of its own."""
    return lambda: new_s3_root(s3_options)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never touch the real ~/.omfs or ~/.config of whoever runs the tests."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    import omfs

    omfs._reset_default()
    yield
    omfs._reset_default()


BACKENDS = ["memory", "local", "s3"]


def make_root(backend: str, tmp_path: Path, request) -> tuple[str, dict]:
    if backend == "memory":
        return f"memory://omfs-{uuid.uuid4().hex[:12]}", {}
    if backend == "local":
        return str(tmp_path / "ctx"), {}
    options = request.getfixturevalue("s3_options")
    return new_s3_root(options), options


@pytest.fixture(params=BACKENDS)
def ctx(request, tmp_path):
    """An Omega on a fresh root, once per backend."""
    import omfs

    root, options = make_root(request.param, tmp_path, request)
    return omfs.setup(root, storage_options=options)


@pytest.fixture(params=BACKENDS)
def ctx_factory(request, tmp_path):
    """Makes fresh contexts on one backend (for cross-context tests)."""
    import omfs

    def make(**kwargs):
        root, options = make_root(request.param, tmp_path / uuid.uuid4().hex[:6], request)
        return omfs.setup(root, storage_options=options, **kwargs)

    make.backend = request.param
    return make
