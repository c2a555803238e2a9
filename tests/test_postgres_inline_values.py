"""RustPostgresCheckpointer keeps small channel values of any type inside their checkpoint
with the default serializer (up to 2 KB of msgpack per checkpoint), as RustSQLiteCheckpointer
does (tests/test_inline_values.py): every read gives back the values that were put, at every
checkpoint of a thread; a checkpoint that does not change such a value carries it too, whether
or not this process wrote the one before; DeltaChannel histories find a seed kept inside an
ancestor's checkpoint as PostgresSaver's do. Real throwaway server (tests/pg_server.py)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from saver_steps import (
    LARGE,
    SMALL,
    cfg,
    continue_pickled,
    pickled_checkpoint,
    read_all,
    step,
    values_at,
)

from fast_langgraph import RustPostgresCheckpointer


def _blob_rows(url: str, thread: str) -> list[tuple[str, bytes]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT channel, blob FROM flg_blobs WHERE thread_id = %s ORDER BY channel, version",
            (thread,),
        ).fetchall()


@pytest.fixture
def saver(pg_db):
    with RustPostgresCheckpointer(pg_db) as s:
        s.setup()
        yield s


def test_a_small_value_goes_inside_and_a_large_one_apart(saver) -> None:
    v = {"small": "1", "large": "1"}
    cid = step(saver, "t", None, {"small": SMALL, "large": LARGE}, v, v)
    assert saver.storage_stats()["blobs"] == 1
    assert values_at(saver, "t", cid) == {"small": SMALL, "large": LARGE}
    assert read_all(saver, "t") == [{"small": SMALL, "large": LARGE}]


def test_the_values_inside_share_2_kb(saver) -> None:
    """Two new values of 1.5 KB: the first goes inside, the second apart."""
    a, b = ["a" * 1500], ["b" * 1500]
    v = {"a": "1", "b": "1"}
    cid = step(saver, "t", None, {"a": a, "b": b}, v, v)
    assert saver.storage_stats()["blobs"] == 1
    assert values_at(saver, "t", cid) == {"a": a, "b": b}


def test_every_checkpoint_carries_the_unchanged_values_it_keeps_inside(pg_db, saver) -> None:
    """A value kept inside has no blob, so each checkpoint that does not change it carries it
    again; a large one is referred to and stored once. Copy, prune and a new saver keep them."""
    versions = {"small": "1", "large": "1", "n": "1"}
    ids = [step(saver, "t", None, {"small": SMALL, "large": LARGE, "n": 0}, versions, versions)]
    for i in range(1, 4):
        versions = {**versions, "n": str(i + 1)}
        values = {"small": SMALL, "large": LARGE, "n": i}
        ids.append(step(saver, "t", ids[-1], values, versions, ["n"]))
    assert saver.storage_stats()["blobs"] == 1
    for i, cid in enumerate(ids):
        assert values_at(saver, "t", cid) == {"small": SMALL, "large": LARGE, "n": i}
    saver.copy_thread("t", "u")
    saver.prune(["t"], strategy="keep_latest")
    with RustPostgresCheckpointer(pg_db) as other:
        assert read_all(other, "t") == [{"small": SMALL, "large": LARGE, "n": 3}]
        assert read_all(other, "u") == [
            {"small": SMALL, "large": LARGE, "n": i} for i in reversed(range(4))
        ]
        assert other._store.check() == []


def test_a_new_saver_continues_a_thread_it_did_not_write(pg_db, saver) -> None:
    """A saver that neither wrote nor read the thread's last checkpoint (a restart, another
    replica) does not know where its unchanged values are: a small one goes inside, a large
    one gets a blob that leaves the stored one as it is (ON CONFLICT DO NOTHING)."""
    versions = {"small": "1", "large": "1", "n": "1"}
    first = step(saver, "t", None, {"small": SMALL, "large": LARGE, "n": 0}, versions, versions)
    stored = _blob_rows(pg_db, "t")
    with RustPostgresCheckpointer(pg_db) as other:
        assert other._placed.get(("t", "")) is None
        bumped = {**versions, "n": "2"}
        # The large value differs from the stored one under the same version: the stored one
        # stays, as a version names one value.
        changed_large = [HumanMessage("y" * 3000, id="l1")]
        values = {"small": SMALL, "large": changed_large, "n": 1}
        new, _ = other._checkpoint_args(
            "t", "", first, _checkpoint(values, bumped), {}, {"n": "2"}, None
        )
        assert [(b.channel, b.keep_existing) for b in new.blobs] == [("large", True)]
        second = step(other, "t", first, {"small": SMALL, "large": LARGE, "n": 1}, bumped, ["n"])
        assert values_at(other, "t", second) == {"small": SMALL, "large": LARGE, "n": 1}
        assert values_at(other, "t", first) == {"small": SMALL, "large": LARGE, "n": 0}
        assert other.storage_stats()["blobs"] == 1
        assert _blob_rows(pg_db, "t") == stored
        assert other._store.check() == []


def _checkpoint(values: dict, versions: dict) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = dict(values)
    cp["channel_versions"] = dict(versions)
    return cp


def test_keep_existing_blobs_leave_stored_values_in_every_put_path(pg_db, saver) -> None:
    """A blob marked keep_existing never replaces a stored value under its key, whether the
    put runs alone, with others in one statement, or pipelined in a transaction (a guarded
    saver's puts); an unmarked one does."""
    from concurrent.futures import ThreadPoolExecutor

    versions = {"large": "1", "n": "1"}
    first = step(saver, "t", None, {"large": LARGE, "n": 0}, versions, versions)
    stored = _blob_rows(pg_db, "t")
    other = [HumanMessage("z" * 3000, id="l1")]
    for guard in (False, True):
        with RustPostgresCheckpointer(pg_db, guard=guard) as s:
            # Unknown placement: the unchanged large value gets a keep_existing blob.
            def put(i: int, s=s) -> None:
                bumped = {**versions, "n": str(i + 2)}
                step(s, "t", first, {"large": other, "n": i}, bumped, ["n"])

            put(0)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(put, range(1, 33)))
            assert _blob_rows(pg_db, "t") == stored
    # A changed value under a stored version replaces it, as LangGraph's savers do.
    step(saver, "t", first, {"large": other, "n": 9}, {**versions, "n": "99"}, ["large", "n"])
    assert _blob_rows(pg_db, "t") != stored


