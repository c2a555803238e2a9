"""RustPostgresCheckpointer's pipelined write transactions: a batch of puts and writes is sent
in one network write (BEGIN, the threads' shared advisory locks, every statement, COMMIT).
These tests check that it stays one transaction: a statement that fails takes the whole batch
back (each call is then run on its own and gets its own result), and a connection dropped
while the batch waits on its lock loses nothing and stores nothing twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest
from conftest import cfg
from pg_server import put_values as _put

from fast_langgraph import CheckpointError, RustPostgresCheckpointer

POISON = "poison"


@pytest.fixture
def saver(pg_db):
    s = RustPostgresCheckpointer(pg_db, pool_size=4)
    s.setup()
    yield s
    s.close()


def _lock_key(thread_id: str) -> int:
    """The advisory lock key of a thread, as src/checkpoint/postgres/sql.rs computes it."""
    h = 0xCBF29CE484222325
    for b in b"flg:" + thread_id.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= 1 << 63 else h


@contextmanager
def _locks_held(
    pg_db: str, threads: list[str]
) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    """Two connections outside the saver: the first holds thread "first"'s advisory lock (a put
    of it blocks, holding a commit lane, while other puts queue into one batch behind it), the
    second those of ``threads`` (their puts then wait, as behind a retention); commit the first
    to let the batch go, and delete through the second. Both closed (their locks let go) on
    exit."""
    first_holder = psycopg.connect(pg_db)
    pruner = psycopg.connect(pg_db)
    try:
        first_holder.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("first"),))
        for t in threads:
            pruner.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(t),))
        yield first_holder, pruner
    finally:
        first_holder.close()
        pruner.close()


def _count(pg_db, sql: str, *args) -> int:
    with psycopg.connect(pg_db) as conn:
        return conn.execute(sql, args).fetchone()[0]


def test_a_failing_statement_rolls_back_its_batch_and_the_others_are_stored(pg_db, saver):
    # A trigger makes the server refuse every checkpoint of one thread, after its blobs were
    # inserted by the same statement.
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(
            f"""CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.thread_id = '{POISON}' THEN RAISE EXCEPTION 'refused by the test'; END IF;
                RETURN NEW;
            END $$"""
        )
        conn.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON flg_checkpoints "
            "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        )
    barrier = threading.Barrier(12)
    writes_cfg = _put(saver, "w", {"x": 0})

    def one(i: int):
        barrier.wait()
        if i == 0:
            with pytest.raises(CheckpointError) as e:
                _put(saver, POISON, {"x": "lost"})
            return str(e.value)
        if i == 1:
            # A task's writes may share the failing batch: they are stored once, on retry.
            saver.put_writes(writes_cfg, [("x", i), ("y", -i)], task_id="task-1")
            return None
        return _put(saver, f"good-{i}", {"x": i, "y": "v" * 500})

    for _ in range(5):
        before = saver.writer_stats()
        with ThreadPoolExecutor(12) as ex:
            results = list(ex.map(one, range(12)))
        after = saver.writer_stats()
        assert POISON in results[0] and "refused by the test" in results[0]
        for i in range(2, 12):
            stored = saver.get_tuple(results[i])
            assert stored is not None and stored.checkpoint["channel_values"]["x"] == i
        if after["calls"] - before["calls"] > after["commits"] - before["commits"] + 1:
            break  # some calls shared a commit with the failing put: the case under test
    # Nothing of the refused checkpoint is stored, not even its blobs.
    assert _count(pg_db, "SELECT count(*) FROM flg_checkpoints WHERE thread_id = %s", POISON) == 0
    assert _count(pg_db, "SELECT count(*) FROM flg_blobs WHERE thread_id = %s", POISON) == 0
    # The writes are stored exactly once (2 rows), whichever batch carried them.
    assert _count(pg_db, "SELECT count(*) FROM flg_writes WHERE thread_id = 'w'") == 2
    writes = saver.get_tuple(writes_cfg).pending_writes
    assert sorted((c, v) for _, c, v in writes) == [("x", 1), ("y", -1)]


def test_connection_dropped_while_a_put_waits_on_its_lock(pg_server, pg_db, saver):
    first = _put(saver, "held", {"x": 1})
    dbname = pg_db.rsplit("/", 1)[1]
    with psycopg.connect(pg_db, autocommit=True) as holder:
        # The exclusive lock a prune would hold: the put's pipeline (BEGIN, its shared lock,
        # the put, COMMIT) is sent and waits at the lock.
        holder.execute("SELECT pg_advisory_lock(%s)", (_lock_key("held"),))
        out: list = []
        t = threading.Thread(
            target=lambda: out.append(
                _put(saver, "held", {"x": 2}, parent=first["configurable"]["checkpoint_id"])
            )
        )
        t.start()
        assert _wait_for_lock_wait(pg_server, dbname) == 1
        # The connection dies mid-transaction: the server rolls back what it had not committed.
        pg_server.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            f"AND datname = '{dbname}' AND application_name = 'fast-langgraph'"
        )
        time.sleep(0.2)
        holder.execute("SELECT pg_advisory_unlock(%s)", (_lock_key("held"),))
    t.join(60)
    # Retried on a new connection, once: stored once, whole.
    assert len(out) == 1
    assert saver.pool_stats()["reconnects"] >= 1
    history = list(saver.list(cfg("held")))
    assert [h.checkpoint["channel_values"]["x"] for h in history] == [2, 1]
    assert (
        history[0].parent_config["configurable"]["checkpoint_id"]
        == (first["configurable"]["checkpoint_id"])
    )


def _wait_for_lock_wait(pg_server, dbname: str) -> int:
    """How many of the saver's connections wait on a lock, once one does (or after 30 s)."""
    deadline = time.monotonic() + 30
    waiting = 0
    while waiting == 0 and time.monotonic() < deadline:
        waiting = int(
            pg_server.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                f"AND datname = '{dbname}' AND application_name = 'fast-langgraph'"
            )
        )
        time.sleep(0.05)
    return waiting


