"""``RustSQLiteCheckpointer.list()`` reads its rows on a thread of the store, in batches, in one
read transaction, while the caller decodes the batch before (``CheckpointStore.list_batches``).
These tests check that the results are stock ``SqliteSaver``'s (limit, before, filters), that
the listing is one snapshot, that leaving a listing early (``break``, an exception, garbage
collection) ends its read transaction, that a close during a listing raises a clear error,
and that listings work from several threads at once and across ``fork()``."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from fast_langgraph import CheckpointClosedError, RustSQLiteCheckpointer

N = 300


def fill(saver: Any, n: int, *, thread: str | None = None, ns: str = "") -> dict:
    """A thread of ``n`` checkpoints with varied metadata, each with two pending writes."""
    thread = thread or str(uuid.uuid4())
    parent = None
    versions: dict[str, Any] = {}
    for i in range(n):
        cp = empty_checkpoint()
        values = {
            "messages": [
                HumanMessage(f"q{j}", id=f"h{j}") if j % 2 else AIMessage(f"a{j}", id=f"a{j}")
                for j in range(i % 5 + 1)
            ],
            "counter": i,
        }
        versions = {k: saver.get_next_version(versions.get(k), None) for k in values}
        cp["channel_values"] = values
        cp["channel_versions"] = versions
        conf: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
        if parent:
            conf["configurable"]["checkpoint_id"] = parent
        metadata = {
            "source": "loop" if i % 3 else "input",
            "step": i,
            "parents": {"": "p"} if i % 4 == 0 else {},
            "tags": ["even"] if i % 2 == 0 else ["odd"],
        }
        saved = saver.put(conf, cp, metadata, versions)
        parent = saved["configurable"]["checkpoint_id"]
        saver.put_writes(
            saved,
            [("messages", [AIMessage(f"w{i}", id=f"w{i}")]), ("route", f"r{i}")],
            f"t{i}",
            "~x",
        )
    return {"configurable": {"thread_id": thread}}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[RustSQLiteCheckpointer, str, dict]]:
    path = str(tmp_path / "ours.db")
    saver = RustSQLiteCheckpointer(path)
    try:
        yield saver, path, fill(saver, N)
    finally:
        saver.close()


def wal_checkpoint_blocked(path: str) -> bool:
    """Whether a read transaction keeps ``PRAGMA wal_checkpoint(TRUNCATE)`` from finishing.
    Asked by another process: POSIX locks do not conflict within one process, and Python's
    sqlite3 is another copy of SQLite than the store's, which cannot see the store's locks."""
    probe = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], timeout=0)\n"
        "try:\n"
        "    print(conn.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()[0])\n"
        "except sqlite3.OperationalError:\n"
        "    print(1)  # locked for a moment (a connection closing folds the WAL back)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, path], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.strip() == "1"


def released(path: str, timeout: float = 10.0) -> bool:
    """Whether, within ``timeout``, no read transaction blocks a full WAL checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not wal_checkpoint_blocked(path):
            return True
        time.sleep(0.02)
    return False


def grow_wal(saver: RustSQLiteCheckpointer) -> None:
    """Commits past the snapshot of any listing open now, so that it pins the WAL (a listing
    begun after this one reads from the WAL too, and so blocks a checkpoint while open)."""
    fill(saver, 3)


