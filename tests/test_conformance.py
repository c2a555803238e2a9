"""LangGraph's public conformance suite (langgraph-checkpoint-conformance) against
RustSQLiteCheckpointer: every capability, through the async methods and through the sync
methods called from a worker thread.

The suite skips any capability whose method is not overridden and still reports a "full"
level, so these tests count what ran and passed instead of trusting the level.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SyncThroughThreadMixin, assert_conformant
from langgraph.checkpoint.conformance import checkpointer_test

from fast_langgraph import RustSQLiteCheckpointer


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

    assert_conformant(factory)


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "no-delta"])
@pytest.mark.parametrize("cls", [RustSQLiteCheckpointer, SyncThroughThread])
def test_conformance_on_a_file(cls, delta: bool, tmp_path: Path) -> None:
    _run_suite(cls, lambda i: str(tmp_path / f"conformance-{i}.db"), delta)


@pytest.mark.parametrize("cls", [RustSQLiteCheckpointer, SyncThroughThread])
def test_conformance_in_memory(cls) -> None:
    _run_suite(cls, lambda i: ":memory:", True)
