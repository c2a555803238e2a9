"""Stock LangGraph against LangGraph patched by ``fast_langgraph.shim``.

Two suites. ``executor``: separate processes, stock against patched (below). ``sqlite``:
``bench_sqlite``, in one process, stock SqliteSaver against the shim's SqliteSaver on the same
schema at the same ``synchronous`` setting (with the serializer the shim gives it, and with
stock's), end to end and ``get_state_history``; then ``bench_whole_shim``, the same app in a
stock process and in one under ``patch_langgraph()``.

Three long-lived worker processes, one per mode: ``stock``, ``patched-before`` (patched before
LangGraph is imported) and ``patched-after`` (patched after the graphs are built). The parent
sends every case to each worker in turn, for several rounds, so machine noise hits all modes
alike, and prints the median time per call and the speed-up over stock.

Run: ``.venv/bin/python benches/bench_shim.py [--quick] [--suite executor|sqlite|all]
[--rounds N] [--no-history]``.
"""

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from _common import Workers

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
    ap.add_argument("--suite", choices=("executor", "sqlite", "all"), default="all")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES)
    )
    ap.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument(
        "--sqlite-worker", nargs=3, metavar=("MODE", "SYNC", "DB"), help=argparse.SUPPRESS
    )
    ap.add_argument(
        "--no-history", action="store_true", help="sqlite suite: leave out get_state_history"
    )
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker)
        return
    if args.sqlite_worker:
        _sqlite_worker(*args.sqlite_worker)
        return
    if args.suite in ("sqlite", "all"):
        rounds = args.rounds or (2 if args.quick else 5)
        bench_sqlite(
            rounds,
            threads=20,
            per_thread=10,
            history_n=0 if args.no_history else 200 if args.quick else 1000,
        )
        bench_whole_shim(rounds)
        if args.suite == "sqlite":
            return
    rounds = args.rounds or (3 if args.quick else 9)
    cases = {c: CASES[c] for c in args.cases.split(",")}
    workers = Workers({m: [sys.executable, __file__, "--worker", m] for m in MODES})
    samples: dict[tuple[str, str], list[float]] = {(c, m): [] for c in cases for m in MODES}
    t_start = time.perf_counter()
    for r in range(rounds):
        order = workers.order(r)
        for case, reps in cases.items():
            for m in order:
                samples[(case, m)].append(workers.ask(m, f"{case} {reps}"))
    workers.close(timeout=60)
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


# -- stock SqliteSaver against the shim's SqliteSaver, in one process -------------------------
#
# Both savers are SqliteSaver on a file, at the same `synchronous` setting; only the class
# differs (stock, or the shim's AcceleratedSqliteSaver on the same schema). The executor is
# LangGraph's own for both, so the figures are the checkpointer's.


def _sqlite_graph(checkpointer: Any) -> Any:
    """The 8-node graph of bench_checkpoint.py: a conditional edge, a 3-way fan-out that
    joins, a growing ``messages`` list."""
    import operator
    from typing import Annotated

    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages
    from typing_extensions import TypedDict

    class State(TypedDict):
        messages: Annotated[list, add_messages]
        route: str
        results: Annotated[list, operator.add]

    def router(state: State) -> dict:
        n = len(state["messages"])
        return {
            "route": "a" if n % 2 else "b",
            "messages": [AIMessage(content=f"routing {n}", id=f"r{n}")],
        }

    # Messages carry ids: add_messages gives an id to a message without one by changing the
    # object, which a pending write may be serialized before or after, stock or not.
    def branch(name: str) -> Any:
        return lambda s: {
            "messages": [AIMessage(content=f"{name} handled", id=f"{name}{len(s['messages'])}")]
        }

    def worker(name: str) -> Any:
        return lambda state: {"results": [f"{name}:{len(state['messages'])}"]}

    g = StateGraph(State)
    g.add_node("router", router)
    g.add_node("a", branch("a"))
    g.add_node("b", branch("b"))
    for w in ("x", "y", "z"):
        g.add_node(w, worker(w))
    g.add_node(
        "join",
        lambda s: {
            "messages": [
                AIMessage(content=f"joined {len(s['results'])}", id=f"j{len(s['messages'])}")
            ]
        },
    )
    g.add_node(
        "summarize",
        lambda s: {
            "messages": [AIMessage(content="summary", id=f"s{len(s['messages'])}")],
            "results": [],
        },
    )
    g.add_edge(START, "router")
    g.add_conditional_edges("router", lambda s: s["route"], {"a": "a", "b": "b"})
    for src in ("a", "b"):
        for w in ("x", "y", "z"):
            g.add_edge(src, w)
    g.add_edge(["x", "y", "z"], "join")
    g.add_edge("join", "summarize")
    g.add_edge("summarize", END)
    return g.compile(checkpointer=checkpointer)


