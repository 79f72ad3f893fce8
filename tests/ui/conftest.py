"""A real ``om ui`` (uvicorn in a thread, answering its owner's connections only) on a
local context with a model, a dataset and HTML in their values; shared by the module's
tests."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("jinja2")

SCRIPT = "<script>alert('x')</script>"


def fill(om) -> None:
    """Two datasets, a model with three versions and a prod tag moved twice (with HTML in
    an attribute and in a dataset value)."""
    from sklearn.linear_model import LinearRegression

    om.datasets.put(pd.DataFrame({"qty": [1, 20, 30], "note": [SCRIPT, "b", "c"]}), "sales")
    om.datasets.put(pd.DataFrame({"x": range(5)}), "team/features")
    om.models.put(LinearRegression(), "churn", attributes={"note": SCRIPT})
    om.models.put(LinearRegression(), "churn", tag="prod")
    lineage = {"trained_on": [{"dataset": "sales", "version": 1, "bucket": om.bucket}]}
    om.models.put(LinearRegression(), "churn", lineage=lineage, attributes={"note": SCRIPT})
    om.models.tag("churn@v3", "prod", reason="AUC 0.91")


class Running:
    """A uvicorn server serving ``app`` on a free loopback port, in a thread."""

    def __init__(self, app, host: str = "127.0.0.1", http: object = "auto"):
        import uvicorn

        config = uvicorn.Config(app, host=host, port=0, log_level="error", http=http)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the UI server did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def ui_om(tmp_path_factory):
    import omfs

    om = omfs.setup(tmp_path_factory.mktemp("ui-ctx"))
    fill(om)
    return om


@pytest.fixture(scope="module")
def ui_url(ui_om):
    """``om ui`` as the command serves it: its owner's connections only, who may write."""
    from omfs.access import owner_only_protocol, peer_uid_supported
    from omfs.ui import create_app

    if not peer_uid_supported():
        pytest.skip("om ui tells its owner's connections from /proc/net/tcp (Linux)")
    app = create_app(ui_om, owner_only=True)
    with Running(app, http=owner_only_protocol()) as url:
        yield url
