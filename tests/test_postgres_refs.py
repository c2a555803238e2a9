"""A put that does not change a value stored apart (a blob) refers to the blob its version was
stored with. If retention (`delete_thread`, `prune(strategy="delete")`, `delete_for_runs`) of
another replica deleted that blob since, the put must not store a checkpoint that reads back
without the value: it is refused, and the saver stores the unchanged values again, so the
checkpoint reads back whole. Each put path is covered: a put alone (no blob of its own to
write), a batch of puts committed as one statement, and the transaction with the guard on.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from refs_scenarios import (
    first_put,
    next_put,
    reads_back_whole,
    unchanged_snapshot_after_a_delete,
)
from test_postgres_pipeline import _lock_key, _locks_held, _waiting_statements

from fast_langgraph import RustPostgresCheckpointer


def _delete(pg_db: str, other, how: str, thread: str = "t") -> None:
    """Thread ``thread``'s checkpoints and blobs deleted by ``other`` (another replica)."""
    if how == "delete_thread":
        other.delete_thread(thread)
    elif how == "prune":
        other.prune([thread], strategy="delete")
    else:
        # Every checkpoint of the thread is of runs with no run_id: delete by thread's run.
        with psycopg.connect(pg_db) as conn:
            conn.execute(
                "UPDATE flg_checkpoints SET run_id = 'run-1' WHERE thread_id = %s", (thread,)
            )
        other.delete_for_runs(["run-1"])


@pytest.mark.parametrize("guard", [False, True], ids=["alone", "guard"])
@pytest.mark.parametrize("how", ["delete_thread", "prune", "delete_for_runs"])
def test_a_put_after_another_replica_deleted_the_thread_reads_back_whole(pg_db, how, guard):
    with (
        RustPostgresCheckpointer(pg_db, guard=guard) as saver,
        RustPostgresCheckpointer(pg_db) as other,
    ):
        saver.setup()
        prev, config = first_put(saver, "t")
        _delete(pg_db, other, how)
        with psycopg.connect(pg_db) as conn:
            assert conn.execute("SELECT count(*) FROM flg_blobs").fetchone()[0] == 0
        config = next_put(saver, prev, config)
        reads_back_whole(saver, "t", config)
        assert saver._store.check() == []


def test_a_put_whose_blob_is_deleted_while_it_waits_for_its_lock_reads_back_whole(pg_db):
    # The delete commits after the put's statement started (it waited for the thread's lock):
    # the row-locking lookup sees it.
    with RustPostgresCheckpointer(pg_db) as saver:
        saver.setup()
        prev, config = first_put(saver, "t")
        pruner = psycopg.connect(pg_db)
        try:
            pruner.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("t"),))
            with ThreadPoolExecutor(1) as ex:
                put = ex.submit(next_put, saver, prev, config)
                assert len(_waiting_statements(pg_db)) == 1
                pruner.execute("DELETE FROM flg_blobs WHERE thread_id = 't'")
                pruner.commit()
                config = put.result(60)
        finally:
            pruner.close()
        reads_back_whole(saver, "t", config)


def test_a_batch_of_puts_refuses_only_those_whose_blob_went(pg_db):
    # Several callers' puts at once are one statement (they queue behind a blocked put on one
    # commit lane); the blobs of half the threads are deleted while it waits on their locks.
    threads = [f"batch-{i}" for i in range(6)]
    with RustPostgresCheckpointer(pg_db, pool_size=2) as saver:
        saver.setup()
        firsts = {t: first_put(saver, t) for t in threads}
        first_put(saver, "first")
        with _locks_held(pg_db, threads) as (first_holder, pruner):
            blocker = threading.Thread(target=first_put, args=(saver, "first"))
            blocker.start()
            with ThreadPoolExecutor(len(threads)) as ex:
                futures = {t: ex.submit(next_put, saver, *firsts[t]) for t in threads}
                time.sleep(1.0)  # every put queued behind the blocked one
                first_holder.commit()
                blocker.join(60)
                waiting = _waiting_statements(pg_db)
                assert len(waiting) == 1 and waiting[0].startswith("WITH lock AS"), waiting
                assert "unnest($1::int8[])" in waiting[0]
                pruner.execute("DELETE FROM flg_blobs WHERE thread_id = ANY(%s)", (threads[::2],))
                pruner.commit()
                configs = {t: f.result(60) for t, f in futures.items()}
        for t in threads:
            reads_back_whole(saver, t, configs[t])
        assert saver._store.check() == []


@pytest.mark.parametrize("guard", [False, True], ids=["alone", "guard"])
@pytest.mark.parametrize("how", ["delete_thread", "prune", "delete_for_runs"])
def test_an_unchanged_delta_snapshot_put_by_another_replica_reads_back_whole(pg_db, how, guard):
    # A DeltaChannel's snapshot is stored apart whatever its size. A replica that neither wrote
    # nor read the thread (it holds no placement of it) puts a checkpoint that leaves the
    # snapshot unchanged, after a third one deleted the thread: the checkpoint must not refer to
    # the deleted blob and read back without the value.
    with (
        RustPostgresCheckpointer(pg_db, guard=guard) as saver,
        RustPostgresCheckpointer(pg_db, guard=guard) as replica,
        RustPostgresCheckpointer(pg_db) as other,
        RustPostgresCheckpointer(pg_db) as reader,
    ):
        saver.setup()

        def delete() -> None:
            _delete(pg_db, other, how)
            with psycopg.connect(pg_db) as conn:
                assert conn.execute("SELECT count(*) FROM flg_blobs").fetchone()[0] == 0

        unchanged_snapshot_after_a_delete(saver, replica, reader, delete)
        assert replica._store.check() == []


def test_a_batch_run_as_a_transaction_refuses_the_put_whose_blob_went(pg_db):
    # A batch that cannot be one statement (two callers store the same task's write: one
    # statement may not write a row twice) runs as the pipelined transaction, without the
    # guard: the thread's shared lock first, then each call's statement, whose lookup of the
    # blobs its put refers to is a plain read (the lock is held since the transaction's start,
    # so a delete committed before then is seen).
    with RustPostgresCheckpointer(pg_db, pool_size=2) as saver:
        saver.setup()
        prev, config = first_put(saver, "t")
        _, writes_to = first_put(saver, "w")
        first_put(saver, "first")
        with _locks_held(pg_db, ["t"]) as (first_holder, pruner):
            blocker = threading.Thread(target=first_put, args=(saver, "first"))
            blocker.start()
            with ThreadPoolExecutor(3) as ex:
                put = ex.submit(next_put, saver, prev, config)
                same_writes = [
                    ex.submit(saver.put_writes, writes_to, [("n", 7)], "task-1") for _ in range(2)
                ]
                time.sleep(1.0)  # every call queued behind the blocked put
                first_holder.commit()
                blocker.join(60)
                waiting = _waiting_statements(pg_db)
                # The transaction's lock statement, not the one statement of a batch.
                assert waiting == [
                    "SELECT pg_advisory_xact_lock_shared(k) FROM unnest($1::int8[]) AS k ORDER BY k"
                ], waiting
                pruner.execute("DELETE FROM flg_blobs WHERE thread_id = 't'")
                pruner.commit()
                config = put.result(60)
                for f in same_writes:
                    f.result(60)
        reads_back_whole(saver, "t", config)
        assert saver.get_tuple(writes_to).pending_writes == [("task-1", "n", 7)]
        assert saver._store.check() == []
