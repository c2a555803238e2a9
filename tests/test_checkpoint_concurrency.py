"""Many threads, two processes, many coroutines and a killed process on one database file."""

from __future__ import annotations

import asyncio
import itertools
import operator
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Annotated, TypedDict

import pytest
from conftest import cfg
from graph_apps import chat_app, counter_app, interrupt_app
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from fast_langgraph import RustSQLiteCheckpointer

TESTS_DIR = Path(__file__).parent


def run_threads(n: int, target) -> None:
    """Runs target(i) on n threads started together; re-raises the first failure."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def wrapped(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# -- threads -------------------------------------------------------------------------------


def test_threads_each_run_a_graph(tmp_path):
    n = 16
    with RustSQLiteCheckpointer(tmp_path / "db.sqlite") as saver:
        graph = counter_app().compile(checkpointer=saver)
        results: dict[int, dict] = {}

        def work(i: int) -> None:
            for run in range(3):
                results[(i, run)] = graph.invoke({"count": i, "log": []}, cfg(f"t{i}"))

        run_threads(n, work)
        for i in range(n):
            assert results[(i, 2)] == {
                "count": i + 111,
                "log": [f"a:{i}", f"b:{i + 1}", f"c:{i + 11}"] * 3,
            }
            state = graph.get_state(cfg(f"t{i}"))
            assert state.values == results[(i, 2)]
            history = list(graph.get_state_history(cfg(f"t{i}")))
            assert len(history) == 3 * 5
            assert all(h.config["configurable"]["thread_id"] == f"t{i}" for h in history)
            # Each checkpoint's parent is the next older one: no interleaving across threads.
            for newer, older in itertools.pairwise(history):
                assert (
                    newer.parent_config["configurable"]["checkpoint_id"]
                    == older.config["configurable"]["checkpoint_id"]
                )
        assert len(list(saver.list(None))) == n * 15


def test_threads_chat_and_interrupts(tmp_path):
    n = 16
    with RustSQLiteCheckpointer(tmp_path / "db.sqlite") as saver:
        ask = interrupt_app().compile(checkpointer=saver)

        def work(i: int) -> None:
            chat = chat_app([f"reply-{i}-0", f"reply-{i}-1"]).compile(checkpointer=saver)
            chat.invoke({"messages": [HumanMessage(f"hi {i}")]}, cfg(f"chat{i}"))
            chat.invoke({"messages": [HumanMessage(f"again {i}")]}, cfg(f"chat{i}"))
            ask.invoke({"question": f"q{i}"}, cfg(f"ask{i}"))
            ask.invoke(Command(resume=f"a{i}"), cfg(f"ask{i}"))

        run_threads(n, work)
        for i in range(n):
            chat = chat_app([]).compile(checkpointer=saver)
            msgs = chat.get_state(cfg(f"chat{i}")).values["messages"]
            assert [m.content for m in msgs] == [
                f"hi {i}",
                f"reply-{i}-0",
                f"again {i}",
                f"reply-{i}-1",
            ]
            assert len(list(chat.get_state_history(cfg(f"chat{i}")))) == 8
            assert ask.get_state(cfg(f"ask{i}")).values["log"] == [
                "prepare",
                f"ask:a{i}",
                f"finish:a{i}",
            ]
            assert len(list(ask.get_state_history(cfg(f"ask{i}")))) == 5


def test_threads_put_list_get_one_thread_id(tmp_path):
    n, per = 16, 20
    with RustSQLiteCheckpointer(tmp_path / "db.sqlite") as saver:
        written: dict[str, tuple[int, int]] = {}
        lock = threading.Lock()

        def work(i: int) -> None:
            parent = None
            for k in range(per):
                cp = empty_checkpoint()
                cp["channel_values"] = {"who": i, "k": k, "blob": bytes([i, k]) * 50}
                cp["channel_versions"] = {
                    ch: saver.get_next_version(None, None) for ch in ("who", "k", "blob")
                }
                config = cfg("shared", checkpoint_ns="")
                if parent:
                    config["configurable"]["checkpoint_id"] = parent
                out = saver.put(
                    config, cp, {"source": "loop", "step": k, "writer": i}, cp["channel_versions"]
                )
                saver.put_writes(out, [("seen", [i, k])], f"task-{i}-{k}")
                with lock:
                    written[cp["id"]] = (i, k)
                got = saver.get_tuple(out)
                assert got.checkpoint["channel_values"]["who"] == i
                assert got.checkpoint["channel_values"]["k"] == k
                assert got.pending_writes == [(f"task-{i}-{k}", "seen", [i, k])]
                mine = list(saver.list(cfg("shared"), filter={"writer": i}))
                assert len(mine) == k + 1
                assert [t.metadata["step"] for t in mine] == list(range(k, -1, -1))
                some = list(saver.list(cfg("shared"), limit=5))
                assert 1 <= len(some) <= 5
                parent = cp["id"]

        run_threads(n, work)
        everything = list(saver.list(cfg("shared")))
        assert len(everything) == n * per
        ids = [t.checkpoint["id"] for t in everything]
        assert ids == sorted(ids, reverse=True)
        for t in everything:
            i, k = written[t.checkpoint["id"]]
            assert t.checkpoint["channel_values"] == {"who": i, "k": k, "blob": bytes([i, k]) * 50}
            assert t.metadata["writer"] == i and t.metadata["step"] == k
            assert t.pending_writes == [(f"task-{i}-{k}", "seen", [i, k])]


# -- processes -----------------------------------------------------------------------------

WRITER_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from graph_apps import counter_app
    from fast_langgraph import RustSQLiteCheckpointer

    path, name, go = sys.argv[1], sys.argv[2], sys.argv[3]
    saver = RustSQLiteCheckpointer(path)
    graph = counter_app().compile(checkpointer=saver)
    while not os.path.exists(go):
        time.sleep(0.001)
    for i in range(25):
        graph.invoke({"count": i, "log": []}, {"configurable": {"thread_id": f"{name}-{i}"}})
    saver.close()
    print("ok", name)
    """
)


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    return env


