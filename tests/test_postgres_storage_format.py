"""RustPostgresCheckpointer's stored format: payloads of 2 KB and more are stored deflated
(zlib, type tag ending in "+zlib") when that saves space, a channel version without a value
gets no blob row, small scalar values (bool, int, float, short str, None) are kept inside the
checkpoint's payload with their versions instead of in blob rows, and a checkpoint's payload
leaves out the channel versions that its row's versions column holds (reading puts them back).
Rows in the earlier formats (every payload whole, "empty" blob rows, every value a blob) still
read; a damaged deflated payload fails only the reads that need it, with an error naming the
thread and the checkpoint, and nothing is deleted."""

from __future__ import annotations

import random
import re
import zlib

import pg_storage
import psycopg
import pytest
from conftest import cfg
from graph_apps import chat_app, thread_dump
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fast_langgraph import CheckpointError, RustPostgresCheckpointer

_WORDS = [a + b + c for a in "bcdfgklmnprst" for b in "aeiou" for c in ("n", "r", "s", "")]

TABLES = {"flg_checkpoints": "checkpoint", "flg_blobs": "blob", "flg_writes": "blob"}


def _text(seed: int, n: int = 500) -> str:
    """About 2.3 KB of words: each message, and each write of one, is stored deflated."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _chat(saver, thread_id: str, turns: int = 3) -> None:
    graph = chat_app([_text(1000 + i) for i in range(turns)]).compile(checkpointer=saver)
    for i in range(turns):
        graph.invoke({"messages": [HumanMessage(_text(i), id=f"h{i}")]}, cfg(thread_id))


def _put_wide(saver, thread_id: str, parent: str | None = None) -> str:
    """A checkpoint of 40 small channels, all seen by two nodes: its payload (the versions
    seen) is over 2 KB."""
    cp = empty_checkpoint()
    cp["channel_values"] = {f"channel_{i}": i for i in range(40)}
    cp["channel_versions"] = {k: saver.get_next_version(None, None) for k in cp["channel_values"]}
    cp["versions_seen"] = {n: dict(cp["channel_versions"]) for n in ("node_a", "node_b")}
    conf = cfg(thread_id, checkpoint_ns="")
    if parent:
        conf["configurable"]["checkpoint_id"] = parent
    out = saver.put(conf, cp, {"source": "loop", "step": 1}, cp["channel_versions"])
    return out["configurable"]["checkpoint_id"]


def _thread(saver, thread_id: str) -> list[tuple]:
    return [(t.checkpoint, t.metadata, t.pending_writes) for t in saver.list(cfg(thread_id))]


def _rows(url: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params or None).fetchall()


def _execute(url: str, sql: str, *params) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql, params or None)


def _counts(url: str) -> list[tuple]:
    return _rows(
        url,
        "SELECT (SELECT count(*) FROM flg_checkpoints), (SELECT count(*) FROM flg_blobs), "
        "(SELECT count(*) FROM flg_writes)",
    )


@pytest.fixture
def saver(pg_db):
    s = RustPostgresCheckpointer(pg_db, pool_size=4)
    s.setup()
    yield s
    s.close()


def test_large_payloads_are_stored_deflated_and_read_back(saver, pg_db):
    _chat(saver, "z")
    _put_wide(saver, "wide")
    want = thread_dump(saver, "z")
    wide = saver.get_tuple(cfg("wide")).checkpoint
    for table, column in TABLES.items():
        rows = _rows(pg_db, f"SELECT type, {column} FROM {table}")
        packed = [(t, bytes(d)) for t, d in rows if t.endswith("+zlib")]
        assert packed, f"nothing in {table} was stored deflated"
        for _, data in packed:
            # Standard zlib: any zlib reads it, and it saved at least an eighth.
            raw = zlib.decompress(data)
            assert len(raw) >= 2048
            assert len(data) <= len(raw) - len(raw) // 8
        for t, data in rows:
            if not t.endswith("+zlib") and data is not None:
                # Stored whole: small, or not worth compressing.
                assert len(data) < 2048 or len(zlib.compress(data)) > len(data) * 7 // 8
    # A saver with nothing cached reads every value back, as it was put.
    with RustPostgresCheckpointer(pg_db) as fresh:
        assert thread_dump(fresh, "z") == want
        assert fresh.get_tuple(cfg("wide")).checkpoint == wide
        messages = fresh.get_tuple(cfg("z")).checkpoint["channel_values"]["messages"]
        assert [m.content for m in messages] == [
            x for i in range(3) for x in (_text(i), _text(1000 + i))
        ]


def test_a_version_without_a_value_stores_no_row(saver, pg_db):
    _chat(saver, "e")
    assert _rows(pg_db, "SELECT count(*) FROM flg_blobs WHERE type = 'empty'") == [(0,)]
    # The checkpoints still name versions of channels that hold no value, and read them as
    # no value.
    valueless = 0
    for t in saver.list(cfg("e")):
        cp = t.checkpoint
        valueless += len(set(cp["channel_versions"]) - set(cp["channel_values"]))
    assert valueless > 0


def _to_earlier_format(url: str) -> None:
    """Rewrites the rows as builds before compression stored them: every payload whole, and an
    "empty" blob row for each version a checkpoint names without a stored value."""
    with psycopg.connect(url) as conn:
        for table, column in TABLES.items():
            rows = conn.execute(
                f"SELECT ctid::text, type, {column} FROM {table} WHERE type LIKE '%+zlib'"
            ).fetchall()
            assert rows, f"nothing in {table} was stored deflated"
            for ctid, tag, data in rows:
                conn.execute(
                    f"UPDATE {table} SET type = %s, {column} = %s WHERE ctid = %s::tid",
                    (tag.removesuffix("+zlib"), zlib.decompress(data), ctid),
                )
        added = conn.execute(
            "INSERT INTO flg_blobs (thread_id, checkpoint_ns, channel, version, type, blob) "
            "SELECT DISTINCT c.thread_id, c.checkpoint_ns, u.channel, u.version, 'empty', ''::bytea "
            "FROM flg_checkpoints c CROSS JOIN LATERAL unnest(c.channels, c.versions) AS u(channel, version) "
            "WHERE NOT EXISTS (SELECT 1 FROM flg_blobs b WHERE b.thread_id = c.thread_id "
            "AND b.checkpoint_ns = c.checkpoint_ns AND b.channel = u.channel AND b.version = u.version)"
        ).rowcount
        assert added > 0


def test_rows_in_the_earlier_format_still_read(saver, pg_db):
    _chat(saver, "old", turns=2)
    _put_wide(saver, "old-wide")
    want = thread_dump(saver, "old")
    wide = saver.get_tuple(cfg("old-wide")).checkpoint
    saver.close()
    _to_earlier_format(pg_db)
    assert _rows(pg_db, "SELECT count(*) FROM flg_blobs WHERE type LIKE '%+zlib'") == [(0,)]
    with RustPostgresCheckpointer(pg_db) as old:
        old.setup()
        assert thread_dump(old, "old") == want
        assert old.get_tuple(cfg("old-wide")).checkpoint == wide
        # The thread goes on; the new rows are deflated beside the old whole ones.
        graph = chat_app([_text(77)]).compile(checkpointer=old)
        out = graph.invoke({"messages": [HumanMessage(_text(76), id="h-next")]}, cfg("old"))
        assert [m.content for m in out["messages"][-2:]] == [_text(76), _text(77)]
        assert len(out["messages"]) == 6
        assert _rows(pg_db, "SELECT count(*) FROM flg_blobs WHERE type LIKE '%+zlib'") != [(0,)]
        # Retention reads both kinds: keeping the newest checkpoint keeps its whole value.
        old.prune(["old"], strategy="keep_latest")
        assert [
            m.content for m in old.get_tuple(cfg("old")).checkpoint["channel_values"]["messages"]
        ] == [m.content for m in out["messages"]]


def _payload(tag: str, data: bytes) -> dict:
    return pg_storage.payload(tag, data)


def _versions(stored: list[bytes]) -> list[str]:
    return [pg_storage.decode(v) for v in stored]


def test_the_payload_leaves_the_channel_versions_to_the_row(saver, pg_db):
    _chat(saver, "cv")
    first = _put_wide(saver, "cv-wide")
    _put_wide(saver, "cv-wide", parent=first)
    rows = _rows(
        pg_db, "SELECT type, checkpoint, channels, versions, checkpoint_id FROM flg_checkpoints"
    )
    assert len(rows) > 5
    want = {}
    for tag, data, channels, versions, cid in rows:
        assert tag.startswith("msgpack")
        # Only the versions of the values kept inline stay in the payload.
        payload = _payload(tag, bytes(data))
        own = payload.get("channel_versions", {})
        assert own.keys() == payload.get("channel_values", {}).keys()
        assert not own.keys() & set(channels)
        want[cid] = {**dict(zip(channels, _versions(versions))), **own}
    assert any(len(w) > 20 for w in want.values())
    # Every reader gets them back, every key and value, from a saver with nothing cached.
    with RustPostgresCheckpointer(pg_db) as fresh:
        for thread in ("cv", "cv-wide"):
            tuples = list(fresh.list(cfg(thread)))
            assert tuples
            for t in tuples:
                cid = t.config["configurable"]["checkpoint_id"]
                assert t.checkpoint["channel_versions"] == want[cid]
                one = fresh.get_tuple(cfg(thread, checkpoint_id=cid))
                assert one.checkpoint == t.checkpoint
        assert fresh.get_tuple(cfg("cv")).checkpoint["channel_versions"].keys() >= {"messages"}
        # Exactly as put: the whole checkpoint, values and versions.
        cp = empty_checkpoint()
        cp["channel_values"] = {"a": [1, 2], "b": "x"}
        cp["channel_versions"] = {"a": fresh.get_next_version(None, None), "b": "7.5", "c": "1"}
        conf = fresh.put(cfg("cv-put", checkpoint_ns=""), cp, {"step": 1}, cp["channel_versions"])
        assert fresh.get_tuple(conf).checkpoint == cp
        # copy_thread copies the rows: the copy reads the same.
        fresh.copy_thread("cv", "cv-copy")
        assert [t.checkpoint for t in fresh.list(cfg("cv-copy"))] == [
            t.checkpoint for t in fresh.list(cfg("cv"))
        ]


def test_versions_that_are_not_strings_stay_in_the_payload(saver, pg_db):
    cp = empty_checkpoint()
    cp["channel_values"] = {"a": 1}
    cp["channel_versions"] = {"a": 3, "b": 4}
    conf = saver.put(cfg("ints", checkpoint_ns=""), cp, {"step": 1}, {"a": 3, "b": 4})
    ((tag, data),) = _rows(pg_db, "SELECT type, checkpoint FROM flg_checkpoints")
    assert _payload(tag, bytes(data))["channel_versions"] == {"a": 3, "b": 4}
    with RustPostgresCheckpointer(pg_db) as fresh:
        got = fresh.get_tuple(conf).checkpoint
        assert got == cp
        assert [type(v) for v in got["channel_versions"].values()] == [int, int]


def test_payloads_with_their_own_channel_versions_still_read(saver, pg_db):
    """Rows written before the payload left the versions out hold them in both places; a
    payload's own channel_versions win over the column."""
    _chat(saver, "own", turns=2)
    first = _put_wide(saver, "own-wide")
    _put_wide(saver, "own-wide", parent=first)
    want = thread_dump(saver, "own")
    wide = [t.checkpoint for t in saver.list(cfg("own-wide"))]
    saver.close()
    serde = JsonPlusSerializer()
    update = (
        "UPDATE flg_checkpoints SET type = %s, checkpoint = %s "
        "WHERE thread_id = %s AND checkpoint_id = %s"
    )
    rows = _rows(
        pg_db,
        "SELECT thread_id, checkpoint_id, type, checkpoint, channels, versions FROM flg_checkpoints",
    )
    payloads = {}
    for thread, cid, tag, data, channels, versions in rows:
        payload = _payload(tag, bytes(data))
        payloads[thread, cid] = {
            **payload,
            "channel_versions": {
                **dict(zip(channels, _versions(versions))),
                **payload.get("channel_versions", {}),
            },
        }
        _execute(pg_db, update, *serde.dumps_typed(payloads[thread, cid]), thread, cid)
    with RustPostgresCheckpointer(pg_db) as old:
        assert thread_dump(old, "own") == want
        assert [t.checkpoint for t in old.list(cfg("own-wide"))] == wide
        # A payload whose versions differ from its row's column: the payload's win, and the
        # column adds those the payload lacks.
        thread, cid, _, _, channels, versions = next(r for r in rows if r[4])
        assert channels
        odd = {
            **payloads[thread, cid],
            "channel_versions": {"only_in_payload": "9", channels[0]: "other"},
        }
        _execute(pg_db, update, *serde.dumps_typed(odd), thread, cid)
        got = old.get_tuple(cfg(thread, checkpoint_id=cid)).checkpoint
        assert got["channel_versions"] == {
            **dict(zip(channels, _versions(versions))),
            "only_in_payload": "9",
            channels[0]: "other",
        }