# The contenders. "shim SqliteSaver" is the saver patch_langgraph() builds for SqliteSaver(conn):
# the Rust store, and the RustSerializer that its serde patch makes every saver's default.
# "shim, stock serde" is the Rust store alone, with LangGraph's JsonPlusSerializer as stock has.
STOCK, SHIM, SHIM_STOCK_SERDE = "stock SqliteSaver", "shim SqliteSaver", "shim, stock serde"


def _saver(kind: str, conn: Any) -> Any:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite import SqliteSaver

    from fast_langgraph import RustSerializer
    from fast_langgraph.shim._sqlite import AcceleratedSqliteSaver

    if kind == STOCK:
        return SqliteSaver(conn, serde=JsonPlusSerializer())
    if kind == SHIM:
        return AcceleratedSqliteSaver(conn, serde=RustSerializer())
    return AcceleratedSqliteSaver(conn, serde=JsonPlusSerializer())


def _savers(tmp: str, tag: str, synchronous: str) -> dict[str, Any]:
    import sqlite3

    out = {}
    for i, name in enumerate((STOCK, SHIM, SHIM_STOCK_SERDE)):
        conn = sqlite3.connect(os.path.join(tmp, f"{tag}-{i}.db"), check_same_thread=False)
        conn.execute(f"PRAGMA synchronous={synchronous}")
        out[name] = _saver(name, conn)
    return out


_UUID = __import__("re").compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _thread_states(saver: Any, thread_ids: list[str]) -> list[Any]:
    """Every checkpoint of the threads as stock SqliteSaver reads them, ids left out."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    path = saver.conn.execute("PRAGMA database_list").fetchone()[2]
    reader = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    out = []
    for t in thread_ids:
        for tup in reader.list({"configurable": {"thread_id": t}}):
            cp = dict(tup.checkpoint)
            values = {
                k: [(type(m).__name__, getattr(m, "content", m)) for m in v]
                if isinstance(v, list)
                else v
                for k, v in cp["channel_values"].items()
            }
            md = {k: v for k, v in tup.metadata.items() if k != "run_id"}
            writes = [(ch, _UUID.sub("<id>", repr(v))) for _task, ch, v in tup.pending_writes]
            out.append((values, sorted(cp["channel_versions"]), md, writes))
    reader.conn.close()
    return out


def _finals(saver: Any, thread_ids: list[str]) -> list[Any]:
    return [
        _UUID.sub(
            "<id>",
            repr(saver.get_tuple({"configurable": {"thread_id": t}}).checkpoint["channel_values"]),
        )
        for t in thread_ids
    ]


def _exact_run(graphs: dict[str, Any]) -> int:
    """Runs 3 turns on one thread with each graph at durability="sync" and checks that every
    checkpoint and pending write the shim wrote equals stock's; returns how many."""
    import uuid

    from langchain_core.messages import HumanMessage

    ids = {}
    for name, graph in graphs.items():
        ids[name] = f"exact-{uuid.uuid4().hex}"
        cfg = {"configurable": {"thread_id": ids[name]}}
        for i in range(3):
            graph.invoke(
                {"messages": [HumanMessage(content=f"q {i}", id=f"h{i}")], "results": []},
                cfg,
                durability="sync",
            )
    names = list(graphs)
    want = _thread_states(graphs[names[0]].checkpointer, [ids[names[0]]])
    for name in names[1:]:
        got = _thread_states(graphs[name].checkpointer, [ids[name]])
        assert got == want, f"{name}: the checkpoints differ from stock's"
    return len(want)


