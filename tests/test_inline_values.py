"""Small channel values are kept inside their checkpoint instead of as blob rows: scalars
(bool, int, float, short str) with any serializer, and, with the default serializer, other
values whose msgpack is small (up to 2 KB in all per checkpoint). Every read gives back the
values that were put, of the same types, from get_tuple and list alike, at every checkpoint of
a thread; a checkpoint that does not change such a value carries it too, whether or not this
process wrote the one before."""

from __future__ import annotations

import enum
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
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

from fast_langgraph import RustSQLiteCheckpointer


class Color(enum.IntEnum):
    RED = 1


VALUES: dict[str, Any] = {
    "count": 3,
    "ratio": 0.25,
    "nan": float("nan"),
    "flag": True,
    "route": "left",
    "empty": "",
    "long": "x" * 1000,  # too long to repeat in every checkpoint: a blob
    "none": None,  # the serializer's own type: a blob
    "color": Color.RED,  # a subclass of int: a blob, decoded as what it is
    "messages": [HumanMessage("hi", id="1"), AIMessage("hello", id="2")],
}
INLINE = {"count", "ratio", "nan", "flag", "route", "empty"}
# Small values of other types: the default serializer's msgpack of them travels inside too.
PACKED = {"long", "color", "messages"}


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal, NaN included, with the same types."""
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if type(x) is not type(y):
            return False
        if isinstance(x, float) and x != x:
            if y == y:
                return False
        elif x != y:
            return False
    return True


def put(saver: RustSQLiteCheckpointer, thread: str, parent: str | None, values: dict, versions):
    cp = empty_checkpoint()
    cp["channel_values"] = dict(values)
    cp["channel_versions"] = dict(versions)
    config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    if parent:
        config["configurable"]["checkpoint_id"] = parent
    changed = {k: v for k, v in versions.items() if k in values}
    return saver.put(config, cp, {"step": 1}, changed)["configurable"]["checkpoint_id"]


@pytest.mark.parametrize("encrypted", [False, True])
def test_values_come_back_as_put_with_their_types(tmp_path: Path, encrypted: bool) -> None:
    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 16) if encrypted else None
    with RustSQLiteCheckpointer(tmp_path / "c.db", serde=serde) as saver:
        versions = {k: saver.get_next_version(None, None) for k in VALUES}
        first = put(saver, "t", None, VALUES, versions)
        # Only the counter and the history change; the others keep their versions.
        later = {**VALUES, "count": 4, "messages": [*VALUES["messages"], AIMessage("x", id="3")]}
        bumped = {
            **versions,
            "count": saver.get_next_version(versions["count"], None),
            "messages": saver.get_next_version(versions["messages"], None),
        }
        second = put(saver, "t", first, later, bumped)
        latest = saver.get_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}})
        assert latest is not None and latest.config["configurable"]["checkpoint_id"] == second
        assert same(latest.checkpoint["channel_values"], later)
        assert latest.checkpoint["channel_versions"] == bumped
        old = saver.get_tuple(
            {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": first}}
        )
        assert old is not None and same(old.checkpoint["channel_values"], VALUES)
        listed = read_all(saver, "t")
        assert same(listed[0], later) and same(listed[1], VALUES)
        if encrypted:
            # Blobs only for what is not inline: 4 values at the first checkpoint, the
            # history again at the second.
            assert saver.storage_stats()["blobs"] == len(VALUES) - len(INLINE) + 1
        else:
            # Only None (the serializer's "null", not msgpack) is stored apart.
            assert saver.storage_stats()["blobs"] == len(VALUES) - len(INLINE) - len(PACKED)
        assert saver.check() == []


def test_a_value_that_stops_being_a_scalar_and_back(tmp_path: Path) -> None:
    """A channel whose value changes between a scalar and something else reads right at each
    checkpoint, the one version it had as a blob included."""
    with RustSQLiteCheckpointer(tmp_path / "c.db") as saver:
        states = [{"v": 1}, {"v": [1, 2]}, {"v": "s"}, {"v": {"a": 1}}, {"v": 2.5}]
        parent, version = None, None
        for state in states:
            version = saver.get_next_version(version, None)
            parent = put(saver, "t", parent, state, {"v": version})
        assert [r["v"] for r in read_all(saver, "t")] == [s["v"] for s in reversed(states)]
        got = saver.get_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}})
        assert got is not None and got.checkpoint["channel_values"] == {"v": 2.5}


def test_copy_prune_and_reopen_keep_inline_values(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with RustSQLiteCheckpointer(path) as saver:
        parent, version = None, None
        for i in range(3):
            version = saver.get_next_version(version, None)
            parent = put(saver, "t", parent, {"n": i}, {"n": version})
        saver.copy_thread("t", "u")
        saver.prune(["t"], strategy="keep_latest")
    with RustSQLiteCheckpointer(path) as saver:
        assert read_all(saver, "t") == [{"n": 2}]
        assert read_all(saver, "u") == [{"n": 2}, {"n": 1}, {"n": 0}]
        assert saver.check() == []


def test_the_file_is_marked_so_older_builds_refuse_it(tmp_path: Path) -> None:
    """Builds before schema 4 would lose the inline values of a checkpoint that also has
    blobs, and builds before schema 5 would write checkpoints that refer to blobs never
    written for values kept inside; the file says it is version 5, which they refuse without
    touching it."""
    path = tmp_path / "c.db"
    RustSQLiteCheckpointer(path).close()
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute(
            "SELECT value FROM flg_meta WHERE key = 'schema_version'"
        ).fetchone()
    assert version == "5"


def test_the_new_checkpoint_names_the_versions_of_the_values_stored_apart() -> None:
    """What put hands the store: the versions of every channel stored as a blob (an empty
    channel included), none of an inline one, each as (channel, version) text, and a blob
    for each new version that is not inline."""
    saver = RustSQLiteCheckpointer()
    cp = empty_checkpoint()
    values = {k: v for k, v in VALUES.items() if k not in ("nan",)}
    cp["channel_values"] = dict(values)
    versions: dict[str, Any] = {k: i + 1 for i, k in enumerate(values)}
    versions["gone"] = 9  # a version with no value: an "empty" blob
    cp["channel_versions"] = versions
    new, _ = saver._new_checkpoint("t", "", None, cp, {"step": 1}, versions, None)
    apart = [k for k in versions if k not in INLINE | PACKED]
    assert new.channel_versions == tuple((k, str(versions[k])) for k in apart)
    assert [(b.channel, b.version) for b in new.blobs] == [(k, str(versions[k])) for k in apart]
    assert [b.type_tag for b in new.blobs if b.channel == "gone"] == ["empty"]
    # The store takes it as it is: the inline values come back from the checkpoint itself.
    saver._store.put(new)
    got = saver.get_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}})
    assert got is not None
    assert same(got.checkpoint["channel_values"], values)
    assert got.checkpoint["channel_versions"] == versions
    saver.close()


def _reference_split(
    values: dict[str, Any], new_versions: dict[str, Any], none_inline: bool, dumps
):
    """What put did in Python before ``put_values``: the inline scalars, and the blobs."""

    def inlinable(v: Any) -> bool:
        if v is None:
            return none_inline
        t = type(v)
        if t is str:
            return len(v) <= 256
        if t is int:
            return -(2**63) <= v < 2**64
        return t is float or t is bool

    inline = {ch: v for ch, v in values.items() if inlinable(v)}
    blobs = []
    for ch, version in new_versions.items():
        if ch in inline:
            continue
        if ch not in values:
            blobs.append((ch, str(version), "empty", b"", None))
        else:
            blobs.append((ch, str(version), *dumps(values[ch]), None))
    return inline, blobs


@pytest.mark.parametrize("none_inline", [False, True])
@pytest.mark.parametrize("encrypted", [False, True])
def test_put_values_splits_and_serializes_as_put_did(none_inline: bool, encrypted: bool) -> None:
    """The native split gives the same inline values (in the same order) and the same blobs,
    byte for byte, as the Python loop it replaced, through the codec or the serde."""
    from fast_langgraph._native import put_values
    from fast_langgraph.serde import _ENCODER, RustSerializer

    serde = (
        EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 16) if encrypted else RustSerializer()
    )
    values = {
        **VALUES,
        "edge": 2**64 - 1,
        "neg": -(2**63),
        "at_max": "é" * 256,
        "over_max": "é" * 257,
        "raw": b"bytes",
    }
    new_versions = {ch: f"{i:032d}.1" for i, ch in enumerate([*values, "gone"])}
    want_inline, want_blobs = _reference_split(values, new_versions, none_inline, serde.dumps_typed)
    inline, blobs, _refs = put_values(
        values,
        new_versions,
        none_inline=none_inline,
        list_types=(list,),
        plan=None,
        codec=None if encrypted else _ENCODER,
        dumps=serde.dumps_typed,
        thread_id="t",
        checkpoint_id="c",
    )
    assert list(inline.items()) == list(want_inline.items())
    got = [(b.channel, b.version, b.type_tag, b.data, b.delta_base) for b in blobs]
    if encrypted:  # a random nonce per value: compare what each decrypts to
        assert [g[:3] for g in got] == [w[:3] for w in want_blobs]
        for g, w in zip(got, want_blobs, strict=True):
            if g[2] != "empty":
                assert same({"v": serde.loads_typed(g[2:4])}, {"v": serde.loads_typed(w[2:4])})
    else:
        assert got == want_blobs


def test_put_values_names_the_channel_checkpoint_and_thread() -> None:
    from fast_langgraph import SerializationError
    from fast_langgraph._native import put_values
    from fast_langgraph.serde import _ENCODER, RustSerializer

    serde = RustSerializer()
    with pytest.raises(SerializationError) as e:
        put_values(
            {"ok": [1], "bad": object()},
            {"ok": "1", "bad": "2"},
            none_inline=False,
            list_types=(list,),
            plan=None,
            codec=_ENCODER,
            dumps=serde.dumps_typed,
            thread_id="th",
            checkpoint_id="cp",
        )
    assert str(e.value).startswith(
        "cannot serialize channel 'bad' of checkpoint 'cp' in thread 'th': a value of type object: "
    )
    assert e.value.__cause__ is not None


@pytest.mark.parametrize("encrypted", [False, True])
def test_write_values_serialize_as_put_writes_did(encrypted: bool) -> None:
    """put_writes' native serialization: the same index (LangGraph's WRITES_IDX_MAP for its
    special channels, the position otherwise), channel, type and bytes as the Python loop;
    anything but a list or tuple of pairs is left to that loop; errors name channel and task."""
    from langgraph.checkpoint.base import WRITES_IDX_MAP

    from fast_langgraph import SerializationError
    from fast_langgraph._native import write_values
    from fast_langgraph.serde import _ENCODER, RustSerializer

    serde = (
        EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 16) if encrypted else RustSerializer()
    )
    codec = None if encrypted else _ENCODER
    writes = [(ch, v) for ch, v in VALUES.items()] + [
        ("__error__", "boom"),
        ("__interrupt__", None),
    ]
    got = write_values(writes, "task", idx_map=WRITES_IDX_MAP, codec=codec, dumps=serde.dumps_typed)
    assert got is not None
    want = [
        (WRITES_IDX_MAP.get(ch, i), ch, *serde.dumps_typed(v)) for i, (ch, v) in enumerate(writes)
    ]
    assert [(w.idx, w.channel, w.type_tag) for w in got] == [w[:3] for w in want]
    for w, (_, _, type_, data) in zip(got, want, strict=True):
        if encrypted:
            assert same(
                {"v": serde.loads_typed((w.type_tag, w.data))},
                {"v": serde.loads_typed((type_, data))},
            )
        else:
            assert w.data == data
    assert (
        write_values(
            iter(writes), "t", idx_map=WRITES_IDX_MAP, codec=codec, dumps=serde.dumps_typed
        )
        is None
    )
    assert (
        write_values([["a", 1]], "t", idx_map=WRITES_IDX_MAP, codec=codec, dumps=serde.dumps_typed)
        is None
    )
    with pytest.raises(SerializationError) as e:
        write_values(
            [("ok", 1), ("bad", object())],
            "tk",
            idx_map=WRITES_IDX_MAP,
            codec=codec,
            dumps=serde.dumps_typed,
        )
    assert str(e.value).startswith(
        "cannot serialize write to channel 'bad' by task 'tk': a value of type object: "
    )


# -- Small values of any type inside the checkpoint (the default serializer) ------------------


def test_a_small_value_goes_inside_and_a_large_one_apart(tmp_path: Path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "c.db") as saver:
        v = {"small": "1", "large": "1"}
        cid = step(saver, "t", None, {"small": SMALL, "large": LARGE}, v, v)
        assert saver.storage_stats()["blobs"] == 1
        assert values_at(saver, "t", cid) == {"small": SMALL, "large": LARGE}
        assert read_all(saver, "t") == [{"small": SMALL, "large": LARGE}]


def test_the_values_inside_share_2_kb(tmp_path: Path) -> None:
    """Two new values of 1.5 KB: the first goes inside, the second apart."""
    a, b = ["a" * 1500], ["b" * 1500]
    with RustSQLiteCheckpointer(tmp_path / "c.db") as saver:
        v = {"a": "1", "b": "1"}
        cid = step(saver, "t", None, {"a": a, "b": b}, v, v)
        assert saver.storage_stats()["blobs"] == 1
        assert values_at(saver, "t", cid) == {"a": a, "b": b}


def test_every_checkpoint_carries_the_unchanged_values_it_keeps_inside(tmp_path: Path) -> None:
    """A value kept inside has no blob, so each checkpoint that does not change it carries it
    again; a large one is referred to and stored once. Copy, prune and reopen keep them."""
    path = tmp_path / "c.db"
    with RustSQLiteCheckpointer(path) as saver:
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
    with RustSQLiteCheckpointer(path) as saver:
        assert read_all(saver, "t") == [{"small": SMALL, "large": LARGE, "n": 3}]
        assert read_all(saver, "u") == [
            {"small": SMALL, "large": LARGE, "n": i} for i in reversed(range(4))
        ]
        assert saver.check() == []


def test_a_new_saver_continues_a_thread_it_did_not_write(tmp_path: Path) -> None:
    """A saver that neither wrote nor read the thread's last checkpoint (a restart, another
    process) does not know where its unchanged values are: a small one goes inside, a large one
    gets a blob that leaves the stored one as it is."""
    path = tmp_path / "c.db"
    versions = {"small": "1", "large": "1", "n": "1"}
    with RustSQLiteCheckpointer(path) as saver:
        first = step(saver, "t", None, {"small": SMALL, "large": LARGE, "n": 0}, versions, versions)
    with RustSQLiteCheckpointer(path) as saver:
        assert saver._placed.get(("t", "")) is None
        bumped = {**versions, "n": "2"}
        second = step(saver, "t", first, {"small": SMALL, "large": LARGE, "n": 1}, bumped, ["n"])
        assert values_at(saver, "t", second) == {"small": SMALL, "large": LARGE, "n": 1}
        assert values_at(saver, "t", first) == {"small": SMALL, "large": LARGE, "n": 0}
        assert saver.storage_stats()["blobs"] == 1
        assert saver.check() == []


def test_a_value_grown_in_place_without_a_new_version_is_not_lost(tmp_path: Path) -> None:
    """A node that appends to its state's list in place changes the value without a new
    version. A saver that does not know where that version was stored finds it too large to
    carry inside, and stores it apart: the checkpoint still reads back whole."""
    path = tmp_path / "c.db"
    grown = list(SMALL)
    versions = {"msgs": "1", "n": "1"}
    with RustSQLiteCheckpointer(path) as saver:
        first = step(saver, "t", None, {"msgs": grown, "n": 0}, versions, versions)
    grown.append(HumanMessage("y" * 3000, id="g"))
    with RustSQLiteCheckpointer(path) as saver:
        bumped = {**versions, "n": "2"}
        second = step(saver, "t", first, {"msgs": grown, "n": 1}, bumped, ["n"])
        assert values_at(saver, "t", second) == {"msgs": grown, "n": 1}
        assert values_at(saver, "t", first) == {"msgs": SMALL, "n": 0}


def test_a_read_tells_the_next_put_where_the_values_are(tmp_path: Path) -> None:
    """After a put or a get_tuple, the saver knows which values the checkpoint keeps inside,
    with the bytes they were stored as; a delete forgets it."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    stored = JsonPlusSerializer().dumps_typed(SMALL)[1]
    path = tmp_path / "c.db"
    versions = {"small": "1", "large": "1", "n": "1"}

    def placed(saver: RustSQLiteCheckpointer) -> dict[str, Any]:
        got = saver._placed.get(("t", ""))
        assert got is not None
        assert got["small"][2] == stored
        return {ch: entry[:2] for ch, entry in got.items()}

    where = {"small": ("1", True), "large": ("1", False), "n": ("1", True)}
    with RustSQLiteCheckpointer(path) as saver:
        step(saver, "t", None, {"small": SMALL, "large": LARGE, "n": 0}, versions, versions)
        assert placed(saver) == where
    with RustSQLiteCheckpointer(path) as saver:
        saver.get_tuple(cfg("t"))
        assert placed(saver) == where
        saver.delete_thread("t")
        assert saver._placed.get(("t", "")) is None


