"""The README's library example runs as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def library_example() -> str:
    section = README.read_text().split("## Use it as a library", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "no python example in 'Use it as a library'"
    return match.group(1)


def test_library_example_runs_a_task_to_completion(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(library_example())
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False, env={}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "COMPLETED {'total': 28.5}"
