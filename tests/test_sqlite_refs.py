"""A put that does not change a value stored apart (a blob) refers to the blob its version was
stored with. Several savers may share one SQLite file (two processes of one app, two savers in
one process, the app and a maintenance script). If retention (`delete_thread`,
`prune(strategy="delete")`, `prune_older_than`, `delete_for_runs`) by another of them deleted that blob since, the
put must not store a checkpoint that reads back without the value: it is refused, and the
saver stores the unchanged values again, so the checkpoint reads back whole. The PostgreSQL
counterpart is tests/test_postgres_refs.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from refs_scenarios import (
    META,
    first_put,
    next_put,
    reads_back_whole,
    unchanged_snapshot_after_a_delete,
)

from fast_langgraph import RustSQLiteCheckpointer

RUN = "run-1"


def _first(saver, thread: str):
    """``first_put`` of run ``RUN``."""
    return first_put(saver, thread, {**META, "run_id": RUN})


def _delete(other, how: str, thread: str = "t") -> None:
    """Thread ``thread``'s checkpoints and blobs deleted by ``other``, another saver."""
    if how == "delete_thread":
        other.delete_thread(thread)
    elif how == "prune":
        other.prune([thread], strategy="delete")
    elif how == "prune_older_than":
        later = datetime.now(timezone.utc) + timedelta(seconds=1)
        assert other.prune_older_than(timedelta(0), now=later) == 1
    else:
        other.delete_for_runs([RUN])


HOWS = ["delete_thread", "prune", "prune_older_than", "delete_for_runs"]


@pytest.mark.parametrize("how", HOWS)
def test_a_put_after_another_saver_deleted_the_thread_reads_back_whole(tmp_path, how):
    path = tmp_path / "shared.db"
    with RustSQLiteCheckpointer(path) as saver, RustSQLiteCheckpointer(path) as other:
        prev, config = _first(saver, "t")
        _delete(other, how)
        assert saver.storage_stats()["blobs"] == 0
        config = next_put(saver, prev, config)
        reads_back_whole(saver, "t", config)
        assert saver.check() == []
    with RustSQLiteCheckpointer(path) as fresh:
        reads_back_whole(fresh, "t", config)


