"""A handler's report of how far its attempt got: a fraction and a short message.

Progress belongs to an attempt. A report is checked here, when the handler
makes it, so a mistake (a fraction of 7, or of ``"half"``) fails the handler
that made it, where its author sees it, rather than a write much later. The
message is only text for people, so it is bounded and made storable instead
of refused: a handler should not fail because its log line was long.
"""

from __future__ import annotations

import math

import msgspec

MAX_PROGRESS_MESSAGE = 200
"""Characters kept of a progress message (the ``tasks_progress_message_length`` constraint)."""

_ELLIPSIS = "…"


class Progress(msgspec.Struct, frozen=True):
    """``fraction`` from 0 to 1 (not necessarily rising: a handler may start a
    phase over), and an optional message of at most ``MAX_PROGRESS_MESSAGE``."""

    fraction: float
    message: str | None = None

    @classmethod
    def reported(cls, fraction: object, message: object = None) -> Progress:
        """A handler's report, checked: ``TypeError`` for a fraction that is not
        a number or a message that is not a string, ``ValueError`` for a
        fraction outside [0, 1] (NaN included). The message loses what
        PostgreSQL cannot store in text (NUL, lone surrogates) and is cut to
        ``MAX_PROGRESS_MESSAGE`` characters, ending in an ellipsis."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"progress must be a number from 0 to 1, got {fraction!r}")
        if not (math.isfinite(fraction) and 0 <= fraction <= 1):
            raise ValueError(f"progress must be from 0 to 1, got {fraction!r}")
        if message is not None and not isinstance(message, str):
            raise TypeError(f"a progress message must be a string, got {type(message).__name__}")
        return cls(float(fraction), None if message is None else _storable(message))


def _storable(message: str) -> str:
    text = message.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if len(text) > MAX_PROGRESS_MESSAGE:
        return text[: MAX_PROGRESS_MESSAGE - 1] + _ELLIPSIS
    return text
