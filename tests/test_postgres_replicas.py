"""Several processes sharing one database: 4 processes x 8 threads writing at once lose
nothing and raise nothing; the opt-in single-writer guard refuses the second of two runs on
one thread across processes, while time travel and update_state keep working."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from conftest import cfg
from graph_apps import chat_app, counter_app
from langchain_core.messages import HumanMessage
from langgraph.graph import START, StateGraph
from typing_extensions import TypedDict

from fast_langgraph import CheckpointConflictError, RustPostgresCheckpointer

PROCESSES = 4
THREADS = 8
TURNS = 3


def _replica(url: str, proc: int, out) -> None:
    errors: list[str] = []
    try:
        with RustPostgresCheckpointer(url, pool_size=THREADS) as saver:

            def worker(t: int) -> None:
                # One app per thread: the fake model's replies are a per-app sequence.
                graph = chat_app([f"r{i}" for i in range(TURNS)]).compile(checkpointer=saver)
                try:
                    for turn in range(TURNS):
                        graph.invoke(
                            {"messages": [HumanMessage(f"p{proc}-t{t}-{turn}")]},
                            cfg(f"p{proc}-t{t}"),
                        )
                except Exception as e:  # reported to the parent, which fails the test
                    errors.append(f"{type(e).__name__}: {e}")

            threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
    out.put((proc, errors))


def test_four_processes_eight_threads_nothing_lost(pg_server):
    url = pg_server.url(pg_server.create_database("replicas"))
    with RustPostgresCheckpointer(url) as saver:
        saver.setup()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_replica, args=(url, p, out)) for p in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(not errs for _, errs in results), results
    with RustPostgresCheckpointer(url) as saver:
        graph = chat_app([]).compile(checkpointer=saver)
        for proc in range(PROCESSES):
            for t in range(THREADS):
                msgs = graph.get_state(cfg(f"p{proc}-t{t}")).values["messages"]
                want = []
                for turn in range(TURNS):
                    want += [f"p{proc}-t{t}-{turn}", f"r{turn}"]
                assert [m.content for m in msgs] == want
                # 4 checkpoints per turn (input, start, agent, count), none lost.
                assert len(list(saver.list(cfg(f"p{proc}-t{t}")))) == 4 * TURNS


class Slow(TypedDict, total=False):
    log: list[str]


def _slow_app(started, release) -> StateGraph:
    def first(state: Slow) -> dict:
        started.set()
        release.wait(60)
        return {"log": [*state.get("log", []), "first"]}

    def second(state: Slow) -> dict:
        return {"log": [*state["log"], "second"]}

    b = StateGraph(Slow)
    b.add_node("first", first)
    b.add_node("second", second)
    b.add_edge(START, "first")
    b.add_edge("first", "second")
    return b


def _guarded_run(url: str, started, release, out) -> None:
    try:
        with RustPostgresCheckpointer(url, guard=True) as saver:
            graph = _slow_app(started, release).compile(checkpointer=saver)
            graph.invoke({"log": ["from-a"]}, cfg("shared"))
        out.put("ok")
    except CheckpointConflictError as e:
        out.put(f"conflict: {e}")
    except Exception as e:
        out.put(f"{type(e).__name__}: {e}")


def test_guard_refuses_a_second_concurrent_run_across_processes(pg_server):
    url = pg_server.url(pg_server.create_database("guard"))
    with RustPostgresCheckpointer(url, guard=True) as saver:
        saver.setup()
        graph = counter_app().compile(checkpointer=saver)
        graph.invoke({"count": 0, "log": []}, cfg("shared"))
    ctx = mp.get_context("spawn")
    started, release, out = ctx.Event(), ctx.Event(), ctx.Queue()
    # Process A reads the thread's head and stops inside its first node...
    a = ctx.Process(target=_guarded_run, args=(url, started, release, out))
    a.start()
    assert started.wait(120)
    # ...while process B runs on the same thread from the same head, and finishes first.
    b_started, b_release = ctx.Event(), ctx.Event()
    b_release.set()
    b = ctx.Process(target=_guarded_run, args=(url, b_started, b_release, out))
    b.start()
    b.join(120)
    first_result = out.get(timeout=60)
    release.set()
    a.join(120)
    second_result = out.get(timeout=60)
    # Both continued the same head; whichever wrote second was refused (usually A, whose
    # next checkpoint continues the head B moved; B, if A's in-flight checkpoint committed
    # after B read the head).
    results = sorted([first_result, second_result])
    assert results[0].startswith("conflict:") and results[1] == "ok", results
    assert '"shared"' in results[0]
    with RustPostgresCheckpointer(url, guard=True) as saver:
        graph = counter_app().compile(checkpointer=saver)
        history = list(graph.get_state_history(cfg("shared")))
        # No fork: every checkpoint has a distinct parent except none.
        parents = [
            s.parent_config["configurable"]["checkpoint_id"] for s in history if s.parent_config
        ]
        assert len(parents) == len(set(parents))
        # Time travel and update_state on an old checkpoint still work with the guard on.
        old = history[-2]
        graph.update_state(old.config, {"log": ["edited"]})
        graph.invoke(None, old.config)
        after = list(graph.get_state_history(cfg("shared")))
        assert len(after) > len(history)


def _set_event() -> threading.Event:
    e = threading.Event()
    e.set()
    return e


def test_guard_between_threads_of_one_process(pg_server):
    url = pg_server.url(pg_server.create_database("guard1"))
    with RustPostgresCheckpointer(url, guard=True) as saver:
        saver.setup()
        started, release = threading.Event(), threading.Event()
        graph = _slow_app(started, release).compile(checkpointer=saver)
        errors: list = []

        def run(app) -> None:
            try:
                app.invoke({"log": ["a"]}, cfg("s"))
            except Exception as e:
                errors.append(e)

        release.set()
        run(graph)  # the thread exists now
        release.clear()
        started.clear()
        t = threading.Thread(target=run, args=(graph,))
        t.start()
        assert started.wait(60)
        other = _slow_app(threading.Event(), _set_event()).compile(checkpointer=saver)
        run(other)
        release.set()
        t.join(60)
        # Both continued the same head: exactly one was refused, whichever wrote second.
        assert len(errors) == 1 and isinstance(errors[0], CheckpointConflictError), errors
        history = list(other.get_state_history(cfg("s")))
        parents = [
            h.parent_config["configurable"]["checkpoint_id"] for h in history if h.parent_config
        ]
        assert len(parents) == len(set(parents))


FORK_POOL = textwrap.dedent(
    """
    import multiprocessing, sys
    from graph_apps import counter_app
    from fast_langgraph import RustPostgresCheckpointer

    saver = RustPostgresCheckpointer(sys.argv[1], pool_size=2)
    saver.setup()
    graph = counter_app().compile(checkpointer=saver)  # module level, built before the fork
    graph.invoke({"count": 0, "log": []}, {"configurable": {"thread_id": "parent"}})


    def turn(i):
        cfg = {"configurable": {"thread_id": f"worker-{i % 6}"}}
        return graph.invoke({"count": i, "log": []}, cfg)["count"]


    if __name__ == "__main__":
        with multiprocessing.get_context("fork").Pool(3) as pool:
            print("results", sorted(pool.map(turn, range(30))), flush=True)
        graph.invoke({"count": 1, "log": []}, {"configurable": {"thread_id": "parent"}})
        threads = sorted({t.config["configurable"]["thread_id"] for t in saver.list(None)})
        print("threads", threads, flush=True)
        per_invoke = sum(1 for _ in saver.list({"configurable": {"thread_id": "parent"}})) // 2
        print("checkpoints", sum(1 for _ in saver.list(None)) == 32 * per_invoke > 0, flush=True)
        saver.close()
    """
)


def test_fork_pool_workers_checkpoint(pg_server):
    """A module-level graph on RustPostgresCheckpointer, used by the workers of a
    multiprocessing pool with the fork start method: each child opens its own connections
    (the parent's stay the parent's, which keeps using them afterwards); nothing is lost."""
    url = pg_server.url(pg_server.create_database("forkpool"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        ),
    }
    proc = subprocess.run(
        [sys.executable, "-c", FORK_POOL, url],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"results {sorted(i + 111 for i in range(30))}" in lines
    assert f"threads {sorted(['parent', *(f'worker-{i}' for i in range(6))])}" in lines
    assert "checkpoints True" in lines