# Text that deflates poorly: a value too large to be kept inside the checkpoint row.
_LARGE = " ".join(f"{(i * 2654435761) % 1000003:x}" for i in range(2000))


@pytest.mark.parametrize(
    ("values", "blobs"),
    [({"x": 1}, 0), ({"x": 1, "big": _LARGE}, 1)],
    ids=["no-blob", "with-blob"],
)
def test_a_lone_put_takes_its_lock_and_returns_committed(pg_server, pg_db, saver, values, blobs):
    # A put without deltas on its own is one statement in a transaction of the server's: it
    # waits for a prune's exclusive lock, stores nothing before, returns only once committed,
    # and leaves no transaction open. A put with no blob to store runs a statement of its own
    # (no blob inserts); both are held to this.
    dbname = pg_db.rsplit("/", 1)[1]
    with psycopg.connect(pg_db, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (_lock_key("alone"),))
        out: list = []
        t = threading.Thread(target=lambda: out.append(_put(saver, "alone", values)))
        t.start()
        assert _wait_for_lock_wait(pg_server, dbname) == 1
        assert not out
        assert _count(pg_db, "SELECT count(*) FROM flg_checkpoints WHERE thread_id = 'alone'") == 0
        assert _count(pg_db, "SELECT count(*) FROM flg_blobs WHERE thread_id = 'alone'") == 0
        holder.execute("SELECT pg_advisory_unlock(%s)", (_lock_key("alone"),))
        t.join(60)
    assert len(out) == 1
    assert _count(pg_db, "SELECT count(*) FROM flg_checkpoints WHERE thread_id = 'alone'") == 1
    assert _count(pg_db, "SELECT count(*) FROM flg_blobs WHERE thread_id = 'alone'") == blobs
    assert (
        _count(
            pg_db,
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%' "
            "AND application_name = 'fast-langgraph'",
        )
        == 0
    )
    assert saver.get_tuple(cfg("alone")).checkpoint["channel_values"] == values
    # Stored again under the same id (a retried put): the row is replaced, not doubled.
    again = {"x": 2, **({"big": _LARGE[::-1]} if blobs else {})}
    cp_id = out[0]["configurable"]["checkpoint_id"]
    cp = saver.get_tuple(out[0]).checkpoint
    cp["channel_values"] = again
    cp["channel_versions"] = {k: saver.get_next_version(None, None) for k in again}
    saver.put(cfg("alone", checkpoint_ns=""), cp, {"step": 1}, cp["channel_versions"])
    assert _count(pg_db, "SELECT count(*) FROM flg_checkpoints WHERE thread_id = 'alone'") == 1
    got = saver.get_tuple(out[0])
    assert got.checkpoint["id"] == cp_id and got.checkpoint["channel_values"] == again
    assert got.metadata["step"] == 1