def test_two_processes_write_one_file(tmp_path):
    path = tmp_path / "shared.db"
    go = tmp_path / "go"
    RustSQLiteCheckpointer(path).close()  # create the schema first
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_CHILD, str(path), name, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for name in ("p0", "p1")
    ]
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert "locked" not in err.lower()
        assert p.returncode == 0, err
        assert out.startswith("ok")
    with RustSQLiteCheckpointer(path) as saver:
        graph = counter_app().compile(checkpointer=saver)
        for name in ("p0", "p1"):
            for i in range(25):
                state = graph.get_state(cfg(f"{name}-{i}"))
                assert state.values == {
                    "count": i + 111,
                    "log": [f"a:{i}", f"b:{i + 1}", f"c:{i + 11}"],
                }
                assert len(list(graph.get_state_history(cfg(f"{name}-{i}")))) == 5
        assert len(list(saver.list(None))) == 2 * 25 * 5


def test_two_checkpointers_one_file_same_process(tmp_path):
    path = tmp_path / "shared.db"
    with RustSQLiteCheckpointer(path) as a, RustSQLiteCheckpointer(path) as b:
        ga = counter_app().compile(checkpointer=a)
        gb = counter_app().compile(checkpointer=b)

        def work(i: int) -> None:
            g = ga if i % 2 else gb
            for k in range(5):
                g.invoke({"count": k, "log": []}, cfg(f"t{i}-{k}"))

        run_threads(8, work)
        assert len(list(a.list(None))) == len(list(b.list(None))) == 8 * 5 * 5


# -- asyncio -------------------------------------------------------------------------------


async def test_many_concurrent_ainvoke(tmp_path):
    n = 40
    async with RustSQLiteCheckpointer(tmp_path / "db.sqlite") as saver:
        graph = counter_app().compile(checkpointer=saver)
        ask = interrupt_app().compile(checkpointer=saver)
        results = await asyncio.gather(
            *[graph.ainvoke({"count": i, "log": []}, cfg(f"t{i}")) for i in range(n)],
            *[ask.ainvoke({"question": f"q{i}"}, cfg(f"ask{i}")) for i in range(n)],
        )
        for i in range(n):
            assert results[i] == {"count": i + 111, "log": [f"a:{i}", f"b:{i + 1}", f"c:{i + 11}"]}
        resumed = await asyncio.gather(
            *[ask.ainvoke(Command(resume=i), cfg(f"ask{i}")) for i in range(n)]
        )
        for i in range(n):
            assert resumed[i]["log"] == ["prepare", f"ask:{i}", f"finish:{i}"]
            hist = [s async for s in graph.aget_state_history(cfg(f"t{i}"))]
            assert len(hist) == 5
            hist = [s async for s in ask.aget_state_history(cfg(f"ask{i}"))]
            assert len(hist) == 5
        assert len([t async for t in saver.alist(None)]) == n * 10


