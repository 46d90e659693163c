"""The adapter's SQL, read from ``queries.sql`` once at import.

Keeping statements in a file lets them be read, reviewed and EXPLAINed as SQL.
psycopg wants ``LiteralString`` so that a query cannot be built from user data;
these come from our own package file, so the loader vouches for them with a cast.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import LiteralString, cast

_NAME = re.compile(r"^-- name: ([a-z0-9_]+)[ \t]*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, LiteralString]:
    """Split ``text`` at ``-- name: <key>`` lines; what precedes the first name is the file's header."""
    parts = _NAME.split(text)
    queries: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = _trusted(body.strip())
    return queries


def read_sql(resource: str) -> LiteralString:
    """A SQL file shipped in this package, e.g. ``schema.sql`` or ``migrations/0001_create_tasks.sql``."""
    return _trusted(files("taskcore.adapters.postgres").joinpath(resource).read_text(encoding="utf-8"))


def _trusted(text: object) -> LiteralString:
    """Vouch for SQL from our own files. (Typed from ``object`` because mypy
    treats ``LiteralString`` as ``str`` and would call a cast from ``str``
    redundant, while pyright needs it.)"""
    return cast(LiteralString, text)


queries: dict[str, LiteralString] = parse_queries(read_sql("queries.sql"))
