"""``om ui``'s access rules over HTTP (httpx against a real uvicorn): scopes, signing in,
the session cookie, CSRF bound to the process and the page's origin, the form limit, bad
query values, failed requests in the serving plot, the address ``om ui`` prints."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess

import httpx
import pandas as pd
import pytest

from .conftest import Running

PREVIEW = "/act/models/tag?name=churn&tag=canary&version=1"


def _csrf(client: httpx.Client, page: str) -> str:
    html = client.get(page).text
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


@pytest.fixture(scope="module")
def tokened(ui_om, tmp_path_factory):
    """A UI with a write and a read token, and its app (for one-time codes)."""
    from omfs.ui import create_app

    secret = tmp_path_factory.mktemp("tokens") / "tokens"
    secret.write_text("write W-secret\nread R-secret\n")
    secret.chmod(0o600)
    app = create_app(ui_om, token_file=secret)
    with Running(app) as url:
        yield url, app


def test_a_read_token_browses_and_cannot_act(tokened, ui_om):
    url, _ = tokened
    read = {"Authorization": "Bearer R-secret", "Origin": url}
    with httpx.Client(base_url=url, headers=read) as client:
        page = client.get("/models/churn")
        assert page.status_code == 200 and "read only" in page.text
        assert "Preview move" not in page.text and "Roll back" not in page.text
        refused = client.get(PREVIEW)
        assert refused.status_code == 403 and "need write access" in refused.text
        form = {"csrf": _csrf(client, "/login"), "name": "churn", "tag": "canary", "version": "1"}
        assert client.post("/act/models/tag", data=form).status_code == 403
    with httpx.Client(base_url=url, headers={"Origin": url}) as client:  # signed in as read
        signed = client.post("/login", data={"csrf": _csrf(client, "/login"), "token": "R-secret"})
        assert signed.status_code == 303
        assert client.get("/models/churn").status_code == 200
        assert client.get(PREVIEW).status_code == 403
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer W-secret"}) as client:
        assert "Preview move" in client.get("/models/churn").text
        assert client.get(PREVIEW).status_code == 200
    assert "canary" not in ui_om.models.tags("churn")


def test_another_os_user_cannot_reach_om_ui(ui_url):
    """Loopback is no boundary on a shared machine: om ui answers its owner's connections
    only; without that rule (a plain server, no token) the UI only browses."""
    from omfs_serving import get_as_other_user, need_root

    need_root()
    for path in ("/models/churn", PREVIEW):
        answer = get_as_other_user(ui_url, path)
        assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
        assert b"churn" not in answer
    assert httpx.get(ui_url + PREVIEW).status_code == 200  # the owner


def test_without_the_owner_rule_or_a_token_the_ui_only_browses(ui_om):
    from omfs.ui import create_app

    with Running(create_app(ui_om)) as url:
        assert httpx.get(url + "/models/churn").status_code == 200
        assert httpx.get(url + PREVIEW).status_code == 403


def test_a_one_time_code_signs_in_once_with_a_private_cookie(tokened):
    url, app = tokened
    code = app.state.sessions.one_time_code()
    with httpx.Client(base_url=url) as client:
        first = client.get("/login", params={"code": code})
        assert first.status_code == 303
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"omfs_ui_{_port(url)}=")
        assert {"httponly", "path=/", "samesite=strict"} <= {
            part.strip().lower() for part in cookie.split(";")
        }
        assert "Preview move" in client.get("/models/churn").text  # a write session
    spent = httpx.get(f"{url}/login", params={"code": code})
    assert spent.status_code == 403 and "used already" in spent.text
    assert httpx.get(f"{url}/login", params={"code": "made-up"}).status_code == 403


def test_csrf_is_bound_to_this_process_and_to_the_pages_origin(ui_url, ui_om):
    from omfs.access import owner_only_protocol
    from omfs.ui import create_app

    cookie = f"omfs_ui_{_port(ui_url)}"
    form = {"name": "churn", "tag": "planted", "version": "1"}
    origin = {"Origin": ui_url}
    planted = httpx.post(
        ui_url + "/act/models/tag", data={**form, "csrf": "attacker"}, headers=origin,
        cookies={cookie: "attacker.write.00", "omfs_csrf": "attacker"},
    )  # fmt: skip
    assert planted.status_code == 403
    other = create_app(ui_om, owner_only=True)  # another om ui: its own key
    with (
        Running(other, http=owner_only_protocol()) as other_url,
        httpx.Client(base_url=other_url) as client,
    ):
        token = _csrf(client, PREVIEW)
        foreign = client.cookies[f"omfs_ui_{_port(other_url)}"]
    replayed = httpx.post(
        ui_url + "/act/models/tag", data={**form, "csrf": token}, headers=origin,
        cookies={cookie: foreign},
    )  # fmt: skip
    assert replayed.status_code == 403
    with httpx.Client(base_url=ui_url) as client:
        data = {**form, "csrf": _csrf(client, PREVIEW)}
        for headers in (
            {"Origin": "http://127.0.0.1:9999"},
            {"Origin": "null"},
            {},  # neither Origin nor Referer
            {"Referer": "http://127.0.0.1:9999/act/models/tag"},
        ):
            assert client.post("/act/models/tag", data=data, headers=headers).status_code == 403
        assert "planted" not in ui_om.models.tags("churn")
        done = client.post("/act/models/tag", data=data, headers={"Referer": ui_url + PREVIEW})
        assert done.status_code == 303
    assert ui_om.models.tags("churn")["planted"] == 1


def test_a_big_form_is_refused_while_it_streams(ui_url):
    """A chunked POST far over 64 KB gets 413 before the client has sent much of it."""
    host, port = ui_url.removeprefix("http://").rsplit(":", 1)
    head = (
        f"POST /act/models/tag HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: {ui_url}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
    sent, budget = 0, 300 * 2**20
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head.encode())
        while sent < budget and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 0x10000
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert sent < budget / 10, sent
    declared = httpx.post(
        ui_url + "/act/models/tag", content=b"a=" + b"b" * 70_000,
        headers={"Origin": ui_url, "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert declared.status_code == 413 and "at most 64 KB" in declared.text


@pytest.mark.parametrize("bucket", ["../../tmp", "<b>x</b>"])
def test_an_invalid_bucket_is_a_400_page(ui_url, bucket):
    answer = httpx.get(ui_url + "/models", params={"bucket": bucket})
    assert answer.status_code == 400
    assert "Invalid bucket name" in answer.text and "<b>x" not in answer.text


@pytest.mark.parametrize("hours", ["99999999999", "-5", "0", "9000", "soon"])
def test_serving_hours_are_bounded(ui_url, hours):
    answer = httpx.get(ui_url + "/serving", params={"hours": hours})
    assert answer.status_code == 400 and "?hours=" in answer.text


def test_the_serving_plot_keeps_failed_requests(ui_url, ui_om):
    """The audit as om serve wrote it (versions as floats, null for a failed request)."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    audit = pd.DataFrame(
        {
            "time": [now - timedelta(minutes=m) for m in (5, 4, 3)],
            "model": ["churn", "churn", "churn"],
            "version": [3.0, None, None],
            "latency_ms": [1.5, 0.2, 0.3],
        }
    )
    ui_om["audited"].datasets.put(audit, "serving/audit")
    page = httpx.get(ui_url + "/serving", params={"bucket": "audited", "hours": 1}).text
    assert "churn@v3 — 1 requests" in page and "churn@(error) — 2 requests" in page
    assert "v3.0" not in page


def test_om_ui_on_every_address_prints_no_token(om_script, tmp_path):
    """``--host 0.0.0.0`` prints a working local sign-in link and the host name for other
    machines; no token and no 0.0.0.0 in any address."""
    secret = tmp_path / "tokens"
    secret.write_text("write W-secret\n")
    secret.chmod(0o600)
    command = [om_script, "ui", "--host", "0.0.0.0", "--port", "0", "--no-browser"]
    env = {**os.environ, "OMFS_ROOT": str(tmp_path / "ctx")}
    process = subprocess.Popen(
        [*command, "--token-file", str(secret)], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        printed = process.stderr.readline() + process.stderr.readline()
        assert "W-secret" not in printed and "0.0.0.0" not in printed, printed
        assert f"from other machines http://{socket.gethostname()}:" in printed
        here = re.search(r"om ui: (http://127\.0\.0\.1:\d+/login\?code=\S+)", printed)
        with httpx.Client() as client:
            assert client.get(here.group(1)).status_code == 303
            base = here.group(1).split("/login")[0]
            assert client.get(base + "/models").status_code == 200
    finally:
        process.terminate()
        process.wait(10)
