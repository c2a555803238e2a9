"""Storage defects found under test, each pinned by a test that failed on the earlier code:

- `list(filter={k: dict or list}, limit=n)` decoded every checkpoint in scope; the store now
  matches such filters on the metadata alone and stops at `limit`;
- foreign files (a lone view; no table but a non-zero `user_version` or `application_id`; our
  tables beside another program's) were adopted; they are refused untouched;
- `check()` raised on a damaged file; it reports;
- `get_tuple`/`list` with `checkpoint_ns=None` differed from SqliteSaver;
- `list(filter={"k": 2**70})` raised a bare OverflowError;
- `put_writes` without a checkpoint id and `list(before="junk")` raised errors that did not
  name the argument.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tracemalloc
from pathlib import Path

import pytest
from conftest import cfg
from graph_apps import sqlite_saver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fast_langgraph import ForeignDatabaseError, RustSQLiteCheckpointer


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def put(saver, thread: str, metadata: dict, ns: str = "", parent: str | None = None) -> dict:
    config = cfg(thread, checkpoint_ns=ns)
    if parent:
        config["configurable"]["checkpoint_id"] = parent
    return saver.put(config, empty_checkpoint(), metadata, {})


class CountingSerde(JsonPlusSerializer):
    """LangGraph's serializer, counting what it decodes."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded = 0

    def loads_typed(self, data):
        self.decoded += 1
        return super().loads_typed(data)


# -- dict and list filters ---------------------------------------------------------------------


def test_a_dict_filter_with_a_limit_stops_early(tmp_path) -> None:
    serde = CountingSerde()
    padding = "x" * 20_000
    with RustSQLiteCheckpointer(tmp_path / "a.db", serde=serde) as saver:
        for i in range(300):
            kind = "old" if i < 299 else "new"
            put(saver, "t", {"step": i, "tags": {"kind": kind}, "padding": padding})
        serde.decoded = 0
        tracemalloc.start()
        try:
            got = list(saver.list(cfg("t"), filter={"tags": {"kind": "new"}}, limit=1))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [t.metadata["step"] for t in got] == [299]
        # One checkpoint read and decoded, not 300 (6 MB of metadata) fetched.
        assert serde.decoded <= 2
        assert peak < 1_000_000, f"{peak} bytes at the peak"
        got = list(saver.list(cfg("t"), filter={"tags": {"kind": "old"}}, limit=2))
        assert [t.metadata["step"] for t in got] == [298, 297]
        assert list(saver.list(cfg("t"), filter={"tags": {"kind": "none"}}, limit=2)) == []


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.sampled_from([0.0, 1.0, 1.5, -2.0]),
        st.sampled_from(["a", "b", ""]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y", "z"]), inner, max_size=3),
    ),
    max_leaves=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stored=st.lists(json_values, min_size=1, max_size=6),
    wanted=st.one_of(
        st.lists(json_values, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y", "z"]), json_values, max_size=3),
    ),
    limit=st.one_of(st.none(), st.integers(0, 3)),
)
def test_dict_and_list_filters_match_like_in_memory_saver(stored, wanted, limit, tmp_path_factory):
    reference = InMemorySaver()
    with RustSQLiteCheckpointer(tmp_path_factory.mktemp("f") / "a.db") as ours:
        for i, value in enumerate(stored):
            for saver in (reference, ours):
                put(saver, "t", {"step": i, "k": value})
        for saver_filter in ({"k": wanted}, {"k": wanted, "step": 0}):
            expected = [
                t.metadata["step"]
                for t in reference.list(cfg("t"), filter=saver_filter, limit=limit)
            ]
            got = [
                t.metadata["step"] for t in ours.list(cfg("t"), filter=saver_filter, limit=limit)
            ]
            assert got == expected, (saver_filter, stored)


