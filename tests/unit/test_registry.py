"""Registering handlers and checking input against their declared type."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from taskcore import (
    HandlerRegistrationError,
    HandlerRegistry,
    InvalidInput,
    TaskContext,
    UnknownTaskType,
    register_builtins,
)


class Resize(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    width: int


def test_decorator_registers_under_the_function_name() -> None:
    registry = HandlerRegistry()

    @registry.handler
    def shout(text: str) -> str:
        return text.upper()

    handler = registry.get("shout")
    assert handler.input_type is str
    assert not handler.is_async
    assert handler.max_attempts == 3
    assert registry.names() == ["shout"]
    assert shout("a") == "A"  # the decorator returns the function unchanged


def test_decorator_with_options() -> None:
    registry = HandlerRegistry()

    @registry.handler(name="images.resize", max_attempts=5, timeout_s=2.5)
    async def resize(job: Resize) -> dict[str, int]:
        return {"width": job.width}

    handler = registry.get("images.resize")
    assert handler.is_async
    assert (handler.max_attempts, handler.timeout_s) == (5, 2.5)
    assert handler.input_type is Resize


def test_input_is_converted_and_normalised_to_json() -> None:
    registry = HandlerRegistry()
    registry.register(lambda job: job, name="resize")
    registry.register(lambda n: n, name="count")
    count = registry.get("count")
    assert count.input_type is Any

    def resize(job: Resize) -> None:
        return None

    handler = HandlerRegistry().register(resize)
    assert handler.normalise_input({"url": "u", "width": 3}) == {"url": "u", "width": 3}
    assert handler.parse_input({"url": "u", "width": 3}) == Resize(url="u", width=3)


@pytest.mark.parametrize(
    "bad",
    [{"url": "u"}, {"url": "u", "width": "3"}, {"url": "u", "width": 3, "extra": 1}, "text", None, [1]],
)
def test_wrong_input_is_rejected_with_the_reason(bad: object) -> None:
    def resize(job: Resize) -> None:
        return None

    handler = HandlerRegistry().register(resize)
    with pytest.raises(InvalidInput, match="invalid input for 'resize'"):
        handler.normalise_input(bad)


def test_unknown_type() -> None:
    with pytest.raises(UnknownTaskType, match="'nope'"):
        HandlerRegistry().get("nope")


def test_duplicate_and_malformed_handlers_are_refused() -> None:
    registry = HandlerRegistry()
    registry.register(lambda x: x, name="a")
    with pytest.raises(HandlerRegistrationError, match="already registered"):
        registry.register(lambda x: x, name="a")
    with pytest.raises(HandlerRegistrationError, match="neither its input nor a TaskContext"):
        registry.register(lambda x, y: x, name="two")
    with pytest.raises(HandlerRegistrationError, match="its input as its first positional parameter"):
        registry.register(lambda: 1, name="none")
    with pytest.raises(HandlerRegistrationError, match="max_attempts"):
        registry.register(lambda x: x, name="b", max_attempts=0)
    with pytest.raises(HandlerRegistrationError, match="timeout_s"):
        registry.register(lambda x: x, name="c", timeout_s=0)
    with pytest.raises(HandlerRegistrationError, match="unique must be a function"):
        registry.register(lambda x: x, name="d", unique="key")  # type: ignore[arg-type]


@pytest.mark.looptime
async def test_builtin_reverse_waits_then_reverses() -> None:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=5)
    handler = registry.get("reverse")
    assert handler.input_type is str
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await handler.call("hello") == "olleh"
    assert loop.time() - started == pytest.approx(5)  # on fake loop time: no real wait


async def test_builtin_reverse_without_a_delay_answers_at_once() -> None:
    registry = HandlerRegistry()
    register_builtins(registry, reverse_delay_s=0)
    assert await registry.get("reverse").call("abc") == "cba"


def test_builtins_keep_a_users_own_reverse() -> None:
    registry = HandlerRegistry()

    def reverse(text: str) -> str:
        return "mine"

    registry.register(reverse)
    register_builtins(registry)
    assert registry.get("reverse").fn is reverse


def test_a_handler_may_declare_a_task_context_beside_its_input() -> None:
    registry = HandlerRegistry()

    def with_context(job: Resize, ctx: TaskContext) -> None: ...

    def with_options(job: Resize, *, ctx: TaskContext, verbose: bool = False) -> None: ...

    assert registry.register(with_context).context == "ctx"
    assert registry.register(with_options).context == "ctx"
    assert registry.register(lambda x: x, name="plain").context is None
    assert registry.get("with_context").input_type is Resize  # the input alone is checked at submit