def test_a_value_grown_in_place_without_a_new_version_is_not_lost(pg_db, saver) -> None:
    """A node that appends to its state's list in place changes the value without a new
    version. A saver that does not know where that version was stored finds it too large to
    carry inside, and stores it apart: the checkpoint still reads back whole."""
    grown = list(SMALL)
    versions = {"msgs": "1", "n": "1"}
    first = step(saver, "t", None, {"msgs": grown, "n": 0}, versions, versions)
    grown.append(HumanMessage("y" * 3000, id="g"))
    with RustPostgresCheckpointer(pg_db) as other:
        bumped = {**versions, "n": "2"}
        second = step(other, "t", first, {"msgs": grown, "n": 1}, bumped, ["n"])
        assert values_at(other, "t", second) == {"msgs": grown, "n": 1}
        assert values_at(other, "t", first) == {"msgs": SMALL, "n": 0}


def test_a_read_tells_the_next_put_where_the_values_are(pg_db, saver) -> None:
    versions = {"small": "1", "large": "1", "n": "1"}
    step(saver, "t", None, {"small": SMALL, "large": LARGE, "n": 0}, versions, versions)
    placed = {"small": ("1", True), "large": ("1", False), "n": ("1", True)}

    def where(s: RustPostgresCheckpointer) -> dict[str, Any]:
        got = s._placed.get(("t", ""))
        assert got is not None
        return {ch: e[:2] for ch, e in got.items()}

    assert where(saver) == placed
    # The put knows the bytes the small value was stored as, and so does a read of the row.
    held = saver._placed.get(("t", ""))
    assert held is not None and held["small"][2] is not None
    with RustPostgresCheckpointer(pg_db) as other:
        other.get_tuple(cfg("t"))
        assert where(other) == placed
        read = other._placed.get(("t", ""))
        assert read is not None and read["small"][2] == held["small"][2]
        other.delete_thread("t")
        assert other._placed.get(("t", "")) is None


