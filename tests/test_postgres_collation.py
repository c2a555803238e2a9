"""RustPostgresCheckpointer on a database whose default collation is linguistic (ICU en-US, as
managed services and Debian's en_US.UTF-8 give), beside one in byte order (the test server's
``--locale=C``): the same results in both, those of LangGraph's InMemorySaver, which orders
checkpoint ids by code point (UTF-8 byte order).

Under en-US, "a" sorts before "B", "_x" and "~" before digits, "é" before "f"; in byte order
the other way round. Checkpoint ids made by LangGraph (UUIDv6, lower-case hex, hyphens at fixed
places) sort the same under both, but ids and thread ids are the caller's strings: the ids
here are chosen where the two orders differ, so a read that took the database's collation for
byte order (the newest checkpoint, `before`, `limit`, prune's keep-latest) would fail here.

The conformance suite, the delta-history spec, and retention, delta-history and version tests
of other modules run again on an en-US database.

From schema 11 the saver's text key columns are declared ``COLLATE "C"``, whatever the
database's default; a database set up by schema 10 is migrated by setup() and reads back the
same.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import time

import psycopg
import pytest
from conftest import cfg
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from test_postgres_conformance import run_suite

from fast_langgraph import RustPostgresCheckpointer

# Checkpoint ids in byte order (oldest first): en-US orders them differently.
IDS = ["1-10", "1-9", "1-A", "1-B", "1-_x", "1-a", "1-b", "1-f", "1-~", "1-é"]
# Thread ids, likewise.
THREADS = ["B", "Z-1", "_t", "a", "a-b", "ab", "é"]

# Every text column of the saver's tables declared in byte order (schema 11).
C_COLUMNS = {
    "flg_checkpoints": [
        "thread_id",
        "checkpoint_ns",
        "checkpoint_id",
        "parent_checkpoint_id",
        "run_id",
        "channels",
    ],
    "flg_blobs": ["thread_id", "checkpoint_ns", "channel"],
    "flg_writes": ["thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "channel"],
    "flg_heads": ["thread_id", "checkpoint_ns", "checkpoint_id"],
}


@pytest.fixture(params=[None, "en-US"], ids=["C", "icu-en-US"])
def db_url(request, pg_server):
    return pg_server.url(pg_server.create_database("coll", icu_locale=request.param))


@pytest.fixture
def saver(db_url):
    with RustPostgresCheckpointer(db_url) as s:
        s.setup()
        yield s


def test_the_icu_database_orders_these_ids_differently(pg_server) -> None:
    """The premise: under the en-US database's default collation, IDS and THREADS are not in
    byte order (else the tests below would prove nothing)."""
    name = pg_server.create_database("coll", icu_locale="en-US")
    for values in (IDS, THREADS):
        rows = ", ".join("('" + v + "')" for v in values)
        got = pg_server.psql(
            f"SELECT string_agg(x, ' ' ORDER BY x) FROM (VALUES {rows}) v(x)", name
        )
        assert got.split(" ") != sorted(values) == values


def _put_chain(saver, thread_id: str, ids: list[str], checkpoint_ns: str = "") -> None:
    """Checkpoints `ids` on the thread, each the child of the one before, put in the order of
    `ids`, each with a pending write."""
    parent = None
    for i, cid in enumerate(ids):
        cp = empty_checkpoint()
        cp["id"] = cid
        cp["channel_values"] = {"n": i, "who": cid}
        cp["channel_versions"] = {"n": f"{i + 1:032}.0.5", "who": f"{i + 1:032}.0.5"}
        conf = cfg(thread_id, checkpoint_ns=checkpoint_ns)
        if parent:
            conf["configurable"]["checkpoint_id"] = parent
        stored = saver.put(conf, cp, {"source": "loop", "step": i}, dict(cp["channel_versions"]))
        saver.put_writes(stored, [("n", i)], f"task-{cid}")
        parent = cid


def _ids(tuples) -> list[str]:
    return [t.config["configurable"]["checkpoint_id"] for t in tuples]


def test_reads_order_checkpoint_ids_as_in_memory_saver(saver) -> None:
    """Newest checkpoint, `list`, `before` and `limit`, each alone and together: the ids
    InMemorySaver gives, on both databases."""
    ref = InMemorySaver()
    for s in (saver, ref):
        _put_chain(s, "t", IDS)
    assert _ids(ref.list(cfg("t"))) == sorted(IDS, reverse=True)

    assert saver.get_tuple(cfg("t")).config["configurable"]["checkpoint_id"] == IDS[-1]
    assert _ids(saver.list(cfg("t"))) == _ids(ref.list(cfg("t")))
    for n in range(1, len(IDS) + 1):
        assert _ids(saver.list(cfg("t"), limit=n)) == _ids(ref.list(cfg("t"), limit=n)), n
    for cid in IDS:
        before = cfg("t", checkpoint_id=cid)
        assert _ids(saver.list(cfg("t"), before=before)) == _ids(
            ref.list(cfg("t"), before=before)
        ), cid
        assert _ids(saver.list(cfg("t"), before=before, limit=2)) == _ids(
            ref.list(cfg("t"), before=before, limit=2)
        ), cid
        got = saver.get_tuple(cfg("t", checkpoint_id=cid))
        assert got.checkpoint["channel_values"]["who"] == cid
        assert [w[2] for w in got.pending_writes] == [IDS.index(cid)]


def test_async_reads_order_checkpoint_ids_as_in_memory_saver(saver) -> None:
    ref = InMemorySaver()
    for s in (saver, ref):
        _put_chain(s, "t", IDS, checkpoint_ns="sub")
    conf = cfg("t", checkpoint_ns="sub")

    async def read(s):
        latest = await s.aget_tuple(conf)
        before = cfg("t", checkpoint_ns="sub", checkpoint_id=IDS[6])
        return (
            latest.config["configurable"]["checkpoint_id"],
            [_ids([t]) async for t in s.alist(conf, limit=4)],
            [_ids([t]) async for t in s.alist(conf, before=before)],
        )

    assert asyncio.run(read(saver)) == asyncio.run(read(ref))


def test_list_across_threads_is_newest_first_in_byte_order(saver) -> None:
    """`list(None)` orders every thread's checkpoints by id, newest first, and a limit takes
    the first of that order (not the first in the database's collation)."""
    for t, cid in zip(THREADS, IDS):
        _put_chain(saver, t, [cid])
    everything = _ids(saver.list(None))
    assert everything == sorted(IDS[: len(THREADS)], reverse=True)
    for n in range(1, len(THREADS) + 1):
        assert _ids(saver.list(None, limit=n)) == everything[:n], n
    assert saver._store.thread_ids() == sorted(THREADS)


def test_prune_keep_latest_keeps_the_newest_in_byte_order(saver) -> None:
    for t in THREADS:
        _put_chain(saver, t, IDS[:5])
    saver.prune(THREADS[:3], strategy="keep_latest")
    for i, t in enumerate(THREADS):
        assert _ids(saver.list(cfg(t))) == ([IDS[4]] if i < 3 else sorted(IDS[:5], reverse=True)), t
        assert saver.get_tuple(cfg(t)).checkpoint["channel_values"]["who"] == IDS[4]


def test_guarded_puts_continue_the_head_on_both_databases(db_url) -> None:
    """With the single-writer guard, a put continues the thread's head by id equality: ids
    that differ only in case are different checkpoints on both databases."""
    with RustPostgresCheckpointer(db_url, guard=True) as s:
        s.setup()
        _put_chain(s, "T", ["1-a", "1-A"])
        assert _ids(s.list(cfg("T"))) == ["1-a", "1-A"]
        assert s.get_tuple(cfg("T")).checkpoint["channel_values"]["who"] == "1-a"


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "no-delta"])
def test_conformance_on_a_linguistic_collation(pg_server, delta: bool) -> None:
    """LangGraph's conformance suite on an en-US database."""
    run_suite(RustPostgresCheckpointer, pg_server, icu_locale="en-US", delta=delta)


