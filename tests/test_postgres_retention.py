"""Retention on Postgres with LangGraph's `DeltaChannel`: `prune(strategy="keep_latest")`,
`delete_for_runs`, `copy_thread` and `prune_older_than` keep every ancestor (and its writes)
that a kept checkpoint needs to rebuild its delta channels, so what is kept reads back
unchanged, as on SQLite (tests/test_retention.py, whose graphs these are, and five of whose
tests run here too).

Real graphs on the throwaway server: a chat with an `add_messages` history and a `DeltaChannel`
list that stores a snapshot every 3 updates.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated

import pytest
from conftest import cfg
from graph_apps import Normalizer
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

# Its helpers, and the tests that are the same on SQLite: collected here too, these take this
# module's ``saver`` (Postgres, with and without deltas).
from test_retention import (  # noqa: F401
    _newest_time,
    assert_reads_back,
    count,
    delta_graph,
    retain,
    run_turns,
    states_by_id,
    test_copy_thread_rebuilds_delta_channels_in_the_copy,
    test_delete_for_runs_deletes_a_run_nothing_needs,
    test_delete_for_runs_keeps_ancestors_a_later_run_needs,
    test_prune_older_than_checks_its_arguments,
    test_prune_older_than_deletes_idle_threads_only,
)
from typing_extensions import TypedDict

from fast_langgraph import RustPostgresCheckpointer


@pytest.fixture(params=[True, False], ids=["delta", "no-delta"])
def saver(request, pg_db):
    with RustPostgresCheckpointer(pg_db, delta=request.param) as s:
        s.setup()
        yield s


def test_prune_keep_latest_keeps_what_delta_channels_need(saver) -> None:
    graph = delta_graph(saver)
    run_turns(graph, "t", range(7))
    run_turns(graph, "other", range(2))
    before = states_by_id(graph, "t")
    latest = graph.get_state(cfg("t"))
    assert len(latest.values["items"]) == 14
    n_before = count(saver, "t")

    saver.prune(["t"], strategy="keep_latest")

    after = states_by_id(graph, "t")
    # Something was deleted, and what is kept reads back as it did.
    assert 1 < len(after) < n_before
    assert after == {cid: before[cid] for cid in after}
    assert Normalizer([])(graph.get_state(cfg("t")).values) == Normalizer([])(latest.values)
    assert saver._store.check() == []
    # The thread goes on from the kept state.
    run_turns(graph, "t", range(7, 8))
    assert len(graph.get_state(cfg("t")).values["items"]) == 16
    # Another thread is untouched.
    assert count(saver, "other") > 1


def test_prune_without_delta_channels_keeps_only_the_latest(pg_db) -> None:
    class Plain(TypedDict):
        messages: Annotated[list, add_messages]

    b = StateGraph(Plain)
    b.add_node("bot", lambda s: {"messages": [AIMessage("a")]})
    b.add_edge(START, "bot")
    b.add_edge("bot", END)
    with RustPostgresCheckpointer(pg_db) as saver:
        saver.setup()
        graph = b.compile(checkpointer=saver)
        for i in range(4):
            graph.invoke({"messages": [HumanMessage(f"q{i}")]}, cfg("t"))
        values = graph.get_state(cfg("t")).values
        saver.prune(["t"])
        assert count(saver, "t") == 1
        assert graph.get_state(cfg("t")).values == values


def test_prune_older_than_keep_latest_keeps_delta_ancestors(saver) -> None:
    graph = delta_graph(saver)
    run_turns(graph, "t", range(7))
    before = states_by_id(graph, "t")
    latest = Normalizer([])(graph.get_state(cfg("t")).values)
    n_before = count(saver, "t")
    now = datetime.now(timezone.utc) + timedelta(days=2)
    assert saver.prune_older_than(timedelta(days=1), strategy="keep_latest", now=now) == 1
    after = states_by_id(graph, "t")
    assert 1 < len(after) < n_before
    assert after == {cid: before[cid] for cid in after}
    assert Normalizer([])(graph.get_state(cfg("t")).values) == latest


def _kept_inside_thread(s, thread: str) -> list[dict]:
    """A thread whose ``ch`` became a DeltaChannel: the root and then ``seed`` store its plain
    value (small: kept inside their checkpoint rows), ``middle`` and ``last`` only a version,
    with the writes that rebuild it. Each checkpoint made by a run of its own. Returns the
    four configs, oldest first."""
    from langgraph.checkpoint.base import empty_checkpoint

    def put(parent, values: dict, version: str, run: str, counters: dict):
        cp = empty_checkpoint()
        cp["channel_values"] = values
        cp["channel_versions"] = {"ch": version}
        metadata = {"run_id": run, "counters_since_delta_snapshot": counters}
        return s.put(parent, cp, metadata, {"ch": version})

    root = put(cfg(thread, checkpoint_ns=""), {"ch": [0]}, "1", "r-root", {})
    s.put_writes(root, [("ch", [5])], "task-0")
    seed = put(root, {"ch": [1, 2]}, "2", "r-seed", {})
    s.put_writes(seed, [("ch", 7)], "task-1")
    middle = put(seed, {}, "3", "r-middle", {"ch": 1})
    s.put_writes(middle, [("ch", 8)], "task-2")
    last = put(middle, {}, "4", "r-last", {"ch": 2})
    return [root, seed, middle, last]


@pytest.mark.parametrize("how", ["prune", "prune_older_than", "delete_for_runs"])
def test_retention_stops_at_a_seed_kept_inside_a_checkpoint_row(pg_db, how: str) -> None:
    """A DeltaChannel's history starts at the nearest ancestor holding a value of it, whether
    it stores the value apart or keeps it inside its own row (a small value): retention keeps
    the ancestors up to that one, with their writes, and not those before it; what is kept
    reads back as before, with the history PostgresSaver gives for the same puts."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(pg_db) as stock:
        stock.setup()
        want = stock.get_delta_channel_history(
            config=_kept_inside_thread(stock, "stock")[-1], channels=["ch"]
        )
    assert want["ch"]["seed"] == [1, 2]
    assert [w[2] for w in want["ch"]["writes"]] == [7, 8]
    with RustPostgresCheckpointer(pg_db) as saver:
        saver.setup()
        root, seed, middle, last = _kept_inside_thread(saver, "t")
        assert saver.storage_stats()["blobs"] == 0  # both values kept inside their rows
        before = {
            c["configurable"]["checkpoint_id"]: saver.get_tuple(c) for c in [seed, middle, last]
        }
        retain(saver, how)
        # The root, which no history needs, is gone; the rest reads back as it did.
        after = {t.config["configurable"]["checkpoint_id"]: t for t in saver.list(cfg("t"))}
        assert set(after) == set(before)
        assert root["configurable"]["checkpoint_id"] not in after
        for cid, tup in before.items():
            assert_reads_back(saver.get_tuple(cfg("t", checkpoint_id=cid)), tup)
        assert saver.get_delta_channel_history(config=last, channels=["ch"]) == want
        assert saver._store.check() == []
