"""Where the 4 processes x 8 threads writes go: puts per second, and the CPU time per put of
the client processes (their put loops only, not their start-up) and of the server (every
process of the throwaway server's postmaster), RustPostgresCheckpointer against PostgresSaver,
3 interleaved rounds of 4 s, medians. CPU time per put is much less sensitive to other load
on the machine than puts per second.

Run: `.venv/bin/python benches/bench_postgres_cpu.py [--no-fsync]`. The fast_langgraph
measured is the interpreter's: run it with another checkout's `.venv/bin/python` to measure
that build.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import bench_postgres as bp
from pg_server import PgServer

TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(data_dir) -> float:
    """CPU seconds of the postmaster and its processes, the ended ones included."""
    with open(os.path.join(data_dir, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(pid) == postmaster:
            # utime, stime, and those of its reaped children (ended backends).
            total += sum(int(x) for x in fields[11:15])
        elif int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def _proc(kind: str, url: str, proc: int, seconds: float, out) -> None:
    from bench_checkpoint import state_of_size

    saver = bp.stock(url, 8, setup=False) if kind == "stock" else bp.ours(url, 8, setup=False)
    values = state_of_size(1_000)
    counts = [0] * 8
    start = threading.Barrier(8)
    stop = [0.0]

    def worker(t: int) -> None:
        start.wait()
        bp.put_chain(saver, values, f"mp-{proc}-{t}", counts, t, stop[0])

    cpu0 = time.process_time()
    stop[0] = time.perf_counter() + seconds
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(worker, range(8)))
    out.put((sum(counts), time.process_time() - cpu0))


def writes(kind: str, url: str, seconds: float) -> tuple[int, float]:
    """Puts stored, and the client processes' CPU seconds in their put loops."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_proc, args=(kind, url, p, seconds, out)) for p in range(4)]
    for p in procs:
        p.start()
    got = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    return sum(g[0] for g in got), sum(g[1] for g in got)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-fsync", action="store_true", help="fsync and synchronous_commit off")
    args = ap.parse_args()
    seconds = 4.0
    server = PgServer(durable=not args.no_fsync).start()
    try:
        urls = {k: server.url(server.create_database(k)) for k in ("stock", "ours")}
        bp.stock(urls["stock"]).conn.close()
        bp.ours(urls["ours"]).close()
        res: dict[str, dict[str, list[float]]] = {
            k: {"rate": [], "client": [], "server": []} for k in urls
        }
        for _ in range(3):
            for k in ("stock", "ours"):
                s0 = server_cpu(server.data)
                n, cpu = writes(k, urls[k], seconds)
                s1 = server_cpu(server.data)
                res[k]["rate"].append(n / seconds)
                res[k]["client"].append(cpu / n * 1e6)
                res[k]["server"].append((s1 - s0) / n * 1e6)
        print(f"4 processes x 8 threads, 1 KB puts, fsync {'off' if args.no_fsync else 'on'}")
        for k, name in (("stock", "PostgresSaver(pool)"), ("ours", "RustPostgresCheckpointer")):
            v = {m: statistics.median(x) for m, x in res[k].items()}
            print(
                f"  {name:26} {v['rate']:6.0f} puts/s   CPU per put: client {v['client']:4.0f} us,"
                f" server {v['server']:4.0f} us   (rounds: {[round(x) for x in res[k]['rate']]} /s)"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