def _damage(url: str, table: str, column: str, where: str, *params) -> None:
    """Flips a byte in the middle of one deflated payload."""
    _execute(
        url,
        f"UPDATE {table} SET {column} = set_byte({column}, length({column}) / 2, "
        f"get_byte({column}, length({column}) / 2) # 255) WHERE ctid = "
        f"(SELECT ctid FROM {table} WHERE type LIKE '%%+zlib' AND {where} LIMIT 1)",
        *params,
    )


def test_a_damaged_payload_fails_only_the_reads_that_need_it(saver, pg_db):
    first = _put_wide(saver, "a")
    bad = _put_wide(saver, "a", parent=first)
    _chat(saver, "b")
    b_before = _thread(saver, "b")
    counts = _counts(pg_db)
    assert _rows(pg_db, "SELECT type FROM flg_checkpoints WHERE checkpoint_id = %s", bad) == [
        ("msgpack+v+zlib",)
    ]
    _damage(
        pg_db, "flg_checkpoints", "checkpoint", "thread_id = %s AND checkpoint_id = %s", "a", bad
    )
    with RustPostgresCheckpointer(pg_db) as fresh:
        message = re.escape(f'checkpoint "{bad}" of thread "a"') + ".*damaged"
        with pytest.raises(CheckpointError, match=message):
            fresh.get_tuple(cfg("a"))
        with pytest.raises(CheckpointError, match=message):
            list(fresh.list(cfg("a")))
        # The thread's other checkpoint, and the other thread, still read.
        assert fresh.get_tuple(cfg("a", checkpoint_id=first)).checkpoint["channel_values"] == {
            f"channel_{i}": i for i in range(40)
        }
        assert _thread(fresh, "b") == b_before
    assert _counts(pg_db) == counts

    # A damaged channel value: the checkpoints that need it fail, naming the checkpoint and
    # the channel.
    _damage(pg_db, "flg_blobs", "blob", "thread_id = %s AND channel = 'messages'", "b")
    with RustPostgresCheckpointer(pg_db) as fresh:
        with pytest.raises(CheckpointError, match=r"thread \"b\".*channel \"messages\".*damaged"):
            list(fresh.list(cfg("b")))
        # The thread's first checkpoint holds no messages yet, and the other thread's do not
        # share the damaged one.
        (oldest,) = _rows(
            pg_db, "SELECT min(checkpoint_id) FROM flg_checkpoints WHERE thread_id = 'b'"
        )[0]
        assert fresh.get_tuple(cfg("b", checkpoint_id=oldest)) is not None
        assert fresh.get_tuple(cfg("a", checkpoint_id=first)) is not None
    assert _counts(pg_db) == counts


