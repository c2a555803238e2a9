"""RustSQLiteCheckpointer against LangGraph's InMemorySaver and SqliteSaver, side by side.

Every measure runs the savers in turn, interleaved, over several rounds, in one process, and
prints the median per contender and its ratio to both stock SqliteSaver rows:

- `SqliteSaver(NORMAL)`: stock SqliteSaver on a connection with `PRAGMA synchronous=NORMAL`,
  the durability RustSQLiteCheckpointer has by default (a commit survives the process being
  killed; a power loss may lose the last ones). The comparison at equal durability.
- `SqliteSaver`: stock SqliteSaver on a plain `sqlite3.connect()` connection
  (`synchronous=FULL`, an fsync per commit), what a user gets by default.

The end to end measure (`e2e`) adds two `InMemorySaver`s that bound what any checkpointer can
reach there: one with `RustSerializer`, and one whose serializer stores references and does no
serialization at all (`StoreReferences`): the ceiling for any checkpointer, LangGraph's own
loop being all that is left.

Run: `make bench`, or `.venv/bin/python benches/bench_checkpoint.py [--quick]`.
"""

from __future__ import annotations

import argparse
import gc
import operator
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

sys.path.insert(0, os.path.dirname(__file__))
from _common import interleaved

from fast_langgraph import RustSQLiteCheckpointer

# The two stock rows every ratio is given against.
EQUAL = "SqliteSaver(NORMAL)"
DEFAULT = "SqliteSaver"


class StoreReferences:
    """A serializer that serializes nothing: it stores each value itself, and gives it back.

    `InMemorySaver(serde=StoreReferences())` keeps references to LangGraph's own objects and
    does no serialization, no copying and no I/O: no checkpointer can cost LangGraph less, so
    its rate end to end is the ceiling for any checkpointer (LangGraph's own loop is all the
    rest). For measurement only: a stored value would change with the object it refers to.
    """

    def dumps_typed(self, obj: Any) -> tuple[str, Any]:
        return ("ref", obj)

    def loads_typed(self, data: tuple[str, Any]) -> Any:
        return data[1]


def ceiling_savers() -> dict[str, Any]:
    """`InMemorySaver` with `RustSerializer`, and with no serialization at all (see
    `StoreReferences`): a checkpointer that stores nothing anywhere is bounded by them."""
    from fast_langgraph import RustSerializer

    return {
        "InMemorySaver(RustSerializer)": InMemorySaver(serde=RustSerializer()),
        "InMemorySaver(no serialization)": InMemorySaver(serde=StoreReferences()),
    }


