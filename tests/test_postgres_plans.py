"""The server's plans for RustPostgresCheckpointer's reads, as the server logs them
(auto_explain) on a database of many threads and one long thread with delta chains.

The server keeps a generic plan for a prepared statement from its sixth execution on, made
without the parameters' values, so for a thread of average size; this database forces that
plan from the first execution (`plan_cache_mode = force_generic_plan`). Every read of a blob
must then still find it by its whole primary key (a join there became, for a long thread, a
scan of all its blobs once per key needed). The database also asks for JIT compilation of every
plan (`jit_above_cost = 0`), and has sequential scans off (its tables are a few pages, where
a scan per lookup would look cheaper than the index): the checkpointer's own sessions turn JIT off, so none of its plans
is compiled."""

from __future__ import annotations

import re

import psycopg
import pytest
from conftest import cfg
from langchain_core.messages import AIMessage, HumanMessage
from pg_server import put_values

from fast_langgraph import RustPostgresCheckpointer

LONG = "long-thread"
TURNS = 40


def _log_plans(pg_server, pg_db: str, *settings: str):
    """Logs every plan of ``pg_db``'s statements, with ``settings`` for the database; returns
    (url, a function returning the server log written since the call)."""
    name = pg_db.rsplit("/", 1)[1]
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute("LOAD 'auto_explain'")
        for setting in (
            "session_preload_libraries = 'auto_explain'",
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_format = 'text'",
            *settings,
        ):
            conn.execute(f'ALTER DATABASE "{name}" SET {setting}')
    log = pg_server.dir / "server.log"
    start = log.stat().st_size

    def written() -> str:
        with open(log, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    return pg_db, written


@pytest.fixture
def logged_db(pg_server, pg_db):
    """``pg_db`` with every statement's plan logged, the generic plan forced and JIT asked for
    every plan; yields (url, a function returning the server log written since the call)."""
    return _log_plans(
        pg_server,
        pg_db,
        "plan_cache_mode = force_generic_plan",
        "jit_above_cost = 0",
        # The test's tables are a few pages, where a scan per lookup costs the planner less
        # than the index; what is checked is the key each lookup uses.
        "enable_seqscan = off",
    )


def _plans(log: str) -> list[tuple[str, str]]:
    """(query text, plan) of each plan auto_explain logged."""
    out = []
    for entry in re.split(r"\n(?=\S)", log):
        if "plan:" not in entry or "Query Text:" not in entry:
            continue
        body = entry.split("Query Text:", 1)[1]
        lines = body.splitlines()
        first_node = next(
            (i for i, line in enumerate(lines) if re.search(r"\(cost=[\d.]+\.\.[\d.]+", line)),
            len(lines),
        )
        out.append(("\n".join(lines[:first_node]), "\n".join(lines[first_node:])))
    return out


def _assert_blobs_read_by_key(plan: str, marker: str, what: str) -> None:
    """Every node of ``plan`` on flg_blobs (whose line also holds ``marker``) is an index scan
    of its primary key by the whole key."""
    lines = plan.splitlines()
    scans = [i for i, line in enumerate(lines) if marker in line and "on flg_blobs" in line]
    assert scans, plan
    for i in scans:
        assert "Index Scan using flg_blobs_pkey" in lines[i], f"{what} read by a scan:\n{plan}"
        cond = next(line for line in lines[i + 1 :] if "Index Cond:" in line)
        for column in ("thread_id", "checkpoint_ns", "version", "channel"):
            assert f"({column} = " in cond, f"{what} looked up without its {column}:\n{plan}"


def test_reads_find_every_blob_by_its_key_under_generic_plans_and_never_jit(logged_db):
    url, written = logged_db
    saver = RustPostgresCheckpointer(url, pool_size=2)
    saver.setup()
    try:
        # Many short threads, so that the planner's thread of average size is short.
        for t in range(60):
            for step in range(2):
                put_values(
                    saver,
                    f"short-{t}",
                    {"n": step, "messages": [HumanMessage(f"{t}")]},
                    metadata={"source": "loop", "step": step},
                )
        # One long thread whose message list grows: stored as a full value and delta chains.
        messages = [HumanMessage(f"m{i}", id=f"m{i}") for i in range(8)]
        parent = None
        for turn in range(TURNS):
            messages = [*messages, AIMessage(f"a{turn}", id=f"a{turn}")]
            parent = put_values(
                saver,
                LONG,
                {"messages": messages, "turn": turn},
                parent,
                metadata={"source": "loop", "step": turn},
            )["configurable"]["checkpoint_id"]
        assert saver.storage_stats()["delta_blobs"] > 0
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")

        reader = RustPostgresCheckpointer(url, pool_size=1)
        try:
            latest = reader.get_tuple(cfg(LONG))
            assert [m.id for m in latest.checkpoint["channel_values"]["messages"]] == [
                m.id for m in messages
            ]
            listed = list(reader.list(cfg(LONG)))
            assert [t.metadata["step"] for t in listed] == list(range(TURNS - 1, -1, -1))
            assert [len(t.checkpoint["channel_values"]["messages"]) for t in listed] == [
                8 + TURNS - i for i in range(TURNS)
            ]
            assert len(list(reader.list(cfg(LONG), limit=5))) == 5
            assert len(list(reader.list(cfg(LONG), before=listed[9].config, limit=3))) == 3
            (third,) = reader.list(cfg(LONG), filter={"step": 3})
            assert len(third.checkpoint["channel_values"]["messages"]) == 8 + 4
            assert len(list(reader.list(None, filter={"source": "loop"}, limit=4))) == 4
        finally:
            reader.close()
    finally:
        saver.close()

    plans = _plans(written())
    reads = [(q, p) for q, p in plans if q.lstrip().startswith("WITH RECURSIVE cp")]
    # get_tuple and the five shapes of list above, each logged.
    assert len(reads) >= 6, f"expected the reads' plans in the server log, found {len(reads)}"
    for _query, plan in reads:
        assert re.search(r"\$\d", plan), f"not the generic plan:\n{plan}"
        _assert_blobs_read_by_key(plan, "on flg_blobs", "a blob")
    # The long thread's puts are each one statement, whose deltas' bases are read with a row
    # lock (LockRows), each by its whole key, under the generic plan too.
    puts = [
        p
        for q, p in plans
        if q.lstrip().startswith("WITH lock AS (SELECT pg_advisory_xact_lock_shared")
    ]
    # A put with no blob to store (the list still kept inside the row) is the lock and the
    # checkpoint's insert only (`PUT_ALONE_NO_BLOBS`): no base to read.
    no_blobs = [p for q, p in plans if q.lstrip().startswith("INSERT INTO flg_checkpoints")]
    assert len(puts) + len(no_blobs) >= TURNS, (
        f"expected the puts' plans in the server log, found {len(puts)} and {len(no_blobs)}"
    )
    assert len(puts) >= TURNS // 2, f"expected the puts with blobs, found {len(puts)}"
    for plan in puts:
        assert re.search(r"\$\d", plan), f"not the generic plan:\n{plan}"
        assert "LockRows" in plan, plan
        _assert_blobs_read_by_key(plan, "Scan", "a base")
    # Our sessions turn JIT off, though the database asks for it on every plan.
    ours = [p for _, p in plans]
    assert ours and not [p for p in ours if "JIT:" in p], (
        "a plan of the checkpointer was JIT-compiled"
    )


def test_the_server_keeps_the_generic_plan_of_a_delta_put(pg_server, pg_db):
    # Under the server's own choice (plan_cache_mode = auto), a prepared statement is planned
    # for its values five times, then planned generically once and kept so unless that plan
    # looks costlier than the ones made for the values. A put's base lookups, costed per value
    # of the parameters, made the generic plan look ten times costlier: the server planned
    # every put anew. The lookups' keys now come from arrays built in the statement, costed the
    # same in both plans.
    url, written = _log_plans(pg_server, pg_db)
    saver = RustPostgresCheckpointer(url, pool_size=1)
    saver.setup()
    try:
        messages = [HumanMessage(f"m{i}" + "." * 300, id=f"m{i}") for i in range(8)]
        parent = None
        for turn in range(TURNS):
            messages = [*messages, AIMessage(f"a{turn}" + "." * 300, id=f"a{turn}")]
            parent = put_values(saver, LONG, {"messages": messages}, parent)["configurable"][
                "checkpoint_id"
            ]
        assert saver.storage_stats()["delta_blobs"] > TURNS // 2
    finally:
        saver.close()
    puts = [p for q, p in _plans(written()) if q.lstrip().startswith("WITH lock AS (SELECT")]
    assert len(puts) == TURNS, f"expected every put's plan in the server log, found {len(puts)}"
    # The first few are planned for their values (the thread's id is in the plan), the last
    # half all generic ($1 in its place).
    assert f"'{LONG}'::text" in puts[0]
    custom = [i for i, p in enumerate(puts[TURNS // 2 :]) if f"'{LONG}'::text" in p]
    assert custom == [], f"puts planned for their values at calls {custom} of the last {TURNS // 2}"
    assert all("(thread_id = $1)" in p for p in puts[TURNS // 2 :])


def test_a_held_checkpoint_is_read_without_walking_delta_chains_and_a_delta_found_reads_whole(
    logged_db,
):
    # A get_tuple of a thread whose values the saver holds (it wrote or read a checkpoint of
    # it) is served by a statement without the recursive walk of delta chains: it reads the
    # checkpoint's blobs by their keys. When that statement finds a value stored as a delta
    # (another replica extended the list), the read is made again by list()'s statement.
    url, written = logged_db
    seen = [0]

    def reads_since() -> tuple[list[str], list[str]]:
        log = written()
        plans = _plans(log[seen[0] :])
        seen[0] = len(log)
        direct = [p for q, p in plans if q.lstrip().startswith("WITH cp AS")]
        whole = [p for q, p in plans if q.lstrip().startswith("WITH RECURSIVE cp")]
        return direct, whole

    doc = "x" * 5_000  # a blob of its own, never a delta
    messages = [HumanMessage(f"m{i}" + "." * 300, id=f"m{i}") for i in range(12)]
    a = RustPostgresCheckpointer(url, pool_size=1)
    b = RustPostgresCheckpointer(url, pool_size=1)
    a.setup()
    try:
        first = put_values(a, "t", {"doc": doc, "messages": messages, "n": 0})
        reads_since()
        got = a.get_tuple(cfg("t"))
        assert got.config == first
        assert got.checkpoint["channel_values"] == {"doc": doc, "messages": messages, "n": 0}
        direct, whole = reads_since()
        assert (len(direct), len(whole)) == (1, 0)
        assert re.search(r"\$\d", direct[0]), f"not the generic plan:\n{direct[0]}"
        assert "Recursive" not in direct[0], direct[0]
        _assert_blobs_read_by_key(direct[0], "on flg_blobs", "a blob")

        # Another replica, which holds nothing of the thread, reads it whole, then extends
        # the list: stored as a delta over the version `a` holds.
        read = b.get_tuple(cfg("t")).checkpoint["channel_values"]["messages"]
        assert read == messages
        direct, whole = reads_since()
        assert (len(direct), len(whole)) == (0, 1)
        deltas = b.storage_stats()["delta_blobs"]
        longer = [*read, AIMessage("a0" + "." * 300, id="a0")]
        second = put_values(
            b, "t", {"doc": doc, "messages": longer, "n": 1}, first["configurable"]["checkpoint_id"]
        )
        assert b.storage_stats()["delta_blobs"] == deltas + 1
        reads_since()

        # `a` starts with the statement that does not walk chains, finds the delta, and reads
        # again whole: the list comes back complete.
        got = a.get_tuple(cfg("t"))
        assert got.config == second
        assert got.checkpoint["channel_values"] == {"doc": doc, "messages": longer, "n": 1}
        direct, whole = reads_since()
        assert (len(direct), len(whole)) == (1, 1)
        # Both agree with a reader that holds nothing.
        assert b.get_tuple(cfg("t")).checkpoint == got.checkpoint
        reads_since()
        # A thread extended by another replica is read whole from then on, by `a` (which
        # holds its values): without first trying the statement that would find the delta.
        assert a.get_tuple(cfg("t")).checkpoint == got.checkpoint
        direct, whole = reads_since()
        assert (len(direct), len(whole)) == (0, 1)
        # Other threads are still read directly.
        put_values(a, "u", {"doc": doc, "messages": messages, "n": 0})
        reads_since()
        assert a.get_tuple(cfg("u")).checkpoint["channel_values"]["doc"] == doc
        direct, whole = reads_since()
        assert (len(direct), len(whole)) == (1, 0)

        # A list the saver extends itself is stored as a delta too: its first read after that
        # finds the delta and reads again whole; later reads are whole from the start.
        deltas = a.storage_stats()["delta_blobs"]
        mine = [HumanMessage(f"v{i}" + "." * 300, id=f"v{i}") for i in range(16)]
        parent = put_values(a, "v", {"messages": mine})["configurable"]["checkpoint_id"]
        grown = [*mine, AIMessage("w" + "." * 300, id="w")]
        put_values(a, "v", {"messages": grown}, parent)
        assert a.storage_stats()["delta_blobs"] == deltas + 1
        reads_since()
        assert a.get_tuple(cfg("v")).checkpoint["channel_values"]["messages"] == grown
        direct, whole = reads_since()
        assert (len(direct), len(whole)) == (1, 1)
        assert a.get_tuple(cfg("v")).checkpoint["channel_values"]["messages"] == grown
        direct, whole = reads_since()
        assert (len(direct), len(whole)) == (0, 1)
    finally:
        a.close()
        b.close()
