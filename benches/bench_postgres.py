"""RustPostgresCheckpointer against LangGraph's PostgresSaver (on a psycopg ConnectionPool, as
its docs recommend for servers), side by side on one throwaway local server started here
(durable settings: fsync on, synchronous_commit on). Interleaved rounds, medians. The end to
end measure also runs the graph on LangGraph's `InMemorySaver`: the ceiling (no database at
all), not a contender.

Run: `.venv/bin/python benches/bench_postgres.py [--quick] [--only list,e2e]`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Annotated, Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from psycopg import Connection
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from typing_extensions import TypedDict

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from _common import interleaved, table
from bench_checkpoint import build_graph, fill_thread, state_of_size
from pg_server import PgServer

from fast_langgraph import RustPostgresCheckpointer


def stock(url: str, pool_size: int = 10, setup: bool = True) -> PostgresSaver:
    if setup:
        with Connection.connect(url, autocommit=True) as conn:
            PostgresSaver(conn).setup()
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=pool_size,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=True,
    )
    return PostgresSaver(pool)


def ours(url: str, pool_size: int = 10, setup: bool = True) -> RustPostgresCheckpointer:
    saver = RustPostgresCheckpointer(url, pool_size=pool_size)
    if setup:
        saver.setup()
    return saver


def side_by_side(server: PgServer) -> dict[str, Any]:
    """PostgresSaver (on a pool) and RustPostgresCheckpointer, each set up on a new database of
    ``server``, by the names the tables print."""
    s_url, o_url = (server.url(server.create_database(n)) for n in ("stock", "ours"))
    return {"PostgresSaver(pool)": stock(s_url), "RustPostgresCheckpointer": ours(o_url)}


def put_get(saver, size: int, *, new_threads: bool = False):
    """One put of a state of about ``size`` bytes and a get_tuple of it, per call: on 50
    threads in turn, or with ``new_threads`` each on a thread of its own (its first put)."""
    values = state_of_size(size)
    counter = [0]
    tag = "new-" + uuid.uuid4().hex[:6] if new_threads else ""

    def step():
        counter[0] += 1
        cp = empty_checkpoint()
        cp["channel_values"] = values
        versions = {k: saver.get_next_version(None, None) for k in values}
        cp["channel_versions"] = versions
        thread = f"pg-{size}-{tag}{counter[0]}" if new_threads else f"pg-{size}-{counter[0] % 50}"
        conf = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        saver.put(conf, cp, {"source": "loop", "step": counter[0]}, versions)
        saver.get_tuple(conf)

    return step


def put_only(saver, size: int):
    """`put_get`'s put without its get_tuple: on 50 threads in turn."""
    values = state_of_size(size)
    counter = [0]

    def step() -> None:
        counter[0] += 1
        cp = empty_checkpoint()
        cp["channel_values"] = values
        versions = {k: saver.get_next_version(None, None) for k in values}
        cp["channel_versions"] = versions
        conf = {"configurable": {"thread_id": f"pg-{size}-{counter[0] % 50}", "checkpoint_ns": ""}}
        saver.put(conf, cp, {"source": "loop", "step": counter[0]}, versions)

    return step


def put_chain(saver, values, thread_id: str, counts: list[int], t: int, stop: float) -> None:
    """Puts checkpoints of ``values`` on one thread, each after the last, until ``stop`` (a
    ``time.perf_counter()`` time); counts them in ``counts[t]``."""
    parent = None
    while time.perf_counter() < stop:
        cp = empty_checkpoint()
        cp["channel_values"] = values
        versions = {k: saver.get_next_version(None, None) for k in values}
        cp["channel_versions"] = versions
        conf = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        if parent:
            conf["configurable"]["checkpoint_id"] = parent
        parent = saver.put(conf, cp, {"source": "loop", "step": counts[t]}, versions)[
            "configurable"
        ]["checkpoint_id"]
        counts[t] += 1


def _writer_proc(kind: str, url: str, proc: int, seconds: float, out) -> None:
    saver = stock(url, 8, setup=False) if kind == "stock" else ours(url, 8, setup=False)
    values = state_of_size(1_000)
    stop = time.perf_counter() + seconds
    counts = [0] * 8

    def worker(t: int) -> None:
        put_chain(saver, values, f"mp-{proc}-{t}", counts, t, stop)

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(worker, range(8)))
    out.put(sum(counts))


def writes_per_second(kind: str, url: str, seconds: float = 5.0) -> float:
    """4 processes x 8 threads putting 1 KB checkpoints for `seconds`: puts per second."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_writer_proc, args=(kind, url, p, seconds, out)) for p in range(4)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


_VOCABULARY = [
    f"{a}{b}{c}" for a in "bcdfgklmnprst" for b in "aeiou" for c in ("n", "r", "s", "", "l")
]


def _words(seed: int, n: int) -> str:
    """Text that compresses about as well as prose (PostgreSQL compresses large values)."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_VOCABULARY) for _ in range(n))


class Chat(TypedDict):
    messages: Annotated[list, add_messages]


