"""RustPostgresCheckpointer against LangGraph's PostgresSaver (on a psycopg ConnectionPool, as
its docs recommend for servers), side by side on one throwaway local server started here
(durable settings: fsync on, synchronous_commit on). Interleaved rounds, medians.

Run: `.venv/bin/python benches/bench_postgres.py [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg import Connection
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from _common import interleaved, table
from bench_checkpoint import build_graph, state_of_size
from pg_server import PgServer

from fast_langgraph import RustPostgresCheckpointer


def stock(url: str, pool_size: int = 10) -> PostgresSaver:
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


def ours(url: str, pool_size: int = 10) -> RustPostgresCheckpointer:
    saver = RustPostgresCheckpointer(url, pool_size=pool_size)
    saver.setup()
    return saver


def put_get(saver, size: int):
    values = state_of_size(size)
    counter = [0]

    def step():
        counter[0] += 1
        cp = empty_checkpoint()
        cp["channel_values"] = values
        versions = {k: saver.get_next_version(None, None) for k in values}
        cp["channel_versions"] = versions
        conf = {"configurable": {"thread_id": f"pg-{size}-{counter[0] % 50}", "checkpoint_ns": ""}}
        saver.put(conf, cp, {"source": "loop", "step": counter[0]}, versions)
        saver.get_tuple(conf)

    return step


def fill_list(saver, n: int) -> None:
    values = state_of_size(1000)
    parent = None
    for i in range(n):
        cp = empty_checkpoint()
        cp["channel_values"] = values if i == 0 else {}
        versions = {k: "1" for k in values}
        cp["channel_versions"] = versions
        conf = {"configurable": {"thread_id": "list", "checkpoint_ns": ""}}
        if parent:
            conf["configurable"]["checkpoint_id"] = parent
        saver.put(conf, cp, {"source": "loop", "step": i}, versions if i == 0 else {})
        parent = cp["id"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds = 3 if args.quick else 7
    server = PgServer(durable=True).start()
    try:
        s_url, o_url = (server.url(server.create_database(n)) for n in ("stock", "ours"))
        savers = {"PostgresSaver(pool)": stock(s_url), "RustPostgresCheckpointer": ours(o_url)}
        print(f"server: PostgreSQL in {server.bindir}, fsync on, 127.0.0.1")
        for size in (1_000, 35_000):
            res = interleaved(
                {n: put_get(s, size) for n, s in savers.items()}, rounds=rounds, reps=20
            )
            print(
                table(
                    f"put + get_tuple, {size // 1000} KB state", res, baseline="PostgresSaver(pool)"
                )
            )
        for s in savers.values():
            fill_list(s, 1000)
        res = interleaved(
            {
                n: (lambda s=s: list(s.list({"configurable": {"thread_id": "list"}})))
                for n, s in savers.items()
            },
            rounds=rounds,
            reps=1,
        )
        print(table("list over 1,000 checkpoints", res, baseline="PostgresSaver(pool)", unit="ms"))

        # End to end: the 8-node graph, 200 invokes over 20 threads.
        def e2e(saver):
            graph = build_graph(saver)

            def run():
                tag = uuid.uuid4().hex[:6]

                def conversation(t: int) -> None:
                    for i in range(10):
                        graph.invoke(
                            {"messages": [HumanMessage(f"question {i}")], "results": []},
                            {"configurable": {"thread_id": f"e2e-{tag}-{t}"}},
                        )

                with ThreadPoolExecutor(20) as ex:
                    list(ex.map(conversation, range(20)))

            return run

        res = interleaved(
            {n: e2e(s) for n, s in savers.items()}, rounds=max(3, rounds // 2), reps=1
        )
        print(
            table(
                "8-node graph, 200 invokes over 20 threads",
                res,
                baseline="PostgresSaver(pool)",
                unit="ms",
            )
        )

        # 300-turn chat: the per-step put at turn 300 against turn 10, and the table sizes.
        for name, saver in savers.items():
            msgs: list[Any] = []
            parent = None
            per_turn = {}
            for turn in range(1, 301):
                msgs = [
                    *msgs,
                    HumanMessage(f"q{turn} " + "x" * 200, id=f"h{turn}"),
                    AIMessage(f"a{turn} " + "y" * 400, id=f"a{turn}"),
                ]
                cp = empty_checkpoint()
                cp["channel_values"] = {"messages": msgs}
                v = saver.get_next_version(None, None) if parent is None else f"{turn:032}.5"
                cp["channel_versions"] = {"messages": v}
                conf = {"configurable": {"thread_id": "chat", "checkpoint_ns": ""}}
                if parent:
                    conf["configurable"]["checkpoint_id"] = parent
                t0 = time.perf_counter()
                saver.put(conf, cp, {"source": "loop", "step": turn}, {"messages": v})
                per_turn[turn] = time.perf_counter() - t0
                if isinstance(saver, RustPostgresCheckpointer):
                    # As a graph does: the next state is built from what get_tuple returned.
                    msgs = saver.get_tuple(
                        conf | {"configurable": {**conf["configurable"], "checkpoint_id": cp["id"]}}
                    ).checkpoint["channel_values"]["messages"]
                parent = cp["id"]
            at10 = sorted(per_turn[t] for t in range(5, 16))[5]
            at300 = sorted(per_turn[t] for t in range(290, 301))[5]
            print(
                f"\n300-turn chat, {name}: put at turn 10 {at10 * 1e3:.2f} ms, at turn 300 "
                f"{at300 * 1e3:.2f} ms ({at300 / at10:.2f}x)"
            )
        stock_bytes = server.psql(
            "SELECT pg_total_relation_size('checkpoints') + pg_total_relation_size('checkpoint_blobs')"
            " + pg_total_relation_size('checkpoint_writes')",
            s_url.rsplit("/", 1)[1],
        )
        our_bytes = savers["RustPostgresCheckpointer"].storage_stats()["table_bytes"]
        print(
            f"tables after all of the above: PostgresSaver {int(stock_bytes) / 1e6:.1f} MB, ours "
            f"{our_bytes / 1e6:.1f} MB ({int(stock_bytes) / our_bytes:.1f}x smaller)"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
