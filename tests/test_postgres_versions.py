"""RustPostgresCheckpointer stores channel versions in a compact binary form (schema 9): in the
checkpoint row's versions column, in the blob keys and delta bases, and in the payload's
channel_versions and versions_seen. Versions of any shape come back exactly as they were put;
LangGraph's own 51-character versions take 11-12 bytes. A database of schema 8 (versions as
text) is upgraded in place by setup(), losing nothing, into the same bytes the saver writes."""

from __future__ import annotations

import pg_storage
import psycopg
import pytest
from conftest import cfg
from graph_apps import chat_app
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fast_langgraph import RustPostgresCheckpointer

# Versions of every shape: LangGraph's, near misses of it, and arbitrary strings.
SHAPES = [
    "00000000000000000000000000000001.0.7406084589418389",
    "00000000000000000000000000000002.0.24949256527165098",
    "00000000000000000000000000000003.0000000000001e-05",
    "00000000000000000000000000000004.5",
    "00000000000000000000000000000000.",
    "00000000000000000000000000000005.0.5e+100",
    f"{2**63 - 1:032}.0.5",
    f"{2**63:032}.0.5",
    "0000000000000000000000000000006.0.5",
    "000000000000000000000000000000007.0.5",
    "00000000000000000000000000000008.0.5 ",
    "00000000000000000000000000000009.0.5E-05",
    "00000000000000000000000000000010",
    "7.5",
    "1",
    "",
    "é-ü ✓",
    "a\x00b",
]


def _tuples(saver, thread_id: str) -> list[tuple]:
    return [
        (t.config, t.checkpoint, t.metadata, t.parent_config, t.pending_writes)
        for t in saver.list(cfg(thread_id))
    ]


def _put_shapes(saver, thread_id: str, shapes: list[str] = SHAPES) -> list[dict]:
    """One checkpoint per shape, each of whose versions has one of `shapes`: a list stored whole then as a
    delta over a version of another shape, inline values, a blob value kept from the first,
    and the nodes' versions_seen. Returns the checkpoints as put."""
    n = len(shapes)
    cp = empty_checkpoint()
    # The list and the object are too large to travel inside the checkpoint: blobs.
    cp["channel_values"] = {
        "items": ["i" * 200] * 12,
        "s": "x",
        "none": None,
        "obj": {"k": ["o" * 2100]},
    }
    cp["channel_versions"] = {
        "items": shapes[0],
        "s": shapes[1],
        "none": shapes[2],
        "obj": shapes[3],
        **{f"valueless_{i}": v for i, v in enumerate(shapes)},
    }
    cp["versions_seen"] = {
        "node": {f"seen_{i}": v for i, v in enumerate(shapes)},
        "ints": {"a": 3, "b": 4.5},
        "empty": {},
    }
    conf = saver.put(
        cfg(thread_id, checkpoint_ns=""), cp, {"step": 1}, dict(cp["channel_versions"])
    )
    cps = [cp]
    # Every shape in turn as the list's next version, a delta over the one before.
    for i in range(1, n):
        nxt = {
            **cp,
            "id": empty_checkpoint()["id"],
            "channel_values": {
                **cp["channel_values"],
                "items": cp["channel_values"]["items"] + [i],
            },
            "channel_versions": {**cp["channel_versions"], "items": shapes[i]},
            "versions_seen": {**cp["versions_seen"], "node": {"items": shapes[i - 1]}},
        }
        conf = saver.put(conf, nxt, {"step": 1 + i}, {"items": shapes[i]})
        cp = nxt
        cps.append(cp)
    return cps


def test_versions_of_any_shape_round_trip_exactly(pg_db):
    with RustPostgresCheckpointer(pg_db) as saver:
        saver.setup()
        cps = _put_shapes(saver, "shapes")
        # The list was stored as deltas over versions of every shape.
        with psycopg.connect(pg_db) as conn:
            (deltas,) = conn.execute(
                "SELECT count(*) FROM flg_blobs WHERE delta_base IS NOT NULL"
            ).fetchone()
        assert deltas > 0
    with RustPostgresCheckpointer(pg_db) as fresh:
        got = [t[1] for t in _tuples(fresh, "shapes")]
        assert got == cps[::-1]
        for want, cp in zip(cps[::-1], got):
            # The same strings, and the same types (an int stays an int).
            def typed(d: dict) -> list:
                return sorted((k, type(v).__name__, v) for k, v in d.items())

            assert typed(cp["channel_versions"]) == typed(want["channel_versions"])
            for node, seen in want["versions_seen"].items():
                assert typed(cp["versions_seen"][node]) == typed(seen)
        one = fresh.get_tuple(cfg("shapes", checkpoint_id=cps[3]["id"]))
        assert one.checkpoint == cps[3]
        # copy_thread, keep_latest and the delta history read them too.
        fresh.copy_thread("shapes", "shapes-copy")
        assert [t[1] for t in _tuples(fresh, "shapes-copy")] == cps[::-1]
        fresh.prune(["shapes"], strategy="keep_latest")
        assert fresh.get_tuple(cfg("shapes")).checkpoint == cps[-1]
        assert fresh.storage_stats()["checkpoints"] == len(cps) + 1


