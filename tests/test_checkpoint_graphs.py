"""RustSQLiteCheckpointer against LangGraph's own SqliteSaver, on real StateGraph apps.

Each app runs twice, once per checkpointer, on real database files. Outputs, `get_state`,
the full `get_state_history` and every stored checkpoint (all namespaces, with pending
writes) must be the same once run-specific ids are normalized (see graph_apps.Normalizer).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import uuid
from pathlib import Path

import pytest
from conftest import cfg
from graph_apps import (
    Normalizer,
    athread_dump,
    chat_app,
    counter_app,
    history_dump,
    interrupt_app,
    send_app,
    sqlite_saver,
    subgraph_app,
    thread_dump,
)
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command, Interrupt, Send
from pydantic import BaseModel
from typing_extensions import TypedDict

from fast_langgraph import RustSQLiteCheckpointer


def both(tmp_path, script, thread_id: str = "t1"):
    """Runs `script(saver)` with each checkpointer on its own file; returns, per saver, the
    script's result and a normalized dump of the thread."""
    out = {}
    rust = RustSQLiteCheckpointer(tmp_path / "rust.db")
    ref = sqlite_saver(tmp_path / "ref.db")
    try:
        for name, saver in (("rust", rust), ("sqlite", ref)):
            result = script(saver)
            out[name] = (result, thread_dump(saver, thread_id))
    finally:
        rust.close()
        ref.conn.close()
    return out


def assert_same(out) -> None:
    rust_result, rust_dump = out["rust"]
    ref_result, ref_dump = out["sqlite"]
    assert len(rust_dump) == len(ref_dump)
    for i, (a, b) in enumerate(zip(rust_dump, ref_dump)):
        assert a == b, f"checkpoint #{i} differs"
    assert rust_result == ref_result


def check_id_structure(saver, thread_id: str) -> None:
    """Checkpoint ids of a thread are unique, sorted newest first by list(), and every parent
    is an earlier checkpoint of the same thread and namespace."""
    tuples = [t for t in saver.list(None) if t.config["configurable"]["thread_id"] == thread_id]
    by_ns: dict[str, list] = {}
    for t in tuples:
        by_ns.setdefault(t.config["configurable"]["checkpoint_ns"], []).append(t)
    for ns, items in by_ns.items():
        ids = [t.config["configurable"]["checkpoint_id"] for t in items]
        assert ids == sorted(ids, reverse=True)
        assert len(set(ids)) == len(ids)
        for t in items:
            assert t.checkpoint["id"] == t.config["configurable"]["checkpoint_id"]
            if t.parent_config is not None:
                pid = t.parent_config["configurable"]["checkpoint_id"]
                assert pid in ids and pid < t.checkpoint["id"]
                assert t.parent_config["configurable"]["checkpoint_ns"] == ns


# -- apps, sync ----------------------------------------------------------------------------


def test_chat_messages(tmp_path):
    def script(saver):
        graph = chat_app(["Hello!", "Fine, thanks."]).compile(checkpointer=saver)
        outs = [
            graph.invoke({"messages": [HumanMessage("hi")]}, cfg("t1")),
            graph.invoke({"messages": [HumanMessage("how are you?")]}, cfg("t1")),
        ]
        state = graph.get_state(cfg("t1"))
        norm = Normalizer.for_thread(saver, "t1")
        return [norm(o) for o in outs], norm(state), history_dump(graph, cfg("t1"))

    out = both(tmp_path, script)
    assert_same(out)
    (_outs, state, history), _ = out["rust"]
    contents = [m[1]["content"] for m in state["values"]["messages"]]
    assert contents == ["hi", "Hello!", "how are you?", "Fine, thanks."]
    assert [m[0] for m in state["values"]["messages"]] == [
        "HumanMessage",
        "AIMessage",
        "HumanMessage",
        "AIMessage",
    ]
    assert state["next"] == ()
    # per run: the input, the start step, agent, count
    assert len(history) == 8
    assert [h["metadata"]["source"] for h in history] == ["loop", "loop", "loop", "input"] * 2


def test_chat_message_ids_kept(tmp_path):
    """Message ids assigned by add_messages survive storage exactly (the normalized
    comparison strips them)."""
    with RustSQLiteCheckpointer(tmp_path / "r.db") as saver:
        graph = chat_app(["Hello!"]).compile(checkpointer=saver)
        out = graph.invoke({"messages": [HumanMessage("hi", id="h-1")]}, cfg("t"))
        stored = graph.get_state(cfg("t")).values["messages"]
    assert [m.id for m in stored] == [m.id for m in out["messages"]]
    assert stored[0].id == "h-1" and stored[1].id
    assert stored == out["messages"]


