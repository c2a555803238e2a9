"""Graphs that mix our append-only deltas (an `add_messages` history) and LangGraph's
`DeltaChannel` give the same results, states and histories as stock SqliteSaver, and the same
stored checkpoints as InMemorySaver (which, as we do, stores values per channel version), with
our deltas on and off; and each mechanism does its job (the history is stored as deltas, the
DeltaChannel as snapshots plus writes)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from typing import Annotated

import pytest
from conftest import cfg
from graph_apps import Normalizer, delta_app, extend, history_dump, sqlite_saver, thread_dump
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from fast_langgraph import RustSQLiteCheckpointer


def mixed_graph(saver, snapshot_frequency: int = 3):
    # Built at run time: the DeltaChannel's snapshot frequency is a parameter.
    return delta_app(snapshot_frequency).compile(checkpointer=saver)


def run(saver, turns: int, snapshot_frequency: int = 3) -> tuple:
    graph = mixed_graph(saver, snapshot_frequency)
    outs = []
    for i in range(turns):
        out = graph.invoke(
            {"messages": [HumanMessage(f"q{i}", id=f"h-{i}")], "notes": [f"in {i}"]}, cfg("t")
        )
        outs.append((len(out["messages"]), out["notes"]))
        if i == 1:
            # A fork: update_state writes both kinds of channel.
            graph.update_state(
                cfg("t"), {"notes": ["edited"], "messages": [HumanMessage("x", id="e")]}
            )
    return outs, history_dump(graph, cfg("t")), thread_dump(saver, "t")


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "no-delta"])
def test_mixed_graph_matches_sqlite_saver_and_in_memory_saver(tmp_path, delta: bool) -> None:
    stock = sqlite_saver(tmp_path / "stock.db")
    expected = run(stock, 8)
    stock.conn.close()
    in_memory = run(InMemorySaver(), 8)
    with RustSQLiteCheckpointer(tmp_path / "ours.db", delta=delta) as ours:
        got = run(ours, 8)
        # What the graph returns, its state and its history: as with SqliteSaver.
        assert got[0] == expected[0]
        assert got[1] == expected[1]
        # The stored checkpoints: as with InMemorySaver, which stores values per channel
        # version as we do (SqliteSaver stores them inline per checkpoint, so a
        # DeltaChannel snapshot shows only at the checkpoint that wrote it there, while a
        # per-version store shows it at every checkpoint of that version; the values and
        # states are the same).
        assert got == in_memory
        # Our deltas stored the growing history as deltas (only with delta=True) ...
        assert (ours.storage_stats()["delta_blobs"] > 0) is delta
        # ... and the DeltaChannel rebuilds the latest value from writes after a snapshot.
        history = ours.get_delta_channel_history(config=cfg("t"), channels=["notes"])
        assert history["notes"]["writes"]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(turns=st.integers(1, 12), snapshot_frequency=st.integers(1, 5))
def test_mixed_graph_matches_sqlite_saver_for_any_length(
    turns, snapshot_frequency, tmp_path_factory
):
    tmp = tmp_path_factory.mktemp("mixed")
    stock = sqlite_saver(tmp / "stock.db")
    expected = run(stock, turns, snapshot_frequency)
    stock.conn.close()
    with RustSQLiteCheckpointer(tmp / "ours.db") as ours:
        got = run(ours, turns, snapshot_frequency)
        assert got[:2] == expected[:2]
        assert got == run(InMemorySaver(), turns, snapshot_frequency)


def test_mixed_graph_reads_back_after_reopening(tmp_path) -> None:
    path = tmp_path / "ours.db"
    with RustSQLiteCheckpointer(path) as ours:
        _outs, history, _dump = run(ours, 6)
    with RustSQLiteCheckpointer(path) as again:
        graph = mixed_graph(again)
        assert history_dump(graph, cfg("t")) == history
        out = graph.invoke({"messages": [HumanMessage("more", id="h-more")]}, cfg("t"))
        assert out["notes"][-3:] == ["note 14", "worker 0", "worker 1"]


class Notes(TypedDict):
    notes: Annotated[list, DeltaChannel(extend, snapshot_frequency=4)]


def snapshot_graph(saver):
    def add(state: dict) -> dict:
        return {"notes": [f"note {len(state['notes'])}"]}

    b = StateGraph(Notes)
    b.add_node("add", add)
    b.add_edge(START, "add")
    b.add_edge("add", END)
    return b.compile(checkpointer=saver)


@pytest.mark.parametrize("restart", [False, True], ids=["one-process", "reopened"])
def test_delta_channel_snapshots_are_stored_as_deltas(tmp_path, restart: bool) -> None:
    """Each snapshot holds the whole list; ours stores what it appended since the previous
    snapshot, also after a restart (the seed read back is remembered)."""
    path = tmp_path / "ours.db"
    stock = sqlite_saver(tmp_path / "stock.db")
    expected_graph = snapshot_graph(stock)
    saver = RustSQLiteCheckpointer(path)
    graph = snapshot_graph(saver)
    for i in range(40):
        if restart and i == 20:
            saver.close()
            saver = RustSQLiteCheckpointer(path)
            graph = snapshot_graph(saver)
        for g in (graph, expected_graph):
            g.invoke({"notes": [f"in {i}"]}, cfg("t"))
    try:
        assert saver.storage_stats()["delta_blobs"] >= 5
        assert history_dump(graph, cfg("t")) == history_dump(expected_graph, cfg("t"))
        assert saver.check() == []
    finally:
        saver.close()
        stock.conn.close()


# -- the first read of a thread in a new process ---------------------------------------------


def chat_messages(state: list, writes: list) -> list:
    """`add_messages` over a batch of writes, as `DeltaChannel` calls its reducer."""
    return add_messages(state, [m for w in writes for m in (w if isinstance(w, list) else [w])])


def delta_chat_graph(saver):
    class Chat(TypedDict):
        messages: Annotated[list, DeltaChannel(chat_messages, snapshot_frequency=4)]

    def bot(state: dict) -> dict:
        n = len(state["messages"])
        return {"messages": [AIMessage(f"answer {n}", id=f"ai-{n}")]}

    b = StateGraph(Chat)
    b.add_node("bot", bot)
    b.add_edge(START, "bot")
    b.add_edge("bot", END)
    return b.compile(checkpointer=saver)


APPS = {"mixed": mixed_graph, "chat": delta_chat_graph}


def first_read(app: str, saver_kind: str, path: str, out: str) -> None:
    """In a new process: open the saver on ``path``, read the thread's state (the process's
    first read of it), then its history; pickles both, normalized, to ``out``."""
    if saver_kind == "stock":
        saver = sqlite_saver(path)
    else:
        saver = RustSQLiteCheckpointer(path, delta=saver_kind == "ours")
    graph = APPS[app](saver)
    state = graph.get_state(cfg("t"))
    norm = Normalizer.for_thread(saver, "t")
    with open(out, "wb") as f:
        pickle.dump((norm(state), history_dump(graph, cfg("t"))), f)


def read_in_new_process(tmp_path, app: str, saver_kind: str, path) -> tuple:
    out = tmp_path / f"{saver_kind}.pickle"
    tests = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {tests!r}); import test_delta_channel_graphs as t; "
        f"t.first_read({app!r}, {saver_kind!r}, {str(path)!r}, {str(out)!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tests, timeout=120)
    with open(out, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("app", ["mixed", "chat"])
def test_first_read_in_a_new_process_matches_sqlite_saver(tmp_path, app: str) -> None:
    """The first get_state of a thread in a process that has read nothing yet (no decoded
    snapshot kept), then its history: the same as stock SqliteSaver's in a process of its own,
    with our deltas on and off."""
    paths = {kind: tmp_path / f"{kind}.db" for kind in ("stock", "ours", "ours-no-delta")}
    stock = sqlite_saver(paths["stock"])
    savers = {
        "stock": stock,
        "ours": RustSQLiteCheckpointer(paths["ours"]),
        "ours-no-delta": RustSQLiteCheckpointer(paths["ours-no-delta"], delta=False),
    }
    graphs = {kind: APPS[app](s) for kind, s in savers.items()}
    for i in range(14):
        for graph in graphs.values():
            graph.invoke({"messages": [HumanMessage(f"q{i}", id=f"h-{i}")]}, cfg("t"))
    stock.conn.close()
    savers["ours"].close()
    savers["ours-no-delta"].close()
    expected = read_in_new_process(tmp_path, app, "stock", paths["stock"])
    assert len(expected[1]) > 14
    for kind in ("ours", "ours-no-delta"):
        assert read_in_new_process(tmp_path, app, kind, paths[kind]) == expected, kind
