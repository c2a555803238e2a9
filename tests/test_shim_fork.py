"""A fork while another thread of the parent is committing through the shim's SqliteSaver
store: the child lets go of the inherited store (closing it, dropping it, exiting) without
waiting on a lock that a thread of the parent held at the fork (that thread does not exist in
the child to release it), and opens and uses stores of its own.

What the child does not do here is write to the parent's file: a child forked in the middle of
a commit inherits SQLite's own per-process lock bookkeeping as it was at that moment, so its new
connections to that file can wait for a lock nobody will release, with stock SqliteSaver as
with the shim (docs/shim.md, "Fork").
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
        for k in range(FORKS):
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
                    assert inherited.closed and inherited.forked
                    code = 4
                    # The last reference: the store is dropped here.
                    saver._flg_store = inherited = None
                    code = 5
                    # A saver of the child's own, on a file of its own.
                    own_conn = sqlite3.connect(str(tmp_path / f"child-{k}.db"))
                    own = AcceleratedSqliteSaver(own_conn)
                    own_graph = counter_app().compile(checkpointer=own)
                    out = own_graph.invoke({"count": 0, "log": []}, cfg("child"))
                    own.close_store()
                    own_conn.close()
                    code = 0 if out["count"] == 111 else 6
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
    # Each child's turn is in its own file, which stock reads.
    for k in range(FORKS):
        with SqliteSaver.from_conn_string(str(tmp_path / f"child-{k}.db")) as own:
            assert own.get_tuple(cfg("child")).checkpoint["channel_values"]["count"] == 111


def test_a_store_dropped_in_a_child_lets_go_of_the_parents_connections(tmp_path: Path) -> None:
    """Dropping the inherited store in the child neither blocks nor closes the parent's
    connections: the parent keeps committing on them afterwards."""
    db = tmp_path / "app.db"
    conn = sqlite3.connect(str(db), check_same_thread=False)
    saver = AcceleratedSqliteSaver(conn)
    graph = counter_app().compile(checkpointer=saver)
    graph.invoke({"count": 0, "log": []}, cfg("t"))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            saver._flg_store = None  # the last reference: the store is dropped here
            code = 0
        finally:
            os._exit(code)
    assert _exit_code(pid) == 0
    graph.invoke({"count": 0, "log": []}, cfg("t"))
    assert len(list(saver.list(cfg("t")))) == 10
    saver.close_store()
    conn.close()
