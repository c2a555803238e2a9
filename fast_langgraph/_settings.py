"""Settings: arguments win, then ``fast_langgraph.configure(...)``, then ``FAST_LANGGRAPH_*``
environment variables, then defaults."""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

__all__ = [
    "configure",
    "get_setting",
    "invalid_environment",
    "on_configure",
    "reset_configuration",
]

# name -> (environment variable, parser, default)
_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}


def _parse_bool(raw: str, var: str) -> bool:
    v = raw.strip().lower()
    if v in _BOOL_TRUE:
        return True
    if v in _BOOL_FALSE:
        return False
    raise ValueError(f"{var}={raw!r}: expected 1/0, true/false, yes/no or on/off")


def _parse_workers(raw: str, var: str) -> int:
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{var}={raw!r}: expected a positive integer") from None
    if n < 1:
        raise ValueError(f"{var}={raw!r}: expected a positive integer")
    return n


_SPECS: dict[str, tuple[str, Any, Any]] = {
    # The most worker threads the shared pool may run at once. Blocking I/O tasks each hold a
    # thread, so this is well above the core count.
    "workers": ("FAST_LANGGRAPH_WORKERS", _parse_workers, 64),
    # Whether patch_langgraph() replaces LangGraph's executor factory.
    "executor": ("FAST_LANGGRAPH_PATCH_EXECUTOR", _parse_bool, True),
    # Whether patch_langgraph() runs SqliteSaver/AsyncSqliteSaver on the Rust store, in place.
    "checkpointer": ("FAST_LANGGRAPH_PATCH_CHECKPOINTER", _parse_bool, True),
    # Whether patch_langgraph() routes LangGraph's add_messages reducer to the Rust one.
    "add_messages": ("FAST_LANGGRAPH_PATCH_ADD_MESSAGES", _parse_bool, True),
    # Whether patch_langgraph() makes savers and caches built without a serializer use
    # RustSerializer.
    "serde": ("FAST_LANGGRAPH_PATCH_SERDE", _parse_bool, True),
}

_lock = threading.Lock()
_configured: dict[str, Any] = {}
# Environment variables whose value does not parse: variable -> what is wrong and what is used.
_invalid_env: dict[str, str] = {}
_warned: set[tuple[str, str]] = set()
_hooks: list[Any] = []


def on_configure(hook: Any) -> None:
    """Call ``hook(updates)`` after every ``configure()`` (the shim reports what a change after
    patching does)."""
    _hooks.append(hook)


def invalid_environment() -> dict[str, str]:
    """``FAST_LANGGRAPH_*`` variables that did not parse: variable -> the problem."""
    with _lock:
        return {var: problem for var, problem in _invalid_env.items() if var in os.environ}


def _validate(name: str, value: Any) -> Any:
    if name not in _SPECS:
        raise TypeError(f"unknown setting {name!r}; known: {sorted(_SPECS)}")
    if name == "workers":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"workers must be a positive int, got {value!r}")
    elif not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def configure(
    *,
    workers: int | None = None,
    executor: bool | None = None,
    checkpointer: bool | None = None,
    add_messages: bool | None = None,
    serde: bool | None = None,
) -> None:
    """Set process-wide defaults. Arguments given to ``patch_langgraph()`` still win, and
    these win over ``FAST_LANGGRAPH_*`` environment variables. ``None`` leaves a setting as is.

    Args:
        workers: The most worker threads the shared pool may run
            (``FAST_LANGGRAPH_WORKERS``, default 64). Applies to executors made afterwards.
        executor: Whether ``patch_langgraph()`` replaces LangGraph's executor factory
            (``FAST_LANGGRAPH_PATCH_EXECUTOR``, default on).
        checkpointer: Whether ``patch_langgraph()`` runs ``SqliteSaver`` and
            ``AsyncSqliteSaver`` on the Rust store, on the user's own file
            (``FAST_LANGGRAPH_PATCH_CHECKPOINTER``, default on).
        add_messages: Whether ``patch_langgraph()`` makes graphs that use LangGraph's
            ``add_messages`` reducer use the Rust one
            (``FAST_LANGGRAPH_PATCH_ADD_MESSAGES``, default on).
        serde: Whether ``patch_langgraph()`` makes LangGraph's savers and node caches built
            without a serializer use ``RustSerializer`` (``FAST_LANGGRAPH_PATCH_SERDE``,
            default on).
    """
    given = {
        "workers": workers,
        "executor": executor,
        "checkpointer": checkpointer,
        "add_messages": add_messages,
        "serde": serde,
    }
    updates = {k: _validate(k, v) for k, v in given.items() if v is not None}
    with _lock:
        _configured.update(updates)
    for hook in list(_hooks):
        hook(updates)


def reset_configuration() -> None:
    """Forget every ``configure()`` call."""
    with _lock:
        _configured.clear()


def get_setting(name: str, argument: Any = None) -> Any:
    """The value of setting ``name``: ``argument`` if not None, else the configured value, else
    the environment variable, else the default. An environment value that does not parse is
    skipped with a ``RuntimeWarning`` (once per value) and the default is used; see
    ``invalid_environment()``."""
    if argument is not None:
        return _validate(name, argument)
    env_var, parse, default = _SPECS[name]
    with _lock:
        if name in _configured:
            return _configured[name]
    raw = os.environ.get(env_var)
    if raw is not None:
        try:
            return parse(raw, env_var)
        except ValueError as e:
            problem = f"{e}; ignored, using the default {default!r}"
            with _lock:
                _invalid_env[env_var] = problem
                first = (env_var, raw) not in _warned
                _warned.add((env_var, raw))
            if first:
                warnings.warn(f"fast_langgraph: {problem}", RuntimeWarning, stacklevel=3)
    return default
