"""The house stays in shape: a pure core without cycles, small ports, small classes.

These are the checks of issue #12 kept as tests, so a later change that
widens a port past six methods, grows a class past twenty or makes two core
modules import each other fails here, with the names to look at.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import grimp

ROOT = Path(__file__).parents[2]
CORE = ROOT / "src" / "taskcore"
MAX_PROTOCOL_METHODS = 6
MAX_CLASS_METHODS = 20


def _core_modules() -> set[str]:
    """Every module of the core, as ``taskcore.<package>.<module>``."""
    names = set()
    for path in CORE.rglob("*.py"):
        parts = path.relative_to(CORE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.add(".".join(("taskcore", *parts)))
    return names - {"taskcore"}


def test_every_core_module_is_in_the_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = config["tool"]["importlinter"]["contracts"][0]
    listed = set(contract["source_modules"])
    unlisted = {m for m in _core_modules() if not any(m == s or m.startswith(f"{s}.") for s in listed)}
    assert unlisted == set()


def test_the_core_has_no_import_cycle() -> None:
    """Counting every import, ``TYPE_CHECKING`` ones included: the records the
    ports use live below the ports, and nothing below imports what is above."""
    graph = grimp.build_graph("taskcore")
    core = _core_modules()
    edges = {m: graph.find_modules_directly_imported_by(m) & core for m in core}
    cycles = [scc for scc in _strongly_connected(edges) if len(scc) > 1]
    assert cycles == []


def _strongly_connected(edges: dict[str, set[str]]) -> Iterator[set[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                yield component


def _classes(folder: Path) -> Iterator[tuple[str, ast.ClassDef]]:
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                yield f"{path.relative_to(ROOT)}:{node.name}", node


def _methods(node: ast.ClassDef) -> set[str]:
    return {item.name for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)}


def _base_names(node: ast.ClassDef) -> list[str]:
    return [base.id if isinstance(base, ast.Name) else ast.unparse(base) for base in node.bases]


def test_no_port_of_the_core_has_more_than_six_methods() -> None:
    """A port is a use case's view of the world; a wide one is two use cases or a database."""
    protocols = {node.name: node for _, node in _classes(CORE) if "Protocol" in _base_names(node)}

    def methods(name: str) -> set[str]:
        node = protocols[name]
        inherited = (methods(base) for base in _base_names(node) if base in protocols)
        return _methods(node).union(*inherited)

    wide = {name: len(methods(name)) for name in protocols if len(methods(name)) > MAX_PROTOCOL_METHODS}
    assert len(protocols) >= 10
    assert wide == {}


def test_no_class_in_src_has_more_than_twenty_methods() -> None:
    large = {
        where: len(_methods(node))
        for where, node in _classes(ROOT / "src")
        if len(_methods(node)) > MAX_CLASS_METHODS
    }
    assert large == {}


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
    assert "taskcore/client/sync.py" in names
    assert "taskcore/client/py.typed" in names
    assert "taskcore/py.typed" in names


def test_the_client_loads_nothing_of_the_server() -> None:
    """A service that only calls the API imports none of what serves it.

    The import-linter contract sees the client's own imports; this sees what
    ``import taskcore.client`` loads in the end, ``taskcore/__init__`` included."""
    server = ["litestar", "psycopg", "redis", "aio_pika", "uvicorn", "dependency_injector"]
    code = (
        "import sys, taskcore.client; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({server!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