def test_interrupt_and_resume(tmp_path):
    def script(saver):
        graph = interrupt_app().compile(checkpointer=saver)
        first = graph.invoke({"question": " ready "}, cfg("t1"))
        paused = graph.get_state(cfg("t1"))
        norm = Normalizer.for_thread(saver, "t1")
        paused_n = norm(paused)
        final = graph.invoke(Command(resume="yes"), cfg("t1"))
        done = graph.get_state(cfg("t1"))
        norm = Normalizer.for_thread(saver, "t1")
        return norm(first), paused_n, norm(final), norm(done), history_dump(graph, cfg("t1"))

    out = both(tmp_path, script)
    assert_same(out)
    (first, paused, final, done, _history), _ = out["rust"]
    assert first["__interrupt__"][0] == ("Interrupt", {"question": "ready?", "hint": ["yes", "no"]})
    assert paused["next"] == ("ask",)
    assert paused["tasks"][0]["name"] == "ask"
    assert paused["tasks"][0]["interrupts"] == [
        ("Interrupt", {"question": "ready?", "hint": ["yes", "no"]})
    ]
    assert paused["interrupts"] == paused["tasks"][0]["interrupts"]
    assert final["log"] == ["prepare", "ask:yes", "finish:yes"]
    assert done["next"] == () and done["tasks"] == []


def test_interrupt_pending_writes_stored(tmp_path):
    """While paused, the checkpoint carries the interrupt as a pending write; after resume
    the resume value is stored too."""

    def script(saver):
        graph = interrupt_app().compile(checkpointer=saver)
        graph.invoke({"question": "go"}, cfg("t1"))
        tup = saver.get_tuple(cfg("t1"))
        channels = sorted(ch for _, ch, _ in tup.pending_writes)
        graph.invoke(Command(resume="no"), cfg("t1"))
        return channels

    out = both(tmp_path, script)
    assert_same(out)
    channels, dump = out["rust"]
    assert "__interrupt__" in channels
    assert sum(len(d["pending_writes"]) for d in dump) > 0


def test_time_travel_update_state_and_fork(tmp_path):
    def script(saver):
        graph = counter_app().compile(checkpointer=saver)
        graph.invoke({"count": 0, "log": []}, cfg("t1"))
        history = list(graph.get_state_history(cfg("t1")))
        before_b = next(s for s in history if s.next == ("b",))
        # Replay from an old checkpoint: a fork.
        replay = graph.invoke(None, before_b.config)
        # Edit an old checkpoint, then continue from the edit: another fork.
        edited = graph.update_state(before_b.config, {"count": 1000}, as_node="a")
        forked = graph.invoke(None, edited)
        # Edit the latest state.
        graph.update_state(cfg("t1"), {"log": ["manual"]})
        norm = Normalizer.for_thread(saver, "t1")
        latest = graph.get_state(cfg("t1"))
        old = graph.get_state(before_b.config)
        return (
            norm(replay),
            norm(edited),
            norm(forked),
            norm(latest),
            norm(old),
            history_dump(graph, cfg("t1")),
        )

    out = both(tmp_path, script)
    assert_same(out)
    (replay, _edited, forked, latest, old, history), _ = out["rust"]
    assert replay == {"count": 111, "log": ["a:0", "b:1", "c:11"]}
    assert forked == {"count": 1110, "log": ["a:0", "b:1000", "c:1010"]}
    assert latest["values"]["log"][-1] == "manual"
    assert latest["metadata"]["source"] == "update"
    assert old["next"] == ("b",)
    # Forks: several checkpoints share a parent.
    parents = [
        h["parent_config"]["configurable"]["checkpoint_id"] for h in history if h["parent_config"]
    ]
    assert len(parents) > len(set(parents))
    with RustSQLiteCheckpointer(tmp_path / "rust.db") as saver:
        check_id_structure(saver, "t1")