def _e2e_rate(graph: Any, threads: int = 20, per_thread: int = 10) -> float:
    """Invokes per second of `threads` conversations of `per_thread` turns each, at once."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from langchain_core.messages import HumanMessage

    prefix = uuid.uuid4().hex

    def conversation(t: int) -> None:
        cfg = {"configurable": {"thread_id": f"{prefix}-{t}"}}
        for i in range(per_thread):
            graph.invoke(
                {"messages": [HumanMessage(content=f"q {i}", id=f"h{i}")], "results": []}, cfg
            )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(conversation, range(threads)))
    return (threads * per_thread) / (time.perf_counter() - t0)


def _sqlite_worker(mode: str, synchronous: str, db: str) -> None:
    """One process of `bench_whole_shim`: stock LangGraph, or LangGraph under
    `patch_langgraph()` with its defaults; then `SqliteSaver(conn)` as a user writes it, on
    the file `db`, which the parent reads back with stock SqliteSaver afterwards."""
    import sqlite3

    if mode == "patched":
        import fast_langgraph.shim

        fast_langgraph.shim.patch_langgraph()
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(db, check_same_thread=False)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    saver = SqliteSaver(conn)
    assert getattr(saver, "accelerated", False) == (mode == "patched"), mode
    graph = _sqlite_graph(saver)
    _e2e_rate(graph)  # warm-up
    print("ready", flush=True)
    for _line in sys.stdin:
        print(json.dumps(_e2e_rate(graph)), flush=True)
    conn.close()


def _read_back(db: str) -> dict[str, Any]:
    """What stock SqliteSaver reads from a `bench_whole_shim` file: per conversation (the
    thread id without its per-round prefix), the number of checkpoints and the final state,
    as plain data."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(db, check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        assert not getattr(saver, "accelerated", False)
        threads = sorted({r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")})
        out: dict[str, Any] = {}
        for thread in threads:
            tuples = list(saver.list({"configurable": {"thread_id": thread}}))
            values = tuples[0].checkpoint["channel_values"]
            state = {
                "messages": [(type(m).__name__, m.id, m.content) for m in values["messages"]],
                "results": values.get("results"),
                "route": values.get("route"),
            }
            conversation = thread.rsplit("-", 1)[1]
            out.setdefault(conversation, []).append((len(tuples), state))
        return {k: sorted(v, key=repr) for k, v in out.items()}
    finally:
        conn.close()


def bench_whole_shim(rounds: int) -> None:
    """The user-facing comparison: the same app in two processes, one stock, one under
    `patch_langgraph()` (executor, serializer, add_messages and the in-place SqliteSaver), at
    the same `synchronous` setting; rounds interleaved. Afterwards stock SqliteSaver reads
    both files back: every conversation must have as many checkpoints and the same final
    state in both."""
    import tempfile

    for synchronous in ("FULL", "NORMAL"):
        with tempfile.TemporaryDirectory(prefix="flg-bench-shim-") as tmp:
            dbs = {m: os.path.join(tmp, f"{m}.db") for m in ("stock", "patched")}
            workers = Workers(
                {
                    m: [sys.executable, __file__, "--sqlite-worker", m, synchronous, dbs[m]]
                    for m in dbs
                }
            )
            samples: dict[str, list[float]] = {m: [] for m in dbs}
            for r in range(rounds):
                for m in workers.order(r):
                    samples[m].append(workers.ask(m, "run"))
            workers.close(timeout=60)
            back = {m: _read_back(db) for m, db in dbs.items()}
            assert back["patched"] == back["stock"], "the two processes stored different histories"
            checkpoints = sum(n for runs in back["stock"].values() for n, _ in runs)
        med = {m: statistics.median(v) for m, v in samples.items()}
        print(
            f"\nwhole shim, end to end: the same 8-node graph, 200 invokes over 20 threads, "
            f"synchronous={synchronous} for both; stock LangGraph against patch_langgraph() "
            f"(separate processes; stock SqliteSaver read back {checkpoints} checkpoints from "
            "each file: the same count and final state for every conversation)"
        )
        print(f"  {'process':<22} {'invokes/s':>10} {'vs stock':>9}")
        for m, v in med.items():
            print(f"  {m:<22} {v:>10.1f} {v / med['stock']:>8.2f}x")


def bench_sqlite(rounds: int, threads: int, per_thread: int, history_n: int) -> None:
    import statistics
    import tempfile
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from langchain_core.messages import HumanMessage

    results: list[str] = []
    with tempfile.TemporaryDirectory(prefix="flg-bench-shim-") as tmp:
        for synchronous in ("FULL", "NORMAL"):
            savers = _savers(tmp, f"e2e-{synchronous}", synchronous)
            graphs = {name: _sqlite_graph(s) for name, s in savers.items()}
            threads_of: dict[str, list[str]] = {name: [] for name in graphs}

            def run(name: str, graphs: dict = graphs, threads_of: dict = threads_of) -> float:
                prefix = uuid.uuid4().hex
                ids = [f"{prefix}-{t}" for t in range(threads)]
                threads_of[name] = ids
                graph = graphs[name]

                def conversation(thread_id: str) -> None:
                    cfg = {"configurable": {"thread_id": thread_id}}
                    for i in range(per_thread):
                        graph.invoke(
                            {
                                "messages": [HumanMessage(content=f"q {i}", id=f"h{i}")],
                                "results": [],
                            },
                            cfg,
                        )

                t0 = time.perf_counter()
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(conversation, ids))
                return (threads * per_thread) / (time.perf_counter() - t0)

            for name in graphs:
                run(name)  # warm-up
            samples: dict[str, list[float]] = {name: [] for name in graphs}
            for r in range(rounds):
                for name in graphs if r % 2 == 0 else list(graphs)[::-1]:
                    samples[name].append(run(name))
            # Every checkpoint the shim wrote is readable by stock, and each thread ends in the
            # state stock's thread ends in, with as many checkpoints.
            names = list(graphs)
            want = _thread_states(savers[names[0]], threads_of[names[0]])
            for name in names[1:]:
                got = _thread_states(savers[name], threads_of[name])
                assert len(got) == len(want), (name, len(got), len(want))
                assert _finals(savers[name], threads_of[name]) == _finals(
                    savers[names[0]], threads_of[names[0]]
                ), name
            # Checkpoint by checkpoint, pending writes included, on a run without LangGraph's
            # own timing races: durability="sync", one thread.
            exact = _exact_run(graphs)
            med = {n: statistics.median(s) for n, s in samples.items()}
            base = med[names[0]]
            results.append(
                f"\nend to end: 8-node graph, {threads * per_thread} invokes over {threads} threads, "
                f"synchronous={synchronous} for both ({len(got)} checkpoints read back by stock; "
                f"{exact} checkpoints of a durability='sync' run equal to stock's)"
            )
            results.append(f"  {'contender':<22} {'invokes/s':>10} {'vs stock':>9}")
            for n, v in med.items():
                results.append(f"  {n:<22} {v:>10.1f} {v / base:>8.2f}x")
            print("\n".join(results[-(2 + len(med)) :]), flush=True)
            for s in savers.values():
                s.conn.close()

        if not history_n:
            return
        # get_state_history over one thread of `history_n` checkpoints, the same rows in both
        # files (written by stock, then copied).
        import shutil
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        src = os.path.join(tmp, "history.db")
        writer = SqliteSaver(sqlite3.connect(src, check_same_thread=False))
        graph = _sqlite_graph(writer)
        cfg = {"configurable": {"thread_id": "long"}}
        n = turn = 0
        while n < history_n:
            graph.invoke(
                {"messages": [HumanMessage(content=f"q {turn}", id=f"h{turn}")], "results": []}, cfg
            )
            turn += 1
            n = writer.conn.execute(
                "SELECT count(*) FROM checkpoints WHERE thread_id = 'long'"
            ).fetchone()[0]
        writer.conn.close()
        hist = {}
        for i, name in enumerate((STOCK, SHIM, SHIM_STOCK_SERDE)):
            dst = os.path.join(tmp, f"history-{i}.db")
            shutil.copyfile(src, dst)
            hist[name] = _sqlite_graph(_saver(name, sqlite3.connect(dst, check_same_thread=False)))
        # The same history, snapshot by snapshot, from each.
        first = {name: list(g.get_state_history(cfg)) for name, g in hist.items()}
        for name in list(hist)[1:]:
            assert first[name] == first[STOCK], name
        first.clear()
        samples = {name: [] for name in hist}
        for r in range(rounds):
            for name in hist if r % 2 == 0 else list(hist)[::-1]:
                t0 = time.perf_counter()
                list(hist[name].get_state_history(cfg))
                samples[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in samples.items()}
        base = med[STOCK]
        results.append(
            f"\nget_state_history over a thread of {n} checkpoints (synchronous=FULL; "
            "every snapshot equal to stock's)"
        )
        results.append(f"  {'contender':<22} {'ms':>10} {'vs stock':>9}")
        for k, v in med.items():
            results.append(f"  {k:<22} {v * 1e3:>10.1f} {base / v:>8.2f}x")
        print("\n".join(results[-(2 + len(med)) :]), flush=True)


if __name__ == "__main__":
    main()