class OddVersions(RustPostgresCheckpointer):
    """Versions of a shape of its own: a counter behind text no compact form covers."""

    def get_next_version(self, current, channel):
        n = 0 if current is None else int(str(current).split("·")[1])
        return f"v·{n + 1}·é"


@pytest.mark.parametrize("kind", [RustPostgresCheckpointer, OddVersions])
def test_a_real_graph_reads_back_the_versions_it_made(pg_db, kind):
    with kind(pg_db) as saver:
        saver.setup()
        graph = chat_app([f"reply {i}" for i in range(4)]).compile(checkpointer=saver)
        for i in range(4):
            graph.invoke({"messages": [HumanMessage(f"q{i}", id=f"h{i}")]}, cfg("real"))
        want = _tuples(saver, "real")
    with kind(pg_db) as fresh:
        assert _tuples(fresh, "real") == want
        versions = {v for t in want for v in t[1]["channel_versions"].values()}
        if kind is OddVersions:
            assert all(v.startswith("v·") for v in versions)
        else:
            # "%032d.%016f"-like: 49 characters at least (random() of a short repr is padded).
            assert all(len(v) >= 49 for v in versions)
    with psycopg.connect(pg_db) as conn:
        stored = conn.execute("SELECT versions FROM flg_checkpoints").fetchall()
        keys = conn.execute("SELECT version FROM flg_blobs").fetchall()
    for (column,) in stored:
        for v in column:
            assert pg_storage.decode(v) in versions
            assert pg_storage.encode(pg_storage.decode(v)) == bytes(v)
            if kind is RustPostgresCheckpointer:
                assert len(v) <= 12
    assert {pg_storage.decode(v) for (v,) in keys} <= versions


def test_the_stored_forms(pg_db):
    with RustPostgresCheckpointer(pg_db) as saver:
        saver.setup()
        cps = _put_shapes(saver, "forms")
    with psycopg.connect(pg_db) as conn:
        rows = conn.execute(
            "SELECT checkpoint_id, type, checkpoint, channels, versions FROM flg_checkpoints"
        ).fetchall()
        blobs = conn.execute("SELECT version, delta_base FROM flg_blobs").fetchall()
    by_id = {cp["id"]: cp for cp in cps}
    for cid, tag, data, channels, versions in rows:
        cp = by_id[cid]
        assert [bytes(v) for v in versions] == [
            pg_storage.encode(cp["channel_versions"][ch]) for ch in channels
        ]
        # The payload's versions are compact (a type tag ending in +v) and decode back.
        assert tag == "msgpack+v"
        payload = pg_storage.payload(tag, data)
        assert payload["versions_seen"] == cp["versions_seen"]
        raw = JsonPlusSerializer().loads_typed(("msgpack", bytes(data)))
        stored = [*raw["channel_versions"].values()]
        stored += [v for seen in raw["versions_seen"].values() for v in seen.values()]
        assert any(isinstance(v, bytes) for v in stored)
        assert {type(v) for v in stored} <= {bytes, str, int, float}
    lengths = {pg_storage.decode(v): len(v) for v, _ in blobs}
    assert lengths[SHAPES[0]] == 10 and lengths[SHAPES[1]] == 11
    assert all(base is None or pg_storage.decode(base) in SHAPES for _, base in blobs)
    for shape in SHAPES:
        stored = pg_storage.encode(shape)
        assert (stored[0] == 0) == (len(stored) == len(shape.encode()) + 1)


# -- the upgrade from schema 8 -----------------------------------------------------------------


