"""Bad input: every failure must say clearly what was wrong, and must not lose or corrupt
anything already stored."""

from __future__ import annotations

import hashlib
import sqlite3
import threading

import pytest
from conftest import cfg
from graph_apps import AskState, counter_app, interrupt_app, sqlite_saver
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import START, StateGraph
from langgraph.types import Command

from fast_langgraph import (
    CheckpointClosedError,
    CheckpointError,
    ForeignDatabaseError,
    RustSQLiteCheckpointer,
    SerializationError,
)


def file_digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def filled(tmp_path):
    """A checkpointer holding one finished counter thread and one paused interrupt thread;
    yields (saver, snapshot) where snapshot() dumps everything stored."""
    saver = RustSQLiteCheckpointer(tmp_path / "db.sqlite")
    counter_app().compile(checkpointer=saver).invoke({"count": 0, "log": []}, cfg("done"))
    interrupt_app().compile(checkpointer=saver).invoke({"question": "q"}, cfg("paused"))

    def snapshot():
        return [
            (t.config, t.checkpoint, t.metadata, t.parent_config, t.pending_writes)
            for t in saver.list(None)
        ]

    before = snapshot()
    assert len(before) == 8  # 5 for "done", 3 for "paused"
    yield saver, snapshot, before
    saver.close()


def assert_intact(saver, snapshot, before) -> None:
    assert snapshot() == before
    # The paused thread still resumes.
    out = interrupt_app().compile(checkpointer=saver).invoke(Command(resume="a"), cfg("paused"))
    assert out["log"] == ["prepare", "ask:a", "finish:a"]


# -- metadata filters ----------------------------------------------------------------------

INJECTIONS = [
    "source') OR 1=1 --",
    "source' OR '1'='1",
    'source"] OR 1=1 --',
    "x'); DROP TABLE flg_checkpoints; --",
    "$.source",
    "source.nested",
]


@pytest.mark.parametrize("key", INJECTIONS)
def test_filter_key_injection_matches_nothing(filled, key):
    saver, snapshot, before = filled
    assert list(saver.list(None, filter={key: "loop"})) == []
    assert list(saver.list(cfg("done"), filter={key: 1})) == []
    assert_intact(saver, snapshot, before)


@pytest.mark.parametrize(
    "value", ["loop' OR '1'='1", "loop') OR 1=1 --", "x'; DROP TABLE flg_writes; --", "%", "*"]
)
def test_filter_value_injection_matches_nothing(filled, value):
    saver, snapshot, before = filled
    assert list(saver.list(None, filter={"source": value})) == []
    assert_intact(saver, snapshot, before)


def test_filter_still_works_after_injection_attempts(filled):
    saver, _, _ = filled
    list(saver.list(None, filter={"source') OR 1=1 --": "x"}))
    loops = list(saver.list(None, filter={"source": "loop"}))
    assert len(loops) == 6  # 4 in "done", 2 in "paused"
    assert all(t.metadata["source"] == "loop" for t in loops)
    assert [t.metadata["step"] for t in saver.list(cfg("done"), filter={"step": 2})] == [2]


def test_filter_key_with_quote_matches_a_real_key(tmp_path):
    """Keys are data, not SQL: an odd key that really is in the metadata is found."""
    key = 'it\'s a "key") --'
    with RustSQLiteCheckpointer(tmp_path / "k.db") as saver:
        cp = empty_checkpoint()
        saver.put(cfg("t"), cp, {key: "v", "source": "input", "step": -1}, {})
        assert [t.checkpoint["id"] for t in saver.list(None, filter={key: "v"})] == [cp["id"]]
        assert list(saver.list(None, filter={key: "w"})) == []


def test_filter_bad_value_type(filled):
    saver, snapshot, before = filled
    with pytest.raises(TypeError, match="filter"):
        list(saver.list(None, filter={1: "loop"}))
    assert_intact(saver, snapshot, before)


# -- values the serializer cannot encode ---------------------------------------------------


