"""Speed up an existing LangGraph app without changing it.

::

    import fast_langgraph.shim
    fast_langgraph.shim.patch_langgraph()   # or FAST_LANGGRAPH_AUTO_PATCH=1

Four patches, each of which can be left out, one module each:

``serde`` (``fast_langgraph/shim/serde.py``)
    LangGraph's savers and node caches built without a serializer use ``RustSerializer``
    (the same bytes as ``JsonPlusSerializer``, faster).

``executor`` (``fast_langgraph/shim/executor.py``)
    LangGraph's per-invoke thread pool replaced by one persistent pool of Rust worker threads.

``checkpointer`` (``fast_langgraph/shim/checkpointer.py``)
    ``SqliteSaver`` and ``AsyncSqliteSaver`` accelerated in place: the same class, the user's
    own file in ``langgraph-checkpoint-sqlite``'s schema, a Rust store underneath.

``add_messages`` (``fast_langgraph/shim/add_messages.py``)
    LangGraph's ``add_messages`` reducer routed to the Rust one, in graphs compiled before or
    after the patch.

Each follows the protocol of ``fast_langgraph/shim/_patch.py`` (apply / revert / is_active),
and ``status()`` asks each. Results, streamed events and checkpoints stay the same.
``unpatch_langgraph()`` undoes everything.
"""

from __future__ import annotations

import importlib.metadata
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

from fast_langgraph import _settings
from fast_langgraph import executor as _executor
from fast_langgraph.shim._patch import Outcome, Patch
from fast_langgraph.shim.add_messages import AddMessagesPatch
from fast_langgraph.shim.checkpointer import CheckpointerPatch
from fast_langgraph.shim.executor import ExecutorPatch
from fast_langgraph.shim.serde import SerdePatch

__all__ = ["PatchReport", "patch_langgraph", "status", "unpatch_langgraph"]

# The LangGraph minor versions this release is tested against (pyproject: langgraph>=1.2,<1.3).
TESTED_LANGGRAPH = ((1, 2), (1, 3))

_CHECKPOINTER = CheckpointerPatch()
# Every patch, in the order they are applied. A new patch is one more entry here.
# The serializer goes first, so that savers the checkpointer patch builds get it too.
PATCHES: tuple[Patch, ...] = (SerdePatch(), ExecutorPatch(), _CHECKPOINTER, AddMessagesPatch())

_lock = threading.RLock()
_applied: set[str] = set()  # names of the patches this module applied and has not reverted

__all__ += ["PATCHES", "Outcome", "Patch"]