def test_two_savers_storing_one_checkpoint_at_once_both_succeed_and_store_it_once(
    pg_server, pg_db, saver
):
    # A lone put with no blob to store is first a plain insert; when the checkpoint is already
    # stored (here by another replica's put of the same id, committed while this one waited),
    # the insert fails on the primary key, stores nothing, and the put replaces the row as the
    # upsert does. Both calls succeed, one row stays, and it is one of the two puts whole.
    from langgraph.checkpoint.base import empty_checkpoint

    other = RustPostgresCheckpointer(pg_db, pool_size=2)
    dbname = pg_db.rsplit("/", 1)[1]
    try:
        cp = empty_checkpoint()
        puts = []
        for step, s in ((1, saver), (2, other)):
            c = {**cp, "channel_values": {"x": step}}
            c["channel_versions"] = {"x": s.get_next_version(None, None)}
            puts.append((s, c, {"source": "loop", "step": step}))
        with psycopg.connect(pg_db, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (_lock_key("same-id"),))
            out: list = []
            errors: list = []

            def run(s, c, metadata):
                try:
                    out.append(
                        s.put(cfg("same-id", checkpoint_ns=""), c, metadata, c["channel_versions"])
                    )
                except Exception as e:  # reported below
                    errors.append(e)

            threads = [threading.Thread(target=run, args=p) for p in puts]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            waiting = 0
            while waiting < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
                waiting = _count(
                    pg_db,
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = %s AND application_name = 'fast-langgraph'",
                    dbname,
                )
            # Both puts wait on the thread's lock, neither has stored anything.
            assert waiting == 2
            assert not out and not errors
            holder.execute("SELECT pg_advisory_unlock(%s)", (_lock_key("same-id"),))
            for t in threads:
                t.join(60)
        assert not errors, errors
        assert [o["configurable"]["checkpoint_id"] for o in out] == [cp["id"], cp["id"]]
        assert (
            _count(pg_db, "SELECT count(*) FROM flg_checkpoints WHERE thread_id = 'same-id'") == 1
        )
        got = saver.get_tuple(cfg("same-id"))
        assert got.checkpoint["id"] == cp["id"]
        step = got.checkpoint["channel_values"]["x"]
        assert step in (1, 2) and got.metadata["step"] == step
    finally:
        other.close()


def test_callers_waiting_for_the_one_connection_are_each_woken(pg_db):
    # pool_size=1: every call but one waits for the connection; each connection given back
    # wakes a waiting caller (only when one waits). Every caller gets it, reads back what it
    # stored, and no second connection is opened. A caller never woken would end its wait by
    # the pool_timeout, then find the connection free: no call would fail, so the pool's
    # counters are what tells. Waits did happen (the wait path is exercised), and none ended
    # by the timeout.
    with RustPostgresCheckpointer(pg_db, pool_size=1, pool_timeout=20) as s:
        s.setup()
        before = s.pool_stats()

        def work(t: int) -> int:
            for i in range(15):
                _put(s, f"wake-{t}", {"i": i})
                assert s.get_tuple(cfg(f"wake-{t}")).checkpoint["channel_values"] == {"i": i}
            return t

        with ThreadPoolExecutor(8) as ex:
            assert sorted(ex.map(work, range(8))) == list(range(8))
        after = s.pool_stats()
        assert after["waits"] - before["waits"] > 0
        assert after["wait_seconds"] > before["wait_seconds"]
        assert after["waits_timed_out"] == before["waits_timed_out"] == 0
        assert after["timeouts"] == 0
        assert (after["open"], after["idle"], after["waiting"], after["opened"]) == (1, 1, 0, 1)


