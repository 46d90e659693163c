"""What a worker says about itself every few seconds, for the dashboard's worker list."""

from __future__ import annotations

from datetime import datetime

import msgspec


class WorkerReport(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # host-pid, unique while the process lives
    started_at: datetime
    seen_at: datetime
    in_flight: int  # tasks running now
    processed: int  # attempts run to a verdict since start
    held: int = 0  # messages it holds from the broker, unsettled: waiting in its buffer or running
