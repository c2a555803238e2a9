"""Retention with LangGraph's `DeltaChannel`: `prune(strategy="keep_latest")`, `delete_for_runs`,
`copy_thread` and `prune_older_than` keep every ancestor (and its writes) that a kept
checkpoint needs to rebuild its delta channels, so what is kept reads back unchanged.

Real graphs: a chat with an `add_messages` history and a `DeltaChannel` list that stores a
snapshot every 3 updates.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated

import pytest
from conftest import cfg
from graph_apps import Normalizer, extend
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from fast_langgraph import RustSQLiteCheckpointer


class State(TypedDict):
    messages: Annotated[list, add_messages]
    items: Annotated[list, DeltaChannel(extend, snapshot_frequency=3)]


def delta_graph(saver):
    def bot(state: State) -> dict:
        n = len(state["messages"])
        return {"messages": [AIMessage(f"answer {n}")], "items": [f"item {n}"]}

    b = StateGraph(State)
    b.add_node("bot", bot)
    b.add_edge(START, "bot")
    b.add_edge("bot", END)
    return b.compile(checkpointer=saver)


def run_turns(graph, thread: str, turns: range, run_id: str | None = None) -> None:
    for i in turns:
        config = cfg(thread)
        if run_id is not None:
            # One run id per invocation (LangGraph takes a repeated one for a retry of it).
            config["metadata"] = {"run_id": f"{run_id}-{i}"}
        graph.invoke({"messages": [HumanMessage(f"q{i}")], "items": [f"in {i}"]}, config)


def states_by_id(graph, thread: str) -> dict[str, dict]:
    """Every checkpoint of the thread that get_state_history returns, by id, as its values."""
    norm = Normalizer([])
    return {
        s.config["configurable"]["checkpoint_id"]: norm(s.values)
        for s in graph.get_state_history(cfg(thread))
    }


def count(saver, thread: str) -> int:
    return sum(1 for _ in saver.list(cfg(thread)))


@pytest.fixture
def saver(tmp_path):
    """The saver of the tests that tests/test_postgres_retention.py runs on Postgres too (it
    imports them, and gives them its own ``saver``)."""
    with RustSQLiteCheckpointer(tmp_path / "a.db") as s:
        yield s


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "no-delta"])
def test_prune_keep_latest_keeps_what_delta_channels_need(tmp_path, delta: bool) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db", delta=delta) as saver:
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
        assert saver.check() == []
        # The thread goes on from the kept state.
        run_turns(graph, "t", range(7, 8))
        assert len(graph.get_state(cfg("t")).values["items"]) == 16
        # Another thread is untouched.
        assert count(saver, "other") > 1


def test_prune_without_delta_channels_keeps_only_the_latest(tmp_path) -> None:
    class Plain(TypedDict):
        messages: Annotated[list, add_messages]

    b = StateGraph(Plain)
    b.add_node("bot", lambda s: {"messages": [AIMessage("a")]})
    b.add_edge(START, "bot")
    b.add_edge("bot", END)
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        graph = b.compile(checkpointer=saver)
        for i in range(4):
            graph.invoke({"messages": [HumanMessage(f"q{i}")]}, cfg("t"))
        values = graph.get_state(cfg("t")).values
        saver.prune(["t"])
        assert count(saver, "t") == 1
        assert graph.get_state(cfg("t")).values == values


def test_delete_for_runs_keeps_ancestors_a_later_run_needs(saver) -> None:
    graph = delta_graph(saver)
    run_turns(graph, "t", range(4), run_id="old")
    run_turns(graph, "t", range(4, 5), run_id="new")
    old = [f"old-{i}" for i in range(4)]
    assert {t.metadata.get("run_id") for t in saver.list(cfg("t"))} == {*old, "new-4"}
    before = states_by_id(graph, "t")
    new_ids = {
        t.config["configurable"]["checkpoint_id"]
        for t in saver.list(cfg("t"))
        if t.metadata.get("run_id") == "new-4"
    }
    saver.delete_for_runs(old)
    after = states_by_id(graph, "t")
    assert new_ids <= set(after)
    assert len(after) < len(before)
    assert after == {cid: before[cid] for cid in after}
    assert len(graph.get_state(cfg("t")).values["items"]) == 10


def test_delete_for_runs_deletes_a_run_nothing_needs(saver) -> None:
    graph = delta_graph(saver)
    run_turns(graph, "gone", range(3), run_id="r1")
    run_turns(graph, "kept", range(3), run_id="r2")
    saver.delete_for_runs([f"r1-{i}" for i in range(3)])
    assert count(saver, "gone") == 0
    assert len(graph.get_state(cfg("kept")).values["items"]) == 6


def test_copy_thread_rebuilds_delta_channels_in_the_copy(saver) -> None:
    graph = delta_graph(saver)
    run_turns(graph, "src", range(5))
    saver.copy_thread("src", "dst")
    assert list(states_by_id(graph, "dst").values()) == list(states_by_id(graph, "src").values())
    run_turns(graph, "dst", range(5, 6))
    assert len(graph.get_state(cfg("dst")).values["items"]) == 12
    assert len(graph.get_state(cfg("src")).values["items"]) == 10


def _newest_time(saver, thread: str) -> datetime:
    newest = uuid.UUID(saver.get_tuple(cfg(thread)).config["configurable"]["checkpoint_id"])
    ticks = ((newest.int >> 80) << 12) | ((newest.int >> 64) & 0xFFF)
    return datetime.fromtimestamp((ticks - 0x01B21DD213814000) / 1e7, timezone.utc)


def test_prune_older_than_deletes_idle_threads_only(saver) -> None:
    graph = delta_graph(saver)
    run_turns(graph, "idle", range(2))
    run_turns(graph, "busy", range(2))
    # Turns until the busy thread's newest checkpoint is a few ms younger (no sleeping).
    while _newest_time(saver, "busy") - _newest_time(saver, "idle") < timedelta(milliseconds=5):
        run_turns(graph, "busy", range(1))
    cutoff = _newest_time(saver, "idle") + timedelta(milliseconds=2)
    now = cutoff + timedelta(days=30)
    busy = states_by_id(graph, "busy")

    assert saver.prune_older_than(timedelta(days=30), now=now) == 1
    assert count(saver, "idle") == 0
    assert states_by_id(graph, "busy") == busy
    # Nothing is idle for more than 31 days.
    assert saver.prune_older_than(timedelta(days=31), now=now) == 0
    # A naive `now` is refused (local or UTC would be a guess), and nothing is deleted.
    naive = now.replace(tzinfo=None) + timedelta(days=1)
    with pytest.raises(ValueError, match="timezone-aware"):
        asyncio.run(saver.aprune_older_than(timedelta(days=1), now=naive))
    assert count(saver, "busy") > 0
    assert asyncio.run(saver.aprune_older_than(timedelta(days=1), now=now + timedelta(days=1))) == 1
    assert count(saver, "busy") == 0


def test_prune_older_than_keep_latest_keeps_delta_ancestors(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        graph = delta_graph(saver)
        run_turns(graph, "t", range(7))
        latest = Normalizer([])(graph.get_state(cfg("t")).values)
        n_before = count(saver, "t")
        now = datetime.now(timezone.utc) + timedelta(days=2)
        assert saver.prune_older_than(timedelta(days=1), strategy="keep_latest", now=now) == 1
        assert 1 < count(saver, "t") < n_before
        assert Normalizer([])(graph.get_state(cfg("t")).values) == latest


def test_prune_older_than_checks_its_arguments(saver) -> None:
    with pytest.raises(TypeError, match="max_idle"):
        saver.prune_older_than(3600)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_idle"):
        saver.prune_older_than(timedelta(seconds=-1))
    with pytest.raises(TypeError, match="now"):
        saver.prune_older_than(timedelta(1), now="today")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strategy"):
        saver.prune_older_than(timedelta(1), strategy="all")  # type: ignore[arg-type]
