"""A 300-turn conversation on one thread: checkpoint cost per step, database size and load
time, for InMemorySaver, SqliteSaver and RustSQLiteCheckpointer (with and without deltas).

The savers take turns: turn i runs on each saver before turn i+1 runs on any, so machine noise
hits all alike. The time spent writing checkpoints (`put`, called from the graph loop with
`durability="sync"`) is measured per turn; `put_writes` is left out: it stores the node's new
message only, the same size at every turn, and runs on LangGraph's background threads, where
its wall time mostly measures waiting for the GIL.
the table shows medians over turns 1-10, 91-100 and 291-300 ("turn 10", "turn 100",
"turn 300"), and the mean over the same windows (a full snapshot every `snapshot_every`
deltas shows up in the mean, not the median). The time LangGraph spends loading the thread
at the start of each turn (get_tuple, which deserializes the whole history with every saver)
is shown apart.

Run: `.venv/bin/python benches/bench_longchat.py [--turns N]`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sqlite3
import statistics
import tempfile
import time
from typing import Annotated, Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from fast_langgraph import RustSQLiteCheckpointer

TEXT = "The quick brown fox jumps over the lazy dog. " * 5


class Chat(TypedDict):
    messages: Annotated[list, add_messages]


def build(saver: Any):
    def bot(state: Chat) -> dict:
        n = len(state["messages"])
        return {"messages": [AIMessage(content=f"answer {n}: {TEXT}")]}

    g = StateGraph(Chat)
    g.add_node("bot", bot)
    g.add_edge(START, "bot")
    g.add_edge("bot", END)
    return g.compile(checkpointer=saver)


class Timer:
    """Wraps a saver's methods on the instance and adds up the time spent in checkpoint writes
    (put) and in reads (get_tuple)."""

    def __init__(self, saver: Any) -> None:
        self.write = 0.0
        self.read = 0.0
        saver.put = self._wrap(saver.put, "write")
        saver.get_tuple = self._wrap(saver.get_tuple, "read")

    def _wrap(self, fn, kind: str):
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                setattr(self, kind, getattr(self, kind) + time.perf_counter() - t0)

        return timed


def file_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--turns", type=int, default=300)
    args = ap.parse_args()
    turns = args.turns
    tmp = tempfile.mkdtemp()
    paths = {
        "SqliteSaver": os.path.join(tmp, "stock.db"),
        "RustSQLiteCheckpointer": os.path.join(tmp, "rust.db"),
        "RustSQLiteCheckpointer(delta=False)": os.path.join(tmp, "rust-full.db"),
    }
    stock_conn = sqlite3.connect(paths["SqliteSaver"], check_same_thread=False)
    savers: dict[str, Any] = {
        "InMemorySaver": InMemorySaver(),
        "SqliteSaver": SqliteSaver(stock_conn),
        "RustSQLiteCheckpointer": RustSQLiteCheckpointer(paths["RustSQLiteCheckpointer"]),
        "RustSQLiteCheckpointer(delta=False)": RustSQLiteCheckpointer(
            paths["RustSQLiteCheckpointer(delta=False)"], delta=False
        ),
    }
    timers = {name: Timer(s) for name, s in savers.items()}
    graphs = {name: build(s) for name, s in savers.items()}
    config = {"configurable": {"thread_id": "long-chat"}}
    per_turn: dict[str, list[float]] = {name: [] for name in savers}
    read_per_turn: dict[str, list[float]] = {name: [] for name in savers}
    for turn in range(1, turns + 1):
        for name, graph in graphs.items():
            before, before_read = timers[name].write, timers[name].read
            # durability="sync": every put runs in the graph loop, so its time is the step's.
            graph.invoke(
                {"messages": [HumanMessage(content=f"question {turn}: {TEXT}")]},
                config,
                durability="sync",
            )
            per_turn[name].append(timers[name].write - before)
            read_per_turn[name].append(timers[name].read - before_read)
        if turn % 50 == 0:
            print(f"  ... turn {turn}", flush=True)
    finals = {name: g.get_state(config).values["messages"] for name, g in graphs.items()}
    reference = [(m.type, m.content) for m in finals["InMemorySaver"]]
    for name, msgs in finals.items():
        assert [(m.type, m.content) for m in msgs] == reference, (
            f"{name} ended with another history"
        )

    def window(name: str, end: int, data: dict[str, list[float]] = per_turn) -> list[float]:
        end = min(end, turns)
        return data[name][max(0, end - 10) : end]

    marks = [m for m in (10, 100, 300) if m <= turns] or [turns]
    print(
        f"\ncheckpoint write time per turn (ms): put; {turns} turns, "
        f"{len(reference)} messages at the end"
    )
    header = "".join(f"{'turn ' + str(m) + ' med/mean':>22}" for m in marks)
    print(f"  {'saver':<38}{header}{'last/first (med)':>18}")
    for name in savers:
        cells = ""
        meds = []
        for m in marks:
            w = window(name, m)
            meds.append(statistics.median(w))
            cells += f"{statistics.median(w) * 1e3:>12.2f} /{statistics.mean(w) * 1e3:>7.2f}  "
        print(f"  {name:<38}{cells}{meds[-1] / meds[0]:>16.1f}x")
    print(
        "\nloading the thread at the start of a turn (get_tuple), ms, median over the same windows:"
    )
    for name in savers:
        cells = "".join(
            f"{statistics.median(window(name, m, read_per_turn)) * 1e3:>12.2f}" for m in marks
        )
        print(f"  {name:<38}{cells}")

    stats = savers["RustSQLiteCheckpointer"].storage_stats()
    for name in ("RustSQLiteCheckpointer", "RustSQLiteCheckpointer(delta=False)"):
        savers[name].close()
    stock_conn.close()
    print("\ndatabase size after the conversation (file + WAL, after closing):")
    sizes = {name: file_size(p) for name, p in paths.items()}
    for name, size in sizes.items():
        print(
            f"  {name:<38}{size / 1e6:>10.2f} MB{sizes['SqliteSaver'] / size:>10.1f}x smaller than SqliteSaver"
        )
    print(f"  ({stats['blobs']} channel blobs, {stats['delta_blobs']} of them deltas)")

    # Load the latest state with fresh savers, as a new process would.
    stock_conn = sqlite3.connect(paths["SqliteSaver"], check_same_thread=False)
    fresh = {
        "SqliteSaver": build(SqliteSaver(stock_conn)),
        "RustSQLiteCheckpointer": build(RustSQLiteCheckpointer(paths["RustSQLiteCheckpointer"])),
        "RustSQLiteCheckpointer(delta=False)": build(
            RustSQLiteCheckpointer(paths["RustSQLiteCheckpointer(delta=False)"], delta=False)
        ),
    }
    loads: dict[str, list[float]] = {name: [] for name in fresh}
    for _ in range(15):
        for name, graph in fresh.items():
            t0 = time.perf_counter()
            state = graph.get_state(config)
            loads[name].append(time.perf_counter() - t0)
            assert len(state.values["messages"]) == len(reference)
    print("\nloading the latest state (graph.get_state), median of 15:")
    base = statistics.median(loads["SqliteSaver"])
    for name, ts in loads.items():
        med = statistics.median(ts)
        print(f"  {name:<38}{med * 1e3:>10.2f} ms{base / med:>10.2f}x vs SqliteSaver")


if __name__ == "__main__":
    main()