def test_subgraph_namespaces(tmp_path):
    def script(saver):
        graph = subgraph_app().compile(checkpointer=saver)
        graph.invoke({"log": []}, cfg("t1"))
        norm = Normalizer.for_thread(saver, "t1")
        paused = graph.get_state(cfg("t1"), subgraphs=True)
        paused_n = norm(paused)
        namespaces = sorted(
            {t.config["configurable"]["checkpoint_ns"].split(":")[0] for t in saver.list(None)}
        )
        final = graph.invoke(Command(resume="ok"), cfg("t1"))
        norm = Normalizer.for_thread(saver, "t1")
        return paused_n, namespaces, norm(final), history_dump(graph, cfg("t1"))

    out = both(tmp_path, script)
    assert_same(out)
    (paused, namespaces, final, _), dump = out["rust"]
    assert namespaces == ["", "child"]
    assert paused["next"] == ("child",)
    sub = paused["tasks"][0]["state"]
    assert sub["next"] == ("sub_ask",)
    assert sub["values"] == {"sub_log": ["sub_a"]}
    assert sub["config"]["configurable"]["checkpoint_ns"].startswith("child:")
    assert sub["tasks"][0]["interrupts"] == [("Interrupt", "approve?")]
    assert final == {"log": ["first", "last:ok"], "approved": "ok"}
    assert any(d["config"]["configurable"]["checkpoint_ns"] != "" for d in dump)
    with RustSQLiteCheckpointer(tmp_path / "rust.db") as saver:
        check_id_structure(saver, "t1")


def test_send_fan_out(tmp_path):
    def script(saver):
        graph = send_app().compile(checkpointer=saver)
        result = graph.invoke({"items": ["x", "y", "z", "w"]}, cfg("t1"))
        return result, history_dump(graph, cfg("t1"))

    out = both(tmp_path, script)
    assert_same(out)
    (result, history), _dump = out["rust"]
    assert sorted(result["results"]) == ["W", "X", "Y", "Z"]
    assert result["summary"] == "W,X,Y,Z"
    # The step after plan ran four pushed worker tasks.
    assert any(
        len(h["tasks"]) == 4 and {t["name"] for t in h["tasks"]} == {"worker"} for h in history
    )


# -- async ---------------------------------------------------------------------------------


async def test_async_matches_async_sqlite_saver(tmp_path):
    async def script(saver):
        chat = chat_app(["one", "two"]).compile(checkpointer=saver)
        await chat.ainvoke({"messages": [HumanMessage("a")]}, cfg("chat"))
        await chat.ainvoke({"messages": [HumanMessage("b")]}, cfg("chat"))
        ask = interrupt_app().compile(checkpointer=saver)
        await ask.ainvoke({"question": "q"}, cfg("ask"))
        paused = await ask.aget_state(cfg("ask"))
        await ask.ainvoke(Command(resume="yes"), cfg("ask"))
        sub = subgraph_app().compile(checkpointer=saver)
        await sub.ainvoke({"log": []}, cfg("sub"))
        sub_paused = await sub.aget_state(cfg("sub"), subgraphs=True)
        await sub.ainvoke(Command(resume="fine"), cfg("sub"))
        hist = [s async for s in ask.aget_state_history(cfg("ask"))]
        return paused, sub_paused, len(hist)

    dumps = {}
    async with RustSQLiteCheckpointer(tmp_path / "rust.db") as rust:
        r = await script(rust)
        dumps["rust"] = {t: await athread_dump(rust, t) for t in ("chat", "ask", "sub")}
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "ref.db")) as ref:
        s = await script(ref)
        dumps["sqlite"] = {t: await athread_dump(ref, t) for t in ("chat", "ask", "sub")}
    for t in ("chat", "ask", "sub"):
        assert dumps["rust"][t] == dumps["sqlite"][t], t
        assert len(dumps["rust"][t]) > 0
    assert r[2] == s[2]
    norm = Normalizer([])
    assert norm(r[0])["values"] == norm(s[0])["values"]
    assert norm(r[0])["tasks"] == norm(s[0])["tasks"]
    assert norm(r[1])["tasks"][0]["state"]["values"] == norm(s[1])["tasks"][0]["state"]["values"]


async def test_async_and_sync_runs_store_the_same(tmp_path):
    async with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        graph = send_app().compile(checkpointer=saver)
        await graph.ainvoke({"items": ["p", "q"]}, cfg("t1"))
        async_dump = await athread_dump(saver, "t1")
    with RustSQLiteCheckpointer(tmp_path / "s.db") as saver:
        graph = send_app().compile(checkpointer=saver)
        graph.invoke({"items": ["p", "q"]}, cfg("t1"))
        sync_dump = thread_dump(saver, "t1")
    assert async_dump == sync_dump
    assert len(sync_dump) == 5


