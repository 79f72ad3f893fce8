"""Google Cloud Storage and Azure Blob Storage servers on loopback, for the tests.

* GCS: ``gcp-storage-emulator`` (PyPI), run as a subprocess of this module. The emulator
  ignores ``ifGenerationMatch``; with ``--honour-preconditions`` this module adds GCS's
  documented rule for ``ifGenerationMatch=0`` on uploads (412 when the object exists) to
  the emulator's insert handler, so omfs' commits can be tested against it. Without it the
  emulator stands for a GCS look-alike that ignores the condition.
* Azure: Azurite (npm), which honours ``If-None-Match`` itself. The nox test session
  installs it and names its ``azurite-blob`` script in ``OMFS_TEST_AZURITE``.

    python omfs_emulators.py gcs PORT [--honour-preconditions]
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

__all__ = [
    "AZURITE_ACCOUNT",
    "Emulator",
    "azure_options",
    "azurite_command",
    "connection_string",
    "free_port",
    "gcs_options",
    "new_bucket_root",
]

#: Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
_AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={_AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


def gcs_options(server: Emulator) -> dict:
    return {"endpoint_url": server.url, "token": "anon", "project": "omfs-test"}


def azure_options(server: Emulator) -> dict:
    return {"connection_string": connection_string(server.port)}


def new_bucket_root(protocol: str, options: dict) -> str:
    """A fresh bucket (container) on an emulator; an omfs root inside it."""
    import fsspec

    bucket = f"omfs-test-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem(protocol, **options).mkdir(bucket)
    return f"{protocol}://{bucket}/root"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def azurite_command() -> str | None:
    """The ``azurite-blob`` script: ``OMFS_TEST_AZURITE``, else on PATH."""
    named = os.environ.get("OMFS_TEST_AZURITE")
    if named and Path(named).exists():
        return named
    return shutil.which("azurite-blob")


class Emulator:
    """A server subprocess on a free loopback port, stopped with ``stop()``."""

    def __init__(self, args: list[str], port: int, log: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{args[0]} did not start; see {log}") from None
                time.sleep(0.1)

    @classmethod
    def gcs(cls, folder: Path, *, honour_preconditions: bool) -> Emulator:
        port = free_port()
        args = [sys.executable, __file__, "gcs", str(port)]
        if honour_preconditions:
            args.append("--honour-preconditions")
        return cls(args, port, folder / f"gcs-{port}.log")

    @classmethod
    def azurite(cls, folder: Path, command: str) -> Emulator:
        port = free_port()
        data = folder / f"azurite-{port}"
        args = [
            command,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(data),
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ]
        return cls(args, port, folder / f"azurite-{port}.log")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _serve_gcs(port: int, honour_preconditions: bool) -> None:
    import logging
    from http import HTTPStatus

    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    logging.basicConfig(level=logging.WARNING)
    if honour_preconditions:
        insert = objects.insert

        def insert_if_generation_matches(request, response, storage, *args, **kwargs):
            # the server handles one request at a time, so check-then-insert is atomic
            if request.query.get("ifGenerationMatch") == ["0"]:
                name = (request.query.get("name") or [None])[0]
                if name is None and isinstance(request.data, dict):
                    name = (request.data.get("meta") or request.data).get("name")
                try:
                    storage.get_file_obj(request.params["bucket_name"], name)
                except NotFound:
                    pass
                else:
                    response.status = HTTPStatus.PRECONDITION_FAILED
                    response.json({"error": {"code": 412, "message": "Precondition Failed"}})
                    return None
            return insert(request, response, storage, *args, **kwargs)

        objects.insert = insert_if_generation_matches
    from gcp_storage_emulator.server import create_server  # reads objects.insert now

    create_server("127.0.0.1", port, in_memory=True).run()


if __name__ == "__main__":
    _serve_gcs(int(sys.argv[2]), "--honour-preconditions" in sys.argv[3:])
