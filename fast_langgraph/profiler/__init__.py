"""Profiles a compiled LangGraph graph, and compares it stock against accelerated.

- :class:`GraphProfiler`: where a graph spends its time (nodes, supersteps, checkpoints,
  caches, LLM calls, framework overhead); ``report()``, ``print_report()``, ``export()``.
- :func:`compare`: the same graph stock and with fast-langgraph, in separate processes.
"""

from fast_langgraph.profiler._core import GraphProfiler
from fast_langgraph.profiler._report import NodeStats, ProfileReport, StepStats

__all__ = ["GraphProfiler", "NodeStats", "ProfileReport", "StepStats", "compare", "CompareResult", "OutputsDiffer"]


def __getattr__(name):
    if name in ("compare", "CompareResult", "OutputsDiffer", "CompareError"):
        from fast_langgraph.profiler import _compare

        return getattr(_compare, name)
    raise AttributeError(name)
