"""``taskcore verify URL``: the end-to-end check of a running stack.

Submits a ``reverse`` task over HTTP, waits for it, checks the result and
prints the timings. Standard library only, so it runs from any image.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any


class VerificationFailed(Exception):
    pass


@dataclass(frozen=True)
class Timings:
    task_id: int
    submit_s: float
    complete_s: float
    polls: int


def _request(
    method: str, url: str, body: dict[str, Any] | None, timeout_s: float, token: str | None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise VerificationFailed(f"{method} {url}: {exc}") from exc


def verify(
    base_url: str,
    *,
    timeout_s: float = 30.0,
    poll_s: float = 0.1,
    text: str | None = None,
    token: str | None = None,
) -> Timings:
    base = base_url.rstrip("/")
    text = text or f"taskcore-verify-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    status, created = _request("POST", f"{base}/tasks/", {"input_data": text}, timeout_s, token)
    submit_s = time.perf_counter() - started
    if status != 201 or not isinstance(created, dict) or created.get("status") != "PENDING":
        raise VerificationFailed(f"POST /tasks/ answered {status}: {created}")
    task_id = int(created["id"])
    polls = 0
    while True:
        polls += 1
        status, task = _request("GET", f"{base}/tasks/{task_id}", None, timeout_s, token)
        if status != 200 or not isinstance(task, dict):
            raise VerificationFailed(f"GET /tasks/{task_id} answered {status}: {task}")
        if task["status"] in ("FAILED", "CANCELLED"):
            raise VerificationFailed(f"task {task_id} ended {task['status']}: {task.get('error')}")
        if task["status"] == "COMPLETED":
            break
        if time.perf_counter() - started > timeout_s:
            raise VerificationFailed(f"task {task_id} still {task['status']} after {timeout_s:g} s")
        time.sleep(poll_s)
    if task["result"] != text[::-1]:
        raise VerificationFailed(f"task {task_id}: expected {text[::-1]!r}, got {task['result']!r}")
    return Timings(task_id=task_id, submit_s=submit_s, complete_s=time.perf_counter() - started, polls=polls)