def test_unserializable_channel_value_in_graph(filled):
    saver, snapshot, before = filled
    lock = threading.Lock()  # msgpack cannot encode a lock

    def bad(state: AskState) -> dict:
        return {"answer": lock}

    b = StateGraph(AskState)
    b.add_node("bad", bad)
    b.add_edge(START, "bad")
    with pytest.raises(SerializationError) as ei:
        b.compile(checkpointer=saver).invoke({"question": "q"}, cfg("bad"))
    msg = str(ei.value)
    assert "'answer'" in msg and "lock" in msg
    # The failing step stored nothing partial: the thread's checkpoints (if any) predate it
    # and none holds the bad value.
    for t in saver.list(cfg("bad")):
        assert "answer" not in t.checkpoint["channel_values"]
        assert all(ch != "answer" for _, ch, _ in t.pending_writes)

    def others():
        return [s for s in snapshot() if s[0]["configurable"]["thread_id"] != "bad"]

    assert_intact(saver, others, before)


def test_unserializable_channel_value_put(filled):
    saver, snapshot, before = filled
    latest = saver.get_tuple(cfg("done"))
    cp = empty_checkpoint()
    cp["channel_values"] = {"good": 1, "evil": threading.Lock()}
    cp["channel_versions"] = {"good": "1", "evil": "1"}
    with pytest.raises(SerializationError) as ei:
        saver.put(latest.config, cp, {"source": "loop", "step": 9}, {"good": "1", "evil": "1"})
    assert "'evil'" in str(ei.value)
    assert cp["id"] in str(ei.value)
    assert saver.get_tuple(cfg("done", checkpoint_id=cp["id"], checkpoint_ns="")) is None
    assert saver.get_tuple(cfg("done")).config == latest.config
    assert_intact(saver, snapshot, before)


def test_unserializable_pending_write(filled):
    saver, snapshot, before = filled
    latest = saver.get_tuple(cfg("done"))
    with pytest.raises(SerializationError) as ei:
        saver.put_writes(latest.config, [("ok", 1), ("broken", threading.Lock())], "task-x")
    assert "'broken'" in str(ei.value) and "task-x" in str(ei.value)
    # Nothing of the call was written, not even the good first write.
    assert saver.get_tuple(latest.config).pending_writes == latest.pending_writes
    assert_intact(saver, snapshot, before)


def test_non_json_metadata(filled):
    saver, snapshot, before = filled
    latest = saver.get_tuple(cfg("done"))
    cp = empty_checkpoint()
    with pytest.raises(SerializationError) as ei:
        saver.put(latest.config, cp, {"source": "loop", "step": 9, "owner": object()}, {})
    msg = str(ei.value)
    assert "'owner'" in msg and "object" in msg
    assert saver.get_tuple(cfg("done", checkpoint_id=cp["id"], checkpoint_ns="")) is None
    assert_intact(saver, snapshot, before)


def test_non_scalar_config_metadata_is_skipped_like_sqlite_saver(filled, tmp_path):
    """config["metadata"] values reach the checkpoint metadata only when they are scalars
    (LangGraph's get_checkpoint_metadata); others are skipped, as SqliteSaver does."""
    saver, snapshot, before = filled
    config = {**cfg("meta"), "metadata": {"when": {1, 2}, "owner": "ada"}}
    counter_app().compile(checkpointer=saver).invoke({"count": 0, "log": []}, config)
    ref = sqlite_saver(tmp_path / "ref.db")
    counter_app().compile(checkpointer=ref).invoke({"count": 0, "log": []}, config)
    got = [t.metadata for t in saver.list(cfg("meta"))]
    want = [t.metadata for t in ref.list(cfg("meta"))]
    ref.conn.close()
    assert got == want
    assert all(m["owner"] == "ada" and "when" not in m for m in got)
    assert [s for s in snapshot() if s[0]["configurable"]["thread_id"] != "meta"] == before


# -- files that are not ours ---------------------------------------------------------------


