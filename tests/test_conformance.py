"""LangGraph's public conformance suite (langgraph-checkpoint-conformance) against
RustSQLiteCheckpointer: every capability, through the async methods and through the sync
methods called from a worker thread.

The suite skips any capability whose method is not overridden and still reports a "full"
level, so these tests count what ran and passed instead of trusting the level.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import SyncThroughThreadMixin
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from fast_langgraph import RustSQLiteCheckpointer

# Tests per capability in langgraph-checkpoint-conformance 0.0.2: 81 in all.
EXPECTED_TOTAL = 81


class SyncThroughThread(SyncThroughThreadMixin, RustSQLiteCheckpointer):
    """RustSQLiteCheckpointer with every a* call routed to the sync method on a worker thread."""


def _run_suite(factory_cls, path_for, delta: bool) -> None:
    counter = iter(range(100))

    @checkpointer_test(name=f"{factory_cls.__name__}-{path_for('x')}-{delta}")
    async def factory():
        saver = factory_cls(path_for(next(counter)), delta=delta)
        try:
            yield saver
        finally:
            saver.close()

    report = asyncio.run(validate(factory))
    assert set(report.results) == {c.value for c in ALL_CAPABILITIES}
    failures = {
        cap: res.failures
        for cap, res in report.results.items()
        if res.tests_failed or not res.detected
    }
    assert not failures, failures
    passed = sum(res.tests_passed for res in report.results.values())
    skipped = sum(res.tests_skipped for res in report.results.values())
    assert skipped == 0
    assert passed == EXPECTED_TOTAL


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "no-delta"])
@pytest.mark.parametrize("cls", [RustSQLiteCheckpointer, SyncThroughThread])
def test_conformance_on_a_file(cls, delta: bool, tmp_path: Path) -> None:
    _run_suite(cls, lambda i: str(tmp_path / f"conformance-{i}.db"), delta)


@pytest.mark.parametrize("cls", [RustSQLiteCheckpointer, SyncThroughThread])
def test_conformance_in_memory(cls) -> None:
    _run_suite(cls, lambda i: ":memory:", True)