def make_savers(tmp: str, tag: str) -> dict[str, Any]:
    def sqlite_saver(synchronous: str | None) -> SqliteSaver:
        name = f"stock-{synchronous or 'default'}-{tag}.db"
        conn = sqlite3.connect(os.path.join(tmp, name), check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()  # WAL mode, as SqliteSaver sets it
        if synchronous is not None:
            conn.execute(f"PRAGMA synchronous={synchronous}")
        return saver

    return {
        "InMemorySaver": InMemorySaver(),
        DEFAULT: sqlite_saver(None),
        EQUAL: sqlite_saver("NORMAL"),
        "RustSQLiteCheckpointer": RustSQLiteCheckpointer(os.path.join(tmp, f"rust-{tag}.db")),
        "RustSQLiteCheckpointer(durable)": RustSQLiteCheckpointer(
            os.path.join(tmp, f"rust-durable-{tag}.db"), durable=True
        ),
    }


def table(title: str, results: dict[str, float], *, unit: str = "us") -> str:
    """Median per contender, with its ratio (speedup) against both stock SqliteSaver rows."""
    scale = {"us": 1e6, "ms": 1e3}[unit]
    lines = [
        f"\n{title}",
        f"  {'contender':<34} {'median ' + unit:>12} {'vs ' + EQUAL:>22} {'vs ' + DEFAULT:>16}",
    ]
    for name, t in results.items():
        lines.append(
            f"  {name:<34} {t * scale:>12.1f} {results[EQUAL] / t:>21.2f}x "
            f"{results[DEFAULT] / t:>15.2f}x"
        )
    return "\n".join(lines)


def state_of_size(target_bytes: int) -> dict[str, Any]:
    messages: list[Any] = []
    i = 0
    text = "lorem ipsum dolor sit amet " * 4
    while len(messages) * 300 < target_bytes:
        cls = HumanMessage if i % 2 == 0 else AIMessage
        messages.append(cls(content=f"{i}: {text}", id=str(uuid.UUID(int=i))))
        i += 1
    return {"messages": messages, "counter": 7, "route": "a", "notes": "x" * 64}


def bench_put_get(tmp: str, size: int, rounds: int, reps: int, *, append: bool) -> dict[str, float]:
    """`append=False`: every put rewrites every channel (same serialization work for every
    saver). `append=True`: a chat step: each put appends one message to the history and bumps
    a counter, as LangGraph's add_messages does; every 10 steps a new thread starts with a
    history of `size` bytes."""
    savers = make_savers(tmp, f"put{size}{append}")
    values = state_of_size(size)
    contenders = {}
    for name, saver in savers.items():
        # A conversation lasts 10 steps, so the history stays near `size`.
        contenders[name] = (_chat_step_loop if append else _put_get_loop)(saver, values, 10)
    res = interleaved(contenders, rounds=rounds, reps=reps)
    serialized = sum(len(saver_bytes) for saver_bytes in _sizes(values))
    what = "one message appended per put" if append else "all channels rewritten per put"
    print(
        table(
            f"put + get_tuple, state of {serialized / 1024:.0f} KB serialized, {what}",
            res,
        )
    )
    return res


def _sizes(values: dict[str, Any]) -> list[bytes]:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    s = JsonPlusSerializer()
    return [s.dumps_typed(v)[1] for v in values.values()]


def _chat_step_loop(saver: Any, values: dict[str, Any], reps: int):
    state: dict[str, Any] = {"n": reps}

    def step() -> None:
        if state["n"] == reps:  # a new conversation each round, seeded with the history
            state.update(
                n=0,
                thread=str(uuid.uuid4()),
                parent=None,
                versions={},
                values={**values, "messages": list(values["messages"])},
            )
            changed = list(values)
        else:
            msgs = state["values"]["messages"]
            # add_messages returns a new list holding the same message objects, plus the new one
            state["values"] = {
                **state["values"],
                "messages": [*msgs, AIMessage(content=f"step {state['n']}", id=str(uuid.uuid4()))],
                "counter": state["values"]["counter"] + 1,
            }
            changed = ["messages", "counter"]
        state["n"] += 1
        cp = empty_checkpoint()
        versions = {
            **state["versions"],
            **{k: saver.get_next_version(state["versions"].get(k), None) for k in changed},
        }
        cp["channel_values"] = dict(state["values"])
        cp["channel_versions"] = versions
        config = {"configurable": {"thread_id": state["thread"], "checkpoint_ns": ""}}
        if state["parent"]:
            config["configurable"]["checkpoint_id"] = state["parent"]
        saved = saver.put(
            config,
            cp,
            {"source": "loop", "step": state["n"], "parents": {}},
            {k: versions[k] for k in changed},
        )
        state["parent"] = saved["configurable"]["checkpoint_id"]
        state["versions"] = versions
        got = saver.get_tuple({"configurable": {"thread_id": state["thread"], "checkpoint_ns": ""}})
        assert got is not None and len(got.checkpoint["channel_values"]["messages"]) == len(
            state["values"]["messages"]
        )

    return step


def _put_get_loop(saver: Any, values: dict[str, Any], reps: int = 0):
    thread = str(uuid.uuid4())
    state = {"parent": None, "versions": {}}

    def step() -> None:
        cp = empty_checkpoint()
        versions = {k: saver.get_next_version(state["versions"].get(k), None) for k in values}
        cp["channel_values"] = dict(values)
        cp["channel_versions"] = versions
        config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        if state["parent"]:
            config["configurable"]["checkpoint_id"] = state["parent"]
        saved = saver.put(config, cp, {"source": "loop", "step": 1, "parents": {}}, versions)
        state["parent"] = saved["configurable"]["checkpoint_id"]
        state["versions"] = versions
        got = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
        assert got is not None and len(got.checkpoint["channel_values"]["messages"]) == len(
            values["messages"]
        )

    return step


def fill_thread(saver: Any, n: int) -> dict:
    """A thread of `n` checkpoints: every step bumps `counter`, every tenth changes every
    channel; each checkpoint has 2 pending writes. Returns the thread's config."""
    values = state_of_size(1024)
    thread = str(uuid.uuid4())
    parent = None
    versions: dict[str, Any] = {}
    for i in range(n):
        cp = empty_checkpoint()
        changed = list(values) if i % 10 == 0 else ["counter"]
        versions = {
            **versions,
            **{k: saver.get_next_version(versions.get(k), None) for k in changed},
        }
        cp["channel_values"] = dict(values)
        cp["channel_versions"] = versions
        cfg = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        if parent:
            cfg["configurable"]["checkpoint_id"] = parent
        new = {k: versions[k] for k in changed}
        saved = saver.put(cfg, cp, {"source": "loop", "step": i, "parents": {}}, new)
        parent = saved["configurable"]["checkpoint_id"]
        saver.put_writes(
            saved,
            [("messages", [AIMessage(content="hi", id=f"w{i}")]), ("route", "b")],
            f"task-{i}",
            "~x",
        )
    return {"configurable": {"thread_id": thread}}


def bench_list(tmp: str, n: int, rounds: int) -> dict[str, float]:
    """Every saver in turn, `rounds` times: wall time per `list()` (the table) and the
    thread's CPU time (`time.thread_time`, less sensitive to the machine's other load)."""
    savers = make_savers(tmp, "list")
    configs = {name: fill_thread(saver, n) for name, saver in savers.items()}
    cpu: dict[str, list[float]] = {name: [] for name in savers}

    def lister(name: str) -> Any:
        saver, cfg = savers[name], configs[name]

        def run() -> None:
            c0 = time.thread_time()
            items = list(saver.list(cfg))
            assert len(items) == n, (len(items), n)
            del items  # freeing the checkpoints is part of the cost, for every saver
            cpu[name].append(time.thread_time() - c0)

        return run

    # Every sample starts with no collection pending: gc.collect() runs before it, outside the
    # timing, so each contender pays for the collections its own allocations trigger and not
    # for those the previous contender's objects made due (which moved one saver's median
    # from 57 to 96 ms depending on its place in the round).
    res = interleaved(
        {name: lister(name) for name in savers}, rounds=rounds, reps=1, before=gc.collect
    )
    print(
        table(
            f"list() over a thread of {n} checkpoints (each with 2 pending writes), "
            "gc.collect() before each sample",
            res,
            unit="ms",
        )
    )
    # The first sample of each is the warm-up.
    cpu_med = {name: statistics.median(v[1:]) for name, v in cpu.items()}
    print(table("  the same, CPU time of the listing thread", cpu_med, unit="ms"))
    return res


def _list_alone_worker(name: str, n: int, lists: int) -> None:
    """In a process of its own: one saver, `lists` lists of the same thread in a row, after 3
    warm-up lists. Prints one line of JSON: CPU, wall and garbage-collector time per list."""
    import gc
    import json

    gc_cpu = [0.0, 0.0]
    counts = [0, 0, 0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_cpu[1] = time.thread_time()
        else:
            gc_cpu[0] += time.thread_time() - gc_cpu[1]
            counts[info["generation"]] += 1

    with tempfile.TemporaryDirectory() as tmp:
        saver = make_savers(tmp, "alone")[name]
        cfg = fill_thread(saver, n)
        for _ in range(3):
            list(saver.list(cfg))
        gc.callbacks.append(on_gc)
        gc_cpu[0], counts[:] = 0.0, [0, 0, 0]
        c0, w0 = time.thread_time(), time.perf_counter()
        for _ in range(lists):
            items = list(saver.list(cfg))
            del items
        cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
        gc.callbacks.remove(on_gc)
    print(
        json.dumps(
            {
                "cpu": cpu / lists,
                "wall": wall / lists,
                "gc": gc_cpu[0] / lists,
                "collections": [c / lists for c in counts],
            }
        )
    )


def bench_list_alone(n: int, lists: int, runs: int) -> None:
    """Each saver in a process of its own, `lists` lists in a row: the steady state of a
    process that lists, in which each saver pays the garbage collections its own objects
    cause (in one shared process, a collection falls on whichever contender triggers it)."""
    import json
    import subprocess

    names = [EQUAL, "RustSQLiteCheckpointer"]
    samples: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(runs):
        for name in names:
            out = subprocess.run(
                [sys.executable, __file__, "--list-alone-worker", name, str(n), str(lists)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            samples[name].append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"\nlist() over {n} checkpoints, each saver alone in a process, {lists} lists in a row "
        f"(median of {runs} processes each; per list)"
    )
    print(
        f"  {'contender':<34} {'CPU ms':>8} {'wall ms':>8} {'GC ms':>7} {'collections (gen 0/1/2)':>26}"
        f" {'CPU vs ' + EQUAL:>26}"
    )
    base = statistics.median(x["cpu"] for x in samples[EQUAL])
    for name in names:
        v = samples[name]
        cpu = statistics.median(x["cpu"] for x in v)
        gens = "/".join(
            f"{statistics.median(x['collections'][g] for x in v):.2f}" for g in range(3)
        )
        print(
            f"  {name:<34} {cpu * 1e3:>8.1f} {statistics.median(x['wall'] for x in v) * 1e3:>8.1f} "
            f"{statistics.median(x['gc'] for x in v) * 1e3:>7.1f} {gens:>26} {base / cpu:>25.2f}x"
        )


class State(TypedDict):
    messages: Annotated[list, add_messages]
    route: str
    results: Annotated[list, operator.add]


def build_graph(checkpointer: Any):
    def router(state: State) -> dict:
        n = len(state["messages"])
        return {"route": "a" if n % 2 else "b", "messages": [AIMessage(content=f"routing {n}")]}

    def branch(name: str):
        def node(state: State) -> dict:
            return {"messages": [AIMessage(content=f"{name} handled")]}

        return node

    def worker(name: str):
        def node(state: State) -> dict:
            return {"results": [f"{name}:{len(state['messages'])}"]}

        return node

    def join(state: State) -> dict:
        return {"messages": [AIMessage(content=f"joined {len(state['results'])}")]}

    def summarize(state: State) -> dict:
        return {"messages": [AIMessage(content="summary")], "results": []}

    g = StateGraph(State)
    g.add_node("router", router)
    g.add_node("a", branch("a"))
    g.add_node("b", branch("b"))
    for w in ("x", "y", "z"):
        g.add_node(w, worker(w))
    g.add_node("join", join)
    g.add_node("summarize", summarize)
    g.add_edge(START, "router")
    g.add_conditional_edges("router", lambda s: s["route"], {"a": "a", "b": "b"})
    for src in ("a", "b"):
        for w in ("x", "y", "z"):
            g.add_edge(src, w)
    g.add_edge(["x", "y", "z"], "join")
    g.add_edge("join", "summarize")
    g.add_edge("summarize", END)
    return g.compile(checkpointer=checkpointer)


def converse(graph: Any, conversations: int, turns: int, threads: int) -> tuple[float, list[str]]:
    """`conversations` new conversations of `turns` invokes each, on a pool of `threads`
    threads: the invokes per second, and the conversations' thread ids."""
    prefix = uuid.uuid4().hex
    thread_ids = [f"{prefix}-{t}" for t in range(conversations)]

    def conversation(thread_id: str) -> None:
        cfg = {"configurable": {"thread_id": thread_id}}
        for i in range(turns):
            graph.invoke({"messages": [HumanMessage(content=f"question {i}")], "results": []}, cfg)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(conversation, thread_ids))
    return conversations * turns / (time.perf_counter() - t0), thread_ids


def bench_end_to_end(tmp: str, rounds: int, threads: int, per_thread: int) -> dict[str, float]:
    savers = {**make_savers(tmp, "e2e"), **ceiling_savers()}
    graphs = {name: build_graph(saver) for name, saver in savers.items()}

    def run(name: str) -> float:
        return converse(graphs[name], threads, per_thread, threads)[0]

    for name in graphs:  # warm-up
        run(name)
    samples: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(rounds):
        for name in graphs:
            samples[name].append(run(name))
    res = {name: statistics.median(s) for name, s in samples.items()}
    for name, saver in savers.items():
        if isinstance(saver, RustSQLiteCheckpointer):
            st = saver.writer_stats()
            print(
                f"  {name}: {st['calls']} write calls in {st['commits']} commits "
                f"({st['calls'] / max(1, st['commits']):.1f} per commit)"
            )
    print(
        f"\nend to end: 8-node graph, {threads * per_thread} invocations over {threads} threads "
        "(LangGraph's default durability)"
    )
    print(
        f"  {'contender':<34} {'invokes/s':>12} {'vs ' + EQUAL:>22} {'vs ' + DEFAULT:>16} "
        f"{'vs InMemorySaver':>18}"
    )
    for name, v in res.items():
        print(
            f"  {name:<34} {v:>12.1f} {v / res[EQUAL]:>21.2f}x {v / res[DEFAULT]:>15.2f}x "
            f"{v / res['InMemorySaver']:>17.2f}x"
        )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    ap.add_argument(
        "--only",
        default="put,list,e2e",
        help="comma-separated measures to run: put, list, list-alone, e2e (default: put, "
        "list, e2e)",
    )
    ap.add_argument(
        "--sizes",
        default="1,35,250",
        help="state sizes in KB for put + get_tuple (default: 1,35,250)",
    )
    ap.add_argument("--list-alone-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.list_alone_worker:
        name, n, lists = args.list_alone_worker
        _list_alone_worker(name, int(n), int(lists))
        return
    only = set(args.only.split(","))
    reps_of = {1: 200, 35: 40, 250: 8}
    rounds = 3 if args.quick else 9
    with tempfile.TemporaryDirectory() as tmp:
        if "put" in only:
            for append in (False, True):
                for kb in (int(k) for k in args.sizes.split(",")):
                    reps = reps_of.get(kb, max(2, 200 // kb))
                    bench_put_get(
                        tmp,
                        kb * 1024,
                        rounds,
                        reps if not args.quick else max(2, reps // 4),
                        append=append,
                    )
        if "list" in only:
            bench_list(tmp, 1000, rounds)
        if "list-alone" in only:
            bench_list_alone(1000, 10 if args.quick else 30, 3)
        if "e2e" in only:
            bench_end_to_end(tmp, 3 if args.quick else 5, 20, 10)


if __name__ == "__main__":
    main()
