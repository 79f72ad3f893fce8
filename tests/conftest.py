"""Shared fixtures: one moto S3 server, one GCS emulator and one Azurite per session, and a
``ctx`` fixture that runs a test against ``memory://``, a local folder, ``s3://``, ``gs://``
and ``abfs://`` on those servers."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from dataclasses import dataclass
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
os.environ.pop("OMFS_CONTEXT", None)
os.environ.pop("OMFS_CONFIG", None)
# gcsfs' experimental zonal/HNS layer asks Google's control API (gRPC) about each bucket,
# which hangs against an emulator on a closed network; plain gcsfs is what omfs uses
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

HELPERS = Path(__file__).parent / "helpers"
# subprocesses (writers, Dask workers) import the test helpers from here
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(HELPERS), os.environ.get("PYTHONPATH", "")) if p
)
sys.path.insert(0, str(HELPERS))


@pytest.fixture(scope="session")
def om_script() -> str:
    """The installed ``om`` command of the Python running the tests."""
    import shutil

    path = shutil.which("om", path=str(Path(sys.executable).parent)) or shutil.which("om")
    assert path, "the om script is not installed: pip install -e .[test]"
    return path


@pytest.fixture(scope="session")
def s3_counter():
    """A real S3 API server (moto) over HTTP on a free loopback port, counting requests."""
    from omfs_s3counter import CountingMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = CountingMotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(s3_counter):
    """The URL of the session's S3 server."""
    return s3_counter.url


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


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """A Google Cloud Storage emulator that honours ``ifGenerationMatch=0``."""
    from omfs_emulators import Emulator

    server = Emulator.gcs(tmp_path_factory.mktemp("gcs"), honour_preconditions=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Azurite, Microsoft's Azure Blob Storage emulator (installed by the nox session)."""
    from omfs_emulators import Emulator, azurite_command

    command = azurite_command()
    if command is None:
        message = "Azurite is not installed: run the tests with `nox -s tests`, which installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = Emulator.azurite(tmp_path_factory.mktemp("azurite"), command)
    # as the AWS variables above: what unpickled contexts and worker processes use
    from omfs_emulators import connection_string

    os.environ["AZURE_STORAGE_CONNECTION_STRING"] = connection_string(server.port)
    yield server
    server.stop()


BACKENDS = ["memory", "local", "s3", "gcs", "azure"]


def make_root(backend: str, tmp_path: Path, request) -> tuple[str, dict]:
    if backend == "memory":
        return f"memory://omfs-{uuid.uuid4().hex[:12]}", {}
    if backend == "local":
        return str(tmp_path / "ctx"), {}
    from omfs_emulators import azure_options, gcs_options, new_bucket_root

    if backend == "gcs":
        options = gcs_options(request.getfixturevalue("gcs_server"))
        return new_bucket_root("gs", options), options
    if backend == "azure":
        options = azure_options(request.getfixturevalue("azurite"))
        return new_bucket_root("abfs", options), options
    options = request.getfixturevalue("s3_options")
    return new_s3_root(options), options


@pytest.fixture(params=BACKENDS)
def ctx(request, tmp_path):
    """An Omega on a fresh root, once per backend."""
    import omfs

    root, options = make_root(request.param, tmp_path, request)
    return omfs.setup(root, storage_options=options)


@pytest.fixture(params=["local", "s3"])
def shared_root(request, tmp_path):
    """``(root, storage_options)`` of a fresh context that other processes can open too
    (a memory:// root lives in one process only)."""
    return make_root(request.param, tmp_path, request)


@pytest.fixture(params=["local", "s3", "gcs", "azure"])
def contended_root(request, tmp_path):
    """Like ``shared_root``, on every backend with its own conditional create (for the
    tests where several processes commit to one object at once)."""
    return make_root(request.param, tmp_path, request)


@pytest.fixture(params=BACKENDS)
def ctx_factory(request, tmp_path):
    """Makes fresh contexts on one backend (for cross-context tests)."""
    import omfs

    def make(**kwargs):
        root, options = make_root(request.param, tmp_path / uuid.uuid4().hex[:6], request)
        return omfs.setup(root, storage_options=options, **kwargs)

    make.backend = request.param
    return make


def _wait_for_file(path: Path, seconds: float = 60) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {seconds}s")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def dask_processes(tmp_path_factory):
    """A real ``dask scheduler`` and two ``dask worker`` processes: 'gpu-worker' offers
    gpu=1, 'cpu-worker' offers cpu=1. Unrunnable tasks fail after 5 s (no-workers-timeout)."""
    import subprocess

    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT": "5s"}
    # leases of Dask locks whose client went away end within a second (omfs takes none:
    # a test shows that a cancel does not rest on one)
    env["DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_VALIDATION_INTERVAL"] = "0.2s"
    bin_dir = Path(sys.executable).parent
    dask_cli = str(bin_dir / "dask")
    common = ["--no-dashboard", "--host", "127.0.0.1"]

    def spawn(*args: str) -> subprocess.Popen:
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        return subprocess.Popen([dask_cli, *args, *common], env=env, **quiet)

    def start_worker(name: str, resources: str, *extra: str) -> subprocess.Popen:
        """A ``dask worker`` process offering ``resources`` ("gpu=1") to this scheduler."""
        return spawn(
            "worker",
            "--scheduler-file",
            str(scheduler_file),
            "--name",
            name,
            "--resources",
            resources,
            "--nthreads",
            "1",
            *extra,
        )

    procs = [spawn("scheduler", "--scheduler-file", str(scheduler_file), "--port", "0")]
    _wait_for_file(scheduler_file)
    procs += [start_worker("gpu-worker", "gpu=1"), start_worker("cpu-worker", "cpu=1")]
    # not the process's default client: a later test's own .compute() must not run here
    client = Client(scheduler_file=str(scheduler_file), set_as_default=False)
    client.wait_for_workers(2, timeout=120)
    info = client.scheduler_info(n_workers=-1)["workers"]
    addresses = {w["name"]: addr for addr, w in info.items()}
    yield {
        "client": client,
        "scheduler_file": str(scheduler_file),
        "env": env,
        "address": client.scheduler.address,
        "workers": addresses,
        "start_worker": start_worker,
    }
    from omfs.compute.cluster import close_all

    close_all()  # the contexts' clients of this scheduler, before it stops
    client.close()
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class CliResult:
    """What an in-process ``om`` run gave: exit status, stdout and stderr (text)."""

    code: int
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:  # as subprocess.CompletedProcess names it
        return self.code


@pytest.fixture(scope="session")
def _om_command():
    import typer

    from omfs.cli import app

    return typer.main.get_command(app)


@pytest.fixture
def cli(_om_command, tmp_path, monkeypatch):
    """Runs ``om ARGS...`` in this process with Click's CliRunner, in ``tmp_path``; returns a
    :class:`CliResult`. ``env`` adds (or, with None, removes) environment variables for the
    run; ``input`` is its stdin. For what needs a real process (Ctrl-C, a terminal, the
    cluster, interpreter exit) use ``om_script`` in a subprocess."""
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    quieted = ("distributed", "tornado", "asyncio", "aiobotocore", "botocore", "s3fs")
    levels = {name: logging.getLogger(name).level for name in quieted}

    def run(*args: str, env: dict[str, str | None] | None = None, input=None) -> CliResult:
        # the variables om sets for itself are restored after the run, as its exit would
        env = {
            "DASK_LOGGING__DISTRIBUTED": os.environ.get("DASK_LOGGING__DISTRIBUTED"),
            **(env or {}),
        }
        runner = CliRunner()
        try:
            result = runner.invoke(
                _om_command, list(args), env=env, input=input, catch_exceptions=False
            )
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def om_cli(shared_root, cli):
    """The context on a folder or S3, and ``om`` with its --root (and storage options)."""
    import omfs

    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    extra = []
    if options:
        url = options["client_kwargs"]["endpoint_url"]
        extra = ["--storage-option", f"client_kwargs.endpoint_url={url}"]
    return om, lambda *args: cli("--root", str(root), *extra, *args)