DELETER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta, timezone

    from fast_langgraph import RustSQLiteCheckpointer

    path, how, run = sys.argv[1:]
    with RustSQLiteCheckpointer(path) as saver:
        if how == "delete_thread":
            saver.delete_thread("t")
        elif how == "prune":
            saver.prune(["t"], strategy="delete")
        elif how == "prune_older_than":
            later = datetime.now(timezone.utc) + timedelta(seconds=1)
            assert saver.prune_older_than(timedelta(0), now=later) == 1
        else:
            saver.delete_for_runs([run])
    print("deleted")
    """
)


@pytest.mark.parametrize("how", HOWS)
def test_a_put_after_another_process_deleted_the_thread_reads_back_whole(tmp_path, how):
    path = tmp_path / "shared.db"
    with RustSQLiteCheckpointer(path) as saver:
        prev, config = _first(saver, "t")
        done = subprocess.run(
            [sys.executable, "-c", DELETER, str(path), how, RUN],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "deleted"
        assert saver.storage_stats()["blobs"] == 0
        config = next_put(saver, prev, config)
        reads_back_whole(saver, "t", config)
    with RustSQLiteCheckpointer(path) as fresh:
        reads_back_whole(fresh, "t", config)
        assert fresh.check() == []


def test_a_put_refers_to_its_blob_while_it_is_stored(tmp_path):
    # The check refuses only a put whose blob is gone: the next checkpoint of an untouched
    # thread still refers to the stored blob (one blob, not one per checkpoint).
    path = tmp_path / "kept.db"
    with RustSQLiteCheckpointer(path) as saver:
        prev, config = _first(saver, "t")
        before = saver.writer_stats()["calls"]
        config = next_put(saver, prev, config)
        assert saver.writer_stats()["calls"] == before + 1, "the put was refused and stored again"
        reads_back_whole(saver, "t", config)
        assert saver.storage_stats()["blobs"] == 1


# Holds the file's write lock in another process (the sqlite3 module must not open the file in
# this one: two SQLite libraries in one process do not see each other's POSIX locks), deletes
# the blobs of the threads named, and commits when told to.
PRUNER = textwrap.dedent(
    """
    import sqlite3, sys

    path, *threads = sys.argv[1:]
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    conn.execute("BEGIN IMMEDIATE")
    marks = ",".join("?" * len(threads))
    conn.execute(f"DELETE FROM flg_blobs WHERE thread_id IN ({marks})", threads)
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    conn.close()
    print("committed", flush=True)
    """
)


def test_a_group_commit_refuses_only_the_puts_whose_blob_went(tmp_path):
    # Several callers' puts at once are committed together (they queue behind a put waiting
    # for the file's write lock); the blobs of half the threads are deleted while they wait.
    path = tmp_path / "batch.db"
    threads = [f"batch-{i}" for i in range(6)]
    with RustSQLiteCheckpointer(path) as saver:
        firsts = {t: _first(saver, t) for t in threads}
        _first(saver, "first")
        blobs = saver.storage_stats()["blobs"]
        before = saver.writer_stats()
        pruner = subprocess.Popen(
            [sys.executable, "-c", PRUNER, str(path), *threads[::2]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert pruner.stdout is not None and pruner.stdin is not None
            assert pruner.stdout.readline().strip() == "locked"
            blocker = threading.Thread(target=_first, args=(saver, "first"))
            blocker.start()
            time.sleep(0.5)  # the blocker's commit waits for the lock
            with ThreadPoolExecutor(len(threads)) as ex:
                futures = {t: ex.submit(next_put, saver, *firsts[t]) for t in threads}
                time.sleep(1.0)  # every put queued behind the blocked one
                assert saver.writer_stats() == before, "a put committed while the file was locked"
                pruner.stdin.write("commit\n")
                pruner.stdin.flush()
                out, err = pruner.communicate(timeout=60)
                assert pruner.returncode == 0, err
                assert out.strip() == "committed"
                blocker.join(60)
                configs = {t: f.result(60) for t, f in futures.items()}
        finally:
            if pruner.poll() is None:
                pruner.kill()
        for t in threads:
            reads_back_whole(saver, t, configs[t])
        after = saver.writer_stats()
        calls = after["calls"] - before["calls"]
        commits = after["commits"] - before["commits"]
        # The blocker, the six puts, and the three refused ones stored again.
        assert calls == 1 + len(threads) + len(threads[::2])
        assert commits < calls, "no commit carried more than one put"
        # The three deleted blobs stored again, once each, and the blocker's new one.
        assert saver.storage_stats()["blobs"] == blobs + 1
        assert saver.check() == []
    with RustSQLiteCheckpointer(path) as fresh:
        for t in threads:
            reads_back_whole(fresh, t, configs[t])


@pytest.mark.parametrize("how", HOWS)
def test_an_unchanged_delta_snapshot_put_by_another_saver_reads_back_whole(tmp_path, how):
    # A DeltaChannel's snapshot is stored apart whatever its size. A saver that neither wrote
    # nor read the thread (it holds no placement of it) puts a checkpoint that leaves the
    # snapshot unchanged, after a third one deleted the thread: the checkpoint must not refer to
    # the deleted blob and read back without the value.
    path = tmp_path / "snap.db"
    with (
        RustSQLiteCheckpointer(path) as saver,
        RustSQLiteCheckpointer(path) as replica,
        RustSQLiteCheckpointer(path) as other,
        RustSQLiteCheckpointer(path) as reader,
    ):

        def delete() -> None:
            _delete(other, how)
            assert saver.storage_stats()["blobs"] == 0

        unchanged_snapshot_after_a_delete(saver, replica, reader, delete, {**META, "run_id": RUN})
        assert replica.check() == []
