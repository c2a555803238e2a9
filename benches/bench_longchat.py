"""A long conversation on one thread (500 turns by default): checkpoint write time per turn,
`get_state` time and database size, stock SqliteSaver against RustSQLiteCheckpointer, for two
ways of keeping a chat history:

- `add_messages`: `Annotated[list, add_messages]`, a channel stored whole at every step by
  stock savers; ours stores the appended messages only (append-only deltas).
- `delta_channel`: `Annotated[list, DeltaChannel(...)]`, LangGraph's own answer: a snapshot
  every `snapshot_frequency` updates (LangGraph's default, 100) and the writes in between,
  which a read replays through the saver's `get_delta_channel_history`.

Savers, side by side: SqliteSaver at its default (`synchronous=FULL`) and at
`synchronous=NORMAL`; ours at its default (`durable=False`, NORMAL) and `durable=True` (FULL).
Equal durability is NORMAL against NORMAL (and FULL against FULL); the user-facing default
comparison is SqliteSaver's FULL against our NORMAL.

The savers take turns: turn i runs on each saver before turn i+1 runs on any, so machine noise
hits all alike. The write time is the time in `put` per turn (called from the graph loop with
`durability="sync"`); `put_writes` (one message, constant size, on LangGraph's background
threads) is left out. The table shows medians and means over turns 1-10, 241-250 and 491-500.
`get_state` is measured at the end with savers opened on the finished files, interleaved: for
the latest checkpoint, the first call (a new process loading the thread) and the median of 14
more (a process serving the thread: with DeltaChannel our saver keeps the decoded snapshot,
stock SqliteSaver decodes it again); and the median over the last 30 checkpoints (with
DeltaChannel they sit at every distance from the last snapshot, while the latest may be a
snapshot itself: at 500 turns, the 1,000th update is one). Every saver must end with the same history.

Run: `.venv/bin/python benches/bench_longchat.py [--turns N] [--kind add_messages|delta_channel|both]`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Annotated, Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from fast_langgraph import RustSQLiteCheckpointer

TEXT = "The quick brown fox jumps over the lazy dog. " * 5


def add_messages_batch(state: list, writes: list) -> list:
    """`add_messages` over a batch of writes, as `DeltaChannel` calls its reducer (one merge
    for the batch: `add_messages` is batching-invariant)."""
    return add_messages(state, [m for w in writes for m in (w if isinstance(w, list) else [w])])


class AddMessagesChat(TypedDict):
    messages: Annotated[list, add_messages]


class DeltaChannelChat(TypedDict):
    messages: Annotated[list, DeltaChannel(add_messages_batch)]


SCHEMAS = {"add_messages": AddMessagesChat, "delta_channel": DeltaChannelChat}


def build(saver: Any, kind: str):
    def bot(state: dict) -> dict:
        n = len(state["messages"])
        return {"messages": [AIMessage(content=f"answer {n}: {TEXT}", id=f"ai-{n}")]}

    g = StateGraph(SCHEMAS[kind])
    g.add_node("bot", bot)
    g.add_edge(START, "bot")
    g.add_edge("bot", END)
    return g.compile(checkpointer=saver)


class Timer:
    """Wraps a saver's `put` on the instance and adds up the time spent in it."""

    def __init__(self, saver: Any) -> None:
        self.write = 0.0
        saver.put = self._wrap(saver.put)

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.write += time.perf_counter() - t0

        return timed


def file_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def stock_saver(path: str, synchronous: str | None) -> tuple[SqliteSaver, sqlite3.Connection]:
    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    if synchronous is not None:
        conn.execute(f"PRAGMA synchronous={synchronous}")
    return saver, conn


SAVERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    # name: (file name, opener returning (saver, connection to close or None))
    "SqliteSaver (default, FULL)": ("stock-full.db", lambda p: stock_saver(p, None)),
    "SqliteSaver (synchronous=NORMAL)": ("stock-normal.db", lambda p: stock_saver(p, "NORMAL")),
    "RustSQLiteCheckpointer (default, NORMAL)": (
        "rust.db",
        lambda p: (RustSQLiteCheckpointer(p), None),
    ),
    "RustSQLiteCheckpointer (durable=True, FULL)": (
        "rust-durable.db",
        lambda p: (RustSQLiteCheckpointer(p, durable=True), None),
    ),
}
STOCK_DEFAULT = "SqliteSaver (default, FULL)"
STOCK_NORMAL = "SqliteSaver (synchronous=NORMAL)"
OURS = "RustSQLiteCheckpointer (default, NORMAL)"
OURS_FULL = "RustSQLiteCheckpointer (durable=True, FULL)"


def close(saver: Any, conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        conn.close()
    else:
        saver.close()


def run_kind(kind: str, turns: int, tmp: str) -> dict[str, Any]:
    paths = {name: os.path.join(tmp, f"{kind}-{file}") for name, (file, _) in SAVERS.items()}
    opened = {name: opener(paths[name]) for name, (_, opener) in SAVERS.items()}
    timers = {name: Timer(saver) for name, (saver, _) in opened.items()}
    graphs = {name: build(saver, kind) for name, (saver, _) in opened.items()}
    config = {"configurable": {"thread_id": "long-chat"}}
    per_turn: dict[str, list[float]] = {name: [] for name in SAVERS}
    for turn in range(1, turns + 1):
        for name, graph in graphs.items():
            before = timers[name].write
            graph.invoke(
                {"messages": [HumanMessage(content=f"question {turn}: {TEXT}", id=f"h-{turn}")]},
                config,
                durability="sync",
            )
            per_turn[name].append(timers[name].write - before)
        if turn % 100 == 0:
            print(f"  ... {kind}: turn {turn}", flush=True)
    finals = {name: g.get_state(config).values["messages"] for name, g in graphs.items()}
    reference = [(m.type, m.content) for m in finals[STOCK_DEFAULT]]
    assert len(reference) == 2 * turns
    for name, msgs in finals.items():
        assert [(m.type, m.content) for m in msgs] == reference, f"{name} ended elsewhere"
    for saver, conn in opened.values():
        close(saver, conn)
    sizes = {name: file_size(p) for name, p in paths.items()}

    # get_state with fresh savers on the finished files, interleaved: the latest checkpoint,
    # and each of the last 30 (LangGraph's time travel; with DeltaChannel they sit at every
    # distance from the last snapshot, where the latest may be a snapshot itself).
    fresh = {name: SAVERS[name][1](paths[name]) for name in SAVERS}
    fresh_graphs = {name: build(saver, kind) for name, (saver, _) in fresh.items()}
    recent = {
        name: [s.config for s in graph.get_state_history(config, limit=30)]
        for name, graph in fresh_graphs.items()
    }
    loads: dict[str, list[float]] = {name: [] for name in fresh}
    back: dict[str, list[float]] = {name: [] for name in fresh}
    for _ in range(15):
        for name, graph in fresh_graphs.items():
            t0 = time.perf_counter()
            state = graph.get_state(config)
            loads[name].append(time.perf_counter() - t0)
            assert len(state.values["messages"]) == 2 * turns
    for i in range(30):
        for name, graph in fresh_graphs.items():
            t0 = time.perf_counter()
            graph.get_state(recent[name][i])
            back[name].append(time.perf_counter() - t0)
    for saver, conn in fresh.values():
        close(saver, conn)
    return {"per_turn": per_turn, "sizes": sizes, "loads": loads, "back": back}


def report(kind: str, turns: int, r: dict[str, Any]) -> None:
    per_turn, sizes, loads, back = r["per_turn"], r["sizes"], r["loads"], r["back"]

    def window(name: str, end: int) -> list[float]:
        end = min(end, turns)
        return per_turn[name][max(0, end - 10) : end]

    marks = sorted({m for m in (10, turns // 2, turns) if m >= 1})
    print(f"\n== {kind}: {turns} turns, {2 * turns} messages at the end ==")
    print("checkpoint write time per turn (ms): put, median / mean of 10 turns")
    header = "".join(f"{'turn ' + str(m):>20}" for m in marks)
    print(f"  {'saver':<44}{header}{'all turns (mean)':>18}")
    for name in SAVERS:
        cells = "".join(
            f"{statistics.median(window(name, m)) * 1e3:>10.2f} /{statistics.mean(window(name, m)) * 1e3:>7.2f}"
            for m in marks
        )
        print(f"  {name:<44}{cells}{statistics.mean(per_turn[name]) * 1e3:>16.2f}")
    print("database size (file + WAL, after closing):")
    for name, size in sizes.items():
        print(
            f"  {name:<44}{size / 1e6:>10.2f} MB   {sizes[STOCK_DEFAULT] / size:>6.1f}x smaller than "
            f"SqliteSaver (FULL), {sizes[STOCK_NORMAL] / size:>6.1f}x than (NORMAL)"
        )
    print(
        "graph.get_state of the latest checkpoint, saver opened on the finished file: the first "
        "call, then the median of 14 more (ms):"
    )
    for name, ts in loads.items():
        first, med = ts[0], statistics.median(ts[1:])
        print(
            f"  {name:<44}first {first * 1e3:>8.2f} ({loads[STOCK_NORMAL][0] / first:>5.2f}x vs "
            f"SqliteSaver NORMAL)   then {med * 1e3:>8.2f} "
            f"({statistics.median(loads[STOCK_DEFAULT][1:]) / med:>5.2f}x vs FULL, "
            f"{statistics.median(loads[STOCK_NORMAL][1:]) / med:>5.2f}x vs NORMAL)"
        )
    print("graph.get_state of each of the last 30 checkpoints, median (ms):")
    for name, ts in back.items():
        med = statistics.median(ts)
        print(
            f"  {name:<44}{med * 1e3:>10.2f}   {statistics.median(back[STOCK_DEFAULT]) / med:>5.2f}x "
            f"vs SqliteSaver FULL, {statistics.median(back[STOCK_NORMAL]) / med:>5.2f}x vs NORMAL"
        )
    stock_write = statistics.mean(per_turn[STOCK_NORMAL])
    ours_write = statistics.mean(per_turn[OURS])
    print(
        f"equal durability (NORMAL): write per turn {stock_write / ours_write:.1f}x faster, "
        f"get_state {statistics.median(loads[STOCK_NORMAL][1:]) / statistics.median(loads[OURS][1:]):.2f}x "
        f"(last 30: {statistics.median(back[STOCK_NORMAL]) / statistics.median(back[OURS]):.2f}x), "
        f"database {sizes[STOCK_NORMAL] / sizes[OURS]:.1f}x smaller"
    )
    print(
        f"equal durability (FULL):   write per turn "
        f"{statistics.mean(per_turn[STOCK_DEFAULT]) / statistics.mean(per_turn[OURS_FULL]):.1f}x faster, "
        f"get_state {statistics.median(loads[STOCK_DEFAULT][1:]) / statistics.median(loads[OURS_FULL][1:]):.2f}x, "
        f"database {sizes[STOCK_DEFAULT] / sizes[OURS_FULL]:.1f}x smaller"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--turns", type=int, default=500)
    ap.add_argument("--kind", choices=["add_messages", "delta_channel", "both"], default="both")
    args = ap.parse_args()
    kinds = ["add_messages", "delta_channel"] if args.kind == "both" else [args.kind]
    tmp = tempfile.mkdtemp()
    results = {kind: run_kind(kind, args.turns, tmp) for kind in kinds}
    for kind in kinds:
        report(kind, args.turns, results[kind])


if __name__ == "__main__":
    main()