def test_a_damaged_write_names_its_task_and_checkpoint(saver, pg_db):
    _chat(saver, "w")
    task, cid = _rows(
        pg_db,
        "SELECT task_id, checkpoint_id FROM flg_writes WHERE thread_id = 'w' AND type LIKE '%+zlib' LIMIT 1",
    )[0]
    _damage(pg_db, "flg_writes", "blob", "thread_id = %s AND task_id = %s", "w", task)
    with RustPostgresCheckpointer(pg_db) as fresh:
        with pytest.raises(
            CheckpointError, match=f'checkpoint "{cid}" of thread "w".*task "{task}"'
        ):
            fresh.get_tuple(cfg("w", checkpoint_id=cid))
        # The newest checkpoint does not need that write.
        assert fresh.get_tuple(cfg("w")) is not None


def _scalar_checkpoint(saver) -> tuple[dict, dict]:
    """A checkpoint with a value of every kind kept inline, and values too large to be (over
    the 2 KB of msgpack a checkpoint keeps inside)."""
    cp = empty_checkpoint()
    cp["channel_values"] = {
        "count": 3,
        "ratio": 1.5,
        "flag": True,
        "off": False,
        "name": "short",
        "edge": "y" * 256,
        "long": "x" * 2100,
        "none": None,
        "items": ["i" * 700] * 3,
    }
    versions = {k: saver.get_next_version(None, None) for k in cp["channel_values"]}
    versions["valueless"] = saver.get_next_version(None, None)
    cp["channel_versions"] = versions
    return cp, versions


