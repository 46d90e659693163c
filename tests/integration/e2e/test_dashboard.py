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
QUEUED_APP = "tests.integration.e2e.queued_handlers:registry"  # queues "default" and "emails"


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


def queue_states(stack: Stack, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``GET /queues``, by name."""
    response = httpx.get(f"{stack.base_url}/queues", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return {queue["name"]: queue for queue in response.json()["items"]}


def submit(stack: Stack, headers: dict[str, str], **task: Any) -> None:
    response = httpx.post(f"{stack.base_url}/tasks/", json=task, headers=headers, timeout=10)
    assert response.status_code == 201, response.text


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
            # the registry's one queue, in the Queues panel an admin sees
            expect(page.locator("#queues tbody tr")).to_have_count(1)
            expect(page.locator('#queues tr[data-queue="default"] .state')).to_have_text("running")
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


@pytest.mark.timeout(180)
def test_an_admin_pauses_and_resumes_a_queue_on_the_dashboard_and_others_see_no_queues(
    stack: Stack, tmp_path: Path
) -> None:
    sync_playwright = require_browser()
    from playwright.sync_api import Route, expect

    env = {"TASKCORE_AUTH": "jwt", "TASKCORE_JWT_SECRET": SECRET, "TASKCORE_APP": QUEUED_APP}
    stack.start_api(**env)
    base = stack.base_url
    admin_token = token("ops", ADMIN)
    admin = bearer(admin_token)
    out = artifacts(tmp_path)
    # No worker yet: these wait, three due on "default", two due in ten minutes on "emails".
    for _ in range(3):
        submit(stack, admin, type="plain", input_data=0.01)
    for _ in range(2):
        submit(stack, admin, type="mail", input_data=0.01, delay_s=600)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            panel = page.locator("#queues-panel")
            rows = page.locator("#queues tbody tr")
            status = page.locator("#status")

            page.goto(f"{base}/dashboard")
            expect(status).to_contain_text("not signed in", timeout=WAIT_MS)
            expect(panel).to_be_hidden()

            # Without tasks:admin: its own numbers, no Queues panel, and no error about it.
            mark = len(requested)
            page.fill("#token", token("bob", "tasks:read tasks:write"))
            page.click("#use-token")
            expect(page.locator("#scope")).to_have_text("tasks of bob", timeout=WAIT_MS)
            expect(status).to_contain_text("updated")
            since = time.monotonic()
            while requested[mark:].count(f"{base}/stats") < 3:  # two more polls
                assert time.monotonic() - since < 20, requested[mark:]
                page.wait_for_timeout(100)
            expect(status).to_have_class("ok")
            expect(panel).to_be_hidden()
            expect(rows).to_have_count(0)
            # its 403 was the answer for this token: the polls stopped asking
            assert requested[mark:].count(f"{base}/queues") == 1, requested[mark:]

            # An admin sees every queue of the registry, with the counts GET /queues gives.
            page.fill("#token", admin_token)
            page.click("#use-token")
            expect(page.locator("#scope")).to_have_text("all tasks", timeout=WAIT_MS)
            expect(panel).to_be_visible()
            expect(rows).to_have_count(2)
            assert [row.get_attribute("data-queue") for row in rows.all()] == ["default", "emails"]
            default = page.locator('#queues tr[data-queue="default"]')
            emails = page.locator('#queues tr[data-queue="emails"]')
            # queue, state, waiting, running, scheduled, ready at the broker, dead letters, button
            expect(default.locator("th, td")).to_have_text(
                ["default", "running", "3", "0", "0", "3", "0", "Pause"], timeout=WAIT_MS
            )
            expect(emails.locator("th, td")).to_have_text(
                ["emails", "running", "0", "0", "2", "0", "0", "Pause"]
            )
            listed = queue_states(stack, admin)
            for name, row in (("default", default), ("emails", emails)):
                q = listed[name]
                shown = [str(q[key]) for key in ("waiting", "running", "scheduled", "ready", "dead_letters")]
                assert row.locator("td").all_inner_texts()[1:6] == shown, (name, q)

            # Pause: the button is disabled while its request runs (held here), then the row says paused.
            held: list[Route] = []
            page.route("**/queues/emails/pause", lambda route: held.append(route))
            button = emails.locator("button")
            expect(button).to_have_attribute("aria-label", "Pause queue emails")
            page.get_by_role("button", name="Pause queue emails").click()
            since = time.monotonic()
            while not held:
                assert time.monotonic() - since < 10, "the pause request was never sent"
                page.wait_for_timeout(20)
            expect(button).to_be_disabled()
            assert queue_states(stack, admin)["emails"]["paused"] is False
            held[0].continue_()
            page.unroute("**/queues/emails/pause")
            expect(emails.locator(".state")).to_have_text("paused")
            expect(page.locator("#notice")).to_have_text("queue emails paused")
            expect(page.locator("#notice")).to_have_class("ok")
            expect(button).to_have_text("Resume")
            expect(button).to_have_attribute("aria-label", "Resume queue emails")
            expect(button).to_be_enabled()
            expect(default.locator(".state")).to_have_text("running")
            listed = queue_states(stack, admin)
            assert (listed["emails"]["paused"], listed["default"]["paused"]) == (True, False)

            # A worker runs "default" dry; a mail due now waits in the paused queue, and the polls show it.
            stack.start_worker(**env)
            submit(stack, admin, type="mail", input_data=0.01)
            expect(default.locator("th, td")).to_have_text(
                ["default", "running", "0", "0", "0", "0", "0", "Pause"], timeout=WAIT_MS
            )
            expect(page.locator("#count-COMPLETED")).to_have_text("3", timeout=WAIT_MS)
            expect(emails.locator("th, td")).to_have_text(
                ["emails", "paused", "1", "0", "2", "1", "0", "Resume"], timeout=WAIT_MS
            )
            page.screenshot(path=str(out / "dashboard-queue-paused.png"), full_page=True)

            # Resume: the row runs again, and so does the mail that waited.
            page.get_by_role("button", name="Resume queue emails").click()
            expect(emails.locator(".state")).to_have_text("running")
            expect(page.locator("#notice")).to_have_text("queue emails resumed")
            expect(button).to_have_text("Pause")
            assert queue_states(stack, admin)["emails"]["paused"] is False
            expect(page.locator("#count-COMPLETED")).to_have_text("4", timeout=WAIT_MS)
            expect(emails.locator("th, td")).to_have_text(
                ["emails", "running", "0", "0", "2", "0", "0", "Pause"], timeout=WAIT_MS
            )

            # Forgetting the token takes the queues off the page.
            page.click("#forget-token")
            expect(status).to_contain_text("not signed in", timeout=WAIT_MS)
            expect(panel).to_be_hidden()
            expect(rows).to_have_count(0)

            assert errors == []
            assert all(url.startswith((f"{base}/", "data:")) for url in requested), requested
        finally:
            browser.close()