def _waiting_statements(pg_db: str) -> list[str]:
    """The statements of the saver's connections that wait on a lock, once one does (or after
    30 s)."""
    deadline = time.monotonic() + 30
    while True:
        with psycopg.connect(pg_db, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() AND application_name = 'fast-langgraph'"
            ).fetchall()
        if rows or time.monotonic() > deadline:
            return [r[0] for r in rows]
        time.sleep(0.05)


def _items(thread_id: str, n: int) -> list[str]:
    """A list too large to travel inside the checkpoint (a blob), long enough for deltas. A
    delta extends a list this process stored, whose items are the very objects at the start of
    the new one: slice the same list for each put."""
    return [f"{thread_id}-{i}-" + "x" * 300 for i in range(n)]


def _delta_rows(pg_db: str, thread_id: str) -> int:
    return _count(
        pg_db,
        "SELECT count(*) FROM flg_blobs WHERE thread_id = %s AND delta_base IS NOT NULL",
        thread_id,
    )


def test_a_delta_put_sees_what_a_prune_deleted_while_it_waited(pg_db, saver):
    # A put whose list value is a delta is one statement that takes its thread's lock itself.
    # The statement sees the database as it was when it started, before the lock was granted:
    # when a prune deletes the delta's base while the put waits, a plain read would still find
    # the base and store a delta over nothing. Its row-locking read of the base sees the delete;
    # the put is refused and the saver stores the full list instead.
    def run(thread_id: str, prune: bool) -> None:
        items = _items(thread_id, 24)
        first = _put(saver, thread_id, {"items": items[:16]})
        assert _count(pg_db, "SELECT count(*) FROM flg_blobs WHERE thread_id = %s", thread_id) == 1
        with psycopg.connect(pg_db) as pruner:
            pruner.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(thread_id),))
            out: list = []
            parent = first["configurable"]["checkpoint_id"]
            t = threading.Thread(
                target=lambda: out.append(_put(saver, thread_id, {"items": items}, parent=parent))
            )
            t.start()
            # One statement, waiting on the lock: no transaction of its own was opened first.
            waiting = _waiting_statements(pg_db)
            assert len(waiting) == 1 and waiting[0].startswith("WITH lock AS"), waiting
            if prune:
                pruner.execute("DELETE FROM flg_blobs WHERE thread_id = %s", (thread_id,))
            pruner.commit()
            t.join(60)
        assert len(out) == 1
        got = saver.get_tuple(cfg(thread_id)).checkpoint["channel_values"]["items"]
        assert got == items
        assert saver._store.check() == []
        # Not pruned: stored as a delta over the first list. Pruned: stored whole, and no
        # delta row is left whose base is gone.
        assert _delta_rows(pg_db, thread_id) == (0 if prune else 1)

    run("kept", prune=False)
    run("pruned", prune=True)


