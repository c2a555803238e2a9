"""Speed up an existing LangGraph app without changing it.

::

    import fast_langgraph.shim
    fast_langgraph.shim.patch_langgraph()   # or FAST_LANGGRAPH_AUTO_PATCH=1

Three patches, each of which can be left out:

``executor``
    LangGraph (and LangChain's ``batch``, ``RunnableParallel``, ``ToolNode``...) get their
    thread pool from ``langchain_core.runnables.config.get_executor_for_config``, which makes a
    new ``ThreadPoolExecutor`` per call. Those modules import the function by name, so the shim
    replaces it in every module that holds it, and the replacement hands out executors on one
    persistent pool of Rust worker threads (``fast_langgraph.executor``).

``checkpointer``
    ``SqliteSaver(conn)``, ``SqliteSaver.from_conn_string(...)`` and their
    ``AsyncSqliteSaver`` forms give a ``RustSQLiteCheckpointer`` (still an instance of the
    LangGraph class). See ``docs/shim.md`` for where its data lives.

``add_messages``
    Channels whose reducer is LangGraph's ``add_messages`` use the Rust reducer
    (``fast_langgraph.add_messages``), including graphs compiled before the patch: LangGraph
    keeps the reducer inside its channel objects, so the shim wraps the channel class's
    ``operator`` slot rather than a module attribute. Other reducers are untouched.

Results, streamed events and checkpoints stay the same. ``unpatch_langgraph()`` undoes
everything; ``status()`` says what is active now.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

from fast_langgraph import _settings
from fast_langgraph import executor as _executor

__all__ = ["PatchReport", "patch_langgraph", "status", "unpatch_langgraph"]

# The LangGraph minor versions this release is tested against (pyproject: langgraph>=1.2,<1.3).
TESTED_LANGGRAPH = ((1, 2), (1, 3))

_EXECUTOR_DEFINER = "langchain_core.runnables.config"
# Modules known to bind get_executor_for_config by name (langgraph 1.2, langchain-core 1.x).
# Any other loaded module that holds the original function is patched too.
_EXECUTOR_MODULES = (
    _EXECUTOR_DEFINER,
    "langchain_core.runnables.base",
    "langchain_core.runnables.configurable",
    "langchain_core.runnables.passthrough",
    "langchain_core.runnables.router",
    "langgraph.pregel._executor",
    "langgraph.prebuilt.tool_node",
    "langgraph.prebuilt.tool_validator",
)
_EXECUTOR_ATTR = "get_executor_for_config"
# The module whose binding decides whether graphs use our executor.
_EXECUTOR_PROOF = "langgraph.pregel._executor"

_lock = threading.RLock()


@dataclass
class _ExecutorPatch:
    original: Any
    targets: list[str]  # module names patched


@dataclass
class _CheckpointerPatch:
    # class -> {attribute: original value, or _swap's marker for "not set on the class"}
    saved: dict[type, dict[str, Any]]
    targets: list[str]


_state: dict[str, Any] = {}


@dataclass
class PatchReport:
    """What ``patch_langgraph()`` did.

    Attributes:
        applied: patch name -> the modules or classes it changed.
        skipped: patch name -> why it was not applied.
    """

    applied: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"applied {name}: {', '.join(targets)}" for name, targets in self.applied.items()]
        lines += [f"skipped {name}: {reason}" for name, reason in self.skipped.items()]
        return "\n".join(lines) or "nothing to do"


def _langgraph_version() -> tuple[int, int] | None:
    try:
        raw = importlib.metadata.version("langgraph")
    except importlib.metadata.PackageNotFoundError:
        return None
    parts = raw.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def patch_langgraph(
    *,
    executor: bool | None = None,
    checkpointer: bool | None = None,
    add_messages: bool | None = None,
    workers: int | None = None,
    verbose: bool = False,
) -> PatchReport:
    """Patch LangGraph in this process. Safe to call more than once and from many threads;
    works before or after LangGraph is imported.

    Args:
        executor: Replace LangGraph's per-invoke thread pool with the shared Rust pool.
        checkpointer: Make ``SqliteSaver``/``AsyncSqliteSaver`` give ``RustSQLiteCheckpointer``.
        add_messages: Make graphs that use LangGraph's ``add_messages`` use the Rust reducer.
        workers: The most worker threads of the shared pool; kept for later executors as if
            passed to ``fast_langgraph.configure``.
        verbose: Print the report.

    Each ``None`` falls back to ``fast_langgraph.configure(...)``, then to the
    ``FAST_LANGGRAPH_*`` environment variables, then to the default (on, on, on, 64).

    Returns:
        A ``PatchReport``: what was applied, and what was skipped and why. A patch that would
        not take effect is reported as skipped, never as applied.
    """
    want_executor = _settings.get_setting("executor", executor)
    want_checkpointer = _settings.get_setting("checkpointer", checkpointer)
    want_add_messages = _settings.get_setting("add_messages", add_messages)
    if workers is not None:
        _settings.configure(workers=workers)
    report = PatchReport()
    with _lock:
        version = _langgraph_version()
        reason = None
        if version is None:
            reason = "langgraph is not installed"
        elif not (TESTED_LANGGRAPH[0] <= version < TESTED_LANGGRAPH[1]):
            lo, hi = TESTED_LANGGRAPH
            reason = (
                f"langgraph {version[0]}.{version[1]} is outside the tested range "
                f">={lo[0]}.{lo[1]},<{hi[0]}.{hi[1]}"
            )
            warnings.warn(
                f"fast_langgraph.shim: not patching: {reason}", RuntimeWarning, stacklevel=2
            )
        for name, wanted, apply in (
            ("executor", want_executor, _patch_executor),
            ("checkpointer", want_checkpointer, _patch_checkpointer),
            ("add_messages", want_add_messages, _patch_add_messages),
        ):
            if not wanted:
                if name in _state:
                    report.applied[name] = list(_state[name].targets)
                else:
                    report.skipped[name] = "turned off by settings"
                continue
            if reason is not None:
                report.skipped[name] = reason
                continue
            applied, why = apply()
            if applied:
                report.applied[name] = applied
            else:
                report.skipped[name] = why
    if verbose:
        print(report)
    return report


def unpatch_langgraph() -> None:
    """Restore every original the shim replaced. Idempotent."""
    with _lock:
        ex: _ExecutorPatch | None = _state.pop("executor", None)
        if ex is not None:
            ours = _executor.get_executor_for_config
            for name in ex.targets:
                mod = sys.modules.get(name)
                if mod is not None and getattr(mod, _EXECUTOR_ATTR, None) is ours:
                    setattr(mod, _EXECUTOR_ATTR, ex.original)
        cp: _CheckpointerPatch | None = _state.pop("checkpointer", None)
        if cp is not None:
            from fast_langgraph import _swap

            _swap.uninstall(cp.saved)
        if _state.pop("add_messages", None) is not None:
            from fast_langgraph import merge

            merge.uninstall_rust_add_messages()


def status() -> dict[str, Any]:
    """What is active now, checked against the live modules (not just remembered).

    Returns:
        ``{"executor": {"active": bool, "targets": [...]}, "checkpointer": {...},
        "add_messages": {...},
        "pool": {threads, idle, queued, spawned, inline_runs, max_threads}}``
    """
    with _lock:
        out: dict[str, Any] = {}
        ex: _ExecutorPatch | None = _state.get("executor")
        ours = _executor.get_executor_for_config
        live = [
            name
            for name in (ex.targets if ex else ())
            if getattr(sys.modules.get(name), _EXECUTOR_ATTR, None) is ours
        ]
        proof = sys.modules.get(_EXECUTOR_PROOF)
        out["executor"] = {
            "active": proof is not None and getattr(proof, _EXECUTOR_ATTR, None) is ours,
            "targets": live,
        }
        cp: _CheckpointerPatch | None = _state.get("checkpointer")
        live_cp = []
        if cp is not None:
            for cls in cp.saved:
                if (
                    cls.__dict__.get("__new__") is not None
                    and cls.__dict__.get("_flg_swap") is True
                ):
                    live_cp.append(f"{cls.__module__}.{cls.__qualname__}")
        out["checkpointer"] = {"active": bool(live_cp), "targets": live_cp}
        from fast_langgraph import merge

        am = merge.is_rust_add_messages_installed()
        out["add_messages"] = {"active": am, "targets": [_ADD_MESSAGES_TARGET] if am else []}
        out["pool"] = _executor.pool_stats()
        return out


# -- executor -----------------------------------------------------------------------------


def _patch_executor() -> tuple[list[str], str]:
    try:
        definer = importlib.import_module(_EXECUTOR_DEFINER)
    except ImportError as e:
        return [], f"{_EXECUTOR_DEFINER} cannot be imported: {e}"
    ours = _executor.get_executor_for_config
    prev: _ExecutorPatch | None = _state.get("executor")
    original = prev.original if prev else getattr(definer, _EXECUTOR_ATTR, None)
    if original is None:
        return [], f"{_EXECUTOR_DEFINER} has no {_EXECUTOR_ATTR}"
    if original is ours:  # pragma: no cover - only if someone else installed ours
        return [], "already replaced outside the shim"
    # Import the known users, so a later `from x import y` finds nothing to miss.
    for name in _EXECUTOR_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    targets = list(prev.targets) if prev else []
    for name, mod in list(sys.modules.items()):
        d = getattr(mod, "__dict__", None)
        if not isinstance(d, dict) or d.get(_EXECUTOR_ATTR) is not original:
            continue
        setattr(mod, _EXECUTOR_ATTR, ours)
        if name not in targets:
            targets.append(name)
    _state["executor"] = _ExecutorPatch(original=original, targets=targets)
    proof = sys.modules.get(_EXECUTOR_PROOF)
    if proof is None:
        return [], f"{_EXECUTOR_PROOF} is missing, so graphs would not use the pool"
    if getattr(proof, _EXECUTOR_ATTR, None) is not ours:
        return [], f"{_EXECUTOR_PROOF}.{_EXECUTOR_ATTR} could not be replaced"
    live = [n for n in targets if getattr(sys.modules.get(n), _EXECUTOR_ATTR, None) is ours]
    return live, ""


# -- checkpointer -------------------------------------------------------------------------


def _patch_checkpointer() -> tuple[list[str], str]:
    from fast_langgraph import _swap

    prev: _CheckpointerPatch | None = _state.get("checkpointer")
    if prev is not None:
        return list(prev.targets), ""
    try:
        saved, targets, why = _swap.install()
    except ImportError as e:
        return [], f"langgraph-checkpoint-sqlite is not installed ({e})"
    if not targets:
        return [], why
    _state["checkpointer"] = _CheckpointerPatch(saved=saved, targets=targets)
    return list(targets), ""


# -- add_messages -------------------------------------------------------------------------

_ADD_MESSAGES_TARGET = "langgraph.channels.binop.BinaryOperatorAggregate.operator"


@dataclass
class _AddMessagesPatch:
    targets: list[str]


def _patch_add_messages() -> tuple[list[str], str]:
    from fast_langgraph import merge

    if _state.get("add_messages") is None:
        if merge.is_rust_add_messages_installed():
            return [], "already installed outside the shim (fast_langgraph.merge)"
        if not merge.install_rust_add_messages():
            return [], "langgraph's BinaryOperatorAggregate does not have the layout this relies on"
        _state["add_messages"] = _AddMessagesPatch(targets=[_ADD_MESSAGES_TARGET])
    if not merge.is_rust_add_messages_installed():
        _state.pop("add_messages", None)
        return [], "the reducer swap did not take effect"
    return [_ADD_MESSAGES_TARGET], ""