def test_list_equals_stock_sqlite_saver_with_limit_before_and_filters(tmp_path: Path) -> None:
    ours = RustSQLiteCheckpointer(str(tmp_path / "ours.db"))
    conn = sqlite3.connect(str(tmp_path / "stock.db"), check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    stock = SqliteSaver(conn)
    try:
        recorded: list[tuple[str, tuple]] = []
        real_put, real_writes = stock.put, stock.put_writes
        stock.put = lambda *a: recorded.append(("put", a)) or real_put(*a)  # type: ignore[method-assign]
        stock.put_writes = lambda *a: recorded.append(("writes", a)) or real_writes(*a)  # type: ignore[method-assign]
        fill(stock, N, thread="a")
        fill(stock, 20, thread="b")
        fill(stock, 20, thread="a", ns="inner")
        for kind, args in recorded:
            (ours.put if kind == "put" else ours.put_writes)(*args)
        a = {"configurable": {"thread_id": "a"}}
        a_root = {"configurable": {"thread_id": "a", "checkpoint_ns": ""}}
        every = list(stock.list(a_root))
        calls: list[tuple[Any, dict[str, Any]]] = [
            (a, {}),
            (a_root, {}),
            (None, {}),
            (a_root, {"limit": 1}),
            (a_root, {"limit": 300}),
            (a_root, {"limit": 0}),
            (a_root, {"before": every[100].config}),
            (a_root, {"before": every[100].config, "limit": 7}),
            (None, {"before": every[5].config, "limit": 30}),
            (a, {"filter": {"source": "input"}}),
            (a, {"filter": {"source": "loop"}, "limit": 9}),
            (a, {"filter": {"step": 7}}),
            (None, {"filter": {"parents": {"": "p"}}, "limit": 11}),
            (a, {"filter": {"tags": ["odd"], "source": "loop"}}),
            (a, {"filter": {"missing": None}, "limit": 3}),
            (
                {
                    "configurable": {
                        "thread_id": "a",
                        "checkpoint_id": every[42].config["configurable"]["checkpoint_id"],
                    }
                },
                {},
            ),
        ]
        for config, kwargs in calls:
            want = list(stock.list(config, **kwargs))
            got = list(ours.list(config, **kwargs))
            assert got == want, (config, kwargs)
        assert len(list(ours.list(a_root))) == N
    finally:
        ours.close()
        conn.close()


def test_a_listing_is_one_snapshot(db) -> None:
    saver, _, config = db
    it = saver.list(config)
    first = next(it)
    # Deleted and added after the listing began: the listing goes on as it was.
    saver.delete_thread(config["configurable"]["thread_id"])
    fill(saver, 5, thread=config["configurable"]["thread_id"])
    rest = list(it)
    assert [t.metadata["step"] for t in [first, *rest]] == list(range(N - 1, -1, -1))
    assert len(list(saver.list(config))) == 5


def test_an_open_listing_holds_its_transaction_and_break_ends_it(db) -> None:
    saver, path, config = db
    grow_wal(saver)
    it = saver.list(config)
    next(it)
    grow_wal(saver)
    # The listing's snapshot pins the WAL: it is still open, mid-way.
    assert wal_checkpoint_blocked(path)
    for _ in it:
        break
    del it
    assert released(path)


def test_an_exception_in_the_loop_ends_the_transaction(db) -> None:
    saver, path, config = db

    def consume() -> None:
        for tup in saver.list(config):
            if tup.metadata["step"] == N - 3:
                raise RuntimeError("caller's own error")

    grow_wal(saver)
    with pytest.raises(RuntimeError, match="caller's own error"):
        consume()
    grow_wal(saver)
    assert released(path)


def test_a_listing_collected_as_garbage_ends_the_transaction(db) -> None:
    saver, path, config = db

    class Holder:
        pass

    grow_wal(saver)
    holder = Holder()
    holder.it = saver.list(config)  # type: ignore[attr-defined]
    holder.me = holder  # type: ignore[attr-defined]  # a cycle: only the collector frees it
    next(holder.it)  # type: ignore[attr-defined]
    grow_wal(saver)
    assert wal_checkpoint_blocked(path)
    del holder
    gc.collect()
    assert released(path)


def test_a_listing_never_started_ends_its_transaction_when_dropped(db) -> None:
    saver, path, config = db
    it = saver.list(config)
    grow_wal(saver)
    del it
    assert released(path)


def test_a_listing_read_to_the_end_leaves_no_transaction(db) -> None:
    saver, path, config = db
    assert len(list(saver.list(config))) == N
    grow_wal(saver)
    assert released(path)


class ListingsKept:
    """The saver's store, keeping each listing (``CheckpointBatches``) it begins, to be looked
    at after the saver's ``list()`` is done with it."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.listings: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def list_batches(self, **kwargs: Any) -> Any:
        batches = self.store.list_batches(**kwargs)
        self.listings.append(batches)
        return batches


@pytest.mark.parametrize("serde", ["default", "jsonplus"])
def test_each_batch_is_handed_back_to_the_thread_that_read_it(tmp_path: Path, serde: str) -> None:
    """Whether the store builds the tuples (the default serializer: ``next_tuples``) or Python
    decodes the rows (any other: ``__next__``), every batch taken goes back to the reading
    thread to be freed there, not on the caller's thread (docs/checkpointer.md)."""
    saver = RustSQLiteCheckpointer(
        str(tmp_path / "ours.db"), serde=JsonPlusSerializer() if serde == "jsonplus" else None
    )
    config = fill(saver, N)
    kept = ListingsKept(saver._store)
    saver._store = kept
    try:
        assert len(list(saver.list(config))) == N
        for _ in saver.list(config):
            break
    finally:
        saver._store = kept.store
        saver.close()
    whole, first = kept.listings
    # Batches of 1, 2, 4, ... up to 256 checkpoints.
    sizes, size = [], 1
    while sum(sizes) < N:
        sizes.append(min(size, N - sum(sizes)))
        size = min(size * 2, 256)
    assert whole.given_back == len(sizes) > 1
    assert first.given_back == 1


def test_closing_the_saver_during_a_listing_raises_a_clear_error(db) -> None:
    saver, path, config = db
    it = saver.list(config)
    next(it)
    saver.close()
    with pytest.raises(CheckpointClosedError, match="closed"):
        list(it)
    # The listing's thread let go of the file.
    assert released(path)
    with pytest.raises(CheckpointClosedError):
        saver.list(config)


def test_listings_from_several_threads_at_once(db) -> None:
    saver, _, config = db
    want = [t.config for t in saver.list(config)]
    other = fill(saver, 40)

    def run(i: int) -> bool:
        cfg = config if i % 2 else other
        expected = want if i % 2 else [t.config for t in saver.list(other)]
        for _ in range(3):
            got = [t.config for t in saver.list(cfg)]
            if got != expected:
                return False
            # One taken, then left: another listing's thread must not be disturbed.
            it = saver.list(cfg)
            next(it)
            del it
        return True

    with ThreadPoolExecutor(6) as pool:
        assert all(pool.map(run, range(12)))


def test_many_abandoned_listings_leave_no_thread_behind(db) -> None:
    saver, path, config = db
    before = threading.active_count(), _native_threads()
    for _ in range(50):
        it = saver.list(config)
        next(it)
        del it
    deadline = time.monotonic() + 10
    while _native_threads() > before[1] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _native_threads() <= before[1]
    assert released(path)


def _native_threads() -> int:
    """The threads of this process, the store's included (not only Python's)."""
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0


def test_in_memory_listing_works_and_is_lazy_in_decoding() -> None:
    with RustSQLiteCheckpointer(":memory:") as saver:
        config = fill(saver, 40)
        got = list(saver.list(config, limit=5))
        assert [t.metadata["step"] for t in got] == [39, 38, 37, 36, 35]
        assert len(list(saver.list(config))) == 40
        it = saver.list(config)
        next(it)
        saver.close()
        with pytest.raises(CheckpointClosedError):
            list(it)


def test_a_refused_filter_raises_at_the_call() -> None:
    with RustSQLiteCheckpointer(":memory:") as saver:
        with pytest.raises(Exception, match="quote or backslash"):
            saver.list(None, filter={'a"b': 2**70})


FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from test_list_stream import fill
    from fast_langgraph import CheckpointError, RustSQLiteCheckpointer

    saver = RustSQLiteCheckpointer(sys.argv[1])
    config = fill(saver, 120)
    it = saver.list(config)
    first = next(it)
    pid = os.fork()
    if pid == 0:
        try:
            next(it)
            print("child continued the parent's listing", flush=True)
        except CheckpointError as e:
            print("child refused:", "fork" in str(e), flush=True)
        print("child lists", len(list(saver.list(config))), flush=True)
        del it
        saver.close()
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
    print("parent lists", 1 + len(list(it)), flush=True)
    saver.close()
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_listing_open_across_fork(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore::DeprecationWarning",
            "-c",
            FORK_SCRIPT,
            str(tmp_path / "f.db"),
            str(Path(__file__).parent),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "child refused: True",
        "child lists 120",
        "child exit 0",
        "parent lists 120",
    ]
