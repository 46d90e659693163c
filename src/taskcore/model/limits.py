"""Cluster-wide limits on how tasks of a type start: concurrency and rate.

Both are rules of the claim, decided in the database where the claim
happens, so they hold whatever the number of workers and survive their
crashes. A handler declares them; at submit each task stores the key it is
limited under (``concurrency_key``, ``rate_key``: the handler's key function
over the input, or ``""`` for the whole type), and at the claim the worker's
registry says how many.

A **concurrency** limit of N lets at most N tasks of one key run at once. A
task over it stays PENDING, parked, and is woken when a running one of its
key ends (any way: a verdict, a released lease, a cancel): no polling.

A **rate** limit of N per period lets at most N of one key start in any
window of that length. Starts are spaced evenly, one every period / N (the
generic cell rate algorithm with no burst): a task over the limit gets the
next free start time reserved and waits for it PENDING (``run_at`` pushed),
so a backlog drains at exactly the rate, none is dropped or failed for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from taskcore.errors import InvalidInput

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*$")

KeyFunction = Callable[[Any], "str | None"]
"""Of the handler's parsed input: the key it is limited under (``None``: the whole type)."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` starts in any window of ``period``."""

    count: int
    period: timedelta

    @property
    def interval(self) -> timedelta:
        """The spacing of starts: period / count."""
        return self.period / self.count

    def __str__(self) -> str:
        return f"{self.count}/{self.period.total_seconds():g}s"


def parse_rate(text: str) -> Rate:
    """``"100/m"``, ``"20/s"``, ``"5/h"``, or with a multiple (``"10/30s"``)."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) < 1 or match.group(2) == "0":
        raise InvalidInput(
            f"a rate limit is N/s, N/m or N/h (or N/<k>s...), N at least 1; got {text!r}", rate=text
        )
    count, multiple, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
    return Rate(count=count, period=timedelta(seconds=multiple * _PERIODS[unit]))


@dataclass(frozen=True, slots=True)
class TypeLimits:
    concurrency: int | None = None
    rate: Rate | None = None


NO_LIMITS = TypeLimits()

LimitsOf = Callable[[str], TypeLimits]
"""A type's limits as the claim applies them (``HandlerRegistry.limits_of``)."""


def no_limits(task_type: str) -> TypeLimits:
    return NO_LIMITS


def scope(task_type: str, key: str) -> str:
    """The name one limit counts under: the type and the key."""
    return f"{task_type}\x1f{key}"