@dataclass
class PatchReport:
    """What ``patch_langgraph()`` did.

    Attributes:
        applied: patch name -> the modules or classes it changed.
        skipped: patch name -> why it was not applied.
        notes: subject -> what the patch could not reach or change (savers built before the
            patch, an invalid environment variable, a setting that takes effect later).
    """

    applied: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"applied {name}: {', '.join(targets)}" for name, targets in self.applied.items()]
        lines += [f"skipped {name}: {reason}" for name, reason in self.skipped.items()]
        lines += [f"note {name}: {note}" for name, note in self.notes.items()]
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
    serde: bool | None = None,
    workers: int | None = None,
    verbose: bool = False,
) -> PatchReport:
    """Patch LangGraph in this process. Safe to call more than once and from many threads;
    works before or after LangGraph is imported. A later call applies its own settings: a patch
    turned off by it is reverted, one turned on is applied.

    Args:
        executor: Replace LangGraph's per-invoke thread pool with the shared Rust pool.
        checkpointer: Run ``SqliteSaver``/``AsyncSqliteSaver`` on the Rust store, in place.
        add_messages: Make graphs that use LangGraph's ``add_messages`` use the Rust reducer.
        serde: Make LangGraph's savers and node caches built without a serializer use
            ``RustSerializer`` (``fast_langgraph.serde``); savers built before keep theirs.
        workers: The most worker threads of the shared pool; kept for later executors as if
            passed to ``fast_langgraph.configure``.
        verbose: Print the report.

    Each ``None`` falls back to ``fast_langgraph.configure(...)``, then to the
    ``FAST_LANGGRAPH_*`` environment variables, then to the default (on, on, on, on, 64). An
    environment variable that does not parse is reported in ``notes``, warned about, and
    skipped (its default is used).

    Returns:
        A ``PatchReport``: what was applied, what was skipped and why, and notes on what the
        patches cannot reach. A patch that would not take effect is reported as skipped,
        never as applied.
    """
    arguments = {
        "executor": executor,
        "checkpointer": checkpointer,
        "add_messages": add_messages,
        "serde": serde,
    }
    wanted = {p.name: _settings.get_setting(p.setting, arguments.get(p.setting)) for p in PATCHES}
    report = PatchReport()
    if workers is not None:
        before = _settings.get_setting("workers")
        _settings.configure(workers=workers)
        if before != workers:
            report.notes["workers"] = (
                f"pool size {before} -> {workers}: executors made from now on use the new pool; "
                "the old one finishes its work"
            )
    else:
        _settings.get_setting("workers")  # reports an invalid FAST_LANGGRAPH_WORKERS now
    for var, problem in _settings.invalid_environment().items():
        report.notes[var] = problem
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
        for patch in PATCHES:
            if not wanted[patch.name]:
                if patch.name in _applied:
                    patch.revert()
                    _applied.discard(patch.name)
                    report.skipped[patch.name] = "turned off by settings (was applied: reverted)"
                else:
                    report.skipped[patch.name] = "turned off by settings"
                continue
            if reason is not None:
                report.skipped[patch.name] = reason
                continue
            outcome = patch.apply()
            if outcome.targets:
                report.applied[patch.name] = outcome.targets
                _applied.add(patch.name)
            else:
                report.skipped[patch.name] = outcome.reason
            notes = patch.notes()
            if notes:
                report.notes[patch.name] = "; ".join(notes)
    if verbose:
        print(report)
    return report


def unpatch_langgraph() -> None:
    """Restore every original the shim replaced. Idempotent. Savers built while patched keep
    working on the same file."""
    with _lock:
        for patch in reversed(PATCHES):
            if patch.name in _applied:
                patch.revert()
                _applied.discard(patch.name)


def status() -> dict[str, Any]:
    """What is active now, as each patch finds it in the live modules (not just remembered).

    Returns:
        ``{"executor": {"active", "targets", "notes"}, "checkpointer": {"active", "targets",
        "notes", "unreached"}, "add_messages": {...}, "pool": {threads, idle, queued, spawned,
        inline_runs, max_threads}, "settings": {"invalid": {variable: problem}}}``.
        ``checkpointer["unreached"]`` lists the live SqliteSaver/AsyncSqliteSaver objects that
        run stock code (built before the patch, or of a subclass).
    """
    with _lock:
        out: dict[str, Any] = {
            p.name: {"active": p.is_active(), "targets": p.targets(), "notes": p.notes()}
            for p in PATCHES
        }
        out[_CHECKPOINTER.name]["unreached"] = _CHECKPOINTER.unreached()
        out["pool"] = _executor.pool_stats()
        out["settings"] = {"invalid": _settings.invalid_environment()}
        return out


def _after_configure(updates: dict[str, Any]) -> None:
    """``fast_langgraph.configure(...)`` after patching: a pool size applies to executors made
    afterwards; a patch switch does not change a live patch, which a warning says."""
    with _lock:
        if not _applied:
            return
        for patch in PATCHES:
            if patch.setting in updates and bool(updates[patch.setting]) != patch.is_active():
                warnings.warn(
                    f"fast_langgraph.configure({patch.setting}={updates[patch.setting]!r}): the "
                    f"shim is already patched and this does not change it; call "
                    "fast_langgraph.shim.patch_langgraph() again to apply it",
                    RuntimeWarning,
                    stacklevel=3,
                )


_settings.on_configure(_after_configure)