def test_not_sqlite_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    digest = file_digest(path)
    with pytest.raises(ForeignDatabaseError) as ei:
        RustSQLiteCheckpointer(path)
    assert "not an SQLite database" in str(ei.value)
    assert str(path) in str(ei.value)
    assert file_digest(path) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_foreign_schema(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users VALUES (1, 'ada')")
    conn.commit()
    conn.close()
    digest = file_digest(path)
    with pytest.raises(ForeignDatabaseError) as ei:
        RustSQLiteCheckpointer(path)
    assert "users" in str(ei.value)
    assert "import_sqlite_saver" not in str(ei.value)
    assert file_digest(path) == digest
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM users").fetchall() == [("ada",)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_sqlite_saver_database_hints_import(tmp_path):
    path = tmp_path / "old.db"
    saver = sqlite_saver(path)
    counter_app().compile(checkpointer=saver).invoke({"count": 0, "log": []}, cfg("t"))
    saver.conn.close()
    digest = file_digest(path)
    with pytest.raises(ForeignDatabaseError) as ei:
        RustSQLiteCheckpointer(path)
    assert "import_sqlite_saver" in str(ei.value)
    assert file_digest(path) == digest
    ref = sqlite_saver(path)
    assert len(list(ref.list(cfg("t")))) == 5
    ref.conn.close()


def test_isinstance_hierarchy():
    from fast_langgraph import CacheError, DatabaseLockedError, FastLangGraphError

    assert issubclass(SerializationError, CheckpointError)
    assert issubclass(CheckpointClosedError, CheckpointError)
    # File-level errors are shared by the checkpointer and the persistent cache.
    for shared in (ForeignDatabaseError, DatabaseLockedError):
        assert issubclass(shared, FastLangGraphError)
        assert not issubclass(shared, CheckpointError) and not issubclass(shared, CacheError)


# -- use after close -----------------------------------------------------------------------


SYNC_CALLS = {
    "get_tuple": lambda s, c: s.get_tuple(c),
    "list": lambda s, c: list(s.list(c)),
    "put": lambda s, c: s.put(c, empty_checkpoint(), {}, {}),
    "put_writes": lambda s, c: s.put_writes(
        {"configurable": {**c["configurable"], "checkpoint_ns": "", "checkpoint_id": "x"}},
        [("a", 1)],
        "t",
    ),
    "delete_thread": lambda s, c: s.delete_thread("t"),
    "delete_for_runs": lambda s, c: s.delete_for_runs(["r"]),
    "copy_thread": lambda s, c: s.copy_thread("t", "u"),
    "prune": lambda s, c: s.prune(["t"]),
    "setup": lambda s, c: s.setup(),
    "graph.invoke": lambda s, c: (
        counter_app().compile(checkpointer=s).invoke({"count": 0, "log": []}, c)
    ),
    "graph.get_state": lambda s, c: counter_app().compile(checkpointer=s).get_state(c),
}


@pytest.mark.parametrize("name", list(SYNC_CALLS))
def test_use_after_close_sync(tmp_path, name):
    path = tmp_path / "c.db"
    saver = RustSQLiteCheckpointer(path)
    counter_app().compile(checkpointer=saver).invoke({"count": 0, "log": []}, cfg("t"))
    saver.close()
    saver.close()  # idempotent
    assert saver.closed
    with pytest.raises(CheckpointClosedError) as ei:
        SYNC_CALLS[name](saver, cfg("t"))
    assert "closed" in str(ei.value) and str(path) in str(ei.value)
    with RustSQLiteCheckpointer(path) as again:
        assert len(list(again.list(cfg("t")))) == 5


ASYNC_CALLS = {
    "aget_tuple": lambda s, c: s.aget_tuple(c),
    "alist": lambda s, c: _drain(s.alist(c)),
    "aput": lambda s, c: s.aput(c, empty_checkpoint(), {}, {}),
    "aput_writes": lambda s, c: s.aput_writes(
        {"configurable": {**c["configurable"], "checkpoint_ns": "", "checkpoint_id": "x"}},
        [("a", 1)],
        "t",
    ),
    "adelete_thread": lambda s, c: s.adelete_thread("t"),
    "adelete_for_runs": lambda s, c: s.adelete_for_runs(["r"]),
    "acopy_thread": lambda s, c: s.acopy_thread("t", "u"),
    "aprune": lambda s, c: s.aprune(["t"]),
    "graph.ainvoke": lambda s, c: (
        counter_app().compile(checkpointer=s).ainvoke({"count": 0, "log": []}, c)
    ),
}


async def _drain(ait):
    return [x async for x in ait]


@pytest.mark.parametrize("name", list(ASYNC_CALLS))
async def test_use_after_close_async(tmp_path, name):
    path = tmp_path / "c.db"
    async with RustSQLiteCheckpointer(path) as saver:
        await counter_app().compile(checkpointer=saver).ainvoke({"count": 0, "log": []}, cfg("t"))
    assert saver.closed
    with pytest.raises(CheckpointClosedError, match="closed"):
        await ASYNC_CALLS[name](saver, cfg("t"))
    with RustSQLiteCheckpointer(path) as again:
        assert len(list(again.list(cfg("t")))) == 5


# -- wrong argument types ------------------------------------------------------------------


@pytest.mark.parametrize("path", [123, None, 1.5, b"bytes.db", ["a.db"]])
def test_bad_path_type(path):
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        RustSQLiteCheckpointer(path)


def test_bad_durable_type(tmp_path):
    with pytest.raises(TypeError, match="durable must be a bool"):
        RustSQLiteCheckpointer(tmp_path / "x.db", durable="yes")


@pytest.mark.parametrize("config", ["t1", ["thread_id", "t1"], 42, None])
def test_config_not_a_dict(filled, config):
    saver, snapshot, before = filled
    with pytest.raises(TypeError, match="config must be a dict"):
        saver.get_tuple(config)
    with pytest.raises(TypeError, match="config must be a dict"):
        saver.put(config, empty_checkpoint(), {}, {})
    with pytest.raises(TypeError, match="config must be a dict"):
        saver.put_writes(config, [("a", 1)], "task")
    assert_intact(saver, snapshot, before)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"configurable": {}},
        {"configurable": {"checkpoint_ns": ""}},
        {"configurable": "t1"},
        {"thread_id": "t1"},
    ],
)
def test_config_without_thread_id(filled, config):
    saver, snapshot, before = filled
    for call in (
        lambda: saver.get_tuple(config),
        lambda: saver.put(config, empty_checkpoint(), {}, {}),
        lambda: saver.put_writes(config, [("a", 1)], "task"),
    ):
        with pytest.raises(ValueError, match=r"thread_id"):
            call()
    assert_intact(saver, snapshot, before)


