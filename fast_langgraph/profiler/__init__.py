"""Profiles a compiled LangGraph graph, and compares it stock against accelerated.

- :class:`GraphProfiler`: where a graph spends its time (nodes, supersteps, checkpoints,
  caches, LLM calls, framework overhead); ``report()``, ``print_report()``, ``export()``.
- :func:`compare`: the same graph stock and with fast-langgraph, in separate processes.
"""

from fast_langgraph.profiler import _html  # noqa: F401  (registers the HTML renderer)
from fast_langgraph.profiler._compare import CompareError, CompareResult, OutputsDiffer, compare
from fast_langgraph.profiler._core import GraphProfiler
from fast_langgraph.profiler._load import TargetError
from fast_langgraph.profiler._report import NodeStats, ProfileReport, StepStats

__all__ = [
    "CompareError",
    "CompareResult",
    "GraphProfiler",
    "NodeStats",
    "OutputsDiffer",
    "ProfileReport",
    "StepStats",
    "TargetError",
    "compare",
]
