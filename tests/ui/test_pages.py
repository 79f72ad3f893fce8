"""``om ui`` over HTTP (httpx against a real uvicorn): every page, escaping, CSRF, empty
states, environments compared, loopback and token rules."""

from __future__ import annotations

import re

import httpx
import pandas as pd
import pytest

from .conftest import SCRIPT, Running

PAGES = ["/", "/environments", "/datasets", "/models", "/jobs", "/runtime", "/serving"]


def _links(html: str) -> set[str]:
    return {h for h in re.findall(r'href="(/[^"]*)"', html) if not h.startswith("/static")}


def test_every_page_is_reachable_by_links_from_home(ui_url):
    with httpx.Client(base_url=ui_url) as client:
        seen, todo = set(), ["/"]
        while todo:
            path = todo.pop().replace("&amp;", "&")
            if path in seen or path.startswith("/act/"):
                continue
            seen.add(path)
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text[:300])
            todo.extend(_links(answer.text) - seen)
    assert set(PAGES) <= seen
    assert {"/models/churn", "/datasets/sales", "/datasets/team/features"} <= seen


def test_values_from_storage_are_escaped(ui_url):
    with httpx.Client(base_url=ui_url) as client:
        for path in ("/models/churn", "/datasets/sales"):
            page = client.get(path).text
            assert "<script>alert" not in page
            assert "&lt;script&gt;alert(" in page, path
    assert SCRIPT.startswith("<script>")


def _csrf(client: httpx.Client, page: str) -> str:
    html = client.get(page).text
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_posts_need_the_csrf_token(ui_url, ui_om):
    before = ui_om.models.tags("churn")
    with httpx.Client(base_url=ui_url, headers={"Origin": ui_url}) as client:
        client.get("/models/churn")  # a session
        form = {"name": "churn", "tag": "prod", "version": "1", "env": "current",
                "to_bucket": "elsewhere"}  # fmt: skip
        for action in ("tag", "rollback", "promote"):
            answer = client.post(f"/act/models/{action}", data=form)
            assert answer.status_code == 403, action
            wrong = client.post(f"/act/models/{action}", data={**form, "csrf": "forged"})
            assert wrong.status_code == 403, action
    assert ui_om.models.tags("churn") == before
    assert "elsewhere" not in ui_om.buckets


def test_a_tag_moves_with_the_token_and_records_the_reason(ui_url, ui_om):
    with httpx.Client(base_url=ui_url, headers={"Origin": ui_url}) as client:
        token = _csrf(client, "/act/models/tag?name=churn&tag=staging&version=2")
        answer = client.post(
            "/act/models/tag",
            data={
                "csrf": token,
                "name": "churn",
                "tag": "staging",
                "version": "2",
                "reason": "try <b>it</b>",
            },
        )
        assert answer.status_code == 303
        page = client.get(answer.headers["location"]).text
    assert ui_om.models.tags("churn")["staging"] == 2
    assert ui_om.models.tag_history("churn", "staging")[-1]["reason"] == "try <b>it</b>"
    assert "try &lt;b&gt;it&lt;/b&gt;" in page


def test_a_move_confirmed_after_someone_else_moved_the_tag_is_refused(ui_url, ui_om):
    """Two people preview moving ``prod``; the second confirmation finds the tag moved since
    its preview and changes nothing (as rollback does); a rollback reads as one."""
    now = ui_om.models.tags("churn")["prod"]
    with httpx.Client(base_url=ui_url, headers={"Origin": ui_url}) as client:
        token = _csrf(client, "/act/models/tag?name=churn&tag=prod&version=1")
        form = {"csrf": token, "name": "churn", "tag": "prod", "expect": str(now)}
        assert client.post("/act/models/tag", data={**form, "version": "1"}).status_code == 303
        stale = client.post("/act/models/tag", data={**form, "version": "2"})
        assert stale.status_code == 400 and "since the preview" in stale.text
        assert ui_om.models.tags("churn")["prod"] == 1
        ui_om.models.rollback("churn", "prod")
        page = client.get("/models/churn").text
    assert "a rollback" in page and "None" not in page


def test_empty_states_say_what_adds_one(ui_url, ui_om):
    ui_om["dev"].models.put({"a": 1}, "only-a-model")
    with httpx.Client(base_url=ui_url) as client:
        models = client.get("/models", params={"bucket": "dev", "q": "nothing*"}).text
        datasets = client.get("/datasets", params={"bucket": "dev"})
        jobs = client.get("/jobs").text
        typo = client.get("/models", params={"bucket": "dve"})
    assert datasets.status_code == 200
    assert "No datasets in bucket dev — <code>om datasets put" in datasets.text
    assert "No model in bucket dev matches" in models
    assert "om jobs put" in jobs and "No schedules" in jobs
    assert typo.status_code == 404 and "dve" in typo.text


