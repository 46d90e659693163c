"""Opaque cursors of listings and bulk actions: the keyset position, base64url-encoded.

Clients treat the string as opaque; a tampered or stale-format cursor is a
422, never a 500.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

import msgspec

from taskcore.errors import InvalidInput
from taskcore.model.task import Task


class _Position(msgspec.Struct, array_like=True, frozen=True):
    created_at: datetime
    id: int


def encode_cursor(task: Task) -> str:
    return encode_position(task.created_at, task.id)


def encode_position(created_at: datetime, task_id: int) -> str:
    raw = msgspec.json.encode(_Position(created_at, task_id))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = msgspec.json.decode(raw, type=_Position)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidInput("cursor is not one this API issued") from exc
    if position.created_at.tzinfo is None:
        raise InvalidInput("cursor is not one this API issued")
    return position.created_at, position.id
