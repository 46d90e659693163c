"""The dashboard in a real browser against a real stack (api + worker processes).

Headless Chromium from Debian (``apt-get install chromium``), driven by
Playwright for Python with ``executable_path``: Playwright's own browser
download is never used. Without Chromium the test skips, or fails when
``TASKCORE_TEST_REQUIRE_SERVICES=1`` (CI).

Screenshots go to ``TASKCORE_TEST_ARTIFACTS`` when set (else the test's tmp
directory); ``docs/dashboard.png`` (the README's) is written when it is
missing or when ``TASKCORE_UPDATE_DOCS_SCREENSHOT=1``, so a test run does not
rewrite a tracked file every time.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from .conftest import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[3]
CHROMIUM = os.environ.get("TASKCORE_TEST_CHROMIUM", "/usr/bin/chromium")
# As root, in a sandbox with no network but the registries: no sandbox, and no
# background connections (each would be refused, noisily).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECRET = "an-integration-secret-that-is-long-enough!"
ADMIN = "tasks:read tasks:write tasks:admin"
WAIT_MS = 25_000


def token(sub: str, scope: str) -> str:
    return jwt.encode({"sub": sub, "scope": scope, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def require_browser() -> Any:
    """Playwright's sync API, or a skip (a failure in CI) saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing = f"playwright is not installed ({exc}): make install"
    else:
        if os.access(CHROMIUM, os.X_OK):
            return sync_playwright
        missing = f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
    if os.environ.get("TASKCORE_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(missing)
    pytest.skip(missing)


def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TASKCORE_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def counts(stack: Stack, headers: dict[str, str]) -> dict[str, Any]:
    response = httpx.get(f"{stack.base_url}/stats", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.timeout(180)
def test_the_dashboard_shows_the_system_and_retries_a_failure(stack: Stack, tmp_path: Path) -> None:
    sync_playwright = require_browser()
    from playwright.sync_api import expect

    faults = tmp_path / "faults"
    faults.mkdir()
    env = {
        "TASKCORE_AUTH": "jwt",
        "TASKCORE_JWT_SECRET": SECRET,
        "TASKCORE_APP": "tests.integration.faults.handlers:registry",
        "TASKCORE_FAULT_DIR": str(faults),
    }
    stack.start_api(**env)
    stack.start_worker(**env)
    base = stack.base_url
    admin = token("ops", ADMIN)
    out = artifacts(tmp_path)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))

            page.goto(f"{base}/dashboard")
            # the page is public, its data is not: it asks for a token
            expect(page.locator("#status")).to_contain_text("not signed in", timeout=WAIT_MS)
            page.fill("#token", admin)
            page.click("#use-token")
            expect(page.locator("#scope")).to_have_text("all tasks", timeout=WAIT_MS)
            expect(page.locator("#status")).to_contain_text("updated")
            assert page.evaluate("sessionStorage.getItem('taskcore.token')") == admin
            assert page.evaluate("localStorage.length") == 0

            # submit through the page's form; it runs and is counted
            page.fill("#submit-type", "reverse")
            page.fill("#submit-input", '"dashboard"')
            page.click("#submit-button")
            expect(page.locator("#submit-result")).to_contain_text("submitted #", timeout=WAIT_MS)
            expect(page.locator("#count-COMPLETED")).to_have_text("1", timeout=WAIT_MS)

            # some more traffic for the charts, and a task that fails all three attempts
            for n in range(5):
                task = {"input_data": f"task {n}"}
                assert httpx.post(f"{base}/tasks/", json=task, headers=bearer(admin)).status_code == 201
            flaky = {"type": "flaky", "input_data": {"key": "dashboard", "failures": 3}}
            created = httpx.post(f"{base}/tasks/", json=flaky, headers=bearer(admin))
            assert created.status_code == 201, created.text
            failed_id = created.json()["id"]

            failure = page.locator(f'#failures tr[data-task-id="{failed_id}"]')
            expect(failure).to_contain_text("planned failure of dashboard", timeout=WAIT_MS)
            expect(failure).to_contain_text("3/3")
            expect(page.locator("#count-COMPLETED")).to_have_text("6", timeout=WAIT_MS)
            expect(page.locator("#count-FAILED")).to_have_text("1")
            worker = page.locator("#workers tbody tr")
            expect(worker).to_have_count(1)
            # 6 completed + 3 failed attempts, once the worker's next report is in
            expect(worker.locator("td").nth(4)).to_have_text("9", timeout=WAIT_MS)
            expect(page.locator("#queue-ready")).to_have_text("0")
            expect(page.locator("#throughput-chart rect.bar.completed")).not_to_have_count(0)
            expect(page.locator("#latency-chart circle.dot")).not_to_have_count(0)
            page.wait_for_timeout(300)  # let the charts settle for the picture
            page.screenshot(path=str(out / "dashboard.png"), full_page=True)
            docs = ROOT / "docs" / "dashboard.png"
            if not docs.exists() or os.environ.get("TASKCORE_UPDATE_DOCS_SCREENSHOT") == "1":
                docs.parent.mkdir(exist_ok=True)
                shutil.copyfile(out / "dashboard.png", docs)

            # the button retries it; the fourth run succeeds
            failure.locator("button.retry").click()
            expect(page.locator("#notice")).to_contain_text(f"task #{failed_id} retried")
            expect(page.locator("#count-COMPLETED")).to_have_text("7", timeout=WAIT_MS)
            expect(page.locator("#count-FAILED")).to_have_text("0")
            expect(failure).to_have_count(0)
            page.screenshot(path=str(out / "dashboard-retried.png"), full_page=True)

            assert errors == []
            # everything the page loaded came from the API itself
            assert requested
            assert all(url.startswith((f"{base}/", "data:")) for url in requested), requested
        finally:
            browser.close()

    assert httpx.get(f"{base}/tasks/{failed_id}", headers=bearer(admin)).json()["result"] == "ok dashboard"
    # another caller's dashboard counts only its own tasks and sees no system numbers
    theirs = counts(stack, bearer(token("bob", "tasks:read")))
    assert set(theirs["counts"].values()) == {0}
    assert (theirs["owner"], theirs["queue"], theirs["workers"], theirs["failures"]) == (
        "bob",
        None,
        None,
        [],
    )
