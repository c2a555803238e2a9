"""``list()`` decodes its rows in batches with Python's garbage collector paused
(fast_langgraph/checkpoint/_batches.py). These tests check what that must never change: the
results (equal to stock SqliteSaver's, in order), laziness (a caller reading a few checkpoints
decodes few), where a decode error is raised, and the collector's state afterwards (after a
full read, an early ``break``, an error, nested lists, lists in several threads, a fork), for
RustSQLiteCheckpointer, RustPostgresCheckpointer and the shim's SqliteSaver."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.sqlite import SqliteSaver

from fast_langgraph import RustPostgresCheckpointer, RustSerializer, RustSQLiteCheckpointer
from fast_langgraph.checkpoint import _batches
from fast_langgraph.checkpoint._batches import collector_paused, decoded
from fast_langgraph.shim._sqlite import AcceleratedSqliteSaver

# More checkpoints than the batches 1, 2, 4, ..., 256 (511 rows) hold: the last batches are
# the largest, and the sequence ends with a partial one.
N = 530
BOOM = "boom: this write cannot be read"


class Probe(RustSerializer):
    """RustSerializer that records, for each decode, whether the collector was on, and fails
    on the value ``BOOM``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.enabled_during: set[bool] = set()
        self.lock = threading.Lock()

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        value = super().loads_typed(data)
        with self.lock:
            self.calls += 1
            self.enabled_during.add(gc.isenabled())
        if value == BOOM:
            raise ValueError(BOOM)
        return value


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    """Every test starts with the collector on and no pause in progress, and ends so."""
    assert gc.isenabled()
    assert _batches._depth == 0
    yield
    was_on = gc.isenabled()
    gc.enable()
    assert was_on, "the test left the garbage collector off"
    assert _batches._depth == 0


def fill(saver: Any, n: int, *, thread: str | None = None, boom_at: int | None = None) -> dict:
    """A thread of ``n`` checkpoints, every channel new at every step (so every saver returns
    the same channel values), each with two pending writes; returns its config."""
    thread = thread or str(uuid.uuid4())
    parent = None
    versions: dict[str, Any] = {}
    for i in range(n):
        cp = empty_checkpoint()
        values = {
            "messages": [
                HumanMessage(f"question {j}", id=f"h{j}") if j % 2 else AIMessage(f"answer {j}")
                for j in range(i % 4 + 1)
            ],
            "counter": i,
        }
        versions = {k: saver.get_next_version(versions.get(k), None) for k in values}
        cp["channel_values"] = values
        cp["channel_versions"] = versions
        conf: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        if parent:
            conf["configurable"]["checkpoint_id"] = parent
        saved = saver.put(conf, cp, {"source": "loop", "step": i, "parents": {}}, versions)
        parent = saved["configurable"]["checkpoint_id"]
        saver.put_writes(
            saved,
            [
                ("messages", [AIMessage(content=f"w{i}", id=f"w{i}")]),
                ("route", BOOM if i == boom_at else f"r{i}"),
            ],
            f"task-{i}",
            "~x",
        )
    return {"configurable": {"thread_id": thread}}


@pytest.fixture
def saver(tmp_path: Path) -> Iterator[RustSQLiteCheckpointer]:
    with RustSQLiteCheckpointer(str(tmp_path / "ours.db"), serde=Probe()) as s:
        yield s


def probe(saver: Any) -> Probe:
    assert isinstance(saver.serde, Probe)
    return saver.serde


# -- the helper itself ----------------------------------------------------------------------


def test_decoded_yields_every_row_in_order_and_pauses_only_inside_batches() -> None:
    seen: list[bool] = []

    def decode(row: int) -> int:
        seen.append(gc.isenabled())
        return row * 2

    out = []
    for value in decoded(range(1000), decode):
        # The caller runs with the collector on.
        assert gc.isenabled()
        out.append(value)
    assert out == [r * 2 for r in range(1000)]
    assert seen == [False] * 1000


def test_decoded_stays_lazy() -> None:
    taken: list[int] = []
    it = decoded(range(10_000), lambda r: taken.append(r) or r)
    read = 0
    for k in (1, 2, 5, 30, 100, 700):
        assert [next(it) for _ in range(k)] == list(range(read, read + k))
        read += k
        # Never more than twice what was read (plus one) decoded, nor a batch beyond it.
        assert read <= len(taken) <= min(2 * read + 1, read + _batches.MOST)


def test_decoded_raises_an_error_at_its_row() -> None:
    def decode(row: int) -> int:
        if row == 300:
            raise KeyError(row)
        return row

    out = []
    with pytest.raises(KeyError) as e:
        for value in decoded(range(1000), decode):
            assert gc.isenabled()
            out.append(value)
    assert e.value.args == (300,)
    assert out == list(range(300))
    assert gc.isenabled()