INLINE = {"count", "ratio", "flag", "off", "name", "edge", "none"}


def test_small_scalars_are_kept_in_the_checkpoint_row(saver, pg_db):
    """bool, int, float, str of at most 256 characters and None are stored in the checkpoint's
    payload, with their versions, and get no blob row (as PostgresSaver keeps them); a str and
    a list too large to travel inside go to blobs. Every value reads back equal, with the same type, from a
    saver with nothing cached."""
    cp, versions = _scalar_checkpoint(saver)
    conf = saver.put(cfg("inline", checkpoint_ns=""), cp, {"step": 1}, versions)
    blobs = {ch for (ch,) in _rows(pg_db, "SELECT channel FROM flg_blobs")}
    assert blobs == {"long", "items"}
    ((tag, data, channels),) = _rows(
        pg_db, "SELECT type, checkpoint, channels FROM flg_checkpoints"
    )
    assert set(channels) == {"long", "items", "valueless"}
    payload = _payload(tag, bytes(data))
    assert payload["channel_values"] == {ch: cp["channel_values"][ch] for ch in INLINE}
    assert payload["channel_versions"] == {ch: versions[ch] for ch in INLINE}
    with RustPostgresCheckpointer(pg_db) as fresh:
        for got in (
            fresh.get_tuple(conf).checkpoint,
            next(iter(fresh.list(cfg("inline")))).checkpoint,
        ):
            assert got == cp
            for ch, value in cp["channel_values"].items():
                assert type(got["channel_values"][ch]) is type(value), ch
    # The next checkpoint writes only what changed; the inline values come along in its row.
    nxt = {
        **cp,
        "id": empty_checkpoint()["id"],
        "channel_values": {**cp["channel_values"], "items": ["i" * 700] * 4, "count": 4},
    }
    new_versions = {"items": saver.get_next_version(None, None), "count": "9.0"}
    nxt["channel_versions"] = {**versions, **new_versions}
    conf2 = saver.put(conf, nxt, {"step": 2}, new_versions)
    assert len(_rows(pg_db, "SELECT 1 FROM flg_blobs")) == 3
    with RustPostgresCheckpointer(pg_db) as fresh:
        assert fresh.get_tuple(conf2).checkpoint == nxt
        assert fresh.get_tuple(conf).checkpoint == cp
        assert [t.checkpoint for t in fresh.list(cfg("inline"))] == [nxt, cp]
        # Keeping the latest keeps its values; the blobs only the older one needed go.
        fresh.prune(["inline"], strategy="keep_latest")
        assert fresh.get_tuple(cfg("inline")).checkpoint == nxt
        assert len(_rows(pg_db, "SELECT 1 FROM flg_blobs")) == 2
        fresh.copy_thread("inline", "inline-copy")
        assert fresh.get_tuple(cfg("inline-copy")).checkpoint == nxt


