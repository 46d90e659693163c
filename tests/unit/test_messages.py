"""The wake-up wire format: one id, one suspect id, or several ids in one message."""

from __future__ import annotations

import pytest

from taskcore.model.messages import (
    MAX_WAKE_UPS,
    InvalidMessage,
    WakeUp,
    decode_wake_up,
    encode_task_message,
    encode_wake_ups,
    runs_alone,
    split_wake_ups,
)


def test_one_wake_up_round_trips() -> None:
    assert decode_wake_up(encode_task_message(42)) == WakeUp(42, False)
    assert decode_wake_up(encode_task_message(42, alone=True)) == WakeUp(42, True)
    assert runs_alone(b"42 alone")
    assert not runs_alone(b"42 43")


def test_several_wake_ups_split_into_one_body_per_id() -> None:
    body = encode_wake_ups([1, 22, 333])
    assert body == b"1 22 333"
    assert split_wake_ups(body) == [b"1", b"22", b"333"]
    assert [decode_wake_up(part).task_id for part in split_wake_ups(body) or []] == [1, 22, 333]


@pytest.mark.parametrize(
    "body",
    [b"42", b"42 alone", b"1 two 3", b"", b"1 -2", b"1 " + b"9" * 40, b" ".join([b"1"] * (MAX_WAKE_UPS + 1))],
)
def test_a_message_that_is_not_several_ids_is_handled_whole(body: bytes) -> None:
    assert split_wake_ups(body) is None


def test_a_batch_is_bounded() -> None:
    assert split_wake_ups(encode_wake_ups(list(range(1, MAX_WAKE_UPS + 1)))) is not None
    with pytest.raises(ValueError, match="1 to"):
        encode_wake_ups(list(range(MAX_WAKE_UPS + 1)))
    with pytest.raises(ValueError, match="1 to"):
        encode_wake_ups([])


def test_a_whole_message_that_is_no_wake_up_is_invalid() -> None:
    with pytest.raises(InvalidMessage):
        decode_wake_up(b"1 two 3")
