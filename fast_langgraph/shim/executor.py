"""The executor patch: LangGraph's per-invoke thread pool replaced by the shared Rust pool.

LangGraph (and LangChain's ``batch``, ``RunnableParallel``, ``ToolNode``...) get their thread
pool from ``langchain_core.runnables.config.get_executor_for_config``, which makes a new
``ThreadPoolExecutor`` per call. Those modules import the function by name, so the patch
replaces it in every module that holds it, and the replacement hands out executors on one
persistent pool of Rust worker threads (``fast_langgraph.executor``).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from fast_langgraph import executor as _executor
from fast_langgraph.shim._patch import Outcome, Patch

DEFINER = "langchain_core.runnables.config"
# Modules known to bind get_executor_for_config by name (langgraph 1.2, langchain-core 1.x).
# Any other loaded module that holds the original function is patched too.
KNOWN_MODULES = (
    DEFINER,
    "langchain_core.runnables.base",
    "langchain_core.runnables.configurable",
    "langchain_core.runnables.passthrough",
    "langchain_core.runnables.router",
    "langgraph.pregel._executor",
    "langgraph.prebuilt.tool_node",
    "langgraph.prebuilt.tool_validator",
)
ATTR = "get_executor_for_config"
# The module whose binding decides whether graphs use our executor.
PROOF = "langgraph.pregel._executor"


class ExecutorPatch(Patch):
    name = "executor"
    setting = "executor"

    def __init__(self) -> None:
        self.original: Any = None
        self.patched: list[str] = []  # module names

    def apply(self) -> Outcome:
        try:
            definer = importlib.import_module(DEFINER)
        except ImportError as e:
            return Outcome(reason=f"{DEFINER} cannot be imported: {e}")
        ours = _executor.get_executor_for_config
        original = self.original or getattr(definer, ATTR, None)
        if original is None:
            return Outcome(reason=f"{DEFINER} has no {ATTR}")
        if original is ours:  # pragma: no cover - only if someone else installed ours
            return Outcome(reason="already replaced outside the shim")
        # Import the known users, so a later `from x import y` finds nothing to miss.
        for name in KNOWN_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        for name, mod in list(sys.modules.items()):
            d = getattr(mod, "__dict__", None)
            if not isinstance(d, dict) or d.get(ATTR) is not original:
                continue
            setattr(mod, ATTR, ours)
            if name not in self.patched:
                self.patched.append(name)
        self.original = original
        proof = sys.modules.get(PROOF)
        if proof is None:
            return Outcome(reason=f"{PROOF} is missing, so graphs would not use the pool")
        if getattr(proof, ATTR, None) is not ours:
            return Outcome(reason=f"{PROOF}.{ATTR} could not be replaced")
        return Outcome(targets=self.targets())

    def revert(self) -> None:
        if self.original is None:
            return
        ours = _executor.get_executor_for_config
        for name in self.patched:
            mod = sys.modules.get(name)
            if mod is not None and getattr(mod, ATTR, None) is ours:
                setattr(mod, ATTR, self.original)
        self.original = None
        self.patched = []

    def is_active(self) -> bool:
        proof = sys.modules.get(PROOF)
        return proof is not None and getattr(proof, ATTR, None) is _executor.get_executor_for_config

    def targets(self) -> list[str]:
        ours = _executor.get_executor_for_config
        return [n for n in self.patched if getattr(sys.modules.get(n), ATTR, None) is ours]