def test_a_read_of_its_own_last_put_keeps_that_puts_placement(pg_db, saver) -> None:
    """get_tuple of the checkpoint whose placement the saver holds (the one it just put) does
    not gather the values it keeps inside again: the put's placement, with the bytes they were
    stored as, stays as it is, the same as a saver that only read the row records; the next
    put carries them, and every checkpoint reads back whole."""
    versions = {"small": "1", "large": "1", "n": "1"}
    values = {"small": SMALL, "large": LARGE, "n": 0}
    first = step(saver, "t", None, values, versions, versions)
    held = saver._placed.get(("t", ""))
    assert held is not None
    got = saver.get_tuple(cfg("t"))
    assert got is not None and got.checkpoint["id"] == first
    assert got.checkpoint["channel_values"] == values
    assert saver._placed.get(("t", "")) is held
    # The store leaves out the values kept inside when told the checkpoint read is the held
    # one, and gathers them when it is not.
    _, _, inside = saver._read("t", "", None, [], None, first)
    assert inside is None
    _, _, inside = saver._read("t", "", None, [], None, "another checkpoint id")
    assert inside is not None and set(inside) == {"small", "n"}
    with RustPostgresCheckpointer(pg_db) as other:
        assert other.get_tuple(cfg("t")) == got
        read = other._placed.get(("t", ""))
        assert read is not None
        # (A scalar's bytes may be known or not: it is serialized again at no cost.)
        assert {ch: e[:2] for ch, e in read.items()} == {ch: e[:2] for ch, e in held.items()}
        assert read["small"][2] is not None and read["small"][2] == held["small"][2]
    bumped = {**versions, "n": "2"}
    second = step(saver, "t", first, {**values, "n": 1}, bumped, ["n"])
    assert values_at(saver, "t", second) == {**values, "n": 1}
    assert values_at(saver, "t", first) == values
    assert saver._store.check() == []


def test_a_put_after_a_read_carries_the_values_inside_as_they_were_stored(pg_db, saver) -> None:
    """A saver that did not write the thread's last checkpoint but read it carries the
    values it keeps inside as their stored bytes, not serialized again: a value changed in
    place without a new version is carried as its version was stored, as by the saver that
    wrote it (test_an_unchanged_value_is_carried_as_it_was_stored)."""
    versions = {"docs": "1", "n": "1"}
    first = step(saver, "t", None, {"docs": SMALL, "n": 0}, versions, versions)
    with RustPostgresCheckpointer(pg_db) as other:
        got = other.get_tuple(cfg("t"))
        assert got is not None
        docs = got.checkpoint["channel_values"]["docs"]
        assert docs == SMALL
        docs.append(HumanMessage("changed in place", id="x"))
        bumped = {**versions, "n": "2"}
        second = step(other, "t", first, {"docs": docs, "n": 1}, bumped, ["n"])
        assert values_at(other, "t", second) == {"docs": SMALL, "n": 1}
    assert values_at(saver, "t", second) == {"docs": SMALL, "n": 1}


def test_delta_channel_snapshots_and_other_serializers_keep_values_apart(pg_db) -> None:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    cp = _checkpoint({"snap": _DeltaSnapshot([1, 2]), "small": SMALL}, {"snap": "1", "small": "1"})
    with RustPostgresCheckpointer(pg_db) as s:
        new, _ = s._checkpoint_args("t", "", None, cp, {}, cp["channel_versions"], None)
        assert [b.channel for b in new.blobs] == ["snap"]
    with RustPostgresCheckpointer(pg_db, serde=JsonPlusSerializer()) as s:
        new, _ = s._checkpoint_args("t", "", None, cp, {}, cp["channel_versions"], None)
        assert [b.channel for b in new.blobs] == ["snap", "small"]


