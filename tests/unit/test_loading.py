"""``--app module:attr`` finds a user's registry the way ``uvicorn app:app`` does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from taskcore import ConfigurationError, HandlerRegistry
from taskcore.entrypoints.loading import load_registry


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = "user_tasks_for_test"
    (tmp_path / f"{name}.py").write_text(
        "from taskcore import HandlerRegistry\n"
        "registry = HandlerRegistry()\n"
        "@registry.handler\n"
        "def double(n: int) -> int:\n"
        "    return 2 * n\n"
        "def make():\n"
        "    return registry\n"
        "not_a_registry = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    sys.modules.pop(name, None)


def test_no_spec_gives_the_builtins() -> None:
    registry = load_registry(None, reverse_delay_s=0)
    assert registry.names() == ["reverse"]


def test_a_registry_attribute(user_module: str) -> None:
    registry = load_registry(f"{user_module}:registry", reverse_delay_s=0)
    assert isinstance(registry, HandlerRegistry)
    assert registry.names() == ["double"]


def test_a_factory(user_module: str) -> None:
    assert load_registry(f"{user_module}:make", reverse_delay_s=0).names() == ["double"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "module:attribute"),
        ("no_such_module_xyz:registry", "cannot import"),
        ("{mod}:missing", "has no attribute"),
        ("{mod}:not_a_registry", "expected a HandlerRegistry"),
    ],
)
def test_bad_specs_say_what_is_wrong(user_module: str, spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_registry(spec.format(mod=user_module), reverse_delay_s=0)