def test_a_batch_of_delta_puts_is_one_statement_and_refuses_only_a_put_whose_base_went(pg_db):
    # Puts with deltas of several callers at once are one statement (no BEGIN, lock statement
    # nor COMMIT). When a prune deletes one put's base while the statement waits on the lock,
    # that put alone stores nothing (the saver then stores its list whole); the others are
    # stored as deltas by the same statement.
    threads = [f"batch-{i}" for i in range(6)]
    # One commit lane: a put holds it while the others queue up into one batch behind it.
    with RustPostgresCheckpointer(pg_db, pool_size=2) as saver:
        saver.setup()
        items = {t: _items(t, 24) for t in threads}
        parents = {t: _put(saver, t, {"items": items[t][:16]}) for t in threads}
        _put(saver, "first", {"x": 0})
        with _locks_held(pg_db, threads) as (first_holder, pruner):
            before = saver.writer_stats()
            blocker = threading.Thread(target=_put, args=(saver, "first", {"x": 1}))
            blocker.start()
            assert len(_waiting_statements(pg_db)) == 1
            with ThreadPoolExecutor(len(threads)) as ex:
                futures = [
                    ex.submit(
                        _put,
                        saver,
                        t,
                        {"items": items[t]},
                        parents[t]["configurable"]["checkpoint_id"],
                    )
                    for t in threads
                ]
                time.sleep(1.0)  # every put queued behind the blocked one
                first_holder.commit()
                blocker.join(60)
                waiting = _waiting_statements(pg_db)
                # The six puts, one statement, waiting on their threads' locks.
                assert len(waiting) == 1 and waiting[0].startswith("WITH lock AS"), waiting
                assert "unnest($1::int8[])" in waiting[0]
                pruner.execute("DELETE FROM flg_blobs WHERE thread_id = %s", (threads[0],))
                pruner.commit()
                for f in futures:
                    f.result(60)
            after = saver.writer_stats()
        # The blocker, the batch, and the refused put stored again whole.
        assert after["calls"] - before["calls"] == 1 + len(threads) + 1
        assert after["commits"] - before["commits"] == 3
        for t in threads:
            assert saver.get_tuple(cfg(t)).checkpoint["channel_values"]["items"] == items[t]
        assert saver._store.check() == []
        assert _delta_rows(pg_db, threads[0]) == 0
        for t in threads[1:]:
            assert _delta_rows(pg_db, t) == 1, t
        # The refused put stored nothing of its own: its thread holds its first checkpoint and
        # the one stored again whole, with one blob (the pruner deleted the first one's).
        assert (
            _count(pg_db, "SELECT count(*) FROM flg_checkpoints WHERE thread_id = %s", threads[0])
            == 2
        )
        assert _count(pg_db, "SELECT count(*) FROM flg_blobs WHERE thread_id = %s", threads[0]) == 1


def _rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT 'c', thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, "
            "channels::text, versions::text, metadata::text, type, checkpoint FROM flg_checkpoints "
            "UNION ALL SELECT 'b', thread_id, checkpoint_ns, channel, encode(version, 'hex'), "
            "encode(delta_base, 'hex'), NULL, NULL, NULL, type, blob FROM flg_blobs "
            "UNION ALL SELECT 'w', thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, "
            "idx::text, channel, NULL, type, blob FROM flg_writes "
            "ORDER BY 1, 2, 3, 4, 5, 7"
        ).fetchall()


