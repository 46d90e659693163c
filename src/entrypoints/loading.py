"""Finding a user's handler registry from ``--app module:attr``, as ``uvicorn app:app`` does."""

from __future__ import annotations

import importlib
import os
import sys

from taskcore.errors import ConfigurationError
from taskcore.handlers.builtin import register_builtins
from taskcore.handlers.registry import HandlerRegistry


def load_registry(spec: str | None, *, reverse_delay_s: float) -> HandlerRegistry:
    """No spec: the built-in handlers. A spec names a ``HandlerRegistry`` or a
    zero-argument callable returning one; it is used as it is."""
    if not spec:
        registry = HandlerRegistry()
        register_builtins(registry, reverse_delay_s=reverse_delay_s)
        return registry
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--app must look like 'module:attribute', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"--app {spec}: cannot import {module_name!r}: {exc}") from exc
    try:
        found: object = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"--app {spec}: module {module_name!r} has no attribute {attr!r}") from None
    if callable(found) and not isinstance(found, HandlerRegistry):
        found = found()
    if not isinstance(found, HandlerRegistry):
        raise ConfigurationError(f"--app {spec}: expected a HandlerRegistry, got {type(found).__name__}")
    return found
