"""A LangGraph chat app with a SQLite checkpointer: stock SqliteSaver against
RustSQLiteCheckpointer, on the same graph and the same conversations.

The app: a router with a conditional edge, a 3-way fan-out that joins, a reply from a fake
chat model, and a `messages` history that grows over a multi-turn conversation. Several users
talk at once (one thread each). The script checks that both savers end with the same
conversations, then prints the time per turn and the speedup (median of interleaved rounds).

Run: `make demo`, or `.venv/bin/python examples/checkpointer_demo.py`.
"""

from __future__ import annotations

import operator
import sqlite3
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from fast_langgraph import RustSQLiteCheckpointer

USERS = 8
TURNS = 12
ROUNDS = 3


class State(TypedDict):
    messages: Annotated[list, add_messages]
    topic: str
    notes: Annotated[list, operator.add]


def build(checkpointer: Any):
    def classify(state: State) -> dict:
        text = state["messages"][-1].content
        return {"topic": "math" if any(c.isdigit() for c in text) else "chat", "notes": []}

    def math(state: State) -> dict:
        return {"notes": ["math: checked the numbers"]}

    def chat(state: State) -> dict:
        return {"notes": ["chat: small talk"]}

    def research(name: str):
        def node(state: State) -> dict:
            return {"notes": [f"{name}: {len(state['messages'])} messages read"]}

        return node

    def reply(state: State) -> dict:
        # A fake chat model whose answer depends only on the conversation, so every run of
        # the app gives the same history whatever the thread interleaving.
        model = FakeListChatModel(
            responses=[f"answer #{len(state['messages'])} ({state['topic']})"]
        )
        return {"messages": [model.invoke(state["messages"])]}

    g = StateGraph(State)
    g.add_node("classify", classify)
    g.add_node("math", math)
    g.add_node("chat", chat)
    for name in ("search", "memory", "tools"):
        g.add_node(name, research(name))
    g.add_node("reply", reply)
    g.add_edge(START, "classify")
    g.add_conditional_edges("classify", lambda s: s["topic"], {"math": "math", "chat": "chat"})
    for src in ("math", "chat"):
        for name in ("search", "memory", "tools"):
            g.add_edge(src, name)
    g.add_edge(["search", "memory", "tools"], "reply")
    g.add_edge("reply", END)
    return g.compile(checkpointer=checkpointer)


def run_conversations(graph: Any, prefix: str) -> list[list[tuple[str, str]]]:
    def talk(user: int) -> list[tuple[str, str]]:
        config = {"configurable": {"thread_id": f"{prefix}-user-{user}"}}
        for turn in range(TURNS):
            text = f"question {turn}" if turn % 2 else "hello there"
            graph.invoke({"messages": [HumanMessage(content=text)]}, config)
        final = graph.get_state(config).values["messages"]
        return [(m.type, m.content) for m in final]

    with ThreadPoolExecutor(USERS) as pool:
        return list(pool.map(talk, range(USERS)))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "stock.db", check_same_thread=False)
        graphs = {
            "SqliteSaver (stock)": build(SqliteSaver(conn)),
            "RustSQLiteCheckpointer": build(RustSQLiteCheckpointer(Path(tmp) / "fast.db")),
        }
        results: dict[str, list] = {}
        times: dict[str, list[float]] = {name: [] for name in graphs}
        for rnd in range(ROUNDS):
            for name, graph in graphs.items():
                t0 = time.perf_counter()
                results[name] = run_conversations(graph, f"round{rnd}")
                times[name].append((time.perf_counter() - t0) / (USERS * TURNS))
        stock, fast = results.values()
        if stock != fast:
            raise SystemExit(
                "the two savers ended with different conversations: not reporting a speedup"
            )
        turns = USERS * TURNS
        print(
            f"{USERS} users x {TURNS} turns each, 8-node graph, {ROUNDS} interleaved rounds; "
            f"both savers ended with identical conversations ({len(stock[0])} messages each)\n"
        )
        print(f"  {'checkpointer':<26} {'ms per turn':>12} {'turns/s':>10}")
        med = {name: statistics.median(ts) for name, ts in times.items()}
        for name, t in med.items():
            print(f"  {name:<26} {t * 1e3:>12.2f} {1 / t:>10.1f}")
        base, ours = med.values()
        print(f"\n  speedup: {base / ours:.2f}x ({turns} turns per round)")


if __name__ == "__main__":
    main()