def chat_300(saver) -> tuple[float, float]:
    """A 300-turn chat through a real graph (add_messages): the median put at turns 5-15 and
    290-300, in seconds."""

    def bot(state: Chat) -> dict:
        n = len(state["messages"])
        return {"messages": [AIMessage(f"answer {n} " + _words(n, 60), id=f"a{n}")]}

    b = StateGraph(Chat)
    b.add_node("bot", bot)
    b.add_edge(START, "bot")
    graph = b.compile(checkpointer=saver)
    times: dict[int, list[float]] = {}
    turn = [0]
    real_put = saver.put

    def timed_put(*a, **k):
        t0 = time.perf_counter()
        try:
            return real_put(*a, **k)
        finally:
            times.setdefault(turn[0], []).append(time.perf_counter() - t0)

    saver.put = timed_put
    try:
        for t in range(1, 301):
            turn[0] = t
            graph.invoke(
                {"messages": [HumanMessage(f"q{t} " + _words(-t, 30), id=f"h{t}")]},
                {"configurable": {"thread_id": "chat300"}},
            )
    finally:
        del saver.put
    early = statistics.median(x for t in range(5, 16) for x in times[t])
    late = statistics.median(x for t in range(290, 301) for x in times[t])
    return early, late


def bench_put_get(savers: dict[str, Any], size: int, rounds: int) -> None:
    """put + get_tuple on 50 threads in turn, timed once every thread has its first
    checkpoint (a put that continues a thread, as LangGraph's puts after a thread's first);
    then each pair on a new thread (a thread's first put). Each contender's 50 warm-up pairs
    run before the timed rounds, so that none is measured while it starts its threads:
    RustPostgresCheckpointer's first put of a thread stores every value whole, and what it
    keeps of a thread's last read for the next put's delta fills its bounded memory, whose new
    objects bring Python's garbage collections forward (docs/benchmarks.md, "The put + get_tuple
    pair: the script's 35 KB figure, and the floor under the 1 KB one")."""
    steps = {n: put_get(s, size) for n, s in savers.items()}
    for step in steps.values():
        for _ in range(50):
            step()
    res = interleaved(steps, rounds=rounds, reps=20)
    print(table(f"put + get_tuple, {size // 1000} KB state", res, baseline="PostgresSaver(pool)"))
    res = interleaved(
        {n: put_get(s, size, new_threads=True) for n, s in savers.items()}, rounds=rounds, reps=20
    )
    print(
        table(
            f"  the same, each on a new thread (its first put), {size // 1000} KB",
            res,
            baseline="PostgresSaver(pool)",
        )
    )


def bench_list(savers: dict[str, Any], rounds: int) -> None:
    """Wall time per `list()` (the table), and the listing thread's CPU time (the client's
    side only: the server's work runs in its own processes)."""
    lists = {n: fill_thread(s, 1000) for n, s in savers.items()}
    cpu: dict[str, list[float]] = {n: [] for n in savers}

    def lister(n: str, s: Any) -> Any:
        def run() -> None:
            c0 = time.thread_time()
            items = list(s.list(lists[n]))
            del items  # freeing the checkpoints is part of the cost, for both savers
            cpu[n].append(time.thread_time() - c0)

        return run

    res = interleaved({n: lister(n, s) for n, s in savers.items()}, rounds=rounds, reps=1)
    print(
        table(
            "list over 1,000 checkpoints (2 writes each)",
            res,
            baseline="PostgresSaver(pool)",
            unit="ms",
        )
    )
    # The first sample of each is the warm-up.
    cpu_med = {n: statistics.median(v[1:]) for n, v in cpu.items()}
    print(
        table(
            "  the same, CPU time of the listing thread",
            cpu_med,
            baseline="PostgresSaver(pool)",
            unit="ms",
        )
    )


def run_e2e(graph: Any) -> None:
    """200 invokes of ``graph`` over 20 threads: 20 new conversations of 10 turns."""
    tag = uuid.uuid4().hex[:6]

    def conversation(t: int) -> None:
        for i in range(10):
            graph.invoke(
                {"messages": [HumanMessage(f"question {i}")], "results": []},
                {"configurable": {"thread_id": f"e2e-{tag}-{t}"}},
            )

    with ThreadPoolExecutor(20) as ex:
        list(ex.map(conversation, range(20)))


CEILING = "InMemorySaver (ceiling)"