def test_a_checkpoint_the_codec_cannot_write_still_carries_its_values(saver) -> None:
    """When the codec cannot write the checkpoint itself (here a dict subclass among its
    fields), the serializer writes it with the values themselves inside."""

    class Seen(dict):
        pass

    cp = _checkpoint({"small": SMALL}, {"small": "1"})
    cp["versions_seen"] = Seen({"node": {"small": "1"}})
    cid = saver.put(cfg("t"), cp, {}, {"small": "1"})["configurable"]["checkpoint_id"]
    assert saver.storage_stats()["blobs"] == 0
    got = saver.get_tuple(cfg("t", cid))
    assert got is not None and got.checkpoint["channel_values"] == {"small": SMALL}
    assert got.checkpoint["versions_seen"] == {"node": {"small": "1"}}


@pytest.mark.parametrize("seed", [5, "route", [1, 2]], ids=["int", "str", "list"])
def test_a_value_kept_inside_seeds_a_delta_channel_history_as_stock(pg_db, seed: Any) -> None:
    """A channel that became a DeltaChannel starts its history from the plain value an
    ancestor stored, wherever that ancestor kept it: the same history as PostgresSaver's (a
    scalar seed, inside since schema 8, was missed before)."""
    from langgraph.checkpoint.postgres import PostgresSaver

    def run(s: Any, thread: str) -> Any:
        cp = _checkpoint({"ch": seed}, {"ch": "1"})
        first = s.put(cfg(thread), cp, {}, {"ch": "1"})
        s.put_writes(first, [("ch", 7)], "task-1")
        middle = s.put(first, _checkpoint({}, {"ch": "2"}), {}, {"ch": "2"})
        s.put_writes(middle, [("ch", 8)], "task-2")
        last = s.put(middle, _checkpoint({}, {"ch": "3"}), {}, {"ch": "3"})
        return s.get_delta_channel_history(config=last, channels=["ch"])

    with PostgresSaver.from_conn_string(pg_db) as stock:
        stock.setup()
        want = run(stock, "stock")
    with RustPostgresCheckpointer(pg_db) as ours:
        ours.setup()
        got = run(ours, "ours")
        assert got == want
        assert got["ch"]["seed"] == seed
        assert [w[2] for w in got["ch"]["writes"]] == [7, 8]
        # Again, with the seed held by the saver's cache.
        assert run(ours, "ours-again") == want


def test_the_database_is_marked_so_older_builds_refuse_it(pg_db, saver) -> None:
    """Schema 10 marks a database whose checkpoints may carry small values of any type: the
    setup() of a build that knows only schema 9 finds a newer version and refuses it."""
    assert saver._store.schema_version() >= 10
    with psycopg.connect(pg_db) as conn:
        (comment,) = conn.execute("SELECT obj_description('flg_checkpoints'::regclass)").fetchone()
        (newest,) = conn.execute("SELECT max(v) FROM flg_pg_migrations").fetchone()
    assert "from schema 10" in comment
    assert newest >= 10


def _imports_with_one_blob(pg_db, stock) -> None:
    """Imports the 4 checkpoints of thread "t" that ``stock`` holds into our saver on the same
    database: they read back as stock's, with one blob stored for all of them."""
    want = [t.checkpoint for t in stock.list(cfg("t"))]
    with RustPostgresCheckpointer(pg_db) as ours:
        ours.setup()
        assert ours.import_postgres_saver(stock) == 4
        assert ours.storage_stats()["blobs"] == 1
        assert [t.checkpoint for t in ours.list(cfg("t"))] == want
        assert ours._store.check() == []


