"""put and get_tuple apart: RustPostgresCheckpointer against PostgresSaver, each on its own
database of one throwaway server (fsync on unless --no-fsync). 9 interleaved rounds of 30
put + get_tuple pairs over 50 threads, the first round dropped; medians of the rounds'
medians, wall time and the calling thread's CPU time.

Run: `.venv/bin/python benches/bench_postgres_split.py [--no-fsync]`. The fast_langgraph
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
from bench_checkpoint import state_of_size
from bench_postgres import side_by_side
from pg_server import PgServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-fsync", action="store_true", help="fsync and synchronous_commit off")
    args = ap.parse_args()
    server = PgServer(durable=not args.no_fsync).start()
    try:
        savers = side_by_side(server)
        for size in (1000, 35000):
            values = state_of_size(size)
            res: dict[tuple[str, str], list[float]] = {
                (n, k): [] for n in savers for k in ("put", "get", "put_cpu", "get_cpu")
            }
            for rnd in range(9):
                for n, s in savers.items():
                    got: dict[str, list[float]] = {
                        k: [] for k in ("put", "get", "put_cpu", "get_cpu")
                    }
                    for i in range(30):
                        cp = empty_checkpoint()
                        cp["channel_values"] = values
                        versions = {k: s.get_next_version(None, None) for k in values}
                        cp["channel_versions"] = versions
                        conf = {
                            "configurable": {"thread_id": f"t{size}-{i % 50}", "checkpoint_ns": ""}
                        }
                        t0, c0 = time.perf_counter(), time.thread_time()
                        s.put(conf, cp, {"source": "loop", "step": i}, versions)
                        t1, c1 = time.perf_counter(), time.thread_time()
                        s.get_tuple(conf)
                        t2, c2 = time.perf_counter(), time.thread_time()
                        got["put"].append(t1 - t0)
                        got["get"].append(t2 - t1)
                        got["put_cpu"].append(c1 - c0)
                        got["get_cpu"].append(c2 - c1)
                    if rnd:
                        for k, v in got.items():
                            res[(n, k)].append(statistics.median(v))
            print(f"\n{size // 1000} KB state, fsync {'off' if args.no_fsync else 'on'}")
            for n in savers:
                m = {
                    k: statistics.median(res[(n, k)]) * 1e6
                    for k in ("put", "get", "put_cpu", "get_cpu")
                }
                print(
                    f"  {n:26} put {m['put']:7.0f} us (CPU {m['put_cpu']:5.0f})"
                    f"   get_tuple {m['get']:7.0f} us (CPU {m['get_cpu']:5.0f})"
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
