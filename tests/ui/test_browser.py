"""``om ui`` end to end in a real headless browser: Playwright driving Debian's Chromium.

Screenshots of every page land in ``test-artifacts/ui/`` (gitignored; ``$OMFS_TEST_ARTIFACTS``
moves it). Without ``/usr/bin/chromium`` the tests skip, except under ``CI=true``, where
they fail: ``nox -s tests`` installs it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing: nox -s tests installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("OMFS_TEST_ARTIFACTS", "test-artifacts")) / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, ui_url):
    context = browser.new_context(base_url=ui_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()


def test_list_model_history_then_rollback_with_confirmation(page, ui_om, shots):
    page.goto("/")
    page.screenshot(path=shots / "home.png", full_page=True)
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Models").click()
    page.screenshot(path=shots / "models.png", full_page=True)
    page.get_by_role("link", name="churn").click()
    history = page.locator("ol.timeline li").first
    assert re.search(r"moved prod from v2 to v3", history.inner_text())
    assert "AUC 0.91" in history.inner_text()
    page.screenshot(path=shots / "model.png", full_page=True)
    page.get_by_role("link", name="Roll back prod…").click()
    assert "a rollback moves it back to v2" in page.locator(".plan").inner_text()
    page.screenshot(path=shots / "confirm-rollback.png", full_page=True)
    page.get_by_label("Reason").fill("v3 misses the EU customers")
    page.get_by_role("button", name="Roll back").click()
    page.wait_for_url(re.compile(r"/models/churn\?done="))
    assert "prod rolled back to v2" in page.get_by_role("status").inner_text()
    assert ui_om.models.tags("churn")["prod"] == 2
    last = ui_om.models.tag_history("churn", "prod")[-1]
    assert (last["version"], last["reason"]) == (2, "v3 misses the EU customers")
    assert last["user"]


def test_promote_shows_the_dry_run_first(page, ui_om, shots):
    page.goto("/models/churn")
    form = page.locator("form", has=page.get_by_role("button", name="Preview promotion…"))
    form.get_by_label("version").select_option("3")
    form.get_by_label("bucket").fill("prod")
    form.get_by_role("button", name="Preview promotion…").click()
    plan = page.locator("dl.plan").inner_text()
    assert "churn v3" in plan and "1 file(s)" in plan
    assert "prod" not in ui_om.buckets  # a preview writes nothing
    page.screenshot(path=shots / "confirm-promote.png", full_page=True)
    page.get_by_label("Then tag the copy").fill("live")
    page.get_by_label("Reason").fill("reviewed")
    page.get_by_role("button", name="Promote").click()
    page.wait_for_url(re.compile(r"done="))
    copy = ui_om["prod"].models
    assert copy.tags("churn") == {"live": 1}
    assert copy.metadata("churn").lineage["promoted_from"]["version"] == 3
    assert copy.tag_history("churn", "live")[-1]["reason"] == "reviewed"


def test_filter_a_dataset_preview(page, shots):
    page.goto("/datasets")
    page.screenshot(path=shots / "datasets.png", full_page=True)
    page.get_by_role("link", name="sales").click()
    assert page.locator("table.data tbody tr").count() == 3
    page.get_by_label("where").fill("qty>10")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_function("document.querySelectorAll('table.data tbody tr').length === 2")
    assert page.locator("table.data tbody tr td:first-child").all_inner_texts() == ["20", "30"]
    page.screenshot(path=shots / "dataset.png", full_page=True)


def test_html_in_storage_renders_as_text(page):
    page.goto("/models/churn")
    assert "<script>alert('x')</script>" in page.locator("dl.attrs").inner_text()
    page.goto("/datasets/sales")
    assert page.get_by_role("cell", name="<script>alert('x')</script>").count() == 1
    assert page.dialogs == []


def test_a_post_without_csrf_is_refused(page, ui_om):
    page.goto("/models/churn")  # the browser holds the session's CSRF cookie
    before = ui_om.models.tags("churn")
    answer = page.request.post(
        "/act/models/tag", form={"name": "churn", "tag": "prod", "version": "1"}
    )
    assert answer.status == 403
    assert ui_om.models.tags("churn") == before


def test_every_other_page_and_the_keyboard(page, shots):
    for path in ("/environments", "/jobs", "/runtime", "/serving"):
        page.goto(path)
        assert page.locator("h1").count() == 1
        page.screenshot(path=shots / f"{path.strip('/')}.png", full_page=True)
    page.set_viewport_size({"width": 420, "height": 800})
    page.goto("/models/churn")
    page.screenshot(path=shots / "model-narrow.png", full_page=True)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "om ui"
