"""Two builds of RustPostgresCheckpointer (and PostgresSaver beside them) on one throwaway
server: each contender runs in a fresh process of its own interpreter, every round runs each
once, interleaved; medians. For a change to the store, against the build it started from.

Run: `.venv/bin/python benches/ab_postgres.py --base ../other/.venv/bin/python [--rounds 5]
[--only putget,putget35,writes,deltaput,e2e,groupwrites] [--no-fsync]` (from any directory:
each interpreter imports its own fast_langgraph). `putget`: put + get_tuple of a 1 KB state,
us (median of 15 batches of 20); `putget35`: the same with a 35 KB state; `writes`: 4
processes x 8 threads putting 1 KB checkpoints for 5 s, puts per second; `deltaput`: a lone
put on one of 20 threads whose list grows by 8 items of 100 bytes a put (stored by ours as an
append-only delta over the thread's last put), us (as `putget`); `e2e`: bench_postgres.py's
8-node graph, 200 invokes over 20 threads, ms (the median of 3 runs after one warm-up run),
with the client's CPU (user and system), voluntary context switches and threads started per
invoke; `groupwrites`: 20 threads putting a task's writes 150 times each, all at once on one
saver (the group commit's batches), us per call (wall), with the client's CPU and context
switches per call. For `e2e` a fourth process runs the graph on LangGraph's `InMemorySaver`
(`ceiling`): no database at all, not a contender, the graph's own cost under LangGraph,
below which no saver can go.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# What `e2e` also reports of the client, per invoke: CPU (every thread of the process),
# voluntary context switches, and threads started (LangGraph starts an executor per invoke).
CLIENT = ("user us", "system us", "vol. switches", "threads started")
# What `groupwrites` also reports of the client, per call.
GROUP_CLIENT = ("CPU us", "vol. switches", "invol. switches")
TESTS = os.path.join(HERE, "..", "tests")


def delta_put(saver):
    """A put whose list channel grows by 8 items, on 20 threads in turn, each after its last."""
    from langgraph.checkpoint.base import empty_checkpoint

    items: dict[int, list[str]] = {t: [] for t in range(20)}
    last: dict[int, tuple[str, str]] = {}
    counter = [0]

    def step():
        counter[0] += 1
        t = counter[0] % 20
        got = items[t]
        got.extend(f"m{len(got) + i} " + "x" * 96 for i in range(8))
        cp = empty_checkpoint()
        cp["channel_values"] = {"messages": list(got)}
        prev = last.get(t)
        version = saver.get_next_version(prev[1] if prev else None, None)
        cp["channel_versions"] = {"messages": version}
        conf = {"configurable": {"thread_id": f"delta-{t}", "checkpoint_ns": ""}}
        if prev:
            conf["configurable"]["checkpoint_id"] = prev[0]
        saver.put(conf, cp, {"source": "loop", "step": counter[0]}, {"messages": version})
        last[t] = (cp["id"], version)

    return step


def group_writes(kind: str, url: str) -> float:
    """20 threads, each putting one task's writes 150 times against a checkpoint of its own,
    all at once on one saver: us per call (wall), after one such run. Also prints, on a line
    of its own, the client's CPU and context switches per call (this process)."""
    import bench_postgres as bp
    from langchain_core.messages import AIMessage
    from langgraph.checkpoint.base import empty_checkpoint

    saver = bp.stock(url, setup=False) if kind == "stock" else bp.ours(url, setup=False)
    confs = [
        saver.put(
            {"configurable": {"thread_id": f"gw-{i}", "checkpoint_ns": ""}},
            empty_checkpoint(),
            {},
            {},
        )
        for i in range(20)
    ]
    writes = [("messages", [AIMessage(content="a handled")])]
    calls = 150

    def run() -> None:
        def one(i: int) -> None:
            for k in range(calls):
                saver.put_writes(confs[i], writes, f"task-{k}")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run()
    samples: dict[str, list[float]] = {k: [] for k in (*GROUP_CLIENT, "us")}
    n = 20 * calls
    for _ in range(3):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        run()
        samples["us"].append((time.perf_counter() - t) / n * 1e6)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
        samples["CPU us"].append(cpu / n * 1e6)
        samples["vol. switches"].append((r1.ru_nvcsw - r0.ru_nvcsw) / n)
        samples["invol. switches"].append((r1.ru_nivcsw - r0.ru_nivcsw) / n)
    print(json.dumps({k: statistics.median(samples[k]) for k in GROUP_CLIENT}))
    return statistics.median(samples["us"])