def test_rows_without_inline_values_read_as_before(saver, pg_db):
    """Checkpoints stored before values were kept inline have every value in a blob row and
    every version in the row's columns: they read the same."""
    cp, versions = _scalar_checkpoint(saver)
    conf = saver.put(cfg("before", checkpoint_ns=""), cp, {"step": 1}, versions)
    _chat(saver, "before-chat", turns=2)
    want_chat = thread_dump(saver, "before-chat")
    saver.close()
    serde = JsonPlusSerializer()
    rows = _rows(
        pg_db,
        "SELECT thread_id, checkpoint_id, type, checkpoint, channels, versions FROM flg_checkpoints",
    )
    moved = 0
    with psycopg.connect(pg_db) as conn:
        for thread, cid, tag, data, channels, col_versions in rows:
            payload = _payload(tag, bytes(data))
            inline = payload.pop("channel_values", {})
            inline_versions = payload.pop("channel_versions", {})
            for ch, value in inline.items():
                conn.execute(
                    "INSERT INTO flg_blobs (thread_id, checkpoint_ns, channel, version, type, blob) "
                    "VALUES (%s, '', %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (thread, ch, pg_storage.encode(inline_versions[ch]), *serde.dumps_typed(value)),
                )
                moved += 1
            conn.execute(
                "UPDATE flg_checkpoints SET type = %s, checkpoint = %s, channels = %s, versions = %s "
                "WHERE thread_id = %s AND checkpoint_id = %s",
                (
                    *serde.dumps_typed(payload),
                    [*channels, *inline_versions],
                    [*col_versions, *map(pg_storage.encode, inline_versions.values())],
                    thread,
                    cid,
                ),
            )
    assert moved >= len(INLINE)
    with RustPostgresCheckpointer(pg_db) as old:
        old.setup()
        got = old.get_tuple(conf).checkpoint
        assert got == cp
        for ch, value in cp["channel_values"].items():
            assert type(got["channel_values"][ch]) is type(value), ch
        assert thread_dump(old, "before-chat") == want_chat
        # The thread goes on in the new format beside the old rows.
        graph = chat_app(["three"]).compile(checkpointer=old)
        out = graph.invoke({"messages": [HumanMessage("c", id="h-c")]}, cfg("before-chat"))
        assert [m.content for m in out["messages"]][-2:] == ["c", "three"]
        assert thread_dump(old, "before-chat")[: len(want_chat)] == want_chat


