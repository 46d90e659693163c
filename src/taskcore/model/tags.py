"""Tags and metadata: what a client attaches to a task to find it again and to know what it is for.

``tags`` are short labels (``customer:42``, ``nightly``) a listing filters on
(``TaskQuery.tags``: a task must have them all); ``metadata`` is a small JSON
object the service stores and returns but never reads. Both are given at
submit and never change afterwards, so a retry or a re-dispatch keeps them.

Tags are limited to a charset that needs no quoting in a URL query, a
PostgreSQL array literal or a log line, and both are bounded so that a
listing's index and every cached task stay small.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from taskcore.errors import InvalidInput

MAX_TAGS = 16
MAX_TAG_LENGTH = 64
TAG_CHARSET = "letters, digits and - _ . : / ="
TAG_PATTERN = r"^[A-Za-z0-9_.:/=-]+$"
MAX_METADATA_BYTES = 4096  # encoded as compact JSON

_TAG = re.compile(TAG_PATTERN)  # fullmatch: a "$" alone lets a trailing newline through


def check_tag(tag: object) -> str:
    """``tag`` if it can be a tag (1 to 64 of ``TAG_CHARSET``), else ``InvalidInput``."""
    if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LENGTH or not _TAG.fullmatch(tag):
        raise InvalidInput(
            f"a tag is 1 to {MAX_TAG_LENGTH} characters of {TAG_CHARSET}, got {tag!r:.80}", tag=tag
        )
    return tag


def check_tags(tags: Iterable[object]) -> tuple[str, ...]:
    """``tags`` checked one by one, repeats dropped (the first kept, order
    kept); ``InvalidInput`` for a bad one or more than 16 distinct ones."""
    if isinstance(tags, str):  # one tag given as the list: its letters would pass
        raise InvalidInput(f"tags must be a list of strings, got the string {tags!r:.80}")
    kept = tuple(dict.fromkeys(check_tag(tag) for tag in tags))
    if len(kept) > MAX_TAGS:
        raise InvalidInput(f"a task has at most {MAX_TAGS} tags, got {len(kept)}", tags=len(kept))
    return kept


def check_metadata(metadata: object) -> dict[str, Any]:
    """``metadata`` if it is a JSON object of at most 4 KiB (compact JSON),
    else ``InvalidInput``; ``None`` is the empty object."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(key, str) for key in metadata):
        raise InvalidInput(f"metadata must be a JSON object, got {type(metadata).__name__}")
    try:
        size = len(msgspec.json.encode(metadata))
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidInput(f"metadata must be JSON: {exc}") from exc
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(
            f"metadata is at most {MAX_METADATA_BYTES} bytes of JSON, got {size}", metadata_bytes=size
        )
    return dict(metadata)


def merged(
    tags: Iterable[str], metadata: Mapping[str, Any], more_tags: Iterable[str], more: Mapping[str, Any]
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """A workflow's tags and metadata with a step's own (``more_``): the
    workflow's tags then the step's, and the step's metadata keys over the
    workflow's; checked as one task's."""
    return check_tags([*tags, *more_tags]), check_metadata({**metadata, **more})
