"""Append-only deltas for list channels: real graphs give the same states, histories and time
travel as stock SqliteSaver, the database holds deltas (not full copies), and chains stay whole
through prune, copy, delete and a killed process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from fast_langgraph import RustSQLiteCheckpointer


class Chat(TypedDict):
    messages: Annotated[list, add_messages]


def chat_graph(checkpointer: Any):
    """A chat whose bot sometimes edits its last answer by id or removes a message."""

    def bot(state: Chat) -> dict:
        msgs = state["messages"]
        last = msgs[-1].content
        if last.startswith("edit"):
            prev = next(m for m in reversed(msgs) if isinstance(m, AIMessage))
            return {"messages": [AIMessage(content=prev.content + " (edited)", id=prev.id)]}
        if last.startswith("forget"):
            return {
                "messages": [
                    RemoveMessage(id=msgs[0].id),
                    AIMessage(content="forgotten", id=f"a{len(msgs)}"),
                ]
            }
        return {"messages": [AIMessage(content=f"reply to {last}", id=f"a{len(msgs)}")]}

    g = StateGraph(Chat)
    g.add_node("bot", bot)
    g.add_edge(START, "bot")
    g.add_edge("bot", END)
    return g.compile(checkpointer=checkpointer)


def _turns(n: int) -> list[str]:
    out = []
    for i in range(n):
        if i % 7 == 6:
            out.append(f"edit {i}")
        elif i % 11 == 10:
            out.append(f"forget {i}")
        else:
            out.append(f"question {i}")
    return out


def _snapshot(graph: Any, config: dict) -> list:
    """Every checkpoint of the thread, newest first: values and metadata, without ids that
    differ between runs."""
    out = []
    for snap in graph.get_state_history(config):
        out.append(
            (
                [(type(m).__name__, m.content, m.id) for m in snap.values.get("messages", [])],
                snap.next,
                {k: v for k, v in snap.metadata.items() if k not in ("run_id", "thread_id")},
            )
        )
    return out


def _delta_rows(saver: RustSQLiteCheckpointer) -> tuple[int, int]:
    # Through the saver: opening the file with Python's own sqlite3 module while the saver
    # has it open would mix two SQLite libraries on one file in one process.
    stats = saver.storage_stats()
    return stats["blobs"], stats["delta_blobs"]


def _run_chat(graph: Any, thread: str, turns: list[str]) -> None:
    config = {"configurable": {"thread_id": thread}}
    for text in turns:
        graph.invoke({"messages": [HumanMessage(content=text, id=f"h-{text}")]}, config)


@pytest.fixture
def stock(tmp_path: Path):
    conn = sqlite3.connect(tmp_path / "stock.db", check_same_thread=False)
    yield SqliteSaver(conn)
    conn.close()


def test_long_chat_with_edits_and_removals_matches_sqlite_saver(tmp_path: Path, stock) -> None:
    ours = RustSQLiteCheckpointer(tmp_path / "ours.db", snapshot_every=8)
    turns = _turns(40)
    config = {"configurable": {"thread_id": "chat"}}
    for saver in (stock, ours):
        _run_chat(chat_graph(saver), "chat", turns)
    assert _snapshot(chat_graph(ours), config) == _snapshot(chat_graph(stock), config)
    total, deltas = _delta_rows(ours)
    # 40 turns make 80 versions of `messages`; most append. Edits, removals, the first value
    # and the snapshot after every 8 deltas are stored in full.
    assert 50 <= deltas < 80, (total, deltas)
    ours.close()
    # A new process (here: a new saver) reads the same history back from the file.
    reopened = RustSQLiteCheckpointer(tmp_path / "ours.db")
    assert _snapshot(chat_graph(reopened), config) == _snapshot(chat_graph(stock), config)


def test_delta_false_stores_full_values(tmp_path: Path) -> None:
    saver = RustSQLiteCheckpointer(tmp_path / "full.db", delta=False)
    _run_chat(chat_graph(saver), "chat", _turns(10))
    total, deltas = _delta_rows(saver)
    assert total > 10 and deltas == 0


def test_time_travel_to_every_checkpoint_gives_the_value_of_that_step(
    tmp_path: Path, stock
) -> None:
    ours = RustSQLiteCheckpointer(tmp_path / "ours.db", snapshot_every=4)
    graphs = {"stock": chat_graph(stock), "ours": chat_graph(ours)}
    config = {"configurable": {"thread_id": "tt"}}
    for g in graphs.values():
        _run_chat(g, "tt", _turns(15))
    histories = {name: list(g.get_state_history(config)) for name, g in graphs.items()}
    assert len(histories["ours"]) == len(histories["stock"])
    for s_ours, s_stock in zip(histories["ours"], histories["stock"]):
        via_config = graphs["ours"].get_state(s_ours.config)
        assert via_config.values == s_ours.values == s_stock.values
    # Fork from an old checkpoint and go on: the fork and the original both stay exact.
    old = histories["ours"][10]
    old_stock = histories["stock"][10]
    for g, snap in ((graphs["ours"], old), (graphs["stock"], old_stock)):
        g.invoke({"messages": [HumanMessage(content="fork question", id="hf")]}, snap.config)
        g.invoke({"messages": [HumanMessage(content="fork again", id="hf2")]}, config)
    assert _snapshot(graphs["ours"], config) == _snapshot(graphs["stock"], config)


class Outer(TypedDict):
    messages: Annotated[list, add_messages]


def test_subgraph_and_interrupt_match_sqlite_saver(tmp_path: Path, stock) -> None:
    def ask(state: Outer) -> dict:
        answer = interrupt("approve?")
        return {
            "messages": [AIMessage(content=f"approved: {answer}", id=f"ok{len(state['messages'])}")]
        }

    sub = StateGraph(Outer)
    sub.add_node("ask", ask)
    sub.add_edge(START, "ask")
    sub = sub.compile()

    def build(saver: Any):
        g = StateGraph(Outer)
        g.add_node(
            "greet", lambda s: {"messages": [AIMessage(content="hi", id=f"g{len(s['messages'])}")]}
        )
        g.add_node("sub", sub)
        g.add_edge(START, "greet")
        g.add_edge("greet", "sub")
        g.add_edge("sub", END)
        return g.compile(checkpointer=saver)

    ours = RustSQLiteCheckpointer(tmp_path / "ours.db")
    results = {}
    for name, saver in (("stock", stock), ("ours", ours)):
        graph = build(saver)
        config = {"configurable": {"thread_id": "sub"}}
        for i in range(4):
            graph.invoke({"messages": [HumanMessage(content=f"q{i}", id=f"q{i}")]}, config)
            state = graph.get_state(config, subgraphs=True)
            assert state.next == ("sub",)
            graph.invoke(Command(resume=f"yes {i}"), config)
        results[name] = (_snapshot(graph, config), graph.get_state(config).values)
    assert results["ours"] == results["stock"]


def test_prune_keeps_the_bases_of_the_kept_checkpoint(tmp_path: Path) -> None:
    saver = RustSQLiteCheckpointer(tmp_path / "p.db", snapshot_every=50)
    graph = chat_graph(saver)
    config = {"configurable": {"thread_id": "p"}}
    turns = [f"question {i}" for i in range(12)]
    _run_chat(graph, "p", turns)
    before = graph.get_state(config).values
    saver.prune(["p"], strategy="keep_latest")
    assert len(list(saver.list(config))) == 1
    assert graph.get_state(config).values == before
    # The next step extends a version whose base chain survived the prune.
    graph.invoke({"messages": [HumanMessage(content="after prune", id="hx")]}, config)
    assert [m.content for m in graph.get_state(config).values["messages"]][-2:] == [
        "after prune",
        "reply to after prune",
    ]
    fresh = RustSQLiteCheckpointer(tmp_path / "p.db")
    assert chat_graph(fresh).get_state(config).values == graph.get_state(config).values


def test_copy_and_delete_keep_chains_whole(tmp_path: Path) -> None:
    saver = RustSQLiteCheckpointer(tmp_path / "c.db")
    graph = chat_graph(saver)
    _run_chat(graph, "src", [f"question {i}" for i in range(6)])
    saver.copy_thread("src", "dst")
    src_hist = _snapshot(graph, {"configurable": {"thread_id": "src"}})
    assert _snapshot(graph, {"configurable": {"thread_id": "dst"}}) == src_hist
    saver.delete_thread("src")
    assert _snapshot(graph, {"configurable": {"thread_id": "dst"}}) == src_hist
    # A delta over a version deleted behind the saver's back is refused and stored in full.
    _run_chat(graph, "src", ["again"])
    assert len(graph.get_state({"configurable": {"thread_id": "src"}}).values["messages"]) == 2


def test_after_a_restart_the_first_step_is_a_delta_over_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    # Long enough that the history is stored apart (a short one stays inside its checkpoint).
    pad = " and more" * 40
    first = RustSQLiteCheckpointer(path)
    _run_chat(chat_graph(first), "r", [q + pad for q in ["q0", "q1", "q2a", "q3a", "q4a"]])
    before = _delta_rows(first)
    first.close()
    second = RustSQLiteCheckpointer(path)  # a new saver knows no versions yet
    graph = chat_graph(second)
    _run_chat(graph, "r", ["q2" + pad])
    after = _delta_rows(second)
    assert after[1] > before[1], (before, after)
    contents = [
        m.content for m in graph.get_state({"configurable": {"thread_id": "r"}}).values["messages"]
    ]
    questions = [q + pad for q in ["q0", "q1", "q2a", "q3a", "q4a", "q2"]]
    assert contents == [text for q in questions for text in (q, f"reply to {q}")]


CHILD = textwrap.dedent(
    """
    import sys
    from langchain_core.messages import HumanMessage
    sys.path.insert(0, {tests!r})
    from test_deltas import chat_graph
    from fast_langgraph import RustSQLiteCheckpointer

    graph = chat_graph(RustSQLiteCheckpointer({path!r}, snapshot_every=5))
    config = {{"configurable": {{"thread_id": "crash"}}}}
    start = len(graph.get_state(config).values.get("messages", [])) // 2
    for i in range(start, 100000):
        graph.invoke({{"messages": [HumanMessage(content=f"question {{i}}", id=f"h{{i}}")]}}, config)
        print(i, flush=True)
    """
)


def test_a_killed_process_never_leaves_a_broken_chain(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    code = CHILD.format(tests=str(Path(__file__).parent), path=str(path))
    for attempt in range(3):
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        done = -1
        deadline = time.monotonic() + 60
        while done < 15 * (attempt + 1) and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            done = int(line)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        assert done >= 0, "the child made no progress"
        saver = RustSQLiteCheckpointer(path)
        config = {"configurable": {"thread_id": "crash"}}
        tuples = list(saver.list(config))
        for tup in tuples:
            # Every checkpoint reads back whole: its messages alternate question/reply in order.
            again = saver.get_tuple(tup.config)
            assert again is not None
            msgs = again.checkpoint["channel_values"].get("messages", [])
            for j, m in enumerate(msgs):
                assert m.content == (
                    f"question {j // 2}" if j % 2 == 0 else f"reply to question {j // 2}"
                )
        latest = saver.get_tuple(config)
        assert latest is not None
        # Everything the child reported as done was committed before it died.
        assert len(latest.checkpoint["channel_values"]["messages"]) >= 2 * (done + 1)
        assert saver.check() == []
        assert saver.storage_stats()["delta_blobs"] > 0
        saver.close()


def test_a_list_grown_in_place_during_the_commit_is_stored_whole(tmp_path: Path) -> None:
    """With durability="async" the commit runs on a background thread while the graph goes on;
    a reducer that extends the stored list in place must not make the next delta skip items."""
    from langgraph.checkpoint.base import empty_checkpoint

    saver = RustSQLiteCheckpointer(tmp_path / "grow.db")
    history = [HumanMessage(content=f"m{i}", id=f"m{i}") for i in range(40)]
    real_store = saver._store

    class GrowsDuringCommit:
        def __getattr__(self, name):
            return getattr(real_store, name)

        def put(self, args):
            real_store.put(args)
            history.append(HumanMessage(content=f"m{len(history)}", id=f"m{len(history)}"))

    saver._store = GrowsDuringCommit()
    config = {"configurable": {"thread_id": "g", "checkpoint_ns": ""}}
    version = None
    for _ in range(3):
        cp = empty_checkpoint()
        version = saver.get_next_version(version, None)
        cp["channel_values"] = {"messages": history}
        cp["channel_versions"] = {"messages": version}
        config = saver.put(config, cp, {"source": "loop", "step": 0}, {"messages": version})
    saver._store = real_store
    stored = saver.get_tuple(config).checkpoint["channel_values"]["messages"]
    # The last put stored the 42 items the list held then; the one appended after it is not.
    assert [m.content for m in stored] == [f"m{i}" for i in range(42)]
    assert saver.storage_stats()["delta_blobs"] == 2


def test_remember_many_is_remember_for_each_under_one_lock() -> None:
    """``remember_many`` leaves the same versions, in the same recency order, as ``remember``
    called once per entry, and keeps the bound on the number of keys."""
    from fast_langgraph.checkpoint._deltas import ListVersions, Remembered

    items = [object() for _ in range(20)]
    one, many = ListVersions(), ListVersions()
    entries = [
        (("t", "", f"c{i % 5}"), Remembered(str(i), tuple(items[: i + 1]), i % 3))
        for i in range(12)
    ]
    for slot in ("put", "read"):
        for key, entry in entries:
            one.remember(key, entry, slot)
        many.remember_many(entries, slot)
    assert list(one._entries.items()) == list(many._entries.items())
    # The newest version of each key is the one a delta extends.
    assert many.base_for(("t", "", "c1"), items) == entries[11][1]
    many.remember_many([])
    assert list(one._entries.items()) == list(many._entries.items())
    bound = ListVersions()
    bound.MAX_ENTRIES = 3
    bound.remember_many([(("t", "", f"k{i}"), Remembered("1", (), 0)) for i in range(5)])
    assert list(bound._entries) == [("t", "", "k2"), ("t", "", "k3"), ("t", "", "k4")]


def test_remembered_items_are_bounded_and_the_newest_key_stays() -> None:
    """What the saver remembers keeps the items alive, so their number is bounded: the least
    recently used keys go first, the key just remembered never, even when it alone is over."""
    from fast_langgraph.checkpoint._deltas import ListVersions, Remembered

    items = tuple(object() for _ in range(10))
    lists = ListVersions()
    lists.MAX_ITEMS = 25
    for i in range(3):
        lists.remember(("t", "", f"k{i}"), Remembered("1", items, 0))
    # 30 items held over a bound of 25: the oldest key goes.
    assert list(lists._entries) == [("t", "", "k1"), ("t", "", "k2")]
    assert lists._items == 20
    # Both slots of a key count; a slot remembered again replaces its old count.
    lists.remember(("t", "", "k2"), Remembered("2", items[:5], 0), "read")
    lists.remember(("t", "", "k2"), Remembered("2", items[:4], 0), "read")
    assert lists._items == 24
    big = tuple(object() for _ in range(40))
    lists.remember(("t", "", "huge"), Remembered("1", big, 0))
    assert list(lists._entries) == [("t", "", "huge")] and lists._items == 40
    assert lists.base_for(("t", "", "huge"), [*big, object()]) is not None
    lists.remember(("u", "", "k"), Remembered("1", items, 0))
    lists.forget_thread("t")
    assert list(lists._entries) == [("u", "", "k")] and lists._items == 10
    lists.clear()
    assert lists._items == 0


def test_threads_past_the_bound_read_back_whole_and_a_read_brings_deltas_back(
    tmp_path: Path,
) -> None:
    """With more conversations than the bound keeps, each still reads back exactly; the
    first put of one whose versions were dropped is stored whole, and since every invocation
    starts by reading its thread, the steps after it are deltas again."""
    saver = RustSQLiteCheckpointer(tmp_path / "b.db")
    saver._lists.MAX_ITEMS = 30
    graph = chat_graph(saver)
    pad = " and more" * 40  # long enough to be stored apart
    threads = [f"t{i}" for i in range(4)]
    for turn in range(3):
        for t in threads:
            _run_chat(graph, t, [f"{t} q{turn}{pad}"])
    assert saver._lists._items <= 30 or len(saver._lists._entries) == 1
    deltas = _delta_rows(saver)[1]
    for t in threads:
        values = graph.get_state({"configurable": {"thread_id": t}}).values["messages"]
        questions = [f"{t} q{turn}{pad}" for turn in range(3)]
        assert [m.content for m in values] == [x for q in questions for x in (q, f"reply to {q}")]
    _run_chat(graph, "t0", [f"t0 q3{pad}"])
    assert _delta_rows(saver)[1] > deltas
