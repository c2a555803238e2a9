"""Real graphs, run stock and with the shim: the same outputs, streamed events and checkpoints.

Ids and timestamps differ between any two runs, so they are normalized before comparing.
Parallel tasks may finish in any order, stock or not, so "updates" and "debug" events are
compared as multisets within each run.
"""

from __future__ import annotations

import asyncio
import operator
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, RetryPolicy, Send, interrupt

from fast_langgraph import shim

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?")
_VOLATILE_KEYS = {
    "checkpoint_id",
    "parent_checkpoint_id",
    "id",
    "run_id",
    "timestamp",
    "ts",
    "created_at",
}


def norm(value: Any) -> Any:
    """Replace ids and timestamps by placeholders; turn objects into comparable data."""
    if isinstance(value, dict):
        return {k: ("<volatile>" if k in _VOLATILE_KEYS else norm(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return (
            type(value)(norm(v) for v in value)
            if not hasattr(value, "_fields")
            else norm(value._asdict())
        )
    if isinstance(value, str):
        return _TS.sub("<ts>", _UUID.sub("<uuid>", value))
    if hasattr(value, "model_dump"):
        return norm({"__type__": type(value).__name__, **value.model_dump()})
    if hasattr(value, "__dataclass_fields__"):
        return norm(
            {
                "__type__": type(value).__name__,
                **{k: getattr(value, k) for k in value.__dataclass_fields__},
            }
        )
    return value


def canon(events: list[Any]) -> list[str]:
    return sorted(repr(norm(e)) for e in events)


def history(graph, config) -> list[Any]:
    return [norm(s) for s in graph.get_state_history(config)]


# -- graphs -----------------------------------------------------------------------------------


class Log(TypedDict):
    log: Annotated[list, operator.add]


def linear():
    g = StateGraph(Log)
    for a, b in [("a", "b"), ("b", "c")]:
        g.add_edge(a, b)
    for n in "abc":
        g.add_node(n, lambda s, n=n: {"log": [n]})
    g.add_edge(START, "a")
    g.add_edge("c", END)
    return g


def conditional():
    g = StateGraph(Log)
    g.add_node("start", lambda s: {"log": ["start"]})
    g.add_node("even", lambda s: {"log": ["even"]})
    g.add_node("odd", lambda s: {"log": ["odd"]})
    g.add_edge(START, "start")
    g.add_conditional_edges("start", lambda s: "even" if len(s["log"]) % 2 == 0 else "odd")
    g.add_conditional_edges("even", lambda s: END if len(s["log"]) > 4 else "start")
    g.add_edge("odd", "even")
    return g


def send_fanout():
    g = StateGraph(Log)
    g.add_node("plan", lambda s: {"log": ["plan"]})
    g.add_node("work", lambda item: {"log": [f"work-{item}"]})
    g.add_node("join", lambda s: {"log": [f"join-{len(s['log'])}"]})
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", lambda s: [Send("work", i) for i in range(8)])
    g.add_edge("work", "join")
    return g


def with_subgraph():
    inner = StateGraph(Log)
    inner.add_node("i1", lambda s: {"log": ["i1"]})
    inner.add_node("i2", lambda s: {"log": ["i2"]})
    inner.add_edge(START, "i1")
    inner.add_edge(START, "i2")
    g = StateGraph(Log)
    g.add_node("pre", lambda s: {"log": ["pre"]})
    g.add_node("sub", inner.compile())
    g.add_node("side", lambda s: {"log": ["side"]})
    g.add_edge(START, "pre")
    g.add_edge("pre", "sub")
    g.add_edge("pre", "side")
    return g


def with_interrupt():
    def ask(s):
        answer = interrupt({"question": "go?"})
        return {"log": [f"answer-{answer}"]}

    g = StateGraph(Log)
    g.add_node("before", lambda s: {"log": ["before"]})
    g.add_node("ask", ask)
    g.add_node("after", lambda s: {"log": ["after"]})
    g.add_edge(START, "before")
    g.add_edge("before", "ask")
    g.add_edge("ask", "after")
    return g


_attempts: dict[str, int] = {}
_attempts_lock = threading.Lock()


def with_retry():
    def flaky(s):
        key = s["log"][0]
        with _attempts_lock:
            _attempts[key] = _attempts.get(key, 0) + 1
            n = _attempts[key]
        if n == 1:
            raise ValueError("first try fails")
        return {"log": [f"flaky-ok-{n}"]}

    g = StateGraph(Log)
    g.add_node(
        "flaky",
        flaky,
        retry_policy=RetryPolicy(
            max_attempts=3, initial_interval=0.001, jitter=False, retry_on=ValueError
        ),
    )
    g.add_node("steady", lambda s: {"log": ["steady"]})
    g.add_edge(START, "flaky")
    g.add_edge(START, "steady")
    return g


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two numbers."""
    return a * b


class ToolChat(GenericFakeChatModel):
    def bind_tools(self, tools, **kwargs):  # type: ignore[override]
        return self


def agent():
    def model_node(state: MessagesState):
        script = iter(
            [
                AIMessage(
                    content="",
                    id="ai-1",
                    tool_calls=[
                        {"name": "add", "args": {"a": 2, "b": 3}, "id": "call-1"},
                        {"name": "multiply", "args": {"a": 4, "b": 5}, "id": "call-2"},
                        {"name": "add", "args": {"a": 10, "b": 1}, "id": "call-3"},
                    ],
                ),
                AIMessage(content="done: 5, 20, 11", id="ai-2"),
            ]
        )
        # One model per call, replaying from the position in the conversation.
        turns = sum(isinstance(m, AIMessage) for m in state["messages"])
        for _ in range(turns):
            next(script)
        return {
            "messages": [
                ToolChat(messages=script).bind_tools([add, multiply]).invoke(state["messages"])
            ]
        }

    g = StateGraph(MessagesState)
    g.add_node("model", model_node)
    g.add_node("tools", ToolNode([add, multiply]))
    g.add_edge(START, "model")
    g.add_conditional_edges("model", tools_condition)
    g.add_edge("tools", "model")
    return g


GRAPHS: dict[str, tuple[Callable[[], StateGraph], Any]] = {
    "linear": (linear, {"log": ["in"]}),
    "conditional": (conditional, {"log": ["in"]}),
    "send_fanout": (send_fanout, {"log": ["in"]}),
    "subgraph": (with_subgraph, {"log": ["in"]}),
    "retry": (with_retry, None),
    "agent": (agent, {"messages": [HumanMessage("compute", id="h-1")]}),
}


def _run_all_modes(builder, inp, tag: str, checkpointer: Any = None) -> dict[str, Any]:
    graph = builder().compile(checkpointer=checkpointer or InMemorySaver())
    out: dict[str, Any] = {}

    def cfg(mode: str) -> dict:
        return {"configurable": {"thread_id": f"{tag}-{mode}"}}

    def fresh(mode: str) -> Any:
        if inp is None:  # the retry graph: a fresh attempt counter per run
            return {"log": [f"{tag}-{mode}"]}
        return inp

    out["invoke"] = norm(graph.invoke(fresh("invoke"), cfg("invoke")))
    out["history"] = history(graph, cfg("invoke"))
    out["values"] = [
        norm(e) for e in graph.stream(fresh("values"), cfg("values"), stream_mode="values")
    ]
    out["updates"] = canon(
        list(graph.stream(fresh("updates"), cfg("updates"), stream_mode="updates"))
    )
    out["debug"] = canon(list(graph.stream(fresh("debug"), cfg("debug"), stream_mode="debug")))
    out["multi"] = canon(
        list(
            graph.stream(
                fresh("multi"), cfg("multi"), stream_mode=["values", "updates"], subgraphs=True
            )
        )
    )
    return out


def _replace(value: Any, tag: str) -> Any:
    if isinstance(value, str):
        return value.replace(tag, "<tag>")
    if isinstance(value, dict):
        return {k: _replace(v, tag) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_replace(v, tag) for v in value)
    return value


@pytest.fixture(autouse=True)
def _unpatched():
    shim.unpatch_langgraph()
    yield
    shim.unpatch_langgraph()


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_same_results_events_and_checkpoints(name: str) -> None:
    builder, inp = GRAPHS[name]
    stock = _replace(_run_all_modes(builder, inp, f"stock-{name}"), f"stock-{name}")
    report = shim.patch_langgraph(checkpointer=False)
    assert "executor" in report.applied
    patched = _replace(_run_all_modes(builder, inp, f"patched-{name}"), f"patched-{name}")
    assert shim.status()["executor"]["active"]
    for key in stock:
        assert patched[key] == stock[key], f"{name}: {key} differs"


def test_the_agent_ran_its_tools() -> None:
    graph = agent().compile()
    shim.patch_langgraph(checkpointer=False)
    messages = graph.invoke({"messages": [HumanMessage("compute")]})["messages"]
    assert [m.content for m in messages[2:5]] == ["5", "20", "11"]
    assert messages[-1].content == "done: 5, 20, 11"


def _interrupt_run(tag: str) -> dict[str, Any]:
    graph = with_interrupt().compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": tag}}
    first = list(graph.stream({"log": ["in"]}, cfg, stream_mode="updates"))
    paused = graph.get_state(cfg)
    second = list(graph.stream(Command(resume="yes"), cfg, stream_mode="updates"))
    return {
        "first": norm(first),
        "paused_next": paused.next,
        "interrupts": norm([i.value for i in paused.interrupts]),
        "second": norm(second),
        "final": norm(graph.get_state(cfg).values),
        "history": history(graph, cfg),
    }


def test_interrupt_and_resume_are_the_same() -> None:
    stock = _replace(_interrupt_run("stock-int"), "stock-int")
    shim.patch_langgraph(checkpointer=False)
    patched = _replace(_interrupt_run("patched-int"), "patched-int")
    assert patched == stock
    assert stock["final"]["log"] == ["in", "before", "answer-yes", "after"]


def _batch_runs(tag: str) -> dict[str, Any]:
    graph = send_fanout().compile()
    inputs = [{"log": [f"in-{i}"]} for i in range(12)]
    sync = graph.batch(inputs, {"max_concurrency": 4})
    asyn = asyncio.run(graph.abatch(inputs, {"max_concurrency": 4}))
    errs = graph.batch([{"log": ["x"]}, {"log": 5}], return_exceptions=True)
    return {"sync": norm(sync), "async": norm(asyn), "errors": [type(e).__name__ for e in errs]}


def test_batch_and_abatch_are_the_same() -> None:
    stock = _batch_runs("stock")
    shim.patch_langgraph(checkpointer=False)
    patched = _batch_runs("patched")
    assert patched == stock
    assert len(stock["sync"]) == 12


def test_sqlite_checkpoints_are_the_same_with_the_swap(tmp_path) -> None:
    def run(path) -> list[Any]:
        conn = sqlite3.connect(str(path), check_same_thread=False)
        saver = SqliteSaver(conn)
        graph = send_fanout().compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": "t"}}
        graph.invoke({"log": ["in"]}, cfg)
        graph.invoke({"log": ["again"]}, cfg)
        hist = history(graph, cfg)
        if hasattr(saver, "close"):
            saver.close()
        conn.close()
        return hist

    stock = run(tmp_path / "stock.db")
    report = shim.patch_langgraph()
    assert "checkpointer" in report.applied
    patched = run(tmp_path / "patched.db")
    assert patched == stock
    assert not (tmp_path / "patched.db.flg").exists()


# -- LangGraph's own SqliteSaver fixtures (sqlite, sqlite_aes, sqlite_aio), under the shim ----
#
# LangGraph's test suite builds them as below, on ":memory:"; each is used here on ":memory:"
# (which stays on stock code under the shim) and on a file (which the shim accelerates).


@contextmanager
def _sqlite(path: str) -> Iterator[Any]:
    with SqliteSaver.from_conn_string(path) as checkpointer:
        yield checkpointer


@contextmanager
def _sqlite_aes(path: str) -> Iterator[Any]:
    with SqliteSaver.from_conn_string(path) as checkpointer:
        checkpointer.serde = EncryptedSerializer.from_pycryptodome_aes(key=b"1234567890123456")
        yield checkpointer


@asynccontextmanager
async def _sqlite_aio(path: str) -> AsyncIterator[Any]:
    async with AsyncSqliteSaver.from_conn_string(path) as checkpointer:
        yield checkpointer


def _with_fixture(kind: str, path: str, builder, inp, tag: str) -> dict[str, Any]:
    if kind == "sqlite_aio":

        async def run() -> dict[str, Any]:
            async with _sqlite_aio(path) as saver:
                graph = builder().compile(checkpointer=saver)
                config = {"configurable": {"thread_id": f"{tag}-ainvoke"}}
                start = inp if inp is not None else {"log": [f"{tag}-ainvoke"]}
                return {
                    "ainvoke": norm(await graph.ainvoke(start, config)),
                    "history": [norm(s) async for s in graph.aget_state_history(config)],
                    "accelerated": bool(getattr(saver, "accelerated", False)),
                }

        return asyncio.run(run())
    fixture = _sqlite if kind == "sqlite" else _sqlite_aes
    with fixture(path) as saver:
        out = _run_all_modes(builder, inp, tag, saver)
        out["accelerated"] = bool(getattr(saver, "accelerated", False))
        return out


@pytest.mark.parametrize("where", ["file", "memory"])
@pytest.mark.parametrize("kind", ["sqlite", "sqlite_aes", "sqlite_aio"])
@pytest.mark.parametrize("name", ["send_fanout", "subgraph", "agent", "retry"])
def test_langgraph_sqlite_fixtures_are_the_same_under_the_shim(
    name: str, kind: str, where: str, tmp_path
) -> None:
    builder, inp = GRAPHS[name]

    def path(side: str) -> str:
        return ":memory:" if where == "memory" else str(tmp_path / f"{side}.db")

    stock = _with_fixture(kind, path("stock"), builder, inp, f"stock-{name}")
    report = shim.patch_langgraph()
    assert "checkpointer" in report.applied
    patched = _with_fixture(kind, path("patched"), builder, inp, f"patched-{name}")
    assert stock.pop("accelerated") is False
    assert patched.pop("accelerated") is (where == "file")
    stock = _replace(stock, f"stock-{name}")
    patched = _replace(patched, f"patched-{name}")
    for key in stock:
        assert patched[key] == stock[key], f"{name}/{kind}/{where}: {key} differs"
    assert sorted(p.name for p in tmp_path.iterdir() if ".flg" in p.name) == []