def test_a_filter_on_an_integer_beyond_64_bits(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        put(saver, "t", {"k": 2**70, "step": 0})
        put(saver, "t", {"k": 2**70 + 1, "step": 1})
        put(saver, "t", {"k": -(2**70), "step": 2})
        put(saver, "t", {"k": 1.0, "step": 3})
        assert [t.metadata["step"] for t in saver.list(None, filter={"k": 2**70})] == [0]
        assert [t.metadata["step"] for t in saver.list(None, filter={"k": 2**70 + 1})] == [1]
        assert [t.metadata["step"] for t in saver.list(None, filter={"k": -(2**70)})] == [2]
        assert [t.metadata["step"] for t in saver.list(None, filter={"k": 1})] == [3]
        assert list(saver.list(None, filter={"k": 2**71})) == []


# -- foreign files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE VIEW v AS SELECT 1 AS x",
        "PRAGMA user_version = 7",
        "PRAGMA application_id = 1234",
    ],
    ids=["only-a-view", "user-version", "application-id"],
)
def test_a_file_claimed_by_another_program_is_refused_untouched(tmp_path, sql: str) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute(sql)
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(ForeignDatabaseError, match="not modified"):
        RustSQLiteCheckpointer(path)
    assert digest(path) == before


def test_our_tables_beside_another_programs_are_refused_untouched(tmp_path) -> None:
    path = tmp_path / "shared.db"
    with RustSQLiteCheckpointer(path) as saver:
        put(saver, "t", {"step": 0})
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(ForeignDatabaseError, match="users"):
        RustSQLiteCheckpointer(path)
    assert digest(path) == before


# -- check() on a damaged file -------------------------------------------------------------------


def test_check_reports_a_damaged_file_instead_of_raising(tmp_path) -> None:
    path = tmp_path / "damaged.db"
    with RustSQLiteCheckpointer(path) as saver:
        for i in range(200):
            put(saver, f"t{i % 7}", {"step": i, "padding": "x" * 400})
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    # Scribble over pages in the middle of the file, leaving the header and schema page alone.
    for offset in range(10 * page, 14 * page):
        data[offset] = 0xA5
    path.write_bytes(bytes(data))
    with RustSQLiteCheckpointer(path) as saver:
        problems = saver.check()
    assert problems, "a damaged file must report problems"
    assert all(isinstance(p, str) for p in problems)


def test_check_of_a_sound_file_is_empty(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        put(saver, "t", {"step": 0})
        assert saver.check() == []


# -- checkpoint_ns=None, as SqliteSaver ----------------------------------------------------------


def test_checkpoint_ns_none_matches_sqlite_saver(tmp_path) -> None:
    stock = sqlite_saver(tmp_path / "stock.db")
    with RustSQLiteCheckpointer(tmp_path / "ours.db") as ours:
        for saver in (stock, ours):
            root = put(saver, "t", {"step": 0})
            put(saver, "t", {"step": 1}, ns="child")
            put(saver, "t", {"step": 2}, parent=root["configurable"]["checkpoint_id"])

        def shape(saver):
            none_ns = cfg("t", checkpoint_ns=None)
            tup = saver.get_tuple(none_ns)
            listed = [
                (t.config["configurable"]["checkpoint_ns"], t.metadata["step"])
                for t in saver.list(none_ns)
            ]
            return (tup is None, listed)

        assert shape(ours) == shape(stock)
        assert shape(ours)[0] is True
    stock.conn.close()


# -- errors that name the argument ---------------------------------------------------------------


def test_put_writes_without_a_checkpoint_id_names_it(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        with pytest.raises(ValueError, match="checkpoint_id"):
            saver.put_writes(cfg("t"), [("ch", 1)], "task")
        assert saver.storage_stats()["writes"] == 0


def test_list_before_that_is_not_a_config_names_it(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        put(saver, "t", {"step": 0})
        with pytest.raises(TypeError, match="before"):
            list(saver.list(cfg("t"), before="junk"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="before"):
            list(saver.list(cfg("t"), before={"configurable": "junk"}))  # type: ignore[arg-type]
