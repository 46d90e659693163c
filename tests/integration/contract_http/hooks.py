"""Schemathesis hooks for the contract run, loaded through its config file.

An ``Idempotency-Key`` ties requests together: the same key with a different
body is a documented 422, which no single request's schema can express.
Schemathesis draws header values from a small pool, so generated submits
would reuse keys by chance and report that 422 as a valid request refused.
Each request's key is made unique here, keeping it schema-valid (1 to 255
characters); what reusing a key does is tested in ``e2e/test_idempotency.py``.
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis

_numbers = itertools.count()


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, **kwargs: Any) -> None:
    headers = case.headers or {}
    for name, value in headers.items():
        if name.lower() == "idempotency-key" and isinstance(value, str) and 1 <= len(value) <= 255:
            suffix = f".{next(_numbers)}"
            headers[name] = value[: 255 - len(suffix)] + suffix
