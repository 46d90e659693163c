"""PostgreSQL's ``percentile_cont`` in Python, so the memory dashboard reads like the real one."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont``: linear interpolation between the two
    nearest ranks; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)