def worker(what: str, kind: str, url: str) -> float:
    sys.path.insert(0, HERE)
    sys.path.insert(0, TESTS)
    import bench_postgres as bp

    if what == "setup":
        if kind != "ceiling":
            (bp.stock(url, 1).conn.close() if kind == "stock" else bp.ours(url, 1).close())
        return 0.0
    if what == "writes":
        return bp.writes_per_second(kind, url)
    if what == "groupwrites":
        return group_writes(kind, url)
    if what == "e2e":
        from bench_checkpoint import build_graph
        from langgraph.checkpoint.memory import InMemorySaver

        if kind == "ceiling":
            graph = build_graph(InMemorySaver())
        else:
            graph = build_graph(
                bp.stock(url, setup=False) if kind == "stock" else bp.ours(url, setup=False)
            )
        bp.run_e2e(graph)
        started = [0]
        start = threading.Thread.start

        def counted_start(self: threading.Thread) -> None:
            started[0] += 1
            start(self)

        threading.Thread.start = counted_start  # type: ignore[method-assign]
        runs = []
        client: dict[str, list[float]] = {k: [] for k in CLIENT}
        for _ in range(3):
            started[0] = 0
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t = time.perf_counter()
            bp.run_e2e(graph)
            runs.append((time.perf_counter() - t) * 1e3)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            client["user us"].append((r1.ru_utime - r0.ru_utime) / 200 * 1e6)
            client["system us"].append((r1.ru_stime - r0.ru_stime) / 200 * 1e6)
            client["vol. switches"].append((r1.ru_nvcsw - r0.ru_nvcsw) / 200)
            client["threads started"].append(started[0] / 200)
        # The client's side per invoke (this process), on a line of its own before the time.
        print(json.dumps({k: statistics.median(v) for k, v in client.items()}))
        return statistics.median(runs)
    saver = bp.stock(url, setup=False) if kind == "stock" else bp.ours(url, setup=False)
    if what == "deltaput":
        step = delta_put(saver)
    else:
        step = bp.put_get(saver, 35_000 if what == "putget35" else 1_000)
    for _ in range(50):
        step()
    samples = []
    for _ in range(15):
        t = time.perf_counter()
        for _ in range(20):
            step()
        samples.append((time.perf_counter() - t) / 20 * 1e6)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="the python of the build to compare against")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="putget,writes")
    ap.add_argument("--no-fsync", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, TESTS)
    from pg_server import PgServer

    pythons = {"stock": sys.executable, "base": args.base, "new": sys.executable}
    server = PgServer(durable=not args.no_fsync).start()

    client: dict[str, list[dict[str, float]]] = {}

    def run(name: str, what: str, url: str) -> float:
        kind = name if name in ("stock", "ceiling") else "ours"
        python = sys.executable if name == "ceiling" else pythons[name]
        out = subprocess.run(
            [python, os.path.abspath(__file__), "--worker", what, kind, url],
            check=True,
            cwd="/",
            capture_output=True,
            text=True,
        ).stdout
        lines = out.strip().splitlines()
        if what in ("e2e", "groupwrites"):
            client.setdefault(name, []).append(json.loads(lines[-2]))
        return float(lines[-1])

    try:
        for what in args.only.split(","):
            names = [*pythons, "ceiling"] if what == "e2e" else list(pythons)
            urls = {n: server.url(server.create_database(what)) for n in names}
            for n, u in urls.items():
                run(n, "setup", u)
            res: dict[str, list[float]] = {n: [] for n in names}
            loads = []
            for _ in range(args.rounds):
                loads.append(os.getloadavg()[0])
                for n, u in urls.items():
                    res[n].append(run(n, what, u))
            med = {n: statistics.median(v) for n, v in res.items()}
            unit = {
                "writes": "puts/s",
                "e2e": "ms per 200 invokes",
                "deltaput": "us per put",
                "groupwrites": "us per put_writes",
            }.get(what, "us per put + get_tuple")
            print(
                f"\n{what} ({unit}), median of {args.rounds} rounds, fsync "
                f"{'off' if args.no_fsync else 'on'}, 1-min load at each round's start "
                f"{[round(x, 1) for x in loads]}"
            )
            for n, v in med.items():
                ratio = v / med["stock"] if what == "writes" else med["stock"] / v
                print(
                    f"  {n:<7} {v:10.1f}  {ratio:5.2f}x PostgresSaver  "
                    f"rounds {[round(x, 1) for x in res[n]]}"
                )
            if "ceiling" in med:
                print(
                    "  (ceiling: InMemorySaver, no database at all, not a contender; 2x"
                    " PostgresSaver is within reach only while it is below half of stock's time)"
                )
            if client:
                keys = CLIENT if what == "e2e" else GROUP_CLIENT
                per = "invoke" if what == "e2e" else "call"
                print(
                    f"  the client per {per}, median of rounds:" + "".join(f"{k:>17}" for k in keys)
                )
                for n, samples in client.items():
                    print(
                        f"  {n:<40}"
                        + "".join(
                            f"{statistics.median(x[k] for x in samples):>17.2f}" for k in keys
                        )
                    )
                client.clear()
    finally:
        server.stop()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(worker(*sys.argv[2:5]))
    else:
        main()
