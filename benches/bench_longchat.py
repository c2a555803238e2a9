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

`get_state` of the latest checkpoint is measured on the finished files, the savers interleaved
in every round (their order rotated from round to round), medians over `--rounds` rounds:
- the first read in a new process: a child process per saver and round (this script with
  `--first-read`) imports everything, opens the saver, builds the graph and times its first
  `get_state`, wall clock and CPU time; every child's state must equal SqliteSaver's;
- the first read on a newly opened saver in this process (after `gc.collect()`);
then, with savers kept open, the median of 14 more reads (a process serving the thread: with
DeltaChannel our saver keeps the decoded snapshot, stock SqliteSaver decodes it again), and the
median over the last 30 checkpoints (with DeltaChannel they sit at every distance from the last
snapshot, while the latest may be a snapshot itself: at 500 turns, the 1,000th update is one).
Every saver must end with the same history.

Run: `.venv/bin/python benches/bench_longchat.py [--turns N] [--kind add_messages|delta_channel|both]
[--rounds N] [--dir D [--reads-only]]` (`--dir` keeps the files; `--reads-only` measures the
reads again on the files an earlier run left there).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import sqlite3
import statistics
import subprocess
import sys
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


def write_turns(kind: str, turns: int, paths: dict[str, str]) -> dict[str, list[float]]:
    """Runs the conversation on every saver, turn by turn; the time in `put` per turn."""
    for p in paths.values():
        for f in (p, p + "-wal", p + "-shm"):
            if os.path.exists(f):
                os.remove(f)
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
    return per_turn


