"""The dashboard's task browser in a real browser against a real stack (api + worker processes).

Headless Chromium from Debian driven by Playwright, as test_dashboard.py
does. Tasks of several types and queues and two owners are submitted through
the API; the table is filtered and paged, task pages show input, result,
error, timeline, progress and workflow neighbours, and their buttons cancel
a delayed task and re-queue a failed one. The screenshot goes to
``TASKCORE_TEST_ARTIFACTS`` (``docs/dashboard-task.png``, the README's, when
it is missing or with ``TASKCORE_UPDATE_DOCS_SCREENSHOT=1``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Stack
from .test_dashboard import (
    ADMIN,
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    SECRET,
    WAIT_MS,
    artifacts,
    bearer,
    require_browser,
    token,
)

pytestmark = pytest.mark.integration

APP = "tests.integration.e2e.browser_handlers:registry"
XSS = "<img src=x onerror=window.__xss=1><script>window.__xss=2</script>"


def post(stack: Stack, path: str, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{stack.base_url}{path}", json=body, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def listed(stack: Stack, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{stack.base_url}/tasks", params=params, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def wait_for(stack: Stack, headers: dict[str, str], task_id: int, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        response = httpx.get(f"{stack.base_url}/tasks/{task_id}", headers=headers, timeout=10)
        task: dict[str, Any] = response.json()
        if task["status"] in statuses:
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.05)


@pytest.mark.timeout(300)
def test_the_task_browser_filters_pages_shows_and_acts_on_tasks(stack: Stack, tmp_path: Path) -> None:
    sync_playwright = require_browser()
    from playwright.sync_api import Route, expect

    gates = tmp_path / "gates"
    gates.mkdir()
    env = {"TASKCORE_AUTH": "jwt", "TASKCORE_JWT_SECRET": SECRET, "TASKCORE_APP": APP}
    stack.start_api(**env)
    stack.start_worker(**env)
    base = stack.base_url
    admin_token = token("ops", ADMIN)
    admin = bearer(admin_token)
    bob = bearer(token("bob", "tasks:read tasks:write"))
    out = artifacts(tmp_path)
    gate = {"dir": str(gates), "name": "the importer"}

    echoes = [post(stack, "/tasks/", admin, {"type": "echo", "input_data": {"n": n}})["id"] for n in range(6)]
    mails = [post(stack, "/tasks/", admin, {"type": "mail", "input_data": {"to": n}})["id"] for n in range(3)]
    bobs = [post(stack, "/tasks/", bob, {"type": "echo", "input_data": f"bob {n}"})["id"] for n in range(2)]
    xss = post(stack, "/tasks/", admin, {"type": "echo", "input_data": {"html": XSS}})["id"]
    delayed = post(stack, "/tasks/", admin, {"type": "echo", "input_data": "later", "delay_s": 3600})["id"]
    broken = post(stack, "/tasks/", admin, {"type": "broken", "input_data": gate})["id"]
    running = post(stack, "/tasks/", admin, {"type": "halfway", "input_data": gate})["id"]
    workflow = post(
        stack,
        "/workflows/",
        admin,
        {
            "name": "report",
            "steps": [
                {"name": "extract", "type": "echo", "input_data": "raw"},
                {"name": "publish", "type": "mail", "input_data": "ready", "after": ["extract"]},
            ],
        },
    )
    extract, publish = (step["id"] for step in workflow["steps"])
    for task_id in [*echoes, *mails, *bobs, xss, extract, publish]:
        wait_for(stack, admin, task_id, "COMPLETED")
    wait_for(stack, admin, broken, "FAILED")
    total = len(listed(stack, admin, limit=500)["items"])
    assert total == 17

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            rows = page.locator("#tasks tbody tr")

            def ids() -> list[int]:
                return [int(row.get_attribute("data-task-id") or 0) for row in rows.all()]

            # Straight to the browser by its link, before any token: the problem is shown.
            page.goto(f"{base}/dashboard#/tasks")
            expect(page.locator("#view-tasks")).to_be_visible()
            expect(page.locator("#view-overview")).to_be_hidden()
            expect(page.locator("#tasks-problem")).to_contain_text("401", timeout=WAIT_MS)
            expect(page.locator("#tasks-problem")).to_contain_text("Paste a token")
            page.fill("#token", admin_token)
            page.click("#use-token")
            expect(page.locator("#tasks-problem")).to_be_hidden(timeout=WAIT_MS)
            expect(page.locator("#filter-owner-label")).to_be_visible(timeout=WAIT_MS)  # an admin's
            expect(rows).to_have_count(17, timeout=WAIT_MS)
            assert ids() == [task["id"] for task in listed(stack, admin, limit=25)["items"]]
            expect(page.locator("#page-next")).to_be_disabled()
            expect(page.locator("#page-number")).to_have_text("page 1")

            # Loading: shown while the answer is on its way (held here).
            held: list[Route] = []
            page.route("**/tasks?*", lambda route: held.append(route))
            page.click("#tasks-refresh")
            since = time.monotonic()
            while not held:
                assert time.monotonic() - since < 10, "the listing was never asked for"
                page.wait_for_timeout(20)
            expect(page.locator("#tasks-loading")).to_be_visible()
            held[0].continue_()
            page.unroute("**/tasks?*")
            expect(page.locator("#tasks-loading")).to_be_hidden(timeout=WAIT_MS)

            # Filters: type, queue, status, owner; each one is in the address (a reload keeps it).
            page.fill("#filter-type", "mail")
            page.click("#filter-apply")
            expect(rows).to_have_count(4, timeout=WAIT_MS)  # three mails and the workflow's publish
            assert set(ids()) == {*mails, publish}
            assert "type=mail" in page.url
            page.fill("#filter-type", "")
            page.fill("#filter-queue", "emails")
            page.click("#filter-apply")
            expect(rows).to_have_count(4, timeout=WAIT_MS)
            assert set(ids()) == {*mails, publish}
            page.fill("#filter-queue", "")
            page.select_option("#filter-status", "FAILED")
            page.click("#filter-apply")
            expect(rows).to_have_count(1, timeout=WAIT_MS)
            assert ids() == [broken]
            expect(rows.first).to_contain_text("the importer is broken")
            page.select_option("#filter-status", "")
            page.fill("#filter-owner", "bob")
            page.click("#filter-apply")
            expect(rows).to_have_count(2, timeout=WAIT_MS)
            assert ids() == bobs[::-1]
            page.reload()
            expect(rows).to_have_count(2, timeout=WAIT_MS)
            expect(page.locator("#filter-owner")).to_have_value("bob")
            page.click("#filter-clear")
            expect(rows).to_have_count(17, timeout=WAIT_MS)

            # The tag filter is sent as tag=; the page shows what the API answers for it (an API
            # without tags ignores the parameter and lists everything: the same either way).
            page.fill("#filter-tag", "no-such-tag")
            page.click("#filter-apply")
            expected = len(listed(stack, admin, tag="no-such-tag", limit=25)["items"])
            expect(rows).to_have_count(expected, timeout=WAIT_MS)
            assert any("tag=no-such-tag" in url for url in requested)
            page.fill("#filter-tag", "")

            # An empty answer, said as such.
            page.fill("#filter-type", "no-such-type")
            page.click("#filter-apply")
            expect(page.locator("#tasks-empty")).to_be_visible(timeout=WAIT_MS)
            expect(rows).to_have_count(0)
            page.fill("#filter-type", "")

            # Keyset pages of 5: forward to the end, then back, the same tasks as the API's pages.
            page.select_option("#filter-limit", "5")
            page.click("#filter-apply")
            expect(rows).to_have_count(5, timeout=WAIT_MS)
            pages = []
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 5} | ({"cursor": cursor} if cursor else {})
                answer = listed(stack, admin, **params)
                pages.append([task["id"] for task in answer["items"]])
                cursor = answer["next_cursor"]
                if cursor is None:
                    break
            assert [len(p) for p in pages] == [5, 5, 5, 2]
            for number, expected_ids in enumerate(pages, start=1):
                expect(page.locator("#page-number")).to_have_text(f"page {number}", timeout=WAIT_MS)
                expect(rows).to_have_count(len(expected_ids), timeout=WAIT_MS)
                assert ids() == expected_ids
                if number < len(pages):
                    page.click("#page-next")
            expect(page.locator("#page-next")).to_be_disabled()
            page.click("#page-prev")
            expect(page.locator("#page-number")).to_have_text("page 3", timeout=WAIT_MS)
            expect(rows.first).to_have_attribute("data-task-id", str(pages[2][0]))
            page.click("#page-first")
            expect(page.locator("#page-number")).to_have_text("page 1", timeout=WAIT_MS)
            expect(rows.first).to_have_attribute("data-task-id", str(pages[0][0]))
            page.screenshot(path=str(out / "dashboard-tasks.png"), full_page=True)

            # A stale or forged cursor: the API's problem, shown to the user.
            page.goto(f"{base}/dashboard#/tasks?cursor=forged")
            problem = page.locator("#tasks-problem")
            expect(problem).to_contain_text("422", timeout=WAIT_MS)
            expect(problem).to_contain_text("cursor is not one this API issued")

            # A task page, opened from the table: input and result as text (never markup), a timeline.
            page.goto(f"{base}/dashboard#/tasks")
            page.locator(f'#tasks tr[data-task-id="{xss}"] a').click()
            expect(page.locator("#task-id")).to_have_text(f"#{xss}", timeout=WAIT_MS)
            assert page.url.endswith(f"#/tasks/{xss}")
            expect(page.locator("#task-input")).to_contain_text(XSS)
            expect(page.locator("#task-outcome")).to_contain_text(XSS)
            expect(page.locator("#task-status")).to_have_text("COMPLETED")
            assert page.locator("#view-task img").count() == 0
            assert page.evaluate("window.__xss") is None
            timeline = page.locator("#task-timeline li")
            expect(timeline).to_have_count(4)
            assert [li.get_attribute("data-kind") for li in timeline.all()] == [
                "created",
                "claimed",
                "ended completed",
                "verdict completed",
            ]
            expect(page.locator('#task-facts dd[data-fact="owner"]')).to_have_text("ops")
            expect(page.locator("#task-cancel")).to_be_disabled()
            expect(page.locator("#task-retry")).to_be_disabled()
            page.reload()  # a deep link: the same page after a reload
            expect(page.locator("#task-id")).to_have_text(f"#{xss}", timeout=WAIT_MS)
            expect(page.locator("#task-input")).to_contain_text(XSS)

            # Progress of a running task, live, and then its end.
            page.goto(f"{base}/dashboard#/tasks/{running}")
            expect(page.locator("#task-status")).to_have_text("PROCESSING", timeout=WAIT_MS)
            expect(page.locator("#task-progress-text")).to_have_text(
                "50% · half way through the importer", timeout=WAIT_MS
            )
            assert page.locator("#task-progress").evaluate("bar => bar.value") == 0.5
            expect(page.locator("#task-timeline li").last).to_have_text("running now")
            (gates / "go").touch()
            expect(page.locator("#task-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
            expect(page.locator("#task-progress-text")).to_contain_text("100%")
            expect(page.locator("#task-outcome")).to_have_text('"the importer done"')

            # Cancel a delayed task from its page.
            page.goto(f"{base}/dashboard#/tasks/{delayed}")
            expect(page.locator("#task-status")).to_have_text("PENDING", timeout=WAIT_MS)
            expect(page.locator("#task-timeline li").last).to_contain_text("waiting: due")
            expect(page.locator("#task-retry")).to_be_disabled()
            page.click("#task-cancel")
            expect(page.locator("#task-action")).to_have_text("Cancel: now CANCELLED", timeout=WAIT_MS)
            expect(page.locator("#task-status")).to_have_text("CANCELLED", timeout=WAIT_MS)
            expect(page.locator("#task-cancel")).to_be_disabled()
            assert wait_for(stack, admin, delayed, "CANCELLED")["attempts"] == 0

            # The failed one: its error, each failed attempt; fixed, then re-queued from its page.
            page.goto(f"{base}/dashboard#/tasks/{broken}")
            expect(page.locator("#task-status")).to_have_text("FAILED", timeout=WAIT_MS)
            expect(page.locator("#task-outcome-title")).to_have_text("Error")
            expect(page.locator("#task-outcome")).to_contain_text("the importer is broken")
            failed = page.locator("#task-timeline li.ended.failed")
            expect(failed).to_have_count(2)
            expect(failed.first).to_contain_text("attempt 1 failed")
            expect(failed.first).to_contain_text("RuntimeError: the importer is broken")
            (gates / "fixed").touch()
            page.click("#task-retry")
            expect(page.locator("#task-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
            expect(page.locator("#task-outcome")).to_have_text('"the importer fixed"')
            kinds = [li.get_attribute("data-kind") for li in page.locator("#task-timeline li").all()]
            assert kinds == [
                "created",
                "claimed",
                "ended failed",
                "claimed",
                "ended failed",
                "requeued",
                "claimed",
                "ended completed",
                "verdict completed",
            ], kinds

            # A workflow's neighbours, both ways.
            page.goto(f"{base}/dashboard#/tasks/{extract}")
            neighbours = page.locator("#task-neighbours tbody tr")
            expect(neighbours).to_have_count(2, timeout=WAIT_MS)
            expect(page.locator("#task-workflow-name")).to_contain_text("report")
            after_it = page.locator(f'#task-neighbours tr[data-task-id="{publish}"]')
            expect(after_it).to_have_attribute("data-relation", "runs after it")
            expect(after_it).to_contain_text("publish")
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / "dashboard-task.png"), full_page=True)
            after_it.locator("a").click()
            expect(page.locator("#task-id")).to_have_text(f"#{publish}", timeout=WAIT_MS)
            expect(page.locator(f'#task-neighbours tr[data-task-id="{extract}"]')).to_have_attribute(
                "data-relation", "runs before it", timeout=WAIT_MS
            )

            # The README's picture: the failed-then-re-queued task's page.
            page.goto(f"{base}/dashboard#/tasks/{broken}")
            expect(page.locator("#task-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / "dashboard-task-timeline.png"), full_page=True)
            docs = ROOT / "docs" / "dashboard-task.png"
            if not docs.exists() or os.environ.get("TASKCORE_UPDATE_DOCS_SCREENSHOT") == "1":
                shutil.copyfile(out / "dashboard-task-timeline.png", docs)

            # A task that is not there, or not this caller's: said so.
            page.goto(f"{base}/dashboard#/tasks/999999")
            expect(page.locator("#task-problem")).to_contain_text("Task #999999 not found", timeout=WAIT_MS)
            expect(page.locator("#task")).to_be_hidden()

            # Another caller: no owner filter, only its own tasks, another owner's page is not found.
            page.fill("#token", token("bob", "tasks:read tasks:write"))
            page.click("#use-token")
            page.goto(f"{base}/dashboard#/tasks")
            expect(rows).to_have_count(2, timeout=WAIT_MS)
            assert ids() == bobs[::-1]
            expect(page.locator("#filter-owner-label")).to_be_hidden()
            page.goto(f"{base}/dashboard#/tasks/{xss}")
            expect(page.locator("#task-problem")).to_contain_text(f"Task #{xss} not found", timeout=WAIT_MS)

            # The overview is one click away, and still works.
            page.click("#nav-overview")
            expect(page.locator("#view-overview")).to_be_visible()
            expect(page.locator("#scope")).to_have_text("tasks of bob", timeout=WAIT_MS)

            assert errors == []
            assert all(url.startswith((f"{base}/", "data:")) for url in requested), requested
        finally:
            browser.close()