def test_a_dataset_preview_filters_with_where(ui_url):
    with httpx.Client(base_url=ui_url) as client:
        page = client.get("/datasets/sales", params={"where": "qty>10"}).text
        bad = client.get("/datasets/sales", params={"where": "qty"}).text
    rows = re.findall(r"<tr><td>(\d+)</td>", page)
    assert rows == ["20", "30"]
    assert "use COLUMN OP VALUE" in bad


def test_environments_compare_as_sync_sees_them(ui_url, ui_om, tmp_path):
    import omfs
    from omfs import config

    prod = omfs.setup(tmp_path / "prod")
    omfs.sync(ui_om, prod, names=["sales"])
    config.add_context("prod", str(tmp_path / "prod"))
    with httpx.Client(base_url=ui_url) as client:
        envs = client.get("/environments").text
        page = client.get("/environments/compare", params={"a": "current", "b": "prod"}).text
    assert "prod" in envs and str(tmp_path / "prod") in envs
    assert re.search(r"omega/models/churn</th>\s*<td><strong>only in A", page)
    assert "omega/datasets/sales" not in page  # the same on both sides


def test_non_loopback_needs_a_token(ui_om, tmp_path, monkeypatch):
    from omfs.errors import ConfigError
    from omfs.ui import create_app

    monkeypatch.delenv("OMFS_SERVE_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="without a token"):
        create_app(ui_om, host="0.0.0.0")
    secret = tmp_path / "tokens"
    secret.write_text("write s3cret\n")
    secret.chmod(0o600)
    with Running(create_app(ui_om, token_file=secret)) as url, httpx.Client(base_url=url) as c:
        assert c.get("/models").status_code == 401
        assert c.get("/?token=s3cret").status_code == 401  # never a token in an address
        csrf = _csrf(c, "/login")
        login = c.post("/login", data={"csrf": csrf, "token": "s3cret"}, headers={"Origin": url})
        assert login.status_code == 303
        assert c.get("/models").status_code == 200  # the cookie now
        assert httpx.get(url + "/models", headers={"Authorization": "Bearer s3cret"}).is_success


def test_a_run_id_that_climbs_out_of_the_context_is_refused(tmp_path):
    import json

    import omfs
    from omfs.ui import create_app

    om = omfs.setup(tmp_path / "ctx")
    (tmp_path / "nightly.py").write_text("print('hi')\n")
    om.jobs.put(tmp_path / "nightly.py", "nightly")
    climb = "../../../../outside"
    doc = {"id": climb, "job": "nightly", "version": 1, "status": "succeeded"}
    om.storage.write_bytes("outside/run.json", json.dumps(doc).encode())
    om.storage.write_bytes("outside/stdout.txt", b"TOPSECRET")
    with Running(create_app(om)) as url, httpx.Client(base_url=url) as client:
        page = client.get("/jobs/nightly", params={"run": climb})
    assert page.status_code == 400 and "TOPSECRET" not in page.text


def test_a_foreign_host_header_is_refused(ui_url):
    answer = httpx.get(ui_url + "/models", headers={"Host": "attacker.example"})
    assert answer.status_code == 403


def test_the_serving_page_plots_the_audit(ui_url, ui_om):
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    audit = pd.DataFrame(
        {
            "time": [now - timedelta(minutes=m) for m in (5, 4, 3, 90)],
            "model": ["churn", "churn", "churn", "<b>x</b>"],
            "version": [3, 3, 2, 1],
            "latency_ms": [1.5, 2.5, 4.0, 9.0],
        }
    )
    with httpx.Client(base_url=ui_url) as client:
        empty = client.get("/serving").text
        ui_om.datasets.put(audit, "serving/audit")
        page = client.get("/serving").text
    assert "No audit in bucket omega" in empty
    assert page.count("<polyline") == 2 * 3  # two charts, three model versions
    assert "churn@v3 — 2 requests" in page and "&lt;b&gt;x&lt;/b&gt;@v1" in page


def test_om_ui_refuses_a_public_host_without_a_token(cli, tmp_path):
    result = cli("ui", "--host", "0.0.0.0", "--no-browser", env={"OMFS_ROOT": str(tmp_path)})
    assert result.code != 0
    assert "without a token" in result.stderr and "Traceback" not in result.stderr
