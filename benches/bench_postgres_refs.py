"""A put that changes only a counter and refers to an unchanged value stored apart (a 5 KB
string, a blob): RustPostgresCheckpointer against PostgresSaver, each on its own database of
one throwaway server (fsync on unless --no-fsync). 7 interleaved rounds of 15 batches of 20
puts continuing one thread, the first round dropped; the median of the rounds' medians, us
per put. Such a put looks the blob up (it may have been deleted by retention since) instead of
being a plain insert.

Run: `.venv/bin/python benches/bench_postgres_refs.py [--no-fsync]`. The fast_langgraph
measured is the interpreter's: run it with another checkout's `.venv/bin/python` to measure
that build.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from langgraph.checkpoint.base import empty_checkpoint

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from bench_postgres import side_by_side
from pg_server import PgServer

BIG = "large value " * 450


def _config(thread: str, checkpoint_id: str | None = None) -> dict:
    conf = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def one_round(saver, thread: str) -> float:
    """Median us per put of 15 batches of 20, on a new thread."""
    cp = empty_checkpoint()
    v = saver.get_next_version(None, None)
    cp["channel_values"] = {"doc": BIG, "n": 0}
    cp["channel_versions"] = {"doc": v, "n": v}
    config = saver.put(_config(thread), cp, {"step": 0}, dict(cp["channel_versions"]))
    prev = cp
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        for i in range(20):
            c = empty_checkpoint()
            n = saver.get_next_version(prev["channel_versions"]["n"], None)
            c["channel_values"] = {"doc": BIG, "n": i}
            c["channel_versions"] = {"doc": prev["channel_versions"]["doc"], "n": n}
            config = saver.put(config, c, {"step": i}, {"n": n})
            prev = c
        times.append((time.perf_counter() - t0) / 20 * 1e6)
    assert saver.get_tuple(_config(thread))[1]["channel_values"]["doc"] == BIG
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-fsync", action="store_true", help="fsync and synchronous_commit off")
    args = ap.parse_args()
    server = PgServer(durable=not args.no_fsync).start()
    try:
        savers = side_by_side(server)
        res: dict[str, list[float]] = {n: [] for n in savers}
        for rnd in range(7):
            for n, s in savers.items():
                got = one_round(s, f"t{rnd}")
                if rnd:
                    res[n].append(got)
        print(f"load {os.getloadavg()[0]:.2f}")
        for n, r in res.items():
            print(f"{n:26s} {statistics.median(r):7.1f} us/put  rounds {[round(x) for x in r]}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