def test_delta_channel_history_spec_on_a_linguistic_collation(pg_server) -> None:
    from vendor.langgraph_conformance.test_delta_channel_history import (
        ALL_DELTA_CHANNEL_HISTORY_TESTS,
        run_delta_channel_history_tests,
    )

    async def run() -> tuple[int, int, list[str]]:
        url = pg_server.url(pg_server.create_database("delta_icu", icu_locale="en-US"))
        saver = RustPostgresCheckpointer(url)
        saver.setup()
        try:
            return await run_delta_channel_history_tests(saver)
        finally:
            saver.close()

    passed, failed, failures = asyncio.run(run())
    assert failures == [] and failed == 0, "\n".join(failures)
    assert passed == len(ALL_DELTA_CHANNEL_HISTORY_TESTS)


# Tests of other modules run again on an en-US database: retention with DeltaChannel graphs
# (prune keep-latest, prune_older_than, delete_for_runs, copy_thread, each following parent
# pointers and the newest id), versions of every shape (compared as bytes), a real graph.
AGAIN_WITH_A_SAVER = [
    ("test_postgres_retention", "test_prune_keep_latest_keeps_what_delta_channels_need"),
    ("test_postgres_retention", "test_prune_older_than_keep_latest_keeps_delta_ancestors"),
    ("test_retention", "test_delete_for_runs_keeps_ancestors_a_later_run_needs"),
    ("test_retention", "test_copy_thread_rebuilds_delta_channels_in_the_copy"),
    ("test_retention", "test_prune_older_than_deletes_idle_threads_only"),
    ("test_postgres_delta_history", "test_long_chain_pages"),
]