def _to_schema_8(url: str) -> None:
    """Rewrites the database as schema 8 stored it: versions as text, in the columns, the blob
    keys and the payloads, the indexes' default fill, and schema 8 the latest applied."""
    serde = JsonPlusSerializer()
    with psycopg.connect(url) as conn:
        cps = conn.execute(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, type, checkpoint, versions FROM flg_checkpoints"
        ).fetchall()
        blobs = conn.execute(
            "SELECT thread_id, checkpoint_ns, channel, version, delta_base FROM flg_blobs"
        ).fetchall()
        conn.execute(
            "ALTER TABLE flg_checkpoints ALTER COLUMN versions TYPE text[] USING '{}'::text[]"
        )
        conn.execute(
            "ALTER TABLE flg_blobs ALTER COLUMN version TYPE text USING encode(version, 'hex'), "
            "ALTER COLUMN delta_base TYPE text USING encode(delta_base, 'hex')"
        )
        compact = 0
        for thread, ns, cid, tag, data, versions in cps:
            if "+v" in tag:
                compact += 1
                tag, data = serde.dumps_typed(pg_storage.payload(tag, data))
            conn.execute(
                "UPDATE flg_checkpoints SET type = %s, checkpoint = %s, versions = %s "
                "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s",
                (tag, data, [pg_storage.decode(v) for v in versions], thread, ns, cid),
            )
        assert compact > 0
        for thread, ns, channel, version, base in blobs:
            conn.execute(
                "UPDATE flg_blobs SET version = %s, delta_base = %s WHERE thread_id = %s "
                "AND checkpoint_ns = %s AND channel = %s AND version = %s",
                (
                    pg_storage.decode(version),
                    None if base is None else pg_storage.decode(base),
                    thread,
                    ns,
                    channel,
                    bytes(version).hex(),
                ),
            )
        for index in ("flg_checkpoints_pkey", "flg_blobs_pkey", "flg_writes_pkey"):
            conn.execute(f"ALTER INDEX {index} RESET (fillfactor)")
        conn.execute("DELETE FROM flg_pg_migrations WHERE v >= 9")
        conn.execute(
            "COMMENT ON TABLE flg_checkpoints IS 'fast-langgraph checkpoints; from schema 8, small "
            "scalar channel values are inline in the checkpoint payload'"
        )


def _keys(url: str) -> tuple[list, list]:
    with psycopg.connect(url) as conn:
        cps = conn.execute(
            "SELECT thread_id, checkpoint_id, channels, versions FROM flg_checkpoints ORDER BY 1, 2"
        ).fetchall()
        blobs = conn.execute(
            "SELECT thread_id, channel, version, delta_base FROM flg_blobs ORDER BY 1, 2, 3"
        ).fetchall()
    return cps, blobs


def test_setup_upgrades_a_schema_8_database_losing_nothing(pg_db):
    # Schema 8 kept versions as text, which cannot hold U+0000.
    shapes = [v for v in SHAPES if "\x00" not in v]
    with RustPostgresCheckpointer(pg_db) as saver:
        saver.setup()
        cps = _put_shapes(saver, "shapes", shapes)
        graph = chat_app([f"reply {i}" for i in range(4)]).compile(checkpointer=saver)
        for i in range(3):
            graph.invoke({"messages": [HumanMessage(f"q{i}", id=f"h{i}")]}, cfg("chat"))
        want = {t: _tuples(saver, t) for t in ("shapes", "chat")}
    keys = _keys(pg_db)
    _to_schema_8(pg_db)
    with psycopg.connect(pg_db) as conn:
        (text_versions,) = conn.execute(
            "SELECT versions FROM flg_checkpoints WHERE thread_id = 'shapes' "
            "ORDER BY checkpoint_id LIMIT 1"
        ).fetchone()
    assert shapes[0] in text_versions
    with RustPostgresCheckpointer(pg_db) as upgraded:
        upgraded.setup()
        with psycopg.connect(pg_db) as conn:
            applied = [v for (v,) in conn.execute("SELECT v FROM flg_pg_migrations ORDER BY v")]
            functions = conn.execute(
                "SELECT count(*) FROM pg_proc WHERE proname LIKE 'flg_version_key%%'"
            ).fetchone()
        assert applied == list(range(applied[-1] + 1)) and applied[-1] >= 9
        assert functions == (0,)
        # The SQL of the migration wrote the very bytes the saver writes.
        assert _keys(pg_db) == keys
        for thread, rows in want.items():
            assert _tuples(upgraded, thread) == rows
        # The threads go on: a new delta over a version the migration converted.
        graph = chat_app(["reply 3"]).compile(checkpointer=upgraded)
        out = graph.invoke({"messages": [HumanMessage("q3", id="h3")]}, cfg("chat"))
        assert [m.content for m in out["messages"]] == [
            x for i in range(4) for x in (f"q{i}", f"reply {i}")
        ]
        nxt = {
            **cps[-1],
            "id": empty_checkpoint()["id"],
            "channel_values": {**cps[-1]["channel_values"], "items": [0]},
        }
        upgraded.put(cfg("shapes", checkpoint_ns="", checkpoint_id=cps[-1]["id"]), nxt, {}, {})
        assert (
            upgraded.get_tuple(cfg("shapes")).checkpoint["channel_versions"]
            == nxt["channel_versions"]
        )
        assert _tuples(upgraded, "shapes")[1:] == want["shapes"]
        assert upgraded._store.schema_version() == applied[-1]
        after = {t: _tuples(upgraded, t) for t in ("shapes", "chat")}
    # Set up again: nothing left to do.
    with RustPostgresCheckpointer(pg_db) as again:
        again.setup()
        assert {t: _tuples(again, t) for t in ("shapes", "chat")} == after
