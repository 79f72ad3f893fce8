"""A real uvicorn server in a thread on a free port (tests/serve, benchmarks), and a
request made by another OS user (tests of the owner-only rule)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

#: the OS user the tests send as "someone else on this machine"
OTHER_UID = 65534  # nobody


@contextlib.contextmanager
def running(asgi, http="auto") -> Iterator[str]:
    """Serve ``asgi`` with uvicorn on 127.0.0.1 (a free port) until the block ends; yields
    the base URL. The lifespan runs: audits are flushed when it ends. ``http``: uvicorn's
    protocol (``omfs.access.owner_only_protocol()`` for the owner-only rule)."""
    import uvicorn

    config = uvicorn.Config(
        asgi, host="127.0.0.1", port=0, log_level="warning", lifespan="on", http=http
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def need_root() -> None:
    """Skip unless root (only root can act as another user); under CI as root it runs."""
    if not hasattr(os, "fork") or os.geteuid() != 0:
        pytest.skip("acting as another OS user needs root (the tests run as root in CI)")


def get_as_other_user(url: str, path: str, uid: int = OTHER_UID) -> bytes:
    """``GET path`` from a process running as OS user ``uid`` (a fork that drops root
    before it opens its socket); the raw answer, b"" when the connection was dropped."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become uid, ask, hand the answer back, exit at once
        status = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with socket.create_connection((host, int(port)), timeout=10) as s:
                head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                s.sendall(head.encode())
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
            os.write(write, answer[:65536])
            status = 0
        except BaseException:
            pass
        finally:
            os._exit(status)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    return b"".join(chunks)
