"""RustSerializer inside savers: RustSQLiteCheckpointer's default, databases readable both
ways with JsonPlusSerializer, and install_default_serde on LangGraph's own savers and caches
(byte-identical checkpoints on a real StateGraph run)."""

from __future__ import annotations

import datetime as dt
import operator
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.cache.base import BaseCache
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import CachePolicy, Send
from typing_extensions import TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import cfg
from serde_values import same

from fast_langgraph import RustSQLiteCheckpointer
from fast_langgraph.serde import (
    RustSerializer,
    default_serde_installed,
    install_default_serde,
    uninstall_default_serde,
)


class State(TypedDict):
    messages: Annotated[list, add_messages]
    hits: Annotated[list, operator.add]
    when: Any


def build(saver: Any, cache: Any = None) -> Any:
    def agent(state: State) -> dict:
        n = len(state["messages"])
        return {
            "messages": [
                AIMessage(
                    content=f"calling {n}",
                    id=f"ai-{n}",
                    tool_calls=[{"name": "search", "args": {"q": n}, "id": f"call-{n}"}],
                    usage_metadata={"input_tokens": n, "output_tokens": 3, "total_tokens": n + 3},
                )
            ],
            "when": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=n),
        }

    def fan_out(state: State) -> list[Send]:
        return [Send("tool", {"k": k, "id": uuid.UUID(int=k)}) for k in range(2)]

    def tool(arg: dict) -> dict:
        return {
            "messages": [ToolMessage(content=f"r{arg['k']}", tool_call_id="c", id=f"t-{arg['k']}")],
            "hits": [arg["id"]],
        }

    g = StateGraph(State)
    g.add_node("agent", agent, cache_policy=CachePolicy() if cache is not None else None)
    g.add_node("tool", tool)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", fan_out, ["tool"])
    g.add_edge("tool", END)
    return g.compile(checkpointer=saver, cache=cache)


def run(graph: Any, thread: str) -> Any:
    for turn in range(2):
        graph.invoke(
            {"messages": [HumanMessage(content=f"q{turn}", id=f"h-{turn}")], "hits": []},
            cfg(thread),
        )
    return graph.get_state(cfg(thread))


def history(saver: Any, thread: str) -> list:
    return [
        (t.checkpoint["channel_values"], t.metadata, t.pending_writes)
        for t in saver.list(cfg(thread))
    ]


def test_rust_checkpointer_uses_it_by_default(tmp_path: Path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        assert isinstance(saver.serde, RustSerializer)
    stock = JsonPlusSerializer()
    with RustSQLiteCheckpointer(tmp_path / "b.db", serde=stock) as saver:
        assert saver.serde is stock


@pytest.mark.parametrize("writer", ["rust", "stock"])
def test_database_reads_back_with_the_other_serializer(tmp_path: Path, writer: str) -> None:
    path = tmp_path / "chat.db"
    serdes = {"rust": None, "stock": JsonPlusSerializer()}
    with RustSQLiteCheckpointer(path, serde=serdes[writer]) as saver:
        final = run(build(saver), "t")
        written = history(saver, "t")
    reader = "stock" if writer == "rust" else "rust"
    with RustSQLiteCheckpointer(path, serde=serdes[reader]) as saver:
        assert same(history(saver, "t"), written)
        assert same(build(saver).get_state(cfg("t")).values, final.values)


def test_install_patches_every_default_and_reverts() -> None:
    before_saver, before_cache = BaseCheckpointSaver.serde, BaseCache.serde
    patched = install_default_serde()
    try:
        assert default_serde_installed()
        assert "langgraph.checkpoint.base.BaseCheckpointSaver.serde" in patched
        assert "langgraph.cache.base.BaseCache.serde" in patched
        assert install_default_serde() == []  # idempotent
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        for saver in (InMemorySaver(), SqliteSaver(conn)):
            assert isinstance(saver.serde, RustSerializer)
        assert isinstance(InMemoryCache().serde, RustSerializer)
        assert BaseCache.serde.pickle_fallback is before_cache.pickle_fallback
        explicit = JsonPlusSerializer()
        assert InMemorySaver(serde=explicit).serde is explicit
    finally:
        uninstall_default_serde()
    assert not default_serde_installed()
    assert BaseCheckpointSaver.serde is before_saver and BaseCache.serde is before_cache
    assert type(InMemorySaver().serde) is JsonPlusSerializer


async def test_async_sqlite_saver_takes_it(tmp_path: Path) -> None:
    install_default_serde()
    try:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "a.db")) as saver:
            assert isinstance(saver.serde, RustSerializer)
    finally:
        uninstall_default_serde()


def _writes(writes: list) -> list:
    return sorted(((ch, v) for _, ch, v in writes), key=repr)


class Recorder:
    """Checks, for every value the saver serializes during a run, that the bytes are the ones
    JsonPlusSerializer writes for it."""

    def __init__(self, serde: RustSerializer) -> None:
        self.serde, self.stock, self.count = serde, JsonPlusSerializer(), 0
        self.original = serde.dumps_typed

    def __call__(self, value: Any) -> tuple[str, bytes]:
        out = self.original(value)
        assert out == self.stock.dumps_typed(value), value
        self.count += 1
        return out


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_stock_savers_write_identical_checkpoints_when_installed(tmp_path: Path, kind: str) -> None:
    def make() -> Any:
        if kind == "memory":
            return InMemorySaver()
        return SqliteSaver(
            sqlite3.connect(tmp_path / f"{uuid.uuid4()}.db", check_same_thread=False)
        )

    plain_saver = make()
    assert type(plain_saver.serde) is JsonPlusSerializer
    plain = run(build(plain_saver, InMemoryCache()), "t")

    install_default_serde()
    try:
        saver, cache = make(), InMemoryCache()
        assert isinstance(saver.serde, RustSerializer) and isinstance(cache.serde, RustSerializer)
        recorder = Recorder(saver.serde)
        saver.serde.dumps_typed = recorder  # type: ignore[method-assign]
        try:
            patched = run(build(saver, cache), "t")
        finally:
            del saver.serde.dumps_typed
    finally:
        uninstall_default_serde()
    assert recorder.count > 10
    assert same(patched.values, plain.values)
    # What the patched saver stored, a stock saver reads (and writes back the same bytes).
    stock_history = history(plain_saver, "t")
    patched_history = history(saver, "t")
    assert len(patched_history) == len(stock_history)
    for (vals, meta, writes), (vals2, meta2, writes2) in zip(patched_history, stock_history):
        assert same(vals, vals2)
        # Task ids are random per run; the writes are compared without them.
        assert same(_writes(writes), _writes(writes2))
        assert {k: v for k, v in meta.items()} == {k: v for k, v in meta2.items()}
    if kind == "sqlite":
        stock = JsonPlusSerializer()
        rows = saver.conn.execute("SELECT type, checkpoint FROM checkpoints").fetchall()
        rows += saver.conn.execute("SELECT type, value FROM writes").fetchall()
        assert rows
        for type_, blob in rows:
            assert stock.dumps_typed(stock.loads_typed((type_, blob))) == (type_, blob)
