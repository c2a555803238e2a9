"""End to end, stock LangGraph against fast-langgraph as a user turns all of it on.

`bench_checkpoint.py --only e2e` swaps the checkpointer alone, in one process, with LangGraph's
own loop and executor around it. This script measures the other comparison a user makes: the
same 8-node graph (200 invokes over 20 threads, `bench_checkpoint.py`'s graph) in separate,
long-lived processes:

- `stock SqliteSaver(NORMAL)`: stock LangGraph, stock `SqliteSaver` on a connection with
  `PRAGMA synchronous=NORMAL` (the durability `RustSQLiteCheckpointer` has by default);
- `stock InMemorySaver`: stock LangGraph, `InMemorySaver` with its stock serializer;
- `RustSQLiteCheckpointer`: stock LangGraph, our checkpointer only;
- `patch_langgraph() + RustSQLiteCheckpointer`: LangGraph under `patch_langgraph()` (its
  defaults: executor, serializer, add_messages) with our checkpointer;
- `InMemorySaver(RustSerializer)`: stock LangGraph, `InMemorySaver` with our serializer;
- `InMemorySaver(no serialization)`: stock LangGraph, `InMemorySaver` whose serializer stores
  references to LangGraph's objects and serializes nothing (`bench_checkpoint.StoreReferences`):
  no copying, no encoding, no I/O. No checkpointer can cost stock LangGraph less, so this is
  the ceiling for any checkpointer: the rest of the time is LangGraph's own loop.

The parent sends each round to every process in turn (the order reversed every other round),
for several rounds, and prints the medians and ratios. Afterwards every process reports the
final state and checkpoint count of each conversation, and the script fails unless they are
all equal.

Run: `.venv/bin/python benches/bench_e2e_product.py [--rounds N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from typing import Any

from _common import Workers

MODES = (
    "stock SqliteSaver(NORMAL)",
    "stock InMemorySaver",
    "RustSQLiteCheckpointer",
    "patch_langgraph() + RustSQLiteCheckpointer",
    "InMemorySaver(RustSerializer)",
    "InMemorySaver(no serialization)",
)
THREADS, PER_THREAD = 20, 10


def _worker(mode: str, tmp: str) -> None:
    if mode.startswith("patch_langgraph()"):
        import fast_langgraph.shim

        report = fast_langgraph.shim.patch_langgraph()
        assert report.applied, report
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import sqlite3

    from bench_checkpoint import build_graph, ceiling_savers, converse  # the 8-node graph
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    from fast_langgraph import RustSQLiteCheckpointer

    path = os.path.join(tmp, f"{MODES.index(mode)}.db")
    saver: Any
    if mode == "stock SqliteSaver(NORMAL)":
        conn = sqlite3.connect(path, check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()
        conn.execute("PRAGMA synchronous=NORMAL")
    elif mode == "stock InMemorySaver":
        saver = InMemorySaver()
    elif mode.startswith("InMemorySaver("):
        saver = ceiling_savers()[mode]
    else:
        saver = RustSQLiteCheckpointer(path)
    graph = build_graph(saver)
    threads_run: list[str] = []

    def rate() -> float:
        got, thread_ids = converse(graph, THREADS, PER_THREAD, THREADS)
        threads_run.extend(thread_ids)
        return got

    rate()  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "states":
            break
        print(json.dumps(rate()), flush=True)
    states = []
    for thread_id in threads_run:
        cfg = {"configurable": {"thread_id": thread_id}}
        values = graph.get_state(cfg).values
        history = len(list(graph.get_state_history(cfg)))
        states.append(
            [
                history,
                [(type(m).__name__, m.content) for m in values["messages"]],
                values.get("results"),
                values.get("route"),
            ]
        )
    print(json.dumps(sorted(states, key=repr)), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker, args.tmp)
        return
    with tempfile.TemporaryDirectory(prefix="flg-bench-e2e-") as tmp:
        workers = Workers(
            {m: [sys.executable, __file__, "--worker", m, "--tmp", tmp] for m in MODES}
        )
        samples: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(args.rounds):
            for m in workers.order(r):
                samples[m].append(workers.ask(m, "run"))
        states = {m: workers.ask(m, "states") for m in MODES}
        workers.close(timeout=120)
        first = states[MODES[0]]
        for m in MODES[1:]:
            assert states[m] == first, f"{m} stored other states or histories than {MODES[0]}"
    med = {m: statistics.median(v) for m, v in samples.items()}
    base, mem = med[MODES[0]], med[MODES[1]]
    print(
        f"end to end: 8-node graph, {THREADS * PER_THREAD} invokes over {THREADS} threads, "
        f"{args.rounds} interleaved rounds, medians; every process's {len(first)} conversations "
        "ended in the same states with as many checkpoints"
    )
    print(
        f"  {'process':<44} {'invokes/s':>10} {'vs SqliteSaver(NORMAL)':>23} {'vs InMemorySaver':>17}"
    )
    for m, v in med.items():
        print(f"  {m:<44} {v:>10.1f} {v / base:>22.2f}x {v / mem:>16.2f}x")


if __name__ == "__main__":
    main()
