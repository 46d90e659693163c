"""The wake-up census contract (``tests/contracts/census.py``) on ``MemoryCensus``."""

from __future__ import annotations

from tests.contracts.census import WakeUpCensusContract


class TestMemoryCensus(WakeUpCensusContract):
    pass
