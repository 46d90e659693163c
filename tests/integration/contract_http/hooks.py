"""Schemathesis hooks for the contract run, loaded through its config file.

An ``Idempotency-Key`` ties requests together: the same key with a different
body is a documented 422, which no single request's schema can express.
Schemathesis draws header values from a small pool, so generated submits
would reuse keys by chance and report that 422 as a valid request refused.
Each request's key is made unique here, keeping it schema-valid (1 to 255
characters); what reusing a key does is tested in ``e2e/test_idempotency.py``.

A NUL character in a submitted string (the input, a unique key) is a
documented 422: PostgreSQL text and jsonb cannot hold it, which no JSON
Schema of "any input" can say. Generated submits get a space in its place,
the same length, so a case stays as valid or invalid as it was; the 422
itself is tested in ``unit/test_http.py``.
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis

_numbers = itertools.count()


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", " ")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, **kwargs: Any) -> None:
    if case.method.upper() == "POST" and case.path.rstrip("/") == "/tasks":
        case.body = _without_nul(case.body)
    headers = case.headers or {}
    for name, value in headers.items():
        if name.lower() == "idempotency-key" and isinstance(value, str) and 1 <= len(value) <= 255:
            suffix = f".{next(_numbers)}"
            headers[name] = value[: 255 - len(suffix)] + suffix
