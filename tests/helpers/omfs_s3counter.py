"""A moto S3 server on loopback that counts the requests it serves (by HTTP method).

Used by the test fixtures and by the benchmarks, which report storage requests: on real
S3 each costs some 20-50 ms, so their count is the figure that matters at scale.

Moto checks a conditional write's precondition and then stores the object as two steps,
and its threaded server runs requests side by side: two ``If-None-Match: *`` PUTs of one
key can both pass the check and both succeed, the second overwriting the first (seen as a
tag move lost by ``test_concurrent_tag_moves_are_never_lost[s3]`` under load). AWS S3
makes the check and the write one atomic step; this server does so by running the
conditional writes one at a time.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from moto.server import DomainDispatcherApplication, ThreadedMotoServer, create_backend_app
from werkzeug.serving import make_server

__all__ = ["CountingMotoServer"]


class CountingMotoServer(ThreadedMotoServer):
    """``ThreadedMotoServer`` whose ``requests`` counts what it served since ``reset()``."""

    def __init__(
        self, ip_address: str = "127.0.0.1", port: int = 0, *, ignore_conditions: bool = False
    ):
        """``ignore_conditions`` drops If-None-Match and If-Match from every request, as
        S3-compatible servers without conditional writes do."""
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self.ignore_conditions = ignore_conditions
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        # held by each conditional write from its check to its store, as S3 does atomically
        self._conditional = threading.Lock()

    def _server_entry(self) -> None:
        from moto.server import MotoRequestHandler

        app = DomainDispatcherApplication(create_backend_app)

        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            with self._lock:
                self.requests[environ.get("REQUEST_METHOD", "?")] += 1
            if self.ignore_conditions:
                environ.pop("HTTP_IF_NONE_MATCH", None)
                environ.pop("HTTP_IF_MATCH", None)
            if _is_conditional_write(environ):
                with self._conditional:
                    # the whole response is made inside the lock: moto stores the object
                    # while the application runs, before the body is iterated
                    return list(app(environ, start_response))
            return app(environ, start_response)

        self._server = make_server(
            self._ip_address, self._port, counting, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"


def _is_conditional_write(environ: dict[str, Any]) -> bool:
    """A PUT or POST (CompleteMultipartUpload) carrying If-None-Match or If-Match."""
    return environ.get("REQUEST_METHOD") in ("PUT", "POST") and (
        "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ
    )