def test_older_builds_refuse_a_database_with_inline_values(saver, pg_db):
    """The format is marked by a schema version: a build that knows only the versions before
    it refuses the database (see test_setup_is_versioned_and_idempotent)."""
    (latest,) = _rows(pg_db, "SELECT max(v) FROM flg_pg_migrations")[0]
    assert latest >= 8
    ((comment,),) = _rows(pg_db, "SELECT obj_description('flg_checkpoints'::regclass)")
    assert "inline" in comment


def test_a_cycle_of_delta_bases_fails_the_read_and_ends(saver, pg_db):
    # A list channel stored as a full value and two deltas, then damaged so that the full value
    # names the newest delta as its base: reading the checkpoint must end with an error naming
    # the thread (the statement's walk along delta bases stops at a key it has seen, and so
    # does the reader's), not loop.
    rng = random.Random(7)
    items = [f"{rng.getrandbits(1600):0400x}" for _ in range(16)]
    parent = None
    for n in (16, 17, 18):
        if n > len(items):
            items = [*items, f"{rng.getrandbits(1600):0400x}"]
        cp = empty_checkpoint()
        cp["channel_values"] = {"log": items}
        cp["channel_versions"] = {"log": saver.get_next_version(None, None)}
        conf = cfg("cycle", checkpoint_ns="")
        if parent:
            conf["configurable"]["checkpoint_id"] = parent
        parent = saver.put(conf, cp, {"source": "loop", "step": n}, cp["channel_versions"])[
            "configurable"
        ]["checkpoint_id"]
    assert saver.get_tuple(cfg("cycle")).checkpoint["channel_values"]["log"] == items
    blobs = _rows(pg_db, "SELECT version, delta_base FROM flg_blobs WHERE thread_id = 'cycle'")
    assert sorted(base is None for _, base in blobs) == [False, False, True]
    (newest,) = [v for v, base in blobs if base is not None and v not in {b for _, b in blobs}]
    _execute(
        pg_db,
        "UPDATE flg_blobs SET delta_base = %s WHERE thread_id = 'cycle' AND delta_base IS NULL",
        newest,
    )
    with RustPostgresCheckpointer(pg_db) as fresh:
        with pytest.raises(CheckpointError, match=r'thread "cycle"'):
            fresh.get_tuple(cfg("cycle"))
        with pytest.raises(CheckpointError, match=r'thread "cycle"'):
            list(fresh.list(cfg("cycle")))
