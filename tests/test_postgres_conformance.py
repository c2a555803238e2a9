"""LangGraph's public conformance suite (langgraph-checkpoint-conformance) against
RustPostgresCheckpointer on the throwaway test server: every capability, through the async
methods and through the sync methods called from a worker thread, each saver on a fresh
database. The suite skips a capability whose method is not overridden and still reports a
"full" level, so these tests count what ran and passed."""

from __future__ import annotations

import asyncio

import pytest
from conftest import SyncThroughThreadMixin, assert_conformant
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test

from fast_langgraph import RustPostgresCheckpointer


class SyncThroughThread(SyncThroughThreadMixin, RustPostgresCheckpointer):
    """RustPostgresCheckpointer with every a* call routed to the sync method on a worker
    thread."""


def run_suite(factory_cls, pg_server, icu_locale: str | None = None, **kwargs) -> None:
    """The suite against ``factory_cls(url, **kwargs)``, each saver on a new database (made
    with that ICU default collation if ``icu_locale``)."""

    @checkpointer_test(name=f"{factory_cls.__name__}-{icu_locale}-{kwargs}")
    async def factory():
        db = pg_server.create_database("conf", icu_locale=icu_locale)
        saver = factory_cls(pg_server.url(db), **kwargs)
        saver.setup()
        try:
            yield saver
        finally:
            saver.close()

    assert_conformant(factory)


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "no-delta"])
@pytest.mark.parametrize("cls", [RustPostgresCheckpointer, SyncThroughThread])
def test_conformance(cls, delta: bool, pg_server) -> None:
    run_suite(cls, pg_server, delta=delta)


def test_conformance_with_the_guard(pg_server) -> None:
    run_suite(RustPostgresCheckpointer, pg_server, guard=True)


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "no-delta"])
@pytest.mark.parametrize("cls", [RustPostgresCheckpointer, SyncThroughThread])
def test_delta_channel_history_spec(cls, delta: bool, pg_server) -> None:
    """LangGraph's delta-channel-history spec (vendored in tests/vendor/, 8 tests), through the
    async API and through the sync API from a worker thread."""
    from vendor.langgraph_conformance.test_delta_channel_history import (
        ALL_DELTA_CHANNEL_HISTORY_TESTS,
        run_delta_channel_history_tests,
    )

    for name in ("get_delta_channel_history", "aget_delta_channel_history"):
        assert getattr(cls, name) is not getattr(BaseCheckpointSaver, name)
    ran: list[tuple[str, bool]] = []

    async def run() -> tuple[int, int, list[str]]:
        saver = cls(pg_server.url(pg_server.create_database("delta_spec")), delta=delta)
        saver.setup()
        try:
            return await run_delta_channel_history_tests(
                saver, on_test_result=lambda _cap, name, ok, _err: ran.append((name, ok))
            )
        finally:
            saver.close()

    passed, failed, failures = asyncio.run(run())
    assert failures == [] and failed == 0, "\n".join(failures)
    assert passed == len(ALL_DELTA_CHANNEL_HISTORY_TESTS) == 8
    assert [name for name, ok in ran if ok] == [t.__name__ for t in ALL_DELTA_CHANNEL_HISTORY_TESTS]