def run_kind(kind: str, turns: int, tmp: str, rounds: int, reads_only: bool) -> dict[str, Any]:
    paths = {name: os.path.join(tmp, f"{kind}-{file}") for name, (file, _) in SAVERS.items()}
    config = {"configurable": {"thread_id": "long-chat"}}
    per_turn: dict[str, list[float]] | None = None
    if not reads_only:
        per_turn = write_turns(kind, turns, paths)
    sizes = {name: file_size(p) for name, p in paths.items()}

    # get_state of the latest checkpoint on the finished files, each saver's turn interleaved
    # with the others' in every round: the first read in a new process (a child process per
    # read), and the first read on a newly opened saver in this process.
    fresh_process: dict[str, list[tuple[float, float]]] = {name: [] for name in SAVERS}
    new_saver: dict[str, list[float]] = {name: [] for name in SAVERS}
    names = list(SAVERS)
    seen: dict[str, Any] = {}
    for rnd in range(rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            out = first_read_in_new_process(kind, name, paths[name])
            fresh_process[name].append((out["wall"], out["cpu"]))
            seen.setdefault(name, out["state"])
        for name in order:
            saver, conn = SAVERS[name][1](paths[name])
            graph = build(saver, kind)
            gc.collect()
            t0 = time.perf_counter()
            state = graph.get_state(config)
            new_saver[name].append(time.perf_counter() - t0)
            seen.setdefault(name + " (in process)", state_digest(state))
            close(saver, conn)
    for name, digest in seen.items():
        assert digest == seen[STOCK_DEFAULT], f"{name}: get_state differs from SqliteSaver's"

    # Then, savers kept open: the latest checkpoint read again and again (a process serving
    # the thread: with DeltaChannel our saver keeps the decoded snapshot, stock SqliteSaver
    # decodes it again), and each of the last 30 checkpoints (LangGraph's time travel; with
    # DeltaChannel they sit at every distance from the last snapshot, where the latest may
    # be a snapshot itself).
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
    return {
        "per_turn": per_turn,
        "sizes": sizes,
        "loads": loads,
        "back": back,
        "fresh_process": fresh_process,
        "new_saver": new_saver,
    }


def state_digest(state: Any) -> list[Any]:
    """What two savers' `get_state` must agree on: the messages (type, content, id), the next
    nodes, the step and the number of pending tasks."""
    return [
        [[m.type, m.content, m.id] for m in state.values["messages"]],
        list(state.next),
        state.metadata.get("step") if state.metadata else None,
        len(state.tasks),
    ]


def first_read_in_new_process(kind: str, name: str, path: str) -> dict[str, Any]:
    """Runs `first_read` in a new Python process; its times (s) and state digest."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--first-read", name, path, "--kind", kind],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def first_read(kind: str, name: str, path: str) -> None:
    """In a new process (everything imported already): open the saver on the finished file,
    build the graph and time its first `get_state` of the thread, wall-clock and CPU time.
    Prints one JSON line."""
    saver, conn = SAVERS[name][1](path)
    graph = build(saver, kind)
    config = {"configurable": {"thread_id": "long-chat"}}
    c0, t0 = time.process_time(), time.perf_counter()
    state = graph.get_state(config)
    t1, c1 = time.perf_counter(), time.process_time()
    close(saver, conn)
    print(json.dumps({"wall": t1 - t0, "cpu": c1 - c0, "state": state_digest(state)}))


def report(kind: str, turns: int, r: dict[str, Any]) -> None:
    per_turn, sizes, loads, back = r["per_turn"], r["sizes"], r["loads"], r["back"]
    med = statistics.median

    def window(name: str, end: int) -> list[float]:
        end = min(end, turns)
        return per_turn[name][max(0, end - 10) : end]

    def vs(figures: dict[str, float], name: str) -> str:
        return (
            f"{figures[STOCK_DEFAULT] / figures[name]:>6.2f}x vs SqliteSaver FULL, "
            f"{figures[STOCK_NORMAL] / figures[name]:>6.2f}x vs NORMAL"
        )

    print(f"\n== {kind}: {turns} turns, {2 * turns} messages at the end ==")
    if per_turn is not None:
        marks = sorted({m for m in (10, turns // 2, turns) if m >= 1})
        print("checkpoint write time per turn (ms): put, median / mean of 10 turns")
        header = "".join(f"{'turn ' + str(m):>20}" for m in marks)
        print(f"  {'saver':<44}{header}{'all turns (mean)':>18}")
        for name in SAVERS:
            cells = "".join(
                f"{med(window(name, m)) * 1e3:>10.2f} /{statistics.mean(window(name, m)) * 1e3:>7.2f}"
                for m in marks
            )
            print(f"  {name:<44}{cells}{statistics.mean(per_turn[name]) * 1e3:>16.2f}")
    print("database size (file + WAL, after closing):")
    for name, size in sizes.items():
        print(
            f"  {name:<44}{size / 1e6:>10.2f} MB   {sizes[STOCK_DEFAULT] / size:>6.1f}x smaller than "
            f"SqliteSaver (FULL), {sizes[STOCK_NORMAL] / size:>6.1f}x than (NORMAL)"
        )
    rounds = len(r["fresh_process"][STOCK_DEFAULT])
    fp_wall = {n: med(t[0] for t in ts) for n, ts in r["fresh_process"].items()}
    fp_cpu = {n: med(t[1] for t in ts) for n, ts in r["fresh_process"].items()}
    print(
        f"graph.get_state of the latest checkpoint, the first read in a new process "
        f"(a child process per read, {rounds} rounds), median wall-clock (CPU) ms:"
    )
    for name in SAVERS:
        print(
            f"  {name:<44}{fp_wall[name] * 1e3:>8.2f} ({fp_cpu[name] * 1e3:>6.2f})  "
            f"{vs(fp_wall, name)}   (CPU: {vs(fp_cpu, name)})"
        )
    ns = {n: med(ts) for n, ts in r["new_saver"].items()}
    print(
        f"graph.get_state of the latest checkpoint, the first read on a newly opened saver in "
        f"this process ({rounds} rounds), median ms:"
    )
    for name in SAVERS:
        print(f"  {name:<44}{ns[name] * 1e3:>8.2f}  {vs(ns, name)}")
    then = {n: med(ts[1:]) for n, ts in loads.items()}
    print("graph.get_state of the latest checkpoint again, one saver kept open: median of 14 (ms):")
    for name in SAVERS:
        print(f"  {name:<44}{then[name] * 1e3:>8.2f}  {vs(then, name)}")
    last30 = {n: med(ts) for n, ts in back.items()}
    print("graph.get_state of each of the last 30 checkpoints, one saver kept open, median (ms):")
    for name in SAVERS:
        print(f"  {name:<44}{last30[name] * 1e3:>8.2f}  {vs(last30, name)}")
    for label, stock, ours in (("NORMAL", STOCK_NORMAL, OURS), ("FULL", STOCK_DEFAULT, OURS_FULL)):
        write = (
            f"write per turn {statistics.mean(per_turn[stock]) / statistics.mean(per_turn[ours]):.1f}x "
            "faster, "
            if per_turn is not None
            else ""
        )
        print(
            f"equal durability ({label}): {write}get_state first read "
            f"{fp_wall[stock] / fp_wall[ours]:.2f}x in a new process, "
            f"{ns[stock] / ns[ours]:.2f}x on a new saver, then {then[stock] / then[ours]:.2f}x "
            f"(last 30: {last30[stock] / last30[ours]:.2f}x), "
            f"database {sizes[stock] / sizes[ours]:.1f}x smaller"
        )
    print(
        f"default against default (SqliteSaver FULL, ours NORMAL): get_state first read "
        f"{fp_wall[STOCK_DEFAULT] / fp_wall[OURS]:.2f}x in a new process, "
        f"{ns[STOCK_DEFAULT] / ns[OURS]:.2f}x on a new saver"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--turns", type=int, default=500)
    ap.add_argument("--kind", choices=["add_messages", "delta_channel", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=7, help="rounds of first reads (default 7)")
    ap.add_argument(
        "--dir", help="where the database files go (default: a new temporary directory)"
    )
    ap.add_argument(
        "--reads-only",
        action="store_true",
        help="measure the reads only, on the files an earlier run left in --dir",
    )
    ap.add_argument("--first-read", nargs=2, metavar=("SAVER", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.first_read:
        first_read("delta_channel" if args.kind == "both" else args.kind, *args.first_read)
        return
    if args.reads_only and not args.dir:
        ap.error("--reads-only needs --dir")
    kinds = ["add_messages", "delta_channel"] if args.kind == "both" else [args.kind]
    tmp = args.dir or tempfile.mkdtemp()
    os.makedirs(tmp, exist_ok=True)
    results = {
        kind: run_kind(kind, args.turns, tmp, args.rounds, args.reads_only) for kind in kinds
    }
    for kind in kinds:
        report(kind, args.turns, results[kind])


if __name__ == "__main__":
    main()
