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
from conftest import cfg
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from test_postgres_pipeline import _lock_key, _waiting_statements

from fast_langgraph import RustPostgresCheckpointer

BIG = "large value " * 450  # ~5 KB: stored apart, as a blob
META = {"source": "loop", "step": 0}


def _first(saver, thread: str):
    """Puts a checkpoint with a large value and a counter; returns it and its config."""
    cp = empty_checkpoint()
    v = saver.get_next_version(None, None)
    cp["channel_values"] = {"doc": BIG, "n": 0}
    cp["channel_versions"] = {"doc": v, "n": v}
    return cp, saver.put(cfg(thread), cp, META, dict(cp["channel_versions"]))


def _next(saver, prev, config):
    """Puts the checkpoint after ``prev``, which changes only the counter."""
    cp = empty_checkpoint()
    n = saver.get_next_version(prev["channel_versions"]["n"], None)
    cp["channel_values"] = {"doc": BIG, "n": 1}
    cp["channel_versions"] = {"doc": prev["channel_versions"]["doc"], "n": n}
    return saver.put(config, cp, {**META, "step": 1}, {"n": n})


def _reads_back_whole(saver, thread: str, config) -> None:
    got = saver.get_tuple(cfg(thread))
    assert got is not None
    assert got.config["configurable"]["checkpoint_id"] == config["configurable"]["checkpoint_id"]
    assert got.checkpoint["channel_values"] == {"doc": BIG, "n": 1}


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
        prev, config = _first(saver, "t")
        _delete(pg_db, other, how)
        with psycopg.connect(pg_db) as conn:
            assert conn.execute("SELECT count(*) FROM flg_blobs").fetchone()[0] == 0
        config = _next(saver, prev, config)
        _reads_back_whole(saver, "t", config)
        assert saver._store.check() == []


def test_a_put_whose_blob_is_deleted_while_it_waits_for_its_lock_reads_back_whole(pg_db):
    # The delete commits after the put's statement started (it waited for the thread's lock):
    # the row-locking lookup sees it.
    with RustPostgresCheckpointer(pg_db) as saver:
        saver.setup()
        prev, config = _first(saver, "t")
        pruner = psycopg.connect(pg_db)
        try:
            pruner.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("t"),))
            with ThreadPoolExecutor(1) as ex:
                put = ex.submit(_next, saver, prev, config)
                assert len(_waiting_statements(pg_db)) == 1
                pruner.execute("DELETE FROM flg_blobs WHERE thread_id = 't'")
                pruner.commit()
                config = put.result(60)
        finally:
            pruner.close()
        _reads_back_whole(saver, "t", config)


def test_a_batch_of_puts_refuses_only_those_whose_blob_went(pg_db):
    # Several callers' puts at once are one statement (they queue behind a blocked put on one
    # commit lane); the blobs of half the threads are deleted while it waits on their locks.
    threads = [f"batch-{i}" for i in range(6)]
    with RustPostgresCheckpointer(pg_db, pool_size=2) as saver:
        saver.setup()
        firsts = {t: _first(saver, t) for t in threads}
        _first(saver, "first")
        first_holder = psycopg.connect(pg_db)
        pruner = psycopg.connect(pg_db)
        try:
            first_holder.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("first"),))
            for t in threads:
                pruner.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(t),))
            blocker = threading.Thread(target=_first, args=(saver, "first"))
            blocker.start()
            with ThreadPoolExecutor(len(threads)) as ex:
                futures = {t: ex.submit(_next, saver, *firsts[t]) for t in threads}
                time.sleep(1.0)  # every put queued behind the blocked one
                first_holder.commit()
                blocker.join(60)
                waiting = _waiting_statements(pg_db)
                assert len(waiting) == 1 and waiting[0].startswith("WITH lock AS"), waiting
                assert "unnest($1::int8[])" in waiting[0]
                pruner.execute("DELETE FROM flg_blobs WHERE thread_id = ANY(%s)", (threads[::2],))
                pruner.commit()
                configs = {t: f.result(60) for t, f in futures.items()}
        finally:
            first_holder.close()
            pruner.close()
        for t in threads:
            _reads_back_whole(saver, t, configs[t])
        assert saver._store.check() == []


SNAP = _DeltaSnapshot(["first message", "second message"])


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
        cp = empty_checkpoint()
        v1 = saver.get_next_version(None, None)
        cp["channel_values"] = {"messages": SNAP, "n": 0}
        cp["channel_versions"] = {"messages": v1, "n": v1}
        first = saver.put(cfg("t"), cp, META, dict(cp["channel_versions"]))
        _delete(pg_db, other, how)
        with psycopg.connect(pg_db) as conn:
            assert conn.execute("SELECT count(*) FROM flg_blobs").fetchone()[0] == 0
        nxt = empty_checkpoint()
        v2 = replica.get_next_version(v1, None)
        nxt["channel_values"] = {"messages": _DeltaSnapshot(list(SNAP.value)), "n": 1}
        nxt["channel_versions"] = {"messages": v1, "n": v2}
        config = replica.put(first, nxt, {**META, "step": 1}, {"n": v2})
        for s in (replica, reader):
            got = s.get_tuple(config)
            assert got is not None
            assert got.checkpoint["channel_values"] == {"messages": SNAP, "n": 1}
        # The next step appends a message: a write, and a checkpoint without the channel's
        # value, which LangGraph rebuilds from the snapshot and the writes after it.
        replica.put_writes(config, [("messages", "third message")], "task-1")
        last = empty_checkpoint()
        v3 = replica.get_next_version(v2, None)
        last["channel_values"] = {"n": 2}
        last["channel_versions"] = {"messages": v3, "n": v3}
        config = replica.put(config, last, {**META, "step": 2}, {"messages": v3, "n": v3})
        for s in (replica, reader):
            history = s.get_delta_channel_history(config=config, channels=["messages"])
            assert history == {
                "messages": {"seed": SNAP, "writes": [("task-1", "messages", "third message")]}
            }
        assert replica._store.check() == []


def test_a_batch_run_as_a_transaction_refuses_the_put_whose_blob_went(pg_db):
    # A batch that cannot be one statement (two callers store the same task's write: one
    # statement may not write a row twice) runs as the pipelined transaction, without the
    # guard: the thread's shared lock first, then each call's statement, whose lookup of the
    # blobs its put refers to is a plain read (the lock is held since the transaction's start,
    # so a delete committed before then is seen).
    with RustPostgresCheckpointer(pg_db, pool_size=2) as saver:
        saver.setup()
        prev, config = _first(saver, "t")
        _, writes_to = _first(saver, "w")
        _first(saver, "first")
        first_holder = psycopg.connect(pg_db)
        pruner = psycopg.connect(pg_db)
        try:
            first_holder.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("first"),))
            pruner.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("t"),))
            blocker = threading.Thread(target=_first, args=(saver, "first"))
            blocker.start()
            with ThreadPoolExecutor(3) as ex:
                put = ex.submit(_next, saver, prev, config)
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
        finally:
            first_holder.close()
            pruner.close()
        _reads_back_whole(saver, "t", config)
        assert saver.get_tuple(writes_to).pending_writes == [("task-1", "n", 7)]
        assert saver._store.check() == []
