"""RustPostgresCheckpointer against LangGraph's own PostgresSaver, on real StateGraph apps, on
the same throwaway server (each saver on its own database).

Each app runs once per checkpointer; outputs, `get_state`, the full `get_state_history` and
every stored checkpoint (all namespaces, with pending writes) must be the same once
run-specific ids are normalized (graph_apps.Normalizer).
"""

from __future__ import annotations

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
    subgraph_app,
    thread_dump,
)
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.types import Command

from fast_langgraph import RustPostgresCheckpointer


def chat_script(saver):
    graph = chat_app(["Hello!", "Fine, thanks."]).compile(checkpointer=saver)
    outs = [
        graph.invoke({"messages": [HumanMessage("hi")]}, cfg("t1")),
        graph.invoke({"messages": [HumanMessage("how are you?")]}, cfg("t1")),
    ]
    norm = Normalizer.for_thread(saver, "t1")
    return [norm(o) for o in outs], norm(graph.get_state(cfg("t1"))), history_dump(graph, cfg("t1"))


def interrupt_script(saver):
    graph = interrupt_app().compile(checkpointer=saver)
    first = graph.invoke({"question": " ready "}, cfg("t1"))
    paused = Normalizer.for_thread(saver, "t1")(graph.get_state(cfg("t1")))
    final = graph.invoke(Command(resume="yes"), cfg("t1"))
    norm = Normalizer.for_thread(saver, "t1")
    return (
        norm(first),
        paused,
        norm(final),
        norm(graph.get_state(cfg("t1"))),
        history_dump(graph, cfg("t1")),
    )


def time_travel_script(saver):
    graph = counter_app().compile(checkpointer=saver)
    graph.invoke({"count": 0, "log": []}, cfg("t1"))
    history = list(graph.get_state_history(cfg("t1")))
    before_b = next(s for s in history if s.next == ("b",))
    replay = graph.invoke(None, before_b.config)
    edited = graph.update_state(before_b.config, {"count": 1000}, as_node="a")
    forked = graph.invoke(None, edited)
    graph.update_state(cfg("t1"), {"log": ["manual"]})
    norm = Normalizer.for_thread(saver, "t1")
    return (
        norm(replay),
        norm(edited),
        norm(forked),
        norm(graph.get_state(cfg("t1"))),
        norm(graph.get_state(before_b.config)),
        history_dump(graph, cfg("t1")),
    )


def subgraph_script(saver):
    graph = subgraph_app().compile(checkpointer=saver)
    graph.invoke({"log": []}, cfg("t1"))
    paused = Normalizer.for_thread(saver, "t1")(graph.get_state(cfg("t1"), subgraphs=True))
    final = graph.invoke(Command(resume="ok"), cfg("t1"))
    norm = Normalizer.for_thread(saver, "t1")
    return paused, norm(final), history_dump(graph, cfg("t1"))


def send_script(saver):
    graph = send_app().compile(checkpointer=saver)
    result = graph.invoke({"items": ["x", "y", "z", "w"]}, cfg("t1"))
    return result, history_dump(graph, cfg("t1"))


SCRIPTS = {
    "messages": chat_script,
    "interrupt_resume": interrupt_script,
    "time_travel": time_travel_script,
    "subgraphs": subgraph_script,
    "send": send_script,
}


@pytest.mark.parametrize("guard", [False, True], ids=["plain", "guard"])
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_same_as_postgres_saver(pg_server, name, guard):
    script = SCRIPTS[name]
    with PostgresSaver.from_conn_string(pg_server.url(pg_server.create_database("ref"))) as ref:
        ref.setup()
        want = script(ref), thread_dump(ref, "t1")
    with RustPostgresCheckpointer.from_conn_string(
        pg_server.url(pg_server.create_database("ours")), guard=guard
    ) as ours:
        ours.setup()
        got = script(ours), thread_dump(ours, "t1")
    assert len(got[1]) == len(want[1]) > 0
    for i, (a, b) in enumerate(zip(got[1], want[1])):
        assert a == b, f"checkpoint #{i} differs"
    assert got[0] == want[0]


async def _ascript(saver):
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
    fan = send_app().compile(checkpointer=saver)
    await fan.ainvoke({"items": ["p", "q"]}, cfg("fan"))
    hist = [s async for s in ask.aget_state_history(cfg("ask"))]
    norm = Normalizer([])
    dumps = {t: await athread_dump(saver, t) for t in ("chat", "ask", "sub", "fan")}
    return norm(paused)["values"], norm(sub_paused)["tasks"][0]["state"]["values"], len(hist), dumps


async def test_async_same_as_async_postgres_saver(pg_server):
    async with AsyncPostgresSaver.from_conn_string(
        pg_server.url(pg_server.create_database("ref"))
    ) as ref:
        await ref.setup()
        want = await _ascript(ref)
    async with RustPostgresCheckpointer.from_conn_string(
        pg_server.url(pg_server.create_database("ours"))
    ) as ours:
        await ours.asetup()
        got = await _ascript(ours)
    for t in ("chat", "ask", "sub", "fan"):
        assert got[3][t] == want[3][t], t
        assert len(got[3][t]) > 0
    assert got[:3] == want[:3]
