"""The fault suite: real processes, real services, faults caused on purpose.

``fault_stack`` is the end-to-end ``Stack`` with the misbehaving handlers of
``handlers.py`` loaded (``--app``), fast leases and sweeps so recovery shows
within seconds, and ``TASKCORE_FAULT_DIR`` where handlers record their runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.e2e.conftest import Stack

APP = "tests.integration.faults.handlers:registry"


@pytest.fixture
def fault_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def fault_stack(stack: Stack, fault_dir: Path) -> Stack:
    stack.env.update(
        {
            "TASKCORE_APP": APP,
            "TASKCORE_FAULT_DIR": str(fault_dir),
            "TASKCORE_REVERSE_DELAY_S": "0",
            "TASKCORE_LEASE_S": "3",
            "TASKCORE_SWEEP_INTERVAL_S": "0.5",
            "TASKCORE_REDISPATCH_GRACE_S": "2",
            "TASKCORE_SHUTDOWN_GRACE_S": "10",
            "TASKCORE_RETRY_BASE_S": "0.2",
            "TASKCORE_RETRY_CAP_S": "0.5",
        }
    )
    return stack
