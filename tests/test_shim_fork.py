"""A fork while another thread of the parent is committing through the shim's SqliteSaver
store: the child lets go of the inherited store (closing it, dropping it, exiting) without
waiting on a lock that a thread of the parent held at the fork (that thread does not exist in
the child to release it); the parent goes on committing.

The child makes no SQLite call here: a child forked while a thread of the parent is inside
SQLite inherits SQLite's own global and per-file mutexes and lock bookkeeping as they were at
that moment, so opening any database there can wait forever, with stock SqliteSaver as with the
shim (docs/shim.md, "Fork"). A child forked while no call runs checkpoints normally
(tests/test_shim_sqlite.py).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from conftest import cfg
from graph_apps import counter_app
from langgraph.checkpoint.sqlite import SqliteSaver

from fast_langgraph.shim import _sqlite
from fast_langgraph.shim._sqlite import AcceleratedSqliteSaver

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork"),
    # Python 3.12+ warns that forking a multi-threaded process may deadlock: that is the case
    # under test.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]

FORKS = 12
CHILD_TIMEOUT = 30.0


def _exit_code(pid: int, timeout: float = CHILD_TIMEOUT) -> int | None:
    """The child's exit code, or None if it did not finish in time (then it is killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _writer(graph, stop: threading.Event, errors: list) -> None:
    i = 0
    try:
        while not stop.is_set():
            graph.invoke({"count": i, "log": []}, cfg(f"parent-{i % 4}"), durability="sync")
            i += 1
    except BaseException as e:  # pragma: no cover - reported by the test
        errors.append(e)


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_fork_while_another_thread_commits(tmp_path: Path, synchronous: str) -> None:
    db = tmp_path / "app.db"
    conn = sqlite3.connect(str(db), check_same_thread=False)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    saver = AcceleratedSqliteSaver(conn)
    assert saver.accelerated
    graph = counter_app().compile(checkpointer=saver)
    graph.invoke({"count": 0, "log": []}, cfg("before"))
    stop, errors = threading.Event(), []
    writer = threading.Thread(target=_writer, args=(graph, stop, errors))
    writer.start()
    codes = []
    try:
        rng = random.Random(7)
        for _ in range(FORKS):
            time.sleep(rng.uniform(0.0, 0.02))
            inherited = saver._flg_store
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                code = 3
                try:
                    # What a child does when it lets go of the parent's saver, or exits
                    # (the atexit hook closes every store): neither may wait on the lock.
                    inherited.close()
                    _sqlite._close_stores()
                    ok = inherited.closed and inherited.forked
                    code = 4
                    # The last reference: the store is dropped here.
                    saver._flg_store = inherited = None
                    code = 0 if ok else 5
                finally:
                    os._exit(code)
            codes.append(_exit_code(pid))
    finally:
        stop.set()
        writer.join()
    assert not errors, errors
    # None would be a child that hung.
    assert codes == [0] * FORKS
    # The parent's store still works after all of it, and its file is sound.
    graph.invoke({"count": 0, "log": []}, cfg("after"))
    saver.close_store()
    conn.close()
    stock = SqliteSaver(sqlite3.connect(str(db), check_same_thread=False))
    try:
        stock_graph = counter_app().compile(checkpointer=stock)
        assert stock_graph.get_state(cfg("after")).values["count"] == 111
        assert stock.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        stock.conn.close()