@pytest.mark.parametrize(
    ("module", "name"), AGAIN_WITH_A_SAVER, ids=[n for _, n in AGAIN_WITH_A_SAVER]
)
def test_again_on_a_linguistic_collation(pg_server, module: str, name: str) -> None:
    test = getattr(importlib.import_module(module), name)
    url = pg_server.url(pg_server.create_database("again", icu_locale="en-US"))
    with RustPostgresCheckpointer(url) as s:
        s.setup()
        test(s)


def test_versions_again_on_a_linguistic_collation(pg_server) -> None:
    import test_postgres_versions as versions

    for test, args in [
        (versions.test_versions_of_any_shape_round_trip_exactly, ()),
        (versions.test_a_real_graph_reads_back_the_versions_it_made, (versions.OddVersions,)),
    ]:
        test(pg_server.url(pg_server.create_database("again", icu_locale="en-US")), *args)


# -- schema 11: the key columns in byte order -----------------------------------------------


def _collations(url: str) -> dict[tuple[str, str], str]:
    """The collation of each text or text[] column of the saver's tables."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.attrelid::regclass::text, a.attname, c.collname FROM pg_attribute a "
            "JOIN pg_collation c ON c.oid = a.attcollation "
            "JOIN pg_class r ON r.oid = a.attrelid AND r.relkind = 'r' "
            "WHERE r.relname LIKE 'flg\\_%' AND a.attnum > 0 AND NOT a.attisdropped"
        ).fetchall()
    return {(t, c): coll for t, c, coll in rows}


def _indexes(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid::regclass::text LIKE 'flg\\_%' ORDER BY 1"
        ).fetchall()
    assert len(rows) == 6
    return [r for (r,) in rows]


def _filenodes(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [
            conn.execute("SELECT pg_relation_filenode(%s::regclass)", (t,)).fetchone()[0]
            for t in C_COLUMNS
        ]


def _c_columns() -> set[tuple[str, str]]:
    return {(t, c) for t, cols in C_COLUMNS.items() for c in cols}


def test_setup_declares_the_key_columns_in_byte_order(saver, db_url) -> None:
    colls = _collations(db_url)
    assert {k for k, v in colls.items() if v == "C"} == _c_columns()
    assert saver._store.schema_version() == 11


def to_schema_10(url: str) -> None:
    """The tables as schema 10 left them: every column in the database's default collation,
    and schema 10 the latest applied."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table, cols in C_COLUMNS.items():
            alter = ", ".join(
                f"ALTER COLUMN {c} TYPE {'text[]' if c == 'channels' else 'text'} "
                'COLLATE pg_catalog."default"'
                for c in cols
            )
            conn.execute(f"ALTER TABLE {table} {alter}")
        conn.execute("DELETE FROM flg_pg_migrations WHERE v >= 11")


def _everything(saver) -> list[tuple]:
    return [
        (t.config, t.checkpoint, t.metadata, t.parent_config, t.pending_writes)
        for th in THREADS
        for t in saver.list(cfg(th))
    ]


def test_setup_migrates_a_schema_10_database_reading_back_the_same(pg_server) -> None:
    """A database set up by schema 10 under en-US, with checkpoints in it, is brought to
    schema 11 by setup(): every checkpoint reads back the same, in byte order, and puts go on."""
    url = pg_server.url(pg_server.create_database("mig", icu_locale="en-US"))
    with RustPostgresCheckpointer(url) as s:
        s.setup()
    indexes = _indexes(url)
    to_schema_10(url)
    assert not any(v == "C" for v in _collations(url).values())
    with RustPostgresCheckpointer(url) as s:
        for t in THREADS:
            _put_chain(s, t, IDS[:6])
        before = _everything(s)
        files = _filenodes(url)
        assert s._store.schema_version() == 10
        s.setup()
        assert s._store.schema_version() == 11
    assert {k for k, v in _collations(url).items() if v == "C"} == _c_columns()
    # The indexes rebuilt as a new database has them: names (the put relies on the primary
    # key's), columns, fill factors.
    assert _indexes(url) == indexes
    # The tables were not rewritten (only their indexes were rebuilt).
    assert _filenodes(url) == files
    with RustPostgresCheckpointer(url) as s:
        s.setup()  # nothing left to apply
        assert s._store.schema_version() == 11
        assert _everything(s) == before
        assert _ids(s.list(cfg("a"))) == sorted(IDS[:6], reverse=True)
        assert s.get_tuple(cfg("a")).checkpoint["channel_values"]["who"] == IDS[5]
        _put_chain(s, "a", [IDS[6]])
        s.put_writes(s.get_tuple(cfg("a")).config, [("n", 99)], "late")
        assert s.get_tuple(cfg("a")).checkpoint["channel_values"]["who"] == IDS[6]
        assert _ids(s.list(cfg("a"), limit=2)) == [IDS[6], IDS[5]]