# -- durability ----------------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_durability_committed_on_return(tmp_path, durability):
    path = tmp_path / "rust.db"
    writer = RustSQLiteCheckpointer(path)
    ref = sqlite_saver(tmp_path / "ref.db")
    try:
        results = {}
        for name, saver in (("rust", writer), ("sqlite", ref)):
            graph = interrupt_app().compile(checkpointer=saver)
            graph.invoke({"question": "q"}, cfg("t1"), durability=durability)
            results[name] = graph.invoke(Command(resume="y"), cfg("t1"), durability=durability)
        assert results["rust"] == results["sqlite"]
        # A second checkpointer on the same file, while the first is still open, sees it all.
        with RustSQLiteCheckpointer(path) as reader:
            graph = interrupt_app().compile(checkpointer=reader)
            state = graph.get_state(cfg("t1"))
            assert state.values == results["rust"]
            assert state.next == ()
            ref_graph = interrupt_app().compile(checkpointer=ref)
            assert history_dump(graph, cfg("t1")) == history_dump(ref_graph, cfg("t1"))
            n = len(list(graph.get_state_history(cfg("t1"))))
        if durability == "exit":
            assert n == 2  # one checkpoint per invoke
        else:
            assert n == 5
    finally:
        writer.close()
        ref.conn.close()


# -- serializers and value types -----------------------------------------------------------

AES_KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "the-launch-code-is-hunter2"


def test_encrypted_serializer_through_graph(tmp_path):
    serde = EncryptedSerializer.from_pycryptodome_aes(key=AES_KEY)
    path = tmp_path / "enc.db"
    with RustSQLiteCheckpointer(path, serde=serde) as saver:
        graph = interrupt_app().compile(checkpointer=saver)
        graph.invoke({"question": SECRET}, cfg("t1"))
        paused = graph.get_state(cfg("t1"))
        assert paused.tasks[0].interrupts[0].value["question"] == SECRET + "?"
        final = graph.invoke(Command(resume=SECRET + "-answer"), cfg("t1"))
        assert final["answer"] == SECRET + "-answer"
        assert graph.get_state(cfg("t1")).values == final
        answers = {t.checkpoint["channel_values"].get("answer") for t in saver.list(cfg("t1"))}
        assert SECRET + "-answer" in answers
    raw = b"".join(Path(f).read_bytes() for f in glob.glob(str(path) + "*"))
    assert len(raw) > 0
    assert SECRET.encode() not in raw
    assert b"hunter2" not in raw
    assert b"+aes" in raw  # type tags record the cipher
    # Reopened with the key: readable. Without it: the stored values are not plaintext.
    with RustSQLiteCheckpointer(path, serde=serde) as saver:
        graph = interrupt_app().compile(checkpointer=saver)
        assert graph.get_state(cfg("t1")).values["answer"] == SECRET + "-answer"
    with RustSQLiteCheckpointer(path) as saver, pytest.raises(NotImplementedError, match="aes"):
        saver.get_tuple(cfg("t1"))


class Point(BaseModel):
    x: int
    y: float
    tags: list[str]


@dataclasses.dataclass
class Box:
    name: str
    size: list[int]


def _values() -> dict:
    return {
        "messages": [
            SystemMessage("sys", id="m0"),
            HumanMessage("hi", id="m1"),
            AIMessage(
                "",
                id="m2",
                tool_calls=[{"name": "f", "args": {"a": 1}, "id": "call-1", "type": "tool_call"}],
            ),
            ToolMessage("42", tool_call_id="call-1", id="m3"),
        ],
        "model": Point(x=1, y=2.5, tags=["a"]),
        "box": Box("b", [2, 3]),
        "send": Send("node", {"k": [1, 2]}),
        "interrupt": Interrupt(value={"ask": "?"}, id="int-1"),
        "raw": b"\x00\xffbytes",
        "when": dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc),
        "naive": dt.datetime(2020, 1, 2, 3, 4, 5),
        "day": dt.date(2021, 2, 3),
        "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "set": {1, 2, 3},
        "frozen": frozenset({"a"}),
        "tuple": (1, "two", (3.0,)),
        "nested": {"list": [1, None, True], "float": 1.5},
    }


def _serde_round_trip(value):
    serde = JsonPlusSerializer()
    return serde.loads_typed(serde.dumps_typed(value))


