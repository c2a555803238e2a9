"""Stock LangGraph against LangGraph patched by ``fast_langgraph.shim``, in separate processes.

Three long-lived worker processes, one per mode: ``stock``, ``patched-before`` (patched before
LangGraph is imported) and ``patched-after`` (patched after the graphs are built). The parent
sends every case to each worker in turn, for several rounds, so machine noise hits all modes
alike, and prints the median time per call and the speed-up over stock.

Run: ``.venv/bin/python benches/bench_shim.py [--quick]``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MODES = ("stock", "patched-before", "patched-after")

# case -> (calls per sample, rounds multiplier)
CASES = {
    "linear3": 200,
    "linear3+memory": 100,
    "fanout3": 100,
    "fanout3+memory": 100,
    "batch64": 5,
    "io_fanout16": 3,
    "io_single": 3,
}


def _worker(mode: str) -> None:
    if mode == "patched-before":
        import fast_langgraph.shim

        fast_langgraph.shim.patch_langgraph(checkpointer=False)

    import operator
    import time as t
    from typing import Annotated, TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, StateGraph

    class S(TypedDict):
        log: Annotated[list, operator.add]

    def linear(cp=None):
        g = StateGraph(S)
        for n in "abc":
            g.add_node(n, lambda s, n=n: {"log": [n]})
        g.add_edge(START, "a")
        g.add_edge("a", "b")
        g.add_edge("b", "c")
        return g.compile(checkpointer=cp)

    def fanout(k, body, cp=None):
        g = StateGraph(S)
        for i in range(k):
            g.add_node(f"n{i}", body(i))
            g.add_edge(START, f"n{i}")
        return g.compile(checkpointer=cp)

    def fast(i):
        return lambda s: {"log": [i]}

    def sleepy(i):
        def node(s):
            t.sleep(0.05)  # releases the GIL, like a network call
            return {"log": [i]}

        return node

    graphs = {
        "linear3": linear(),
        "linear3+memory": linear(InMemorySaver()),
        "fanout3": fanout(3, fast),
        "fanout3+memory": fanout(3, fast, InMemorySaver()),
        "io_fanout16": fanout(16, sleepy),
        "io_single": fanout(1, sleepy),
    }
    counter = [0]

    def call(case: str) -> None:
        counter[0] += 1
        if case == "batch64":
            graphs["linear3"].batch([{"log": [i]} for i in range(64)])
        elif case.endswith("+memory"):
            graphs[case].invoke({"log": []}, {"configurable": {"thread_id": str(counter[0])}})
        else:
            graphs[case].invoke({"log": []})

    if mode == "patched-after":
        import fast_langgraph.shim

        fast_langgraph.shim.patch_langgraph(checkpointer=False)
    if mode != "stock":
        import fast_langgraph.shim

        assert fast_langgraph.shim.status()["executor"]["active"]
    for case in CASES:
        call(case)  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        case, reps = line.split()
        t0 = t.perf_counter()
        for _ in range(int(reps)):
            call(case)
        print(json.dumps((t.perf_counter() - t0) / int(reps)), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES)
    )
    ap.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker)
        return
    rounds = args.rounds or (3 if args.quick else 9)
    cases = {c: CASES[c] for c in args.cases.split(",")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAST_LANGGRAPH_")}
    procs = {
        m: subprocess.Popen(
            [sys.executable, __file__, "--worker", m],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for m in MODES
    }
    for p in procs.values():
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    samples: dict[tuple[str, str], list[float]] = {(c, m): [] for c in cases for m in MODES}
    t_start = time.perf_counter()
    for r in range(rounds):
        order = MODES if r % 2 == 0 else tuple(reversed(MODES))
        for case, reps in cases.items():
            for m in order:
                p = procs[m]
                assert p.stdin is not None and p.stdout is not None
                p.stdin.write(f"{case} {reps}\n")
                p.stdin.flush()
                samples[(case, m)].append(json.loads(p.stdout.readline()))
    for p in procs.values():
        assert p.stdin is not None
        p.stdin.close()
        p.wait(timeout=60)
    print(
        f"fast-langgraph shim benchmark: {rounds} rounds, {os.cpu_count()} CPUs, "
        f"{time.perf_counter() - t_start:.0f}s"
    )
    print(
        f"  {'case':<16} "
        + " ".join(f"{m + ' ms':>18}" for m in MODES)
        + f" {'before/stock':>13} {'after/stock':>12}"
    )
    med = {k: statistics.median(v) for k, v in samples.items()}
    for case in cases:
        stock = med[(case, "stock")]
        cells = " ".join(f"{med[(case, m)] * 1e3:>18.3f}" for m in MODES)
        print(
            f"  {case:<16} {cells} {stock / med[(case, 'patched-before')]:>12.2f}x"
            f" {stock / med[(case, 'patched-after')]:>11.2f}x"
        )
    if "io_single" not in cases or "io_fanout16" not in cases:
        return
    single = med[("io_single", "patched-before")]
    print(
        f"\n  io_fanout16 patched / io_single patched: {med[('io_fanout16', 'patched-before')] / single:.2f}"
        " (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
