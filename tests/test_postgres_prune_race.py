"""Retention racing writes on Postgres: `prune` of a thread while a run keeps writing to it,
from another thread of the same process and from another process. A prune must never delete
a checkpoint committed while it runs, nor a stored value (or the base of an append-only
delta) that such a checkpoint needs: the thread reads back whole, and `check()` finds no
broken delta chain.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import pytest
from conftest import cfg
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from fast_langgraph import RustPostgresCheckpointer

TURNS = 40


def _echo_graph(saver):
    def bot(state: MessagesState) -> dict:
        return {"messages": [AIMessage(f"r{(len(state['messages']) - 1) // 2}")]}

    b = StateGraph(MessagesState)
    b.add_node("bot", bot)
    b.add_edge(START, "bot")
    b.add_edge("bot", END)
    return b.compile(checkpointer=saver)


def _wait_for_pruner(counter) -> None:
    """Returns once the pruner has pruned at least once (or fails after 120 s)."""
    deadline = time.monotonic() + 120
    while counter.value == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert counter.value > 0, "the pruner did not start"


def _prune_loop(url: str, strategy: str, stop, counter, threads=("t",)) -> None:
    with RustPostgresCheckpointer(url) as saver:
        while not stop.is_set():
            saver.prune(list(threads), strategy=strategy)
            with counter.get_lock():
                counter.value += 1


def _run_with_pruner(url: str, strategy: str, where: str, check_turn) -> int:
    """Runs TURNS turns on thread "t" while another thread or process prunes it in a loop;
    `check_turn(graph, turn)` checks the state after each turn. Returns how many prunes ran."""
    if where == "process":
        ctx = mp.get_context("spawn")
        stop, counter = ctx.Event(), ctx.Value("i", 0)
        pruner = ctx.Process(target=_prune_loop, args=(url, strategy, stop, counter))
    else:
        stop, counter = threading.Event(), mp.Value("i", 0)
        pruner = threading.Thread(target=_prune_loop, args=(url, strategy, stop, counter))
    with RustPostgresCheckpointer(url) as saver:
        graph = _echo_graph(saver)
        pruner.start()
        try:
            _wait_for_pruner(counter)  # running before anything is written
            for turn in range(TURNS):
                graph.invoke({"messages": [HumanMessage(f"q{turn}")]}, cfg("t"))
                check_turn(graph, turn)
        finally:
            stop.set()
            pruner.join(120)
        assert saver._store.check() == []
        # The thread goes on from what is stored, and reads back.
        graph.invoke({"messages": [HumanMessage("last")]}, cfg("t"))
        assert graph.get_state(cfg("t")).values["messages"][-1].content.startswith("r")
        return counter.value


@pytest.mark.parametrize("where", ["thread", "process"])
def test_prune_keep_latest_never_deletes_a_checkpoint_written_meanwhile(pg_db, where) -> None:
    with RustPostgresCheckpointer(pg_db) as saver:
        saver.setup()

    def check_turn(graph, turn: int) -> None:
        # The run is the only writer: its newest checkpoint is the thread's, with every turn.
        got = [m.content for m in graph.get_state(cfg("t")).values["messages"]]
        want = [x for i in range(turn + 1) for x in (f"q{i}", f"r{i}")]
        assert got == want, f"after turn {turn}"

    # The pruner ran before the first turn and went on while the turns ran.
    assert _run_with_pruner(pg_db, "keep_latest", where, check_turn) > 1


@pytest.mark.parametrize("where", ["thread", "process"])
def test_prune_delete_leaves_no_broken_delta_chain(pg_db, where) -> None:
    with RustPostgresCheckpointer(pg_db) as saver:
        saver.setup()

    def check_turn(graph, turn: int) -> None:
        # The thread may have been deleted meanwhile, but what is stored reads back: the
        # newest turn's answer closes the history.
        msgs = graph.get_state(cfg("t")).values.get("messages", [])
        assert not msgs or msgs[-1].content.startswith("r"), f"after turn {turn}"

    _run_with_pruner(pg_db, "delete", where, check_turn)


WRITERS = 4


def _long_echo_graph(saver):
    """Like _echo_graph, with answers long enough that the history soon leaves the checkpoint
    for a blob of its own, and grows by append-only deltas."""

    def bot(state: MessagesState) -> dict:
        return {"messages": [AIMessage(f"r{(len(state['messages']) - 1) // 2}" + "." * 400)]}

    b = StateGraph(MessagesState)
    b.add_node("bot", bot)
    b.add_edge(START, "bot")
    b.add_edge("bot", END)
    return b.compile(checkpointer=saver)


@pytest.mark.parametrize("strategy", ["keep_latest", "delete"])
def test_prune_racing_writers_of_several_threads_leaves_every_delta_its_base(
    pg_db, strategy
) -> None:
    # Several runs at once, each on its own thread, share the commits of one process: their
    # puts with deltas are stored by one statement per batch, each delta's base found with a
    # row lock. Another process prunes every thread in a loop meanwhile. No delta may be left
    # over a base a prune deleted, and each thread reads back whole.
    threads = [f"w{i}" for i in range(WRITERS)]
    with RustPostgresCheckpointer(pg_db) as saver:
        saver.setup()
    ctx = mp.get_context("spawn")
    stop, counter = ctx.Event(), ctx.Value("i", 0)
    pruner = ctx.Process(target=_prune_loop, args=(pg_db, strategy, stop, counter, tuple(threads)))
    errors: list[BaseException] = []
    most_deltas = [0]
    with RustPostgresCheckpointer(pg_db) as saver:
        graph = _long_echo_graph(saver)
        before = saver.writer_stats()

        def write(thread_id: str) -> None:
            try:
                for turn in range(TURNS):
                    graph.invoke({"messages": [HumanMessage(f"q{turn}")]}, cfg(thread_id))
                    msgs = graph.get_state(cfg(thread_id)).values.get("messages", [])
                    if strategy == "keep_latest":
                        # The run is the thread's only writer: its newest checkpoint has
                        # every turn.
                        want = [x for i in range(turn + 1) for x in (f"q{i}", f"r{i}" + "." * 400)]
                        assert [m.content for m in msgs] == want, f"{thread_id} after turn {turn}"
                    else:
                        # The thread may have been deleted meanwhile; what is stored reads
                        # back, the newest answer closing it.
                        assert not msgs or msgs[-1].content.startswith("r"), (
                            f"{thread_id} turn {turn}"
                        )
                    most_deltas[0] = max(most_deltas[0], saver.storage_stats()["delta_blobs"])
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        pruner.start()
        try:
            _wait_for_pruner(counter)
            workers = [threading.Thread(target=write, args=(t,)) for t in threads]
            for w in workers:
                w.start()
            for w in workers:
                w.join(600)
        finally:
            stop.set()
            pruner.join(120)
        assert not errors, errors[0]
        after = saver.writer_stats()
        assert counter.value > 1
        # Some calls shared a commit, and (with histories kept) deltas were stored. With the
        # threads deleted, most deltas' bases are gone by the time they are stored: refused,
        # and stored whole.
        if strategy == "keep_latest":
            assert most_deltas[0] > 0
        assert after["calls"] - before["calls"] > after["commits"] - before["commits"]
        assert saver._store.check() == []
        for t in threads:
            graph.invoke({"messages": [HumanMessage("last")]}, cfg(t))
            assert graph.get_state(cfg(t)).values["messages"][-1].content.startswith("r")
        assert saver._store.check() == []