def test_a_saver_connected_before_another_replicas_upgrade_reads_on(pg_server) -> None:
    """A saver whose connections prepared their reads before another replica's setup() took
    the database to schema 11 goes on reading: the server refuses those statements once (their
    result columns changed collation), and the saver prepares them again."""
    url = pg_server.url(pg_server.create_database("stale", icu_locale="en-US"))
    with RustPostgresCheckpointer(url) as s:
        s.setup()
    to_schema_10(url)
    with RustPostgresCheckpointer(url, pool_size=2) as running:
        _put_chain(running, "a", IDS[:4])
        latest = running.get_tuple(cfg("a"))
        first = running.get_tuple(cfg("a", checkpoint_ns="", checkpoint_id=IDS[0]))
        listed = list(running.list(cfg("a")))
        assert running._store.schema_version() == 10
        with RustPostgresCheckpointer(url) as upgrading:
            upgrading.setup()
            assert upgrading._store.schema_version() == 11
        for _ in range(3):  # each of the pool's connections, and again
            assert running.get_tuple(cfg("a")) == latest
            assert running.get_tuple(cfg("a", checkpoint_ns="", checkpoint_id=IDS[0])) == first
            assert list(running.list(cfg("a"))) == listed
            assert [t.config for t in running.list(None, limit=2)] == [t.config for t in listed[:2]]
        _put_chain(running, "a", [IDS[4]])
        assert _ids(running.list(cfg("a"), limit=1)) == [IDS[4]]


def _schema_10_database(pg_server, prefix: str, threads: list[str], ids: list[str]) -> str:
    """The URL of a new en-US database holding checkpoints ``ids`` on each of ``threads``, its
    tables as schema 10 left them."""
    url = pg_server.url(pg_server.create_database(prefix, icu_locale="en-US"))
    with RustPostgresCheckpointer(url) as s:
        s.setup()
        for t in threads:
            _put_chain(s, t, ids)
    to_schema_10(url)
    return url


def test_an_upgrade_while_puts_and_reads_run_fails_none_of_them(pg_server) -> None:
    """setup() upgrading a database to schema 11 while four savers of other sessions put and
    read (two with the guard): the upgrade takes every table before altering any, so no put or
    read fails on a deadlock with it; each waits, then succeeds."""
    url = _schema_10_database(pg_server, "busy", [f"pre{t}" for t in range(20)], IDS[:3])
    errors: list[str] = []
    done = [0] * 4
    stop = threading.Event()

    def work(saver, k: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            cp = empty_checkpoint()
            cp["channel_values"] = {"doc": "x" * 5000, "n": i}
            cp["channel_versions"] = {"doc": f"{i:032}.0.5", "n": f"{i:032}.0.5"}
            thread = f"w{k}-{i % 5}"
            try:
                saver.put(cfg(thread), cp, {"step": i}, dict(cp["channel_versions"]))
                got = saver.get_tuple(cfg(thread))
                assert got is not None and got.checkpoint["channel_values"]["n"] == i
                list(saver.list(cfg(f"pre{i % 20}"), limit=2))
                done[k] += 1
            except Exception as e:  # every failure is the test's finding
                errors.append(f"saver {k}: {e!r}")

    savers = [RustPostgresCheckpointer(url, guard=bool(k % 2), pool_size=2) for k in range(4)]
    threads = [threading.Thread(target=work, args=(savers[k], k)) for k in range(4)]
    try:
        for th in threads:
            th.start()
        time.sleep(0.5)
        with RustPostgresCheckpointer(url) as upgrading:
            upgrading.setup()
            assert upgrading._store.schema_version() == 11
        time.sleep(0.5)
    finally:
        stop.set()
        for th in threads:
            th.join()
        for s in savers:
            s.close()
    assert errors == []
    assert all(n > 0 for n in done)
    assert {k for k, v in _collations(url).items() if v == "C"} == _c_columns()


def test_an_upgrade_ignores_the_sessions_statement_timeout(pg_server) -> None:
    """setup() rebuilds the indexes of a database it upgrades: the statement_timeout given to
    the saver (for its puts and reads) does not cut it short."""
    url = _schema_10_database(pg_server, "slow", [f"t{t}" for t in range(50)], IDS[:5])
    with RustPostgresCheckpointer(url, statement_timeout=0.001) as s:
        s.setup()
        assert s._store.schema_version() == 11
    with RustPostgresCheckpointer(url) as s:
        assert _ids(s.list(cfg("t7"))) == sorted(IDS[:5], reverse=True)