def test_pauses_nest_and_restore_what_the_first_found() -> None:
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "a pause turned on a collector the user had turned off"
    finally:
        gc.enable()


def test_a_pause_left_by_an_exception_restores_the_collector() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("x")
    assert gc.isenabled()


def test_overlapping_pauses_in_threads_restore_once_the_last_ends() -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    states: dict[str, bool] = {}

    def first() -> None:
        with collector_paused():
            first_in.set()
            second_in.wait(10)
        states["after first"] = gc.isenabled()
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with collector_paused():
            second_in.set()
            first_out.wait(10)
            states["second, first gone"] = gc.isenabled()
        states["after both"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert states == {"after first": False, "second, first gone": False, "after both": True}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@pytest.mark.parametrize("where", ["this thread", "another thread"])
def test_a_child_forked_during_a_pause_gets_the_collector_back(where: str) -> None:
    """A child forked while a batch decodes (in the forking thread, or another one that does
    not exist in the child) starts with the collector on and pauses normally."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with collector_paused():
            entered.set()
            release.wait(20)

    def child_checks() -> int:
        ok = gc.isenabled() and _batches._depth == 0
        with collector_paused():
            ok = ok and not gc.isenabled()
        return 0 if ok and gc.isenabled() else 1

    def fork_and_wait() -> int:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child_checks()
            finally:
                os._exit(code)
        return os.waitpid(pid, 0)[1]

    if where == "this thread":
        with collector_paused():
            status = fork_and_wait()
        assert gc.isenabled()
    else:
        holder = threading.Thread(target=hold)
        holder.start()
        assert entered.wait(20)
        try:
            status = fork_and_wait()
            assert not gc.isenabled()  # the parent's pause goes on
        finally:
            release.set()
            holder.join(20)
        assert gc.isenabled()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# -- RustSQLiteCheckpointer -------------------------------------------------------------------


def test_list_equals_stock_sqlite_saver(tmp_path: Path) -> None:
    ours = RustSQLiteCheckpointer(str(tmp_path / "ours.db"))
    conn = sqlite3.connect(str(tmp_path / "stock.db"), check_same_thread=False)
    stock = SqliteSaver(conn)
    try:
        thread = "same"
        # The same checkpoints (ids included) into both.
        recorded: list[tuple] = []
        real_put, real_writes = stock.put, stock.put_writes
        stock.put = lambda *a: recorded.append(("put", a)) or real_put(*a)  # type: ignore[method-assign]
        stock.put_writes = lambda *a: recorded.append(("writes", a)) or real_writes(*a)  # type: ignore[method-assign]
        fill(stock, N, thread=thread)
        for kind, args in recorded:
            (ours.put if kind == "put" else ours.put_writes)(*args)
        config = {"configurable": {"thread_id": thread}}
        want = list(stock.list(config))
        got = list(ours.list(config))
        assert len(got) == N
        assert got == want
        # limit, before and a filter: the same slices.
        assert list(ours.list(config, limit=300)) == want[:300]
        assert list(ours.list(config, before=want[100].config, limit=5)) == want[101:106]
        assert list(ours.list(config, filter={"step": 7})) == [want[N - 1 - 7]]
    finally:
        ours.close()
        conn.close()


def test_list_decodes_with_the_collector_paused_and_the_caller_runs_with_it_on(saver) -> None:
    config = fill(saver, N)
    for _ in saver.list(config):
        assert gc.isenabled()
    assert probe(saver).enabled_during == {False}
    assert gc.isenabled()


def test_list_with_the_collector_off_leaves_it_off(saver) -> None:
    config = fill(saver, 40)
    gc.disable()
    try:
        assert len(list(saver.list(config))) == 40
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_list_read_in_part_decodes_little_and_leaves_the_collector_on(saver) -> None:
    config = fill(saver, N)
    p = probe(saver)
    p.calls = 0
    assert len(list(saver.list(config, limit=3))) == 3
    three_rows, p.calls = p.calls, 0
    it = saver.list(config)
    first = [next(it) for _ in range(3)]
    assert [t.metadata["step"] for t in first] == [N - 1, N - 2, N - 3]
    # 3 rows read: the batches of 1 and 2 rows are decoded, and the next one only when asked.
    assert p.calls == three_rows
    assert gc.isenabled()
    for tup in saver.list(config):
        if tup.metadata["step"] == N - 50:
            break
    assert gc.isenabled()
    del it  # an abandoned generator leaves nothing paused
    assert gc.isenabled()


def test_list_with_a_limit_and_a_python_filter_decodes_a_bounded_number_of_rows(saver) -> None:
    config = fill(saver, N)
    p = probe(saver)
    p.calls = 0
    assert len(list(saver.list(config, limit=7))) == 7
    seven_rows, p.calls = p.calls, 0

    class AnyStep:
        """A filter value compared in Python (not JSON): every step matches."""

        def __eq__(self, other: object) -> bool:
            return isinstance(other, int)

    got = list(saver.list(config, filter={"step": AnyStep()}, limit=4))
    assert [t.metadata["step"] for t in got] == [N - 1, N - 2, N - 3, N - 4]
    # Batches of 1, 2 and 4 rows: no more than 7 rows decoded.
    assert 0 < p.calls <= seven_rows
    assert gc.isenabled()


def test_a_decode_error_is_raised_at_its_row_after_the_rows_before_it(saver) -> None:
    bad_step = N - 200
    config = fill(saver, N, boom_at=bad_step)
    got = []
    with pytest.raises(ValueError, match="boom"):
        for tup in saver.list(config):
            got.append(tup.metadata["step"])
    assert got == list(range(N - 1, bad_step, -1))
    assert gc.isenabled()


def test_nested_lists_restore_the_collector(tmp_path: Path, saver) -> None:
    other = RustSQLiteCheckpointer(str(tmp_path / "other.db"))
    other_config = fill(other, 10)
    inner: list[int] = []

    class Nesting(Probe):
        def loads_typed(self, data: tuple[str, bytes]) -> Any:
            if not inner:
                inner.append(len(list(other.list(other_config))))
                assert not gc.isenabled()
            return super().loads_typed(data)

    saver.serde = Nesting()
    config = fill(saver, 30)
    assert len(list(saver.list(config))) == 30
    assert inner == [10]
    assert gc.isenabled()
    other.close()


@pytest.mark.parametrize("user_collector", ["on", "off"])
def test_lists_in_several_threads_restore_the_collector(saver, user_collector: str) -> None:
    config = fill(saver, 300)
    want = [t.checkpoint["id"] for t in saver.list(config)]
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def reader(k: int) -> None:
        try:
            start.wait(20)
            for _ in range(3):
                ids = []
                for i, tup in enumerate(saver.list(config)):
                    ids.append(tup.checkpoint["id"])
                    if k == 0 and i == 20:
                        break  # one reader stops early every time
                results.append(ids)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    if user_collector == "off":
        gc.disable()
    try:
        threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors
        assert gc.isenabled() is (user_collector == "on")
    finally:
        gc.enable()
    assert sorted(len(r) for r in results) == [21] * 3 + [300] * 9
    assert all(r == want[: len(r)] for r in results)
    assert probe(saver).enabled_during == {False}


async def test_alist_restores_the_collector(saver) -> None:
    config = fill(saver, 40)
    got = [t async for t in saver.alist(config)]
    assert [t.metadata["step"] for t in got] == list(range(39, -1, -1))
    assert gc.isenabled()


# -- RustPostgresCheckpointer ----------------------------------------------------------------


def test_postgres_list_pauses_the_collector_and_restores_it(pg_db: str) -> None:
    with RustPostgresCheckpointer(pg_db, serde=Probe()) as saver:
        saver.setup()
        bad_step = N - 100
        config = fill(saver, N, boom_at=bad_step)
        got = []
        with pytest.raises(ValueError, match="boom"):
            for tup in saver.list(config):
                assert gc.isenabled()
                got.append(tup.metadata["step"])
        assert got == list(range(N - 1, bad_step, -1))
        assert probe(saver).enabled_during == {False}
        assert [t.metadata["step"] for t in saver.list(config, limit=3)] == [N - 1, N - 2, N - 3]
        it = saver.list(config)
        next(it)
        del it
        assert gc.isenabled()


# -- the shim's SqliteSaver ------------------------------------------------------------------


def test_shim_list_equals_stock_and_restores_the_collector(tmp_path: Path) -> None:
    stock_conn = sqlite3.connect(str(tmp_path / "stock.db"), check_same_thread=False)
    fast_conn = sqlite3.connect(str(tmp_path / "fast.db"), check_same_thread=False)
    stock, fast = SqliteSaver(stock_conn), AcceleratedSqliteSaver(fast_conn, serde=Probe())
    try:
        stock.setup()
        fast.setup()
        recorded: list[tuple] = []
        real_put, real_writes = stock.put, stock.put_writes
        stock.put = lambda *a: recorded.append(("put", a)) or real_put(*a)  # type: ignore[method-assign]
        stock.put_writes = lambda *a: recorded.append(("writes", a)) or real_writes(*a)  # type: ignore[method-assign]
        config = fill(stock, N)
        for kind, args in recorded:
            (fast.put if kind == "put" else fast.put_writes)(*args)
        assert fast.accelerated
        got = []
        for tup in fast.list(config):
            assert gc.isenabled()
            got.append(tup)
        assert got == list(stock.list(config))
        assert probe(fast).enabled_during == {False}
    finally:
        fast.close_store()
        stock_conn.close()
        fast_conn.close()