def _assert_exact(got: dict, want: dict) -> None:
    """Every value comes back equal and of the same type, nested types included. The one
    exception is LangGraph's serializer's own: msgpack turns tuples into lists, for every
    checkpointer alike."""
    assert set(got) == set(want)
    for key, value in want.items():
        if key == "tuple":
            assert got[key] == _serde_round_trip(value) == [1, "two", [3.0]]
            continue
        assert got[key] == value, key
        assert type(got[key]) is type(value), key
    assert [type(m) for m in got["messages"]] == [type(m) for m in want["messages"]]
    assert got["messages"][2].tool_calls == want["messages"][2].tool_calls
    assert type(got["box"].size) is list and type(got["model"].tags) is list
    assert got["when"].tzinfo == dt.timezone.utc and got["naive"].tzinfo is None
    assert got["interrupt"].id == "int-1"
    assert type(got["send"].arg["k"]) is list


def test_value_types_round_trip_put_get(tmp_path):
    want = _values()
    results = {}
    for name, saver in (
        ("rust", RustSQLiteCheckpointer(tmp_path / "v.db")),
        ("sqlite", sqlite_saver(tmp_path / "ref.db")),
    ):
        cp = empty_checkpoint()
        cp["channel_values"] = dict(want)
        cp["channel_versions"] = {k: saver.get_next_version(None, None) for k in want}
        root = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
        config = saver.put(root, cp, {"source": "input", "step": -1}, cp["channel_versions"])
        saver.put_writes(config, [("send", want["send"]), ("raw", want["raw"])], "task-1")
        if name == "rust":
            saver.close()
            saver = RustSQLiteCheckpointer(tmp_path / "v.db")
        results[name] = saver.get_tuple(cfg("t1"))
        saver.close() if name == "rust" else saver.conn.close()
    tup = results["rust"]
    _assert_exact(tup.checkpoint["channel_values"], want)
    assert tup.pending_writes == [("task-1", "send", want["send"]), ("task-1", "raw", want["raw"])]
    assert tup.checkpoint["channel_values"] == results["sqlite"].checkpoint["channel_values"]
    assert tup.pending_writes == results["sqlite"].pending_writes


class AnyState(TypedDict, total=False):
    messages: list
    model: Point
    box: Box
    send: Send
    interrupt: Interrupt
    raw: bytes
    when: dt.datetime
    naive: dt.datetime
    day: dt.date
    uid: uuid.UUID
    set: set
    frozen: frozenset
    tuple: tuple
    nested: dict


def test_value_types_round_trip_through_graph(tmp_path):
    want = _values()

    def produce(state: AnyState) -> dict:
        return dict(want)

    b = StateGraph(AnyState)
    b.add_node("produce", produce)
    b.add_edge(START, "produce")
    with RustSQLiteCheckpointer(tmp_path / "g.db") as saver:
        b.compile(checkpointer=saver).invoke({}, cfg("t1"))
    with RustSQLiteCheckpointer(tmp_path / "g.db") as saver:
        state = b.compile(checkpointer=saver).get_state(cfg("t1"))
    _assert_exact(state.values, want)