def test_an_unchanged_value_is_carried_as_it_was_stored(tmp_path: Path) -> None:
    """A value changed in place without a new version is carried as its version was stored,
    as a value stored apart is referred to (and as InMemorySaver keeps it)."""
    docs = list(SMALL)
    with RustSQLiteCheckpointer(tmp_path / "c.db") as saver:
        versions = {"docs": "1", "n": "1"}
        first = step(saver, "t", None, {"docs": docs, "n": 0}, versions, versions)
        docs.append(HumanMessage("changed in place", id="x"))
        bumped = {**versions, "n": "2"}
        second = step(saver, "t", first, {"docs": docs, "n": 1}, bumped, ["n"])
        assert values_at(saver, "t", second) == {"docs": SMALL, "n": 1}


@pytest.mark.parametrize("other", ["json", "encrypted"])
@pytest.mark.parametrize("read_first", [False, True])
def test_a_file_with_values_inside_continues_with_another_serializer(
    tmp_path: Path, other: str, read_first: bool
) -> None:
    """A saver with another serializer keeps its values apart; continuing a thread whose last
    checkpoint keeps a value inside, it stores that value apart (it cannot carry the default
    serializer's bytes): nothing is lost."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    path = tmp_path / "c.db"
    versions = {"docs": "1", "n": "1"}
    with RustSQLiteCheckpointer(path) as saver:
        first = step(saver, "t", None, {"docs": SMALL, "n": 0}, versions, versions)
    serde = (
        JsonPlusSerializer()
        if other == "json"
        else EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 16)
    )
    bumped = {**versions, "n": "2"}
    with RustSQLiteCheckpointer(path, serde=serde) as saver:
        if read_first:
            got = saver.get_tuple(cfg("t"))
            assert got is not None and got.checkpoint["channel_values"]["docs"] == SMALL
        second = step(saver, "t", first, {"docs": SMALL, "n": 1}, bumped, ["n"])
        assert values_at(saver, "t", second) == {"docs": SMALL, "n": 1}
    if other == "json":
        with RustSQLiteCheckpointer(path) as saver:
            assert values_at(saver, "t", second) == {"docs": SMALL, "n": 1}


def test_a_cached_seed_does_not_make_a_value_inside_look_stored_apart(tmp_path: Path) -> None:
    """A DeltaChannel snapshot kept in the seed cache at one version says nothing of where a
    later version of the channel (a plain value kept inside) is."""
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    path = tmp_path / "c.db"
    with RustSQLiteCheckpointer(path) as saver:
        c1 = step(saver, "t", None, {"x": _DeltaSnapshot([1, 2])}, {"x": "1"}, ["x"])
        saver.get_tuple(cfg("t", c1))  # the snapshot is now in the seed cache
        c2 = step(saver, "t", c1, {"x": [1, 2, 3]}, {"x": "2"}, ["x"])
        saver.get_tuple(cfg("t"))
        c3 = step(saver, "t", c2, {"x": [1, 2, 3], "n": 1}, {"x": "2", "n": "3"}, ["n"])
    with RustSQLiteCheckpointer(path) as fresh:
        assert values_at(fresh, "t", c2) == {"x": [1, 2, 3]}
        assert values_at(fresh, "t", c3) == {"x": [1, 2, 3], "n": 1}


def test_values_inside_stay_within_2_kb_when_the_placement_is_unknown(tmp_path: Path) -> None:
    """Six unchanged 1.5 KB values, continued by a saver that does not know where they are:
    what goes inside stays within the 2 KB, the rest is stored apart, and every later step
    carries no more."""
    path = tmp_path / "c.db"
    names = [f"v{i}" for i in range(6)]
    values: dict[str, Any] = {n: [n * 750] for n in names}
    versions = dict.fromkeys(names, "1")
    with RustSQLiteCheckpointer(path) as saver:
        parent = None
        for i, name in enumerate(names):  # one new value per step: each goes inside, alone
            step_versions = {**dict.fromkeys(names[: i + 1], "1")}
            parent = step(
                saver, "t", parent, {n: values[n] for n in names[: i + 1]}, step_versions, [name]
            )
    with RustSQLiteCheckpointer(path) as saver:
        for i in range(3):
            versions = {**versions, "n": str(i + 2)}
            parent = step(saver, "t", parent, {**values, "n": i}, versions, ["n"])
            assert values_at(saver, "t", parent) == {**values, "n": i}
    with sqlite3.connect(path) as conn:
        (latest,) = conn.execute(
            "SELECT length(checkpoint) FROM flg_checkpoints ORDER BY checkpoint_id DESC LIMIT 1"
        ).fetchone()
    assert latest <= 2048 + 512


def test_the_placement_a_put_records_is_the_one_a_read_of_its_checkpoint_records(
    tmp_path: Path,
) -> None:
    """get_tuple does not record again the placement of the checkpoint it holds already (the
    one this process just wrote): that is right only if a read of the checkpoint, by a saver
    that never wrote it, records the same placement, for every shape a put can store."""
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    path = tmp_path / "c.db"
    steps = [
        # (values, versions, changed)
        ({"small": SMALL, "large": LARGE, "n": 0}, {"small": "1", "large": "1", "n": "1"}, None),
        # a channel with a version and no value; the others carried unchanged
        (
            {"small": SMALL, "large": LARGE, "n": 1},
            {"small": "1", "large": "1", "n": "2", "gone": "1"},
            ["n", "gone"],
        ),
        # a DeltaChannel snapshot (kept apart whatever its size), a small one grown large
        (
            {"small": SMALL + LARGE, "large": LARGE, "n": 2, "snap": _DeltaSnapshot([1, 2])},
            {"small": "2", "large": "1", "n": "3", "gone": "1", "snap": "1"},
            ["small", "n", "snap"],
        ),
    ]
    ids: list[str] = []
    put_placements = []

    def held(saver: RustSQLiteCheckpointer) -> dict[str, Any]:
        """The placement held for the thread, a scalar's bytes left out (a put records none,
        a read the stored ones: scalars are carried from their value either way)."""
        got = saver._placed.get(("t", ""))
        assert got is not None
        return {ch: e if ch != "n" else e[:2] for ch, e in got.items()}

    with RustSQLiteCheckpointer(path) as saver:
        parent = None
        for values, versions, changed in steps:
            parent = step(saver, "t", parent, values, versions, changed or list(versions))
            ids.append(parent)
            put_placements.append(held(saver))
            # The read of the checkpoint just written leaves the placement as the put made it.
            saver.get_tuple(cfg("t"))
            assert held(saver) == put_placements[-1]
    assert put_placements[0]["small"][:2] == ("1", True)
    assert put_placements[1]["gone"] == ("1", False, None)
    assert put_placements[2]["snap"] == ("1", False, None)
    assert put_placements[2]["small"] == ("2", False, None)
    for checkpoint_id, expected in zip(ids, put_placements, strict=True):
        with RustSQLiteCheckpointer(path) as reader:
            reader.get_tuple(cfg("t", checkpoint_id))
            assert held(reader) == expected
    with RustSQLiteCheckpointer(path) as reader:
        # Reading an older checkpoint replaces the placement held for the thread.
        reader.get_tuple(cfg("t"))
        reader.get_tuple(cfg("t", ids[0]))
        assert held(reader) == put_placements[0]


def test_delta_channel_snapshots_and_other_serializers_keep_values_apart(tmp_path: Path) -> None:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    cp = empty_checkpoint()
    cp["channel_values"] = {"snap": _DeltaSnapshot([1, 2]), "small": SMALL}
    cp["channel_versions"] = {"snap": "1", "small": "1"}
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        new, _ = saver._new_checkpoint("t", "", None, cp, {}, cp["channel_versions"], None)
        assert [b.channel for b in new.blobs] == ["snap"]
    with RustSQLiteCheckpointer(tmp_path / "b.db", serde=JsonPlusSerializer()) as saver:
        new, _ = saver._new_checkpoint("t", "", None, cp, {}, cp["channel_versions"], None)
        assert [b.channel for b in new.blobs] == ["snap", "small"]


def test_a_checkpoint_the_codec_cannot_write_still_carries_its_values(tmp_path: Path) -> None:
    """When the codec cannot write the checkpoint itself (here a dict subclass among its
    fields), the serializer writes it with the values themselves inside."""

    class Seen(dict):
        pass

    cp = empty_checkpoint()
    cp["channel_values"] = {"small": SMALL}
    cp["channel_versions"] = {"small": "1"}
    cp["versions_seen"] = Seen({"node": {"small": "1"}})
    with RustSQLiteCheckpointer(tmp_path / "c.db") as saver:
        cid = saver.put(cfg("t"), cp, {}, {"small": "1"})["configurable"]["checkpoint_id"]
        assert saver.storage_stats()["blobs"] == 0
        got = saver.get_tuple(cfg("t", cid))
        assert got is not None and got.checkpoint["channel_values"] == {"small": SMALL}
        assert got.checkpoint["versions_seen"] == {"node": {"small": "1"}}


@pytest.mark.parametrize("seed", [5, [1, 2]], ids=["int", "list"])
def test_a_value_kept_inside_seeds_a_delta_channel_history_as_stock(
    tmp_path: Path, seed: Any
) -> None:
    """A channel that became a DeltaChannel starts its history from the plain value an
    ancestor stored, wherever that ancestor kept it: the same history as SqliteSaver's."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    def run(saver: Any) -> Any:
        cp = empty_checkpoint()
        cp["channel_values"] = {"ch": seed}
        cp["channel_versions"] = {"ch": "1"}
        first = saver.put(cfg("t"), cp, {}, {"ch": "1"})
        saver.put_writes(first, [("ch", 7)], "task-1")
        cp2 = empty_checkpoint()
        cp2["channel_values"] = {}
        cp2["channel_versions"] = {"ch": "2"}
        second = saver.put(first, cp2, {}, {"ch": "2"})
        return saver.get_delta_channel_history(config=second, channels=["ch"])

    conn = sqlite3.connect(tmp_path / "stock.db", check_same_thread=False)
    want = run(SqliteSaver(conn))
    conn.close()
    with RustSQLiteCheckpointer(tmp_path / "c.db") as saver:
        got = run(saver)
        if isinstance(seed, list):
            # No blob holds it: it is neither cached by version nor a base for deltas.
            assert saver._seeds.versions("t", "") == []
            assert saver._lists.base_for(("t", "", "ch"), [1, 2, 3]) is None
    assert got == want
    assert got["ch"]["seed"] == seed


def test_a_read_of_a_checkpoint_stored_otherwise_than_msgpack_carries_its_values(
    tmp_path: Path,
) -> None:
    """A checkpoint the serializer had to pickle (a field msgpack cannot write) keeps its
    small values inside all the same; a saver that reads it, and continues the thread, knows
    they are inside (without their bytes) and carries them, rather than referring to blobs
    that were never written."""
    from fast_langgraph import RustSerializer

    path = tmp_path / "t.db"
    cp, versions = pickled_checkpoint()
    with RustSQLiteCheckpointer(path, serde=RustSerializer(pickle_fallback=True)) as s:
        first = s.put(cfg("t"), cp, {}, versions)["configurable"]["checkpoint_id"]
    with sqlite3.connect(path) as conn:
        (type_,) = conn.execute("SELECT type FROM flg_checkpoints").fetchone()
    assert not type_.startswith("msgpack")
    with RustSQLiteCheckpointer(path, serde=RustSerializer(pickle_fallback=True)) as other:
        continue_pickled(other, first, versions)