def _process_cpu() -> tuple[float, float]:
    """User and system CPU seconds of this process, every thread."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def bench_e2e(savers: dict[str, Any], rounds: int) -> None:
    """End to end: the 8-node graph, 200 invokes over 20 threads, each saver's graph in turn.
    LangGraph's ``InMemorySaver`` runs beside them as the ceiling, not as a contender: it
    stores nothing in any database, so its time is the graph's own cost under LangGraph
    (the client's Python, which holds the GIL), below which no saver on PostgreSQL can go.
    Also the client's CPU per invoke (this process, every thread: user and system)."""
    graphs = {n: build_graph(s) for n, s in savers.items()}
    graphs[CEILING] = build_graph(InMemorySaver())
    cpu: dict[str, list[tuple[float, float]]] = {n: [] for n in graphs}

    def timed(name: str, graph: Any) -> None:
        u0, s0 = _process_cpu()
        run_e2e(graph)
        u1, s1 = _process_cpu()
        cpu[name].append((u1 - u0, s1 - s0))

    res = interleaved(
        {n: partial(timed, n, g) for n, g in graphs.items()}, rounds=max(3, rounds // 2), reps=1
    )
    print(
        table(
            "8-node graph, 200 invokes over 20 threads",
            res,
            baseline="PostgresSaver(pool)",
            unit="ms",
        )
    )
    print(
        f"  ({CEILING}: no database at all, not a contender: the graph's own cost, the floor\n"
        "   for any saver; 2x PostgresSaver is reachable only while that stays below half of it)"
    )
    print(
        f"\n  client CPU per invoke (median of rounds)  {'user us':>10} {'system us':>10} {'total us':>10}"
    )
    for name, samples in cpu.items():
        timed_rounds = samples[1:]  # the first is the warm-up
        user = statistics.median(u for u, _ in timed_rounds) / 200 * 1e6
        system = statistics.median(s for _, s in timed_rounds) / 200 * 1e6
        total = statistics.median(u + s for u, s in timed_rounds) / 200 * 1e6
        print(f"  {name:<40} {user:>10.0f} {system:>10.0f} {total:>10.0f}")


def bench_writes(server: PgServer, rounds: int) -> None:
    # 4 processes x 8 threads, each on its own database pair.
    wps: dict[str, list[float]] = {"PostgresSaver(pool)": [], "RustPostgresCheckpointer": []}
    urls = {n: server.url(server.create_database("mp")) for n in wps}
    for n, u in urls.items():
        if n.startswith("Postgres"):
            stock(u, 1).conn.close()
        else:
            ours(u, 1).close()
    for _ in range(max(2, rounds // 2)):
        for n, u in urls.items():
            wps[n].append(writes_per_second("stock" if n.startswith("Postgres") else "ours", u))
    med = {n: statistics.median(v) for n, v in wps.items()}
    print("\n4 processes x 8 threads, 1 KB puts per second (median of rounds)")
    for n, v in med.items():
        print(f"  {n:<34} {v:>10.0f} /s {v / med['PostgresSaver(pool)']:>8.2f}x")


def bench_chat(server: PgServer) -> None:
    # 300-turn chat through a real graph, each saver on a fresh database.
    sizes = {}
    for n, make in (("PostgresSaver(pool)", stock), ("RustPostgresCheckpointer", ours)):
        db = server.create_database("chat")
        saver = make(server.url(db))
        early, late = chat_300(saver)
        sizes[n] = int(
            server.psql(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace s ON s.oid = c.relnamespace "
                "WHERE s.nspname = 'public' AND c.relkind = 'r'",
                db,
            )
        )
        print(
            f"\n300-turn chat, {n}: put at turns 5-15 {early * 1e3:.2f} ms, at turns 290-300 "
            f"{late * 1e3:.2f} ms ({late / early:.2f}x); tables {sizes[n] / 1e6:.2f} MB"
        )
        # Where the bytes are: each table with its TOAST data, and its indexes.
        tables = server.psql(
            "SELECT string_agg(format('%s: %s kB (indexes %s kB)', c.relname, "
            "pg_total_relation_size(c.oid) / 1024, pg_indexes_size(c.oid) / 1024), "
            "E'\\n' ORDER BY c.relname) FROM pg_class c "
            "JOIN pg_namespace s ON s.oid = c.relnamespace "
            "WHERE s.nspname = 'public' AND c.relkind = 'r'",
            db,
        )
        print("\n".join("  " + line.strip() for line in tables.splitlines()))
    print(
        f"tables after the 300-turn chat: ours {sizes['PostgresSaver(pool)'] / sizes['RustPostgresCheckpointer']:.1f}x smaller"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--no-fsync",
        action="store_true",
        help="a server with fsync and synchronous_commit off (the CPU side, without the disk)",
    )
    ap.add_argument(
        "--only",
        default="put,list,e2e,writes,chat",
        help="comma-separated measures to run: put, list, e2e, writes, chat (default: all)",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    rounds = 3 if args.quick else 7
    server = PgServer(durable=not args.no_fsync).start()
    try:
        savers = side_by_side(server)
        print(
            f"server: PostgreSQL in {server.bindir}, fsync {'off' if args.no_fsync else 'on'}, 127.0.0.1"
        )
        for size in (1_000, 35_000) if "put" in only else ():
            bench_put_get(savers, size, rounds)
        if "list" in only:
            bench_list(savers, rounds)
        if "e2e" in only:
            bench_e2e(savers, rounds)
        if "writes" in only:
            bench_writes(server, rounds)
        if "chat" in only:
            bench_chat(server)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