def test_calls_committed_together_store_what_they_store_one_by_one(pg_server, pg_db, saver):
    # Puts and task writes of several callers at once share a commit; when each put could run
    # alone (no guard) the batch is one statement. Its rows must be those of the same calls
    # made one at a time: the flat channel arrays split back per checkpoint, NULL parents and
    # run ids kept, a channel without a value storing no blob, a growing list stored as deltas
    # over the caller's previous put, a special write (negative idx) replacing the stored one
    # and a regular one kept.
    from langgraph.checkpoint.base import empty_checkpoint

    def calls(t: int) -> list[tuple]:
        out, parent = [], None
        log = _items(f"log-{t}", 40)
        for step in range(4):
            cp = empty_checkpoint()
            cp["id"] = f"1ef00000-0000-6000-8000-{t:06d}{step:06d}"
            values = {"n": step, "text": "w" * (50 * t), "t": t}
            if step % 2:
                # Too large to travel inside the checkpoint: a blob.
                values["extra"] = [step, t, "e" * 2100]
            # Stored whole at step 0, then as the items appended since the step before.
            values["log"] = log[: 10 * (step + 1)]
            cp["channel_values"] = values
            cp["channel_versions"] = {k: f"{step + 1:032}.0.{t}" for k in [*values, "gone"]}
            conf = cfg(f"together-{t}", checkpoint_ns="")
            if parent:
                conf["configurable"]["checkpoint_id"] = parent
            meta = {"source": "loop", "step": step, **({"run_id": f"run-{t}"} if t % 2 else {})}
            out.append((conf, cp, meta, dict(cp["channel_versions"])))
            parent = cp["id"]
        return out

    plan = [calls(t) for t in range(10)]
    barrier = threading.Barrier(10)

    def run(s, t: int, wait) -> None:
        for step, (conf, cp, meta, versions) in enumerate(plan[t]):
            wait()
            stored = s.put(conf, cp, meta, versions)
            # No wait here: a caller's writes may share a batch with another caller's put.
            s.put_writes(stored, [("x", [t, step]), ("y", step)], f"task-{step % 2}", "p")
            if step == 3:
                wait()
                s.put_writes(stored, [("__error__", "late"), ("x", "not kept")], "task-1", "q")

    before = saver.writer_stats()
    with ThreadPoolExecutor(10) as ex:
        list(ex.map(lambda t: run(saver, t, barrier.wait), range(10)))
    after = saver.writer_stats()
    # Some puts shared a commit (the case under test).
    assert after["calls"] - before["calls"] > after["commits"] - before["commits"]
    # ...and were stored by one transaction: puts stored one by one (the fallback when the
    # batch's statement fails) would each have a transaction id of their own.
    puts_transactions = _count(pg_db, "SELECT count(DISTINCT xmin::text) FROM flg_checkpoints")
    assert puts_transactions < 40
    alone_db = pg_server.url(pg_server.create_database())
    one_by_one = RustPostgresCheckpointer(alone_db, pool_size=4)
    one_by_one.setup()
    try:
        for t in range(10):
            run(one_by_one, t, lambda: None)
    finally:
        one_by_one.close()
    together, alone = _rows(pg_db), _rows(alone_db)
    assert sum(r[0] == "c" for r in together) == 40
    assert sum(r[0] == "b" for r in together) >= 60  # the large lists (small values are inline)
    # Three deltas per caller, each over the version its previous put stored.
    deltas = [r for r in together if r[0] == "b" and r[3] == "log" and r[5] is not None]
    assert len(deltas) == 30
    assert sum(r[0] == "w" for r in together) == 10 * (4 * 2 + 1)
    assert together == alone
    last = saver.get_tuple(cfg("together-3"))
    assert last.checkpoint["channel_values"] == {
        "n": 3,
        "text": "w" * 150,
        "t": 3,
        "extra": [3, 3, "e" * 2100],
        "log": _items("log-3", 40),
    }
    assert last.parent_config["configurable"]["checkpoint_id"] == plan[3][2][1]["id"]
    assert sorted((task, c, v) for task, c, v in last.pending_writes) == [
        ("task-1", "__error__", "late"),
        ("task-1", "x", [3, 3]),
        ("task-1", "y", 3),
    ]


@pytest.mark.parametrize("guard", [False, True], ids=["one-statement", "guarded"])
def test_a_delta_put_sees_a_prune_under_a_repeatable_read_default(pg_db, guard):
    # The writes rely on READ COMMITTED: each takes its thread's lock, then reads what
    # committed while it waited. A database whose default isolation is REPEATABLE READ must
    # not change that: the put that waited while a prune deleted its delta's base neither
    # fails nor stores a delta over nothing, with and without the single-writer guard.
    with psycopg.connect(pg_db, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(
            psycopg.sql.SQL(
                "ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'"
            ).format(psycopg.sql.Identifier(name))
        )
    with psycopg.connect(pg_db) as conn:
        assert conn.execute("SHOW default_transaction_isolation").fetchone()[0] == "repeatable read"
    thread_id = f"rr-{guard}"
    with RustPostgresCheckpointer(pg_db, guard=guard) as s:
        s.setup()
        items = _items(thread_id, 24)
        first = _put(s, thread_id, {"items": items[:16]})
        parent = first["configurable"]["checkpoint_id"]
        with psycopg.connect(pg_db) as pruner:
            pruner.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(thread_id),))
            out: list = []

            def put() -> None:
                try:
                    out.append(_put(s, thread_id, {"items": items}, parent=parent))
                except Exception as e:  # reported by the assertion below
                    out.append(e)

            t = threading.Thread(target=put)
            t.start()
            assert _waiting_statements(pg_db)
            pruner.execute("DELETE FROM flg_blobs WHERE thread_id = %s", (thread_id,))
            pruner.commit()
            t.join(60)
        assert len(out) == 1 and not isinstance(out[0], Exception), out
        assert s._store.check() == []
        assert s.get_tuple(cfg(thread_id)).checkpoint["channel_values"]["items"] == items
        assert _delta_rows(pg_db, thread_id) == 0