@pytest.mark.parametrize("limit", ["3", 2.0, True, [1]])
def test_bad_limit(filled, limit):
    saver, snapshot, before = filled
    with pytest.raises(TypeError, match="limit must be an int"):
        list(saver.list(cfg("done"), limit=limit))
    assert_intact(saver, snapshot, before)


@pytest.mark.parametrize("filter", ["source=loop", [("source", "loop")], 5])
def test_filter_not_a_dict(filled, filter):
    saver, snapshot, before = filled
    with pytest.raises(TypeError, match="filter must be a dict"):
        list(saver.list(None, filter=filter))
    assert_intact(saver, snapshot, before)


@pytest.mark.parametrize("run_ids", ["run-1", b"run-1", 7, None])
def test_run_ids_not_a_list(filled, run_ids):
    saver, snapshot, before = filled
    with pytest.raises(TypeError, match="run_ids must be a list"):
        saver.delete_for_runs(run_ids)
    assert_intact(saver, snapshot, before)


@pytest.mark.parametrize("thread_ids", ["t1", 3])
def test_prune_thread_ids_not_a_list(filled, thread_ids):
    saver, snapshot, before = filled
    with pytest.raises(TypeError, match="thread_ids must be a list"):
        saver.prune(thread_ids)
    assert_intact(saver, snapshot, before)


def test_bad_prune_strategy(filled):
    saver, snapshot, before = filled
    with pytest.raises(ValueError, match="strategy"):
        saver.prune(["done"], strategy="everything")
    assert_intact(saver, snapshot, before)


@pytest.mark.parametrize("where", ["directory", "missing parent"])
def test_unopenable_path(tmp_path, where):
    path = tmp_path if where == "directory" else tmp_path / "missing" / "x.db"
    with pytest.raises(ValueError, match="cannot open checkpoint database") as ei:
        RustSQLiteCheckpointer(path)
    assert str(path) in str(ei.value)
    assert list(tmp_path.iterdir()) == []
