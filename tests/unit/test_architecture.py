"""The core stays pure: every core module is under the import-linter contract."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_every_core_module_is_in_the_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = config["tool"]["importlinter"]["contracts"][0]
    listed = set(contract["source_modules"])
    modules = {
        f"taskcore.{path.stem}"
        for path in (ROOT / "src" / "taskcore").glob("*.py")
        if path.stem != "__init__"
    }
    assert modules - listed == set()


def test_import_linter_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_wheel_installs_one_top_level_name(tmp_path: Path) -> None:
    """``adapters`` and ``entrypoints`` are PyPI names; the wheel must never shadow them."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("taskcore-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        names = set(archive.namelist())
    assert {t for t in tops if not t.endswith(".dist-info")} == {"taskcore"}
    assert "taskcore/adapters/memory/queue.py" in names
    assert "taskcore/entrypoints/cli.py" in names
    assert "taskcore/py.typed" in names
