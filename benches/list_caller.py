"""What one `list()` of RustSQLiteCheckpointer over 1,000 checkpoints costs the caller's thread:
its voluntary context switches (`getrusage(RUSAGE_THREAD)`: sleeps, such as on a lock), its
wall time and its CPU time, medians of `--lists` lists after 3 warm-up lists, `gc.collect()`
before each; freeing the tuples is not timed. Prints one line of JSON.

    .venv/bin/python benches/list_caller.py DIR [--serde jsonplus] [--lists 15]

The thread is bench_checkpoint.py's (`fill_thread`), written into DIR/list-SERDE.db on the
first run and listed as it is by the next ones: run it with two builds in turn (another build
first on PYTHONPATH) to compare them on the same file.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from fast_langgraph import RustSQLiteCheckpointer

N = 1000


def serializer(name: str):
    if name == "jsonplus":
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        return JsonPlusSerializer()
    return None  # the default RustSerializer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir")
    p.add_argument("--serde", choices=["default", "jsonplus"], default="jsonplus")
    p.add_argument("--lists", type=int, default=15)
    args = p.parse_args()
    path = os.path.join(args.dir, f"list-{args.serde}.db")
    cfg_path = path + ".json"
    if not os.path.exists(cfg_path):
        from bench_checkpoint import fill_thread

        with RustSQLiteCheckpointer(path, serde=serializer(args.serde)) as saver:
            config = fill_thread(saver, N)
        with open(cfg_path, "w") as f:
            json.dump(config, f)
    with open(cfg_path) as f:
        config = json.load(f)
    saver = RustSQLiteCheckpointer(path, serde=serializer(args.serde))
    switches: list[int] = []
    wall: list[float] = []
    cpu: list[float] = []
    for i in range(3 + args.lists):
        gc.collect()
        s0 = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
        w0, c0 = time.perf_counter(), time.thread_time()
        items = list(saver.list(config))
        w1, c1 = time.perf_counter(), time.thread_time()
        s1 = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
        assert len(items) == N, len(items)
        del items
        if i >= 3:
            switches.append(s1 - s0)
            wall.append((w1 - w0) * 1e3)
            cpu.append((c1 - c0) * 1e3)
    saver.close()
    print(
        json.dumps(
            {
                "serde": args.serde,
                "switches": statistics.median(switches),
                "wall_ms": round(statistics.median(wall), 2),
                "cpu_ms": round(statistics.median(cpu), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