class GatedSerde(JsonPlusSerializer):
    """A serializer that, when armed, blocks its calling thread until the event loop has
    run a ticker coroutine a few times. If the checkpointer ran its blocking work on the
    event loop thread, the ticker could never run and the gate would time out."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: threading.Event | None = None
        self.timed_out = False

    def _wait(self) -> None:
        gate = self.gate
        if gate is not None and not gate.wait(timeout=10):
            self.timed_out = True
            raise RuntimeError("the event loop was blocked")

    def dumps_typed(self, obj):
        self._wait()
        return super().dumps_typed(obj)

    def loads_typed(self, data):
        self._wait()
        return super().loads_typed(data)


ASYNC_OPS = {
    "aput": lambda s, cp: s.aput(
        cfg("t", checkpoint_ns=""), cp, {"source": "loop", "step": 1}, {"x": "2"}
    ),
    "aput_writes": lambda s, cp: s.aput_writes(
        cfg("t", checkpoint_ns="", checkpoint_id=cp["id"]), [("x", 5)], "task"
    ),
    "aget_tuple": lambda s, cp: s.aget_tuple(cfg("t")),
    "alist": lambda s, cp: _drain(s.alist(cfg("t"))),
}


async def _drain(ait):
    return [x async for x in ait]


@pytest.mark.parametrize("op", list(ASYNC_OPS))
async def test_async_methods_do_not_block_the_loop(tmp_path, op):
    serde = GatedSerde()
    async with RustSQLiteCheckpointer(tmp_path / "db.sqlite", serde=serde) as saver:
        cp = empty_checkpoint()
        cp["channel_values"] = {"x": 1}
        cp["channel_versions"] = {"x": "1"}
        await saver.aput(cfg("t", checkpoint_ns=""), cp, {"source": "input", "step": 0}, {"x": "1"})
        cp2 = empty_checkpoint()
        cp2["channel_values"] = {"x": 2}
        cp2["channel_versions"] = {"x": "2"}

        ticks = 0
        gate = threading.Event()
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                if ticks == 5:
                    gate.set()
                await asyncio.sleep(0)

        serde.gate = gate
        task = asyncio.create_task(ticker())
        try:
            result = await ASYNC_OPS[op](saver, cp2 if op == "aput" else cp)
        finally:
            stop = True
            await task
            serde.gate = None
        assert not serde.timed_out
        assert ticks >= 5
        if op == "aget_tuple":
            assert result.checkpoint["channel_values"] == {"x": 1}
        elif op == "alist":
            assert len(result) == 1
        tuples = [t async for t in saver.alist(cfg("t"))]
        assert len(tuples) == (2 if op == "aput" else 1)
        if op == "aput_writes":
            assert tuples[0].pending_writes == [("task", "x", 5)]


# -- crash safety --------------------------------------------------------------------------

CRASH_CHILD = textwrap.dedent(
    """
    import sys, threading
    from graph_apps import counter_app
    from fast_langgraph import RustSQLiteCheckpointer

    path = sys.argv[1]
    saver = RustSQLiteCheckpointer(path)
    graph = counter_app().compile(checkpointer=saver)
    out_lock = threading.Lock()

    def work(w):
        i = 0
        while True:
            config = {"configurable": {"thread_id": f"w{w}-{i}"}}
            result = graph.invoke({"count": i, "log": []}, config)
            cid = graph.get_state(config).config["configurable"]["checkpoint_id"]
            with out_lock:
                print("committed", f"w{w}-{i}", cid, result["count"], flush=True)
            i += 1

    for w in range(4):
        threading.Thread(target=work, args=(w,), daemon=True).start()
    threading.Event().wait()
    """
)


@pytest.mark.parametrize("kill_after", [3, 40])
def test_sigkill_mid_run(tmp_path, kill_after):
    path = tmp_path / "crash.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    committed: list[tuple[str, str, int]] = []
    try:
        for line in proc.stdout:
            parts = line.split()
            if parts and parts[0] == "committed":
                committed.append((parts[1], parts[2], int(parts[3])))
            if len(committed) >= kill_after:
                break
        proc.send_signal(signal.SIGKILL)
        # Whatever the child printed before it died was also committed.
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    for line in rest.splitlines():
        parts = line.split()
        if parts and parts[0] == "committed":
            committed.append((parts[1], parts[2], int(parts[3])))
    assert proc.returncode == -signal.SIGKILL
    assert len(committed) >= kill_after, err

    with RustSQLiteCheckpointer(path) as saver:
        tuples = list(saver.list(None))
        assert len(tuples) >= 5 * len(committed)
        for t in tuples:
            again = saver.get_tuple(t.config)
            assert again is not None
            assert again.checkpoint == t.checkpoint
            assert again.metadata == t.metadata
            if t.parent_config is not None:
                assert saver.get_tuple(t.parent_config) is not None
        graph = counter_app().compile(checkpointer=saver)
        for thread_id, cid, count in committed:
            tup = saver.get_tuple(cfg(thread_id, checkpoint_ns="", checkpoint_id=cid))
            assert tup is not None, thread_id
            assert tup.checkpoint["channel_values"]["count"] == count
            assert len(list(graph.get_state_history(cfg(thread_id)))) == 5
        # The reopened file takes new writes.
        assert graph.invoke({"count": 0, "log": []}, cfg("after"))["count"] == 111


def test_close_while_threads_write(tmp_path):
    """close() while 8 threads are writing: every call either returns, and its checkpoint
    is on disk afterwards, or raises CheckpointClosedError; nothing hangs or half-writes."""
    from fast_langgraph import CheckpointClosedError

    path = tmp_path / "db.sqlite"
    saver = RustSQLiteCheckpointer(path)
    done: list[str] = []
    refused: list[int] = []
    started = threading.Barrier(9)
    lock = threading.Lock()

    def work(i: int) -> None:
        started.wait()
        # More puts than can finish before close() (which comes after 50): every thread is
        # refused, however the machine schedules them.
        for k in range(1_000_000):
            cp = empty_checkpoint()
            cp["channel_values"] = {"v": [i, k]}
            cp["channel_versions"] = {"v": str(k + 1)}
            try:
                saver.put(cfg(f"t{i}", checkpoint_ns=""), cp, {"step": k}, {"v": str(k + 1)})
            except CheckpointClosedError:
                with lock:
                    refused.append(i)
                return
            with lock:
                done.append(cp["id"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    started.wait()
    while len(done) < 50:
        time.sleep(0.001)
    saver.close()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    assert saver.closed
    assert len(refused) == 8
    with RustSQLiteCheckpointer(path) as again:
        stored = {t.checkpoint["id"]: t for t in again.list(None)}
    assert set(done) <= set(stored)
    for cid in done:
        assert stored[cid].checkpoint["channel_values"]["v"][1] == stored[cid].metadata["step"]


FORK_CHILD = textwrap.dedent(
    """
    import os, sys
    from graph_apps import counter_app
    from fast_langgraph import CheckpointError, RustSQLiteCheckpointer

    saver = RustSQLiteCheckpointer(sys.argv[1])
    graph = counter_app().compile(checkpointer=saver)
    graph.invoke({"count": 0, "log": []}, {"configurable": {"thread_id": "parent"}})
    pid = os.fork()
    if pid == 0:
        out = graph.invoke({"count": 1, "log": []}, {"configurable": {"thread_id": "child"}})
        print("child invoke", out["count"], flush=True)
        print("child sees", sorted({t.config["configurable"]["thread_id"] for t in saver.list(None)}), flush=True)
        grandchild = os.fork()  # a fork of the child, before and after its own first call
        if grandchild == 0:
            graph.invoke({"count": 5, "log": []}, {"configurable": {"thread_id": "grandchild"}})
            saver.close()
            os._exit(0)
        _, status = os.waitpid(grandchild, 0)
        print("grandchild exit", os.waitstatus_to_exitcode(status), flush=True)
        saver.close()
        try:
            saver.get_tuple({"configurable": {"thread_id": "child"}})
        except CheckpointError as e:
            print("child after close:", type(e).__name__, flush=True)
        sys.exit(0)  # a normal exit: finalizers run
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
    graph.invoke({"count": 2, "log": []}, {"configurable": {"thread_id": "parent2"}})
    print("parent threads", sorted({t.config["configurable"]["thread_id"] for t in saver.list(None)}), flush=True)
    print("child state", graph.get_state({"configurable": {"thread_id": "child"}}).values["count"], flush=True)
    print("check", saver.check(), flush=True)
    saver.close()

    memory = RustSQLiteCheckpointer(":memory:")
    memory.put({"configurable": {"thread_id": "m", "checkpoint_ns": ""}}, {"v": 1, "id": "1f000000-0000-6000-8000-000000000000", "ts": "", "channel_values": {}, "channel_versions": {}, "versions_seen": {}}, {}, {})
    pid = os.fork()
    if pid == 0:
        try:
            memory.get_tuple({"configurable": {"thread_id": "m"}})
            print("memory child worked", flush=True)
        except CheckpointError as e:
            print("memory child refused:", e, flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    """
)


def _run_fork_script(script: str, *args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script, *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_forked_child_reopens_the_file(tmp_path):
    """A checkpointer inherited through fork() (a module-level graph under gunicorn
    --preload, a fork pool) works in the child: the child leaves the parent's connections
    alone and opens the file anew on its first call; the parent and the child each see the
    other's threads, a grandchild works too, and the file stays sound. An in-memory
    database cannot be opened anew: the child's calls fail at once, naming the problem."""
    lines = _run_fork_script(FORK_CHILD, str(tmp_path / "f.db"))
    assert "child invoke 112" in lines
    assert "child sees ['child', 'parent']" in lines
    assert "grandchild exit 0" in lines
    assert "child after close: CheckpointClosedError" in lines
    assert "child exit 0" in lines
    assert "parent threads ['child', 'grandchild', 'parent', 'parent2']" in lines
    assert "child state 112" in lines
    assert "check []" in lines
    memory = next(line for line in lines if line.startswith("memory child"))
    assert "refused:" in memory and "fork" in memory and "open a new one" in memory


FORK_POOL = textwrap.dedent(
    """
    import multiprocessing, sys
    from graph_apps import counter_app
    from fast_langgraph import RustSQLiteCheckpointer

    saver = RustSQLiteCheckpointer(sys.argv[1])
    graph = counter_app().compile(checkpointer=saver)  # module level, built before the fork
    graph.invoke({"count": 0, "log": []}, {"configurable": {"thread_id": "parent"}})


    def turn(i):
        cfg = {"configurable": {"thread_id": f"worker-{i % 6}"}}
        return graph.invoke({"count": i, "log": []}, cfg)["count"]


    if __name__ == "__main__":
        with multiprocessing.get_context("fork").Pool(3) as pool:
            print("results", sorted(pool.map(turn, range(30))), flush=True)
        threads = sorted({t.config["configurable"]["thread_id"] for t in saver.list(None)})
        print("threads", threads, flush=True)
        per_invoke = sum(1 for _ in saver.list({"configurable": {"thread_id": "parent"}}))
        print("checkpoints", sum(1 for _ in saver.list(None)) == 31 * per_invoke > 0, flush=True)
        print("check", saver.check(), flush=True)
    """
)


def test_fork_pool_workers_checkpoint(tmp_path):
    """A multiprocessing pool with the fork start method: every worker checkpoints through
    the checkpointer the parent built; nothing is lost."""
    lines = _run_fork_script(FORK_POOL, str(tmp_path / "pool.db"))
    assert f"results {sorted(i + 111 for i in range(30))}" in lines
    assert f"threads {sorted(['parent', *(f'worker-{i}' for i in range(6))])}" in lines
    assert "checkpoints True" in lines  # as many per invoke as the parent's one invoke wrote
    assert "check []" in lines


FORK_STORE = textwrap.dedent(
    """
    import os, sys
    from fast_langgraph import CheckpointError
    from fast_langgraph._native import CheckpointKey, CheckpointStore, NewCheckpoint

    def checkpoint(cid):
        return NewCheckpoint(
            CheckpointKey("t", "", cid), parent_checkpoint_id=None, type_tag="msgpack",
            checkpoint=b"\\x80", metadata_json="{}", run_id=None, channel_versions=[], blobs=[],
        )

    def attempt(what, call):
        try:
            got = call()
            print(what, "worked", getattr(got, "checkpoint_id", ""), flush=True)
        except CheckpointError as e:
            print(what, "refused:", e, flush=True)

    path = sys.argv[1]
    store = CheckpointStore(path)
    store.put(checkpoint("1"))
    for _ in range(2):  # twice: every child of the opener is refused, not only the first
        pid = os.fork()
        if pid == 0:
            attempt("child get", lambda: store.get("t", ""))
            attempt("child put", lambda: store.put(checkpoint("2")))
            own = CheckpointStore(path)  # opened in the child: the child's own
            attempt("child's own put", lambda: own.put(checkpoint("3")))
            grandchild = os.fork()
            if grandchild == 0:
                attempt("grandchild get on the child's", lambda: own.get("t", ""))
                attempt("grandchild get on the parent's", lambda: store.get("t", ""))
                os._exit(0)  # no finalizers: the inherited stores are left alone
            os.waitpid(grandchild, 0)
            attempt("child's own get after its fork", lambda: own.get("t", ""))
            own.close()
            os._exit(0)
        os.waitpid(pid, 0)
    attempt("parent get", lambda: store.get("t", ""))
    store.close()
    """
)


def test_a_store_refuses_every_process_forked_from_its_opener(tmp_path):
    """CheckpointStore tells a forked process from its opener at any depth, without asking
    the kernel on every call (a fork counter kept by a pthread_atfork handler): a child and
    a grandchild are refused, naming the fork, before touching the parent's connections; a
    store a child opens is its own until that child forks in turn; the parent goes on."""
    lines = _run_fork_script(FORK_STORE, str(tmp_path / "s.db"))
    assert len(lines) == 13, lines
    for line in lines:
        if line.startswith(("child get", "child put", "grandchild")):
            assert "refused:" in line and "forked from it" in line, line
    assert lines.count("child's own put worked ") == 2
    assert lines.count("child's own get after its fork worked 3") == 2
    assert lines[-1] == "parent get worked 3"


async def test_cancelled_ainvoke_leaves_a_resumable_thread(tmp_path):
    """ainvoke cancelled while a node is running: every stored checkpoint is readable and
    the thread resumes from the last one."""
    from graph_apps import CounterState
    from langgraph.graph import END, START, StateGraph

    started = asyncio.Event()
    release = asyncio.Event()
    inside = 0

    async def a(state: CounterState) -> dict:
        return {"count": state["count"] + 1, "log": ["a"]}

    async def slow(state: CounterState) -> dict:
        nonlocal inside
        inside += 1
        if inside == 8:
            started.set()
        await release.wait()
        return {"count": state["count"] + 10, "log": ["slow"]}

    b = StateGraph(CounterState)
    b.add_node("a", a)
    b.add_node("slow", slow)
    b.add_edge(START, "a")
    b.add_edge("a", "slow")
    b.add_edge("slow", END)
    async with RustSQLiteCheckpointer(tmp_path / "db.sqlite") as saver:
        graph = b.compile(checkpointer=saver)
        runs = [
            asyncio.create_task(graph.ainvoke({"count": 0, "log": []}, cfg(f"t{i}")))
            for i in range(8)
        ]
        await started.wait()  # all 8 runs are inside the slow node
        for run in runs:
            run.cancel()
        for run in runs:
            with pytest.raises(asyncio.CancelledError):
                await run
        release.set()
        for i in range(8):
            tuples = [t async for t in saver.alist(cfg(f"t{i}"))]
            for t in tuples:
                assert (await saver.aget_tuple(t.config)).checkpoint == t.checkpoint
            state = await graph.aget_state(cfg(f"t{i}"))
            assert len(tuples) >= 2  # at least the input and the first step
            assert state.next in (("a",), ("slow",))
            assert "slow" not in state.values["log"]
            out = await graph.ainvoke(None, cfg(f"t{i}"))
            assert out == {"count": 11, "log": ["a", "slow"]}
            hist = [s async for s in graph.aget_state_history(cfg(f"t{i}"))]
            assert len(hist) == 4  # input, start, a, slow: no duplicate, none lost
            assert [h.metadata["step"] for h in hist] == [2, 1, 0, -1]


@pytest.mark.parametrize("where", [":memory:", "durable"])
def test_threads_on_memory_and_durable_savers(tmp_path, where):
    saver = (
        RustSQLiteCheckpointer(":memory:")
        if where == ":memory:"
        else RustSQLiteCheckpointer(tmp_path / "d.db", durable=True)
    )
    with saver:
        graph = counter_app().compile(checkpointer=saver)
        ask = interrupt_app().compile(checkpointer=saver)

        def work(i: int) -> None:
            graph.invoke({"count": i, "log": []}, cfg(f"t{i}"))
            ask.invoke({"question": "q"}, cfg(f"ask{i}"))
            ask.invoke(Command(resume=i), cfg(f"ask{i}"))

        run_threads(8, work)
        for i in range(8):
            assert graph.get_state(cfg(f"t{i}")).values["count"] == i + 111
            assert ask.get_state(cfg(f"ask{i}")).values["answer"] == i
        assert len(list(saver.list(None))) == 8 * 10
    if where == "durable":
        with RustSQLiteCheckpointer(tmp_path / "d.db") as again:
            assert len(list(again.list(None))) == 8 * 10


class FanState(TypedDict):
    n: int
    log: Annotated[list[str], operator.add]


def fan_app() -> StateGraph:
    """start -> x, y, z (one step, three tasks) -> join: the shape of bench_checkpoint.py's
    graph, whose parallel tasks write at the same time."""

    def node(name: str):
        def run(state: FanState) -> dict:
            return {"log": [f"{name}:{state['n']}:{len(state['log'])}"]}

        return run

    b = StateGraph(FanState)
    for name in ("start", "x", "y", "z", "join"):
        b.add_node(name, node(name))
    b.add_edge(START, "start")
    for name in ("x", "y", "z"):
        b.add_edge("start", name)
    b.add_edge(["x", "y", "z"], "join")
    b.add_edge("join", END)
    return b


@pytest.mark.parametrize("durability", [None, "async", "sync", "exit"])
def test_committed_when_invoke_returns_under_threads(tmp_path, durability):
    """20 threads invoke at once (their writes meet in the group commit), and each invoke is
    checked as soon as it returns, through another checkpointer on the file (connections of
    its own): every checkpoint it made, and the pending writes of each one that is not the
    newest, are committed already. `None` is LangGraph's default durability ("async")."""
    n, runs = 20, 3
    kwargs = {} if durability is None else {"durability": durability}
    # The input, then one per step: __start__, start, x/y/z, join.
    per_run = 1 if durability == "exit" else 5
    path = tmp_path / "db.sqlite"
    with RustSQLiteCheckpointer(path) as saver, RustSQLiteCheckpointer(path) as reader:
        graph = fan_app().compile(checkpointer=saver)
        seen = fan_app().compile(checkpointer=reader)

        def work(i: int) -> None:
            for run in range(runs):
                out = graph.invoke({"n": run, "log": []}, cfg(f"t{i}"), **kwargs)
                before = 5 * run  # the log's length when this run starts
                assert len(out["log"]) == before + 5
                assert out["log"][before:] == [
                    f"start:{run}:{before}",
                    f"x:{run}:{before + 1}",
                    f"y:{run}:{before + 1}",
                    f"z:{run}:{before + 1}",
                    f"join:{run}:{before + 4}",
                ]
                state = seen.get_state(cfg(f"t{i}"))
                assert state.values == out
                assert state.next == ()
                history = list(seen.get_state_history(cfg(f"t{i}")))
                assert len(history) == per_run * (run + 1)
                if durability == "exit":
                    continue
                # This run's checkpoints before its last: each holds the writes of the
                # tasks of the step after it (__start__; start; x, y, z; join).
                tasks_per_step = [1, 1, 3, 1]
                older = list(reversed(history[1:per_run]))
                for snapshot, tasks in zip(older, tasks_per_step, strict=True):
                    tup = reader.get_tuple(snapshot.config)
                    assert tup is not None
                    writers = {task_id for task_id, _, _ in tup.pending_writes}
                    assert len(writers) == tasks, (snapshot.metadata, tup.pending_writes)

        run_threads(n, work)
        assert len(list(reader.list(None))) == n * runs * per_run