@pytest.mark.parametrize("name", ["we#ird?name%20.db", "file name with spaces.db"])
def test_database_path_with_uri_characters(tmp_path, name):
    path = tmp_path / name
    with RustSQLiteCheckpointer(path) as saver:
        counter_app().compile(checkpointer=saver).invoke({"count": 0, "log": []}, cfg("t1"))
    with RustSQLiteCheckpointer(str(path)) as saver:
        assert saver.get_tuple(cfg("t1")).checkpoint["channel_values"]["count"] == 111
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_history_limit_before_filter_match_sqlite_saver(tmp_path):
    """get_state_history's limit, before and filter, on a forked thread."""

    def script(saver):
        graph = counter_app().compile(checkpointer=saver)
        graph.invoke({"count": 0, "log": []}, cfg("t1"))
        graph.invoke({"count": 7, "log": []}, cfg("t1"))
        old = [s for s in graph.get_state_history(cfg("t1")) if s.next == ("c",)][-1]
        graph.invoke(None, graph.update_state(old.config, {"count": -1}, as_node="b"))
        full = list(graph.get_state_history(cfg("t1")))
        norm = Normalizer.for_thread(saver, "t1")
        pick = full[len(full) // 2].config
        queries = {
            "limit": list(graph.get_state_history(cfg("t1"), limit=3)),
            "before": list(graph.get_state_history(cfg("t1"), before=pick)),
            "before+limit": list(graph.get_state_history(cfg("t1"), before=pick, limit=2)),
            "loop": list(graph.get_state_history(cfg("t1"), filter={"source": "loop"})),
            "update": list(graph.get_state_history(cfg("t1"), filter={"source": "update"})),
            "step": list(graph.get_state_history(cfg("t1"), filter={"step": 2})),
            "step+source": list(
                graph.get_state_history(cfg("t1"), filter={"step": 2, "source": "loop"}, limit=1)
            ),
            "none": list(graph.get_state_history(cfg("t1"), filter={"source": "nope"})),
        }
        return {k: [norm(s) for s in v] for k, v in queries.items()}, len(full)

    out = both(tmp_path, script)
    assert_same(out)
    (queries, n), _ = out["rust"]
    assert len(queries["limit"]) == 3
    assert len(queries["before+limit"]) == 2
    assert 0 < len(queries["before"]) < n
    assert [q["metadata"]["source"] for q in queries["update"]] == ["update"]
    assert len(queries["step"]) == len(queries["step+source"]) == 1
    assert queries["none"] == []


def _renamed(dump: dict, thread_id: str) -> dict:
    out = dict(dump)
    for key in ("config", "parent_config"):
        if out[key] is not None:
            out[key] = {"configurable": {**out[key]["configurable"], "thread_id": thread_id}}
    return out


def test_copy_prune_delete_on_a_paused_subgraph_thread(tmp_path):
    """copy_thread, prune and delete_thread on real threads (a subgraph paused at an
    interrupt): the copy and the pruned original both resume as the untouched one does."""
    with RustSQLiteCheckpointer(tmp_path / "m.db") as saver:
        graph = subgraph_app().compile(checkpointer=saver)
        for t in ("orig", "control"):
            graph.invoke({"log": []}, cfg(t))
        n_orig = len(list(saver.list(cfg("orig"))))
        saver.copy_thread("orig", "copy")
        assert thread_dump(saver, "copy") == [
            _renamed(d, "copy") for d in thread_dump(saver, "orig")
        ]
        saver.prune(["orig"], strategy="keep_latest")
        pruned = list(saver.list(cfg("orig")))
        assert len(pruned) == 2 < n_orig  # the newest of each namespace
        assert {t.config["configurable"]["checkpoint_ns"].split(":")[0] for t in pruned} == {
            "",
            "child",
        }
        want = graph.invoke(Command(resume="yes"), cfg("control"))
        assert want == {"log": ["first", "last:yes"], "approved": "yes"}
        assert graph.invoke(Command(resume="yes"), cfg("copy")) == want
        assert graph.invoke(Command(resume="yes"), cfg("orig")) == want
        saver.delete_thread("copy")
        assert list(saver.list(cfg("copy"))) == []
        assert graph.get_state(cfg("copy")).values == {}
        assert graph.get_state(cfg("orig")).values == want


@pytest.mark.parametrize(
    "current",
    [
        None,
        0,
        41,
        "00000000000000000000000000000041.0.7406084589418389",
        "00000000000000000000000000000041.2575442648761149",
        "7",
        "7.5.1",
        "9" * 38,  # the widest counter read natively: one more digit than the padding
        "9" * 39,  # read by int()
        "+3.1",
        " 3",
        "1_0.5",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: int() reads it
    ],
)
def test_next_version_is_the_counter_plus_one_and_sixteen_random_digits(current):
    saver = RustSQLiteCheckpointer(":memory:")
    counter = 0 if current is None else int(str(current).split(".", 1)[0])
    got = saver.get_next_version(current, None)
    head, _, tail = got.partition(".")
    assert head == "%032d" % (counter + 1)  # noqa: UP031
    assert len(tail) == 16 and tail.isdigit() and tail.isascii()


@pytest.mark.parametrize("current", ["", ".5", "x.1", "-1.5"])
def test_next_version_of_a_version_without_a_counter_fails_as_int_does(current):
    saver = RustSQLiteCheckpointer(":memory:")
    try:
        counter = int(current.split(".", 1)[0])
    except ValueError:
        with pytest.raises(ValueError):
            saver.get_next_version(current, None)
    else:
        assert saver.get_next_version(current, None).startswith("%032d." % (counter + 1))  # noqa: UP031
