"""pytest-benchmark view of the checkpointer: `make bench` runs it with --benchmark-enable.
Each case runs against InMemorySaver, SqliteSaver and RustSQLiteCheckpointer; compare the
rows of one group. The headline ratios come from bench_checkpoint.py, which interleaves."""

from __future__ import annotations

import os
import sqlite3
import sys
import uuid
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

sys.path.insert(0, os.path.dirname(__file__))
from bench_checkpoint import _put_get_loop, build_graph, state_of_size

from fast_langgraph import RustSQLiteCheckpointer

SAVERS = ["InMemorySaver", "SqliteSaver", "RustSQLiteCheckpointer"]


def make(name: str, tmp_path: Any) -> Any:
    if name == "InMemorySaver":
        return InMemorySaver()
    if name == "SqliteSaver":
        return SqliteSaver(sqlite3.connect(tmp_path / "stock.db", check_same_thread=False))
    return RustSQLiteCheckpointer(tmp_path / "rust.db")


@pytest.mark.benchmark(group="put+get_tuple 1KB")
@pytest.mark.parametrize("name", SAVERS)
def test_put_get_1kb(benchmark, name: str, tmp_path) -> None:
    benchmark(_put_get_loop(make(name, tmp_path), state_of_size(1024)))


@pytest.mark.benchmark(group="invoke 8-node graph")
@pytest.mark.parametrize("name", SAVERS)
def test_invoke(benchmark, name: str, tmp_path) -> None:
    graph = build_graph(make(name, tmp_path))

    def run() -> None:
        config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        out = graph.invoke({"messages": [HumanMessage(content="q")], "results": []}, config)
        assert out["messages"][-1].content == "summary"

    benchmark(run)
