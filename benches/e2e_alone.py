"""One end to end contender alone in this process, with what its time is made of.

The graph and load of `bench_e2e_product.py` (the 8-node graph of `bench_checkpoint.py`, 200
invokes over 20 threads, stock LangGraph with only the checkpointer swapped), one contender per
process, so a profiler (`perf stat`, `perf record`, `strace -f -c`) sees that contender only.
After one warm-up batch it times ROUNDS batches and prints their rates and median, the CPU time
per invocation (user and system, `os.times`), the garbage collector's time per invocation
(`gc.callbacks`) and, for ours, the writer's calls and commits (`writer_stats()`).

Contenders: `mem` (InMemorySaver, stock serializer), `mem-release` (the same, but each `put`
and `put_writes` lets go of the GIL once after storing, as a saver that commits with the GIL
released does: `time.sleep(0)`; what that alone costs end to end), `rust-serde` (InMemorySaver
with RustSerializer), `refs` (InMemorySaver storing references, the ceiling: see
`bench_checkpoint.StoreReferences`), `ours` (RustSQLiteCheckpointer), `stock-normal`
(SqliteSaver with `PRAGMA synchronous=NORMAL`), `pg` (RustPostgresCheckpointer) and `pg-stock`
(PostgresSaver with a psycopg pool, as bench_postgres.py makes it), each on a throwaway server
of tests/pg_server.py (fsync on) that the run starts and stops, and `pg-nofsync` (ours, on a
server with fsync off: commits that do not wait for the disk).

Also printed: the threads started per invocation (LangGraph runs each invocation's tasks and
checkpointer calls on an executor of its own, which starts a thread whenever none of its
workers is idle).

Run: `.venv/bin/python benches/e2e_alone.py CONTENDER [ROUNDS [THREADS]]` (default 5 rounds;
THREADS, default 20, run the same 20 conversations of 10 invokes each: with 1, one after the
other).
"""

from __future__ import annotations

import atexit
import gc
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_checkpoint import build_graph, ceiling_savers, converse
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from fast_langgraph import RustPostgresCheckpointer, RustSQLiteCheckpointer

CONVERSATIONS, PER_CONVERSATION = 20, 10
CONTENDERS = (
    "mem",
    "mem-release",
    "rust-serde",
    "refs",
    "ours",
    "stock-normal",
    "pg",
    "pg-stock",
    "pg-nofsync",
)


class ReleasingInMemorySaver(InMemorySaver):
    """InMemorySaver whose `put` and `put_writes` let go of the GIL once after storing (and
    take it back), as a checkpointer that commits with the GIL released does."""

    def put(self, *args: Any, **kwargs: Any) -> Any:
        config = super().put(*args, **kwargs)
        time.sleep(0)
        return config

    def put_writes(self, *args: Any, **kwargs: Any) -> None:
        super().put_writes(*args, **kwargs)
        time.sleep(0)


def make_saver(name: str, tmp: str, stack: ExitStack | None = None) -> Any:
    """The contender ``name``; a server it starts is stopped by ``stack`` (at exit without)."""
    if name == "mem":
        return InMemorySaver()
    if name == "mem-release":
        return ReleasingInMemorySaver()
    if name == "rust-serde":
        return ceiling_savers()["InMemorySaver(RustSerializer)"]
    if name == "refs":
        return ceiling_savers()["InMemorySaver(no serialization)"]
    if name == "ours":
        return RustSQLiteCheckpointer(os.path.join(tmp, "ours.db"))
    if name == "stock-normal":
        conn = sqlite3.connect(os.path.join(tmp, "stock.db"), check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()
        conn.execute("PRAGMA synchronous=NORMAL")
        return saver
    if name in ("pg", "pg-stock", "pg-nofsync"):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
        from bench_postgres import ours as pg_ours
        from bench_postgres import stock as pg_stock
        from pg_server import PgServer

        server = PgServer(durable=name != "pg-nofsync").start()
        url = server.url(server.create_database("alone"))
        saver = (pg_stock if name == "pg-stock" else pg_ours)(url)
        close = saver.conn.close if name == "pg-stock" else saver.close
        for done in (server.stop, close):  # (each runs after the next: the saver closes first)
            if stack is not None:
                stack.callback(done)
            else:
                atexit.register(done)
        return saver
    raise SystemExit(f"unknown contender {name!r}; one of {', '.join(CONTENDERS)}")


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    name = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    with tempfile.TemporaryDirectory(prefix="flg-e2e-alone-") as tmp, ExitStack() as stack:
        saver = make_saver(name, tmp, stack)
        graph = build_graph(saver)

        def rate() -> float:
            return converse(graph, CONVERSATIONS, PER_CONVERSATION, threads)[0]

        rate()  # warm-up
        gc_time = [0.0, 0.0]  # total, start of the collection in progress

        def on_gc(phase: str, _info: dict) -> None:
            if phase == "start":
                gc_time[1] = time.perf_counter()
            else:
                gc_time[0] += time.perf_counter() - gc_time[1]

        started = [0]
        start = threading.Thread.start

        def counted_start(thread: threading.Thread) -> None:
            started[0] += 1
            start(thread)

        threading.Thread.start = counted_start  # type: ignore[method-assign]
        gc.callbacks.append(on_gc)
        t0 = os.times()
        rates = [rate() for _ in range(rounds)]
        t1 = os.times()
        gc.callbacks.remove(on_gc)
        threading.Thread.start = start  # type: ignore[method-assign]
        n = CONVERSATIONS * PER_CONVERSATION * rounds
        print(
            f"{name}: median {statistics.median(rates):.1f} invokes/s "
            f"({', '.join(f'{r:.1f}' for r in rates)}); per invocation: "
            f"user {(t1.user - t0.user) / n * 1e3:.2f} ms, system "
            f"{(t1.system - t0.system) / n * 1e3:.2f} ms, garbage collector "
            f"{gc_time[0] / n * 1e3:.2f} ms, threads started {started[0] / n:.2f}"
        )
        if isinstance(saver, (RustSQLiteCheckpointer, RustPostgresCheckpointer)):
            st = saver.writer_stats()
            print(f"  writer (warm-up included): {st['calls']} calls in {st['commits']} commits")


if __name__ == "__main__":
    main()
