"""LangGraph's public conformance suite (langgraph-checkpoint-conformance) against
RustPostgresCheckpointer on the throwaway test server: every capability, through the async
methods and through the sync methods called from a worker thread, each saver on a fresh
database. The suite skips a capability whose method is not overridden and still reports a
"full" level, so these tests count what ran and passed."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from fast_langgraph import RustPostgresCheckpointer

# Tests per capability in langgraph-checkpoint-conformance 0.0.2: 81 in all.
EXPECTED_TOTAL = 81


class SyncThroughThread(RustPostgresCheckpointer):
    """Routes every a* call to the sync method on a worker thread, so the suite exercises
    the sync API."""

    async def aget_tuple(self, config):
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config, *, filter=None, before=None, limit=None):
        items = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in items:
            yield item

    async def aput(self, config, checkpoint, metadata, new_versions):
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        return await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id):
        return await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids):
        return await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id, target_thread_id):
        return await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids, *, strategy="keep_latest"):
        return await asyncio.to_thread(lambda: self.prune(thread_ids, strategy=strategy))


def _run_suite(factory_cls, pg_server, **kwargs) -> None:
    @checkpointer_test(name=f"{factory_cls.__name__}-{kwargs}")
    async def factory():
        saver = factory_cls(pg_server.url(pg_server.create_database("conf")), **kwargs)
        saver.setup()
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
@pytest.mark.parametrize("cls", [RustPostgresCheckpointer, SyncThroughThread])
def test_conformance(cls, delta: bool, pg_server) -> None:
    _run_suite(cls, pg_server, delta=delta)


def test_conformance_with_the_guard(pg_server) -> None:
    _run_suite(RustPostgresCheckpointer, pg_server, guard=True)