def test_an_import_carries_small_values_and_stores_a_large_one_once(pg_db) -> None:
    """import_postgres_saver keeps each value as a put would: the small ones inside every
    checkpoint that has them, a large unchanged one as one blob all its checkpoints refer to."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(pg_db) as stock:
        stock.setup()
        versions = {"small": "1", "large": "1", "n": "1"}
        ids = [step(stock, "t", None, {"small": SMALL, "large": LARGE, "n": 0}, versions, versions)]
        for i in range(1, 4):
            versions = {**versions, "n": str(i + 1)}
            values = {"small": SMALL, "large": LARGE, "n": i}
            ids.append(step(stock, "t", ids[-1], values, versions, ["n"]))
        _imports_with_one_blob(pg_db, stock)


def test_an_import_stores_an_unchanged_delta_snapshot_once(pg_db) -> None:
    """A DeltaChannel's snapshot that later checkpoints leave unchanged is imported as one
    blob, which every checkpoint with it reads back (each imported checkpoint writes what it
    refers to, leaving the blob already stored as it is)."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    snap = _DeltaSnapshot(["a", "b"])
    with PostgresSaver.from_conn_string(pg_db) as stock:
        stock.setup()
        versions = {"snap": "1", "n": "1"}
        ids = [step(stock, "t", None, {"snap": snap, "n": 0}, versions, versions)]
        for i in range(1, 4):
            versions = {**versions, "n": str(i + 1)}
            ids.append(step(stock, "t", ids[-1], {"snap": snap, "n": i}, versions, ["n"]))
        snaps = [t.checkpoint["channel_values"]["snap"] for t in stock.list(cfg("t"))]
        assert snaps == [snap] * 4
        _imports_with_one_blob(pg_db, stock)


def test_an_unchanged_value_is_carried_as_it_was_stored(saver) -> None:
    """A value changed in place without a new version is carried as its version was stored,
    as a value stored apart is referred to."""
    docs = list(SMALL)
    versions = {"docs": "1", "n": "1"}
    first = step(saver, "t", None, {"docs": docs, "n": 0}, versions, versions)
    docs.append(HumanMessage("changed in place", id="x"))
    bumped = {**versions, "n": "2"}
    second = step(saver, "t", first, {"docs": docs, "n": 1}, bumped, ["n"])
    assert values_at(saver, "t", second) == {"docs": SMALL, "n": 1}


@pytest.mark.parametrize("read_first", [False, True])
def test_a_thread_with_values_inside_continues_with_another_serializer(
    pg_db, saver, read_first: bool
) -> None:
    """A saver with another serializer stores apart a value the thread's last checkpoint
    keeps inside (it cannot carry the default serializer's bytes): nothing is lost."""
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    versions = {"docs": "1", "n": "1"}
    first = step(saver, "t", None, {"docs": SMALL, "n": 0}, versions, versions)
    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 16)
    with RustPostgresCheckpointer(pg_db, serde=serde) as other:
        if read_first:
            got = other.get_tuple(cfg("t"))
            assert got is not None and got.checkpoint["channel_values"]["docs"] == SMALL
        bumped = {**versions, "n": "2"}
        second = step(other, "t", first, {"docs": SMALL, "n": 1}, bumped, ["n"])
        assert values_at(other, "t", second) == {"docs": SMALL, "n": 1}


def test_a_read_of_a_checkpoint_stored_otherwise_than_msgpack_carries_its_values(pg_db) -> None:
    """A checkpoint the serializer had to pickle (a field msgpack cannot write) keeps its
    small values inside all the same; a saver that reads it, and continues the thread, knows
    they are inside (without their bytes) and carries them: nothing is lost."""
    from fast_langgraph import RustSerializer

    cp, versions = pickled_checkpoint()
    with RustPostgresCheckpointer(pg_db, serde=RustSerializer(pickle_fallback=True)) as s:
        s.setup()
        first = s.put(cfg("t"), cp, {}, versions)["configurable"]["checkpoint_id"]
        assert s.storage_stats()["blobs"] == 0
    with psycopg.connect(pg_db) as conn:
        (type_,) = conn.execute("SELECT type FROM flg_checkpoints").fetchone()
    assert not type_.startswith("msgpack")
    with RustPostgresCheckpointer(pg_db, serde=RustSerializer(pickle_fallback=True)) as other:
        continue_pickled(other, first, versions)
