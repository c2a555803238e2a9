"""RustPostgresCheckpointer when things go wrong: dropped connections and a server restart
(recovered on the next call, never a half-written checkpoint), bad connection strings,
credentials and hosts (a fast, clear failure), TLS, hostile and wrong input, use after close."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from conftest import cfg
from graph_apps import chat_app
from langchain_core.messages import HumanMessage
from pg_server import put_values as _put

from fast_langgraph import (
    CheckpointClosedError,
    CheckpointError,
    RustPostgresCheckpointer,
    SerializationError,
)


@pytest.fixture
def saver(pg_db):
    s = RustPostgresCheckpointer(pg_db, pool_size=4)
    s.setup()
    yield s
    s.close()


def _terminate_ours(pg_server, dbname):
    return pg_server.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{dbname}' AND application_name = 'fast-langgraph'"
    )


def _count_ours(pg_server, dbname):
    return pg_server.psql(
        "SELECT count(*) FROM pg_stat_activity "
        f"WHERE datname = '{dbname}' AND application_name = 'fast-langgraph'"
    )


def test_dropped_connections_recovered_on_next_call(pg_server, saver, pg_db):
    graph = chat_app(["a", "b", "c"]).compile(checkpointer=saver)
    graph.invoke({"messages": [HumanMessage("1")]}, cfg("t"))
    dbname = pg_db.rsplit("/", 1)[1]
    assert int(_terminate_ours(pg_server, dbname)) >= 1
    # Every pooled connection is dead now; the next calls reconnect by themselves.
    graph.invoke({"messages": [HumanMessage("2")]}, cfg("t"))
    assert saver.pool_stats()["reconnects"] >= 1
    msgs = graph.get_state(cfg("t")).values["messages"]
    assert [m.content for m in msgs] == ["1", "a", "2", "b"]


def test_server_restart_recovered_and_nothing_half_written(pg_server, saver):
    graph = chat_app(["a", "b"]).compile(checkpointer=saver)
    graph.invoke({"messages": [HumanMessage("1")]}, cfg("r"))
    before = len(list(saver.list(cfg("r"))))
    pg_server.restart()
    graph.invoke({"messages": [HumanMessage("2")]}, cfg("r"))
    after = list(saver.list(cfg("r")))
    assert len(after) == before * 2
    # Every stored checkpoint is whole: its values load and its parent exists.
    ids = {t.checkpoint["id"] for t in after}
    for t in after:
        assert set(t.checkpoint["channel_values"]) <= set(t.checkpoint["channel_versions"])
        if t.parent_config:
            assert t.parent_config["configurable"]["checkpoint_id"] in ids


def test_failed_write_names_thread_and_checkpoint(pg_server, saver, pg_db):
    cfg1 = _put(saver, "thr-1", {"x": 1})
    # A statement timeout makes the server refuse the next write: the error says which.
    dbname = pg_db.rsplit("/", 1)[1]
    pg_server.psql(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
    try:
        with RustPostgresCheckpointer(pg_db) as ro:
            with pytest.raises(CheckpointError) as e:
                _put(ro, "thr-1", {"x": 2}, parent=cfg1["configurable"]["checkpoint_id"])
        msg = str(e.value)
        assert "thr-1" in msg and "checkpoint" in msg and "read-only" in msg
    finally:
        pg_server.psql(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = off')
    assert len(list(saver.list(cfg("thr-1")))) == 1


def test_wrong_conninfo_fails_clearly():
    with pytest.raises(ValueError, match="sslmode"):
        RustPostgresCheckpointer("host=127.0.0.1 sslmode=sometimes")
    with pytest.raises(ValueError, match="expected `=`"):
        RustPostgresCheckpointer("not a connection string")
    with pytest.raises(ValueError, match="unknown option `colour`"):
        RustPostgresCheckpointer("host=127.0.0.1 colour=blue")
    with pytest.raises(ValueError, match="sslrootcert"):
        RustPostgresCheckpointer("host=127.0.0.1 sslmode=verify-full")
    with pytest.raises(TypeError, match="conninfo must be a str"):
        RustPostgresCheckpointer(5432)  # type: ignore[arg-type]


def test_bad_credentials_fail_fast(pg_server):
    started = time.monotonic()
    bad = pg_server.url().replace(pg_server.password, "wrong-password")
    with pytest.raises(CheckpointError, match="password authentication failed"):
        RustPostgresCheckpointer(bad)
    with pytest.raises(CheckpointError, match='database "no_such_db" does not exist'):
        RustPostgresCheckpointer(pg_server.url("no_such_db"))
    assert time.monotonic() - started < 30  # bounded, not a timing claim: no hang


def test_unreachable_host_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on that port.
    with pytest.raises(CheckpointError) as e:
        RustPostgresCheckpointer(f"host=127.0.0.1 port={port} user=x dbname=x", connect_timeout=2)
    msg = str(e.value)
    assert "cannot connect" in msg and f"127.0.0.1:{port}" in msg


def test_tls_sslmode_require(pg_server):
    db = pg_server.create_database("tls")
    for conninfo in (
        pg_server.url(db, sslmode="require"),
        pg_server.conninfo(db, sslmode="require"),
    ):
        with RustPostgresCheckpointer(conninfo) as saver:
            saver.setup()
            _put(saver, "tls", {"x": [1, 2]})
            assert saver.get_tuple(cfg("tls")).checkpoint["channel_values"] == {"x": [1, 2]}
            used = pg_server.psql(
                "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                f"WHERE datname = '{db}' AND application_name = 'fast-langgraph'"
            )
            assert used == "t"
    # verify-full against the test certificate (issued for localhost and 127.0.0.1).
    url = pg_server.url(db, sslmode="verify-full", sslrootcert=str(pg_server.cert))
    with RustPostgresCheckpointer(url) as saver:
        assert saver.get_tuple(cfg("tls")) is not None
    # The unix socket with sslmode=disable.
    with RustPostgresCheckpointer(pg_server.socket_conninfo(db) + " sslmode=disable") as saver:
        assert saver.get_tuple(cfg("tls")) is not None


def test_sql_injection_is_data(saver):
    evil = "x'); DROP TABLE flg_checkpoints; --"
    c = _put(saver, evil, {"v": evil}, metadata={"source": "input", "step": -1, evil: evil})
    saver.put_writes(c, [(evil, evil)], evil, evil)
    got = saver.get_tuple(cfg(evil))
    assert got.checkpoint["channel_values"] == {"v": evil}
    assert got.pending_writes == [(evil, evil, evil)]
    assert [t.metadata[evil] for t in saver.list(None, filter={evil: evil})] == [evil]
    saver.copy_thread(evil, evil + "2")
    saver.delete_for_runs([evil])
    saver.prune([evil], strategy="keep_latest")
    assert saver.get_tuple(cfg(evil + "2")) is not None


def test_unserializable_value_loses_nothing(saver):
    c = _put(saver, "u", {"ok": 1})
    with pytest.raises(SerializationError, match="channel 'bad'"):
        _put(saver, "u", {"bad": object()}, parent=c["configurable"]["checkpoint_id"])
    with pytest.raises(SerializationError, match="metadata key 'm' of checkpoint '"):
        _put(saver, "u", {"ok": 2}, metadata={"m": object()})
    with pytest.raises(SerializationError, match="channel 'w'"):
        saver.put_writes(c, [("w", object())], "task")
    assert len(list(saver.list(cfg("u")))) == 1
    assert saver.get_tuple(cfg("u")).pending_writes == []


def test_metadata_stored_as_postgres_saver_stores_it(saver):
    """The metadata of a put is LangGraph's merge with the config, as JSON text without
    U+0000 (which jsonb cannot hold, and PostgresSaver drops), whether the values are plain
    (encoded natively) or not (Python's encoder)."""
    import enum
    import json

    from langgraph.checkpoint.base import empty_checkpoint, get_checkpoint_metadata

    class Level(enum.IntEnum):
        HIGH = 2

    for i, md in enumerate(
        [
            {"source": "loop", "step": 3, "parents": {"": "p\0q"}, "note": "a\0b", "x": 0.5},
            {"source": "input", "level": Level.HIGH, "map": {1: "one\0"}},
        ]
    ):
        config = {
            "configurable": {"thread_id": f"md{i}", "checkpoint_ns": "", "user": "u\0v"},
            "metadata": {"run_id": f"run-{i}", "__hidden": 1, "langgraph_node": "n"},
        }
        saver.put(config, empty_checkpoint(), md, {})
        merged = get_checkpoint_metadata(config, md)
        want = json.loads(json.dumps(merged, ensure_ascii=False).replace("\\u0000", ""))
        got = saver.get_tuple(cfg(f"md{i}"))
        assert got is not None and got.metadata == want
        assert got.metadata["run_id"] == f"run-{i}" and "__hidden" not in got.metadata
        # run_id has its own column: delete_for_runs finds the checkpoint by it.
        saver.delete_for_runs([f"run-{i}"])
        assert saver.get_tuple(cfg(f"md{i}")) is None


def test_use_after_close(pg_db):
    s = RustPostgresCheckpointer(pg_db)
    s.setup()
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(CheckpointClosedError):
        s.get_tuple(cfg("t"))
    with pytest.raises(CheckpointClosedError):
        _put(s, "t", {"x": 1})


async def test_async_use_after_close(pg_db):
    async with RustPostgresCheckpointer.from_conn_string(pg_db) as s:
        await s.asetup()
    with pytest.raises(CheckpointClosedError):
        await s.aget_tuple(cfg("t"))


def test_wrong_types(saver):
    with pytest.raises(TypeError):
        saver.get_tuple("t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="thread_id"):
        saver.get_tuple({"configurable": {}})
    with pytest.raises(TypeError, match="limit"):
        list(saver.list(None, limit="3"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="run_ids"):
        saver.delete_for_runs("run")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strategy"):
        saver.prune(["t"], strategy="everything")
    with pytest.raises(ValueError, match="pool_size"):
        RustPostgresCheckpointer("host=x", pool_size=0)


def test_missing_tables_say_setup(pg_db):
    with RustPostgresCheckpointer(pg_db) as s:
        with pytest.raises(CheckpointError, match="setup"):
            s.get_tuple(cfg("t"))


def test_statement_timeout(pg_db):
    with RustPostgresCheckpointer(pg_db) as s:
        s.setup()
    with RustPostgresCheckpointer(pg_db, statement_timeout=0.001) as s:
        with pytest.raises(CheckpointError, match="statement timeout"):
            for _ in range(200):
                list(s.list(None))
                _put(s, "t", {"x": list(range(20000))})


def test_setup_is_versioned_and_idempotent(pg_server, pg_db):
    with RustPostgresCheckpointer(pg_db) as s:
        s.setup()
        s.setup()
    dbname = pg_db.rsplit("/", 1)[1]
    versions = pg_server.psql(
        "SELECT string_agg(v::text, ',' ORDER BY v) FROM flg_pg_migrations", dbname
    )
    assert versions.split(",")[0] == "0" and len(versions.split(",")) >= 5
    # A database from a newer release is refused, untouched.
    pg_server.psql("INSERT INTO flg_pg_migrations VALUES (999)", dbname)
    with RustPostgresCheckpointer(pg_db) as s, pytest.raises(Exception, match="999"):
        s.setup()


def test_pool_timeout_names_itself_and_loses_nothing(pg_db):
    """pool_size=1 with its one connection held by a write that waits on a lock: the next
    call fails after pool_timeout with an error saying so, and the held write still commits."""
    with RustPostgresCheckpointer(pg_db, pool_size=1, pool_timeout=0.5) as s:
        s.setup()
        first = _put(s, "t", {"x": 1})
        errors: list[BaseException] = []
        with psycopg.connect(pg_db, autocommit=False) as locker:
            locker.execute("LOCK TABLE flg_checkpoints IN ACCESS EXCLUSIVE MODE")

            def held_write() -> None:
                try:
                    _put(s, "t", {"x": 2}, parent=first["configurable"]["checkpoint_id"])
                except BaseException as e:
                    errors.append(e)

            writer = threading.Thread(target=held_write)
            writer.start()
            # Wait until the write holds the pool's one connection, blocked on the lock.
            with psycopg.connect(pg_db, autocommit=True) as watcher:
                for _ in range(600):
                    row = watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                        "'fast-langgraph' AND wait_event_type = 'Lock'"
                    ).fetchone()
                    if row and row[0] >= 1:
                        break
                    time.sleep(0.05)
                else:
                    pytest.fail("the held write never reached the lock")
            with pytest.raises(CheckpointError, match=r"pool_size=1.*pool_timeout of 0\.5 s"):
                s.get_tuple(cfg("t"))
            stats = s.pool_stats()
            assert (stats["waits"], stats["waits_timed_out"], stats["timeouts"]) == (1, 1, 1)
            locker.rollback()
        writer.join()
        assert errors == []
        # Nothing was lost: both checkpoints are stored, the held one is the latest.
        ids = [t.config["configurable"]["checkpoint_id"] for t in s.list(cfg("t"))]
        assert len(ids) == 2
        assert ids[1] == first["configurable"]["checkpoint_id"]
        assert s.get_tuple(cfg("t")).checkpoint["channel_values"] == {"x": 2}


def _ours_waiting_on_a_lock(pg_db: str, n: int) -> None:
    """Returns once `n` of the saver's connections wait on a lock (fails after 30 s)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(pg_db, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fast-langgraph' "
                "AND datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0] >= n:
                return
            time.sleep(0.05)
    pytest.fail(f"{n} reads never reached the lock")


def _hold_every_connection(s, pg_db: str, n: int, call):
    """Runs `call` while the saver's `n` connections are each held by a read blocked on a
    table lock; returns what `call` returned or raised, then the held reads' results."""
    with psycopg.connect(pg_db) as locker:
        locker.execute("LOCK TABLE flg_checkpoints IN ACCESS EXCLUSIVE MODE")
        with ThreadPoolExecutor(n) as ex:
            held = [ex.submit(s.get_tuple, cfg("held")) for _ in range(n)]
            try:
                _ours_waiting_on_a_lock(pg_db, n)
                try:
                    out: object = call()
                except Exception as e:
                    out = e
            finally:
                locker.rollback()
            return out, [f.result(60) for f in held]


def test_pool_timeout_counted_when_every_connection_is_held(pg_db):
    """All three connections held by reads blocked on a lock: one more call waits its
    pool_timeout, then raises the documented error, naming pool_size and pool_timeout, and the
    counters say so. The held reads complete once the lock goes."""
    with RustPostgresCheckpointer(pg_db, pool_size=3, pool_timeout=0.5) as s:
        s.setup()
        _put(s, "held", {"x": 1})
        before = s.pool_stats()
        assert (before["waits"], before["waits_timed_out"], before["timeouts"]) == (0, 0, 0)
        err, held = _hold_every_connection(s, pg_db, 3, lambda: s.get_tuple(cfg("held")))
        assert isinstance(err, CheckpointError), err
        msg = str(err)
        assert "every connection of the pool (pool_size=3)" in msg, msg
        assert "stayed busy for the pool_timeout of 0.5 s" in msg, msg
        assert [h.checkpoint["channel_values"] for h in held] == [{"x": 1}] * 3
        after = s.pool_stats()
        assert after["waits"] == 1
        assert after["waits_timed_out"] == 1
        assert after["timeouts"] == 1
        assert after["wait_seconds"] > 0
        # Three connections were opened for the held reads, none dropped.
        assert (after["open"], after["idle"], after["waiting"]) == (3, 3, 0)
        assert (after["opened"], after["dropped"]) == (3, 0)


def test_killed_connections_counted_as_dropped_and_the_next_call_recovers(pg_server, pg_db):
    """Three pooled connections killed with pg_terminate_backend: the next call finds its
    connection dead, drops it and the two idle ones (counted in `dropped`, once in
    `reconnects`), opens one, and returns what was stored."""
    dbname = pg_db.rsplit("/", 1)[1]
    with RustPostgresCheckpointer(pg_db, pool_size=3) as s:
        s.setup()
        stored = _put(s, "held", {"x": 7})
        # Three connections open (each held once by a read), all idle afterwards.
        _hold_every_connection(s, pg_db, 3, lambda: None)
        before = s.pool_stats()
        assert (before["open"], before["idle"], before["dropped"], before["reconnects"]) == (
            3,
            3,
            0,
            0,
        )
        assert int(_terminate_ours(pg_server, dbname)) == 3
        # Gone on the server's side before the next call.
        deadline = time.monotonic() + 30
        while int(_count_ours(pg_server, dbname)) and time.monotonic() < deadline:
            time.sleep(0.05)
        got = s.get_tuple(stored)
        assert got is not None and got.checkpoint["channel_values"] == {"x": 7}
        after = s.pool_stats()
        assert after["dropped"] - before["dropped"] == 3
        assert after["reconnects"] - before["reconnects"] == 1
        assert after["opened"] - before["opened"] == 1
        assert (after["open"], after["idle"]) == (1, 1)
        assert after["timeouts"] == after["waits_timed_out"] == 0


def test_pool_stats_of_a_forked_child_count_from_zero(pg_db):
    """A forked child neither reports nor uses its parent's connections: its pool starts
    empty, with its counters at zero, and opens its own; the parent's stay as they were."""
    with RustPostgresCheckpointer(pg_db, pool_size=2) as s:
        s.setup()
        stored = _put(s, "forked", {"x": 3})
        parent = s.pool_stats()
        assert parent["opened"] >= 1 and parent["open"] >= 1
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report through the pipe, never return into pytest
            code = 1
            try:
                first = s.pool_stats()
                got = s.get_tuple(stored)
                then = s.pool_stats()
                os.write(
                    write_end,
                    json.dumps([first, then, got.checkpoint["channel_values"]]).encode(),
                )
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end) as r:
            first, then, values = json.loads(r.read() or "null")
        assert os.waitpid(pid, 0)[1] == 0
        assert first["open"] == first["idle"] == first["opened"] == 0
        assert first["waits"] == first["reconnects"] == first["dropped"] == 0
        assert (then["open"], then["opened"]) == (1, 1)
        assert values == {"x": 3}
        # The parent's pool is untouched, and still works.
        assert s.pool_stats() == parent
        assert s.get_tuple(stored).checkpoint["channel_values"] == {"x": 3}


def test_pool_stats_has_the_keys_and_types_poolstats_declares(pg_db) -> None:
    """The native pool's counters reach Python under exactly the keys of `PoolStats` (the
    TypedDict the saver's `pool_stats()` is typed as), each of its declared type."""
    from typing import get_type_hints

    from fast_langgraph.postgres import PoolStats

    with RustPostgresCheckpointer(pg_db) as s:
        s.setup()
        stats = s.pool_stats()
    hints = get_type_hints(PoolStats)
    assert set(stats) == set(hints)
    assert {k: type(v) for k, v in stats.items()} == hints
