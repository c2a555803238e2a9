"""`RustSQLiteCheckpointer.import_sqlite_saver`: a database written by LangGraph's SqliteSaver
through real graphs comes over checkpoint by checkpoint, exactly, and paused threads resume
on the copy as they would have on the original."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3

import pytest
from conftest import cfg
from graph_apps import (
    chat_app,
    counter_app,
    interrupt_app,
    send_app,
    sqlite_saver,
    subgraph_app,
    thread_dump,
)
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.types import Command

from fast_langgraph import RustSQLiteCheckpointer

THREADS = ("done", "forked", "paused", "sub", "chat", "fan")


def write_source(path, serde=None) -> None:
    saver = sqlite_saver(path)
    if serde is not None:
        saver = type(saver)(saver.conn, serde=serde)
    counter = counter_app().compile(checkpointer=saver)
    counter.invoke({"count": 0, "log": []}, cfg("done"))
    counter.invoke({"count": 5, "log": []}, cfg("forked"))
    old = next(s for s in counter.get_state_history(cfg("forked")) if s.next == ("b",))
    edited = counter.update_state(old.config, {"count": 50}, as_node="a")
    counter.invoke(None, edited)
    interrupt_app().compile(checkpointer=saver).invoke({"question": "who"}, cfg("paused"))
    subgraph_app().compile(checkpointer=saver).invoke({"log": []}, cfg("sub"))
    chat = chat_app(["one", "two"]).compile(checkpointer=saver)
    chat.invoke({"messages": [HumanMessage("a")]}, cfg("chat"))
    chat.invoke({"messages": [HumanMessage("b")]}, cfg("chat"))
    send_app().compile(checkpointer=saver).invoke({"items": ["k", "l", "m"]}, cfg("fan"))
    saver.conn.close()


def stamp(path):
    st = os.stat(path)
    return hashlib.sha256(open(path, "rb").read()).hexdigest(), st.st_mtime_ns, st.st_size


def all_tuples(saver) -> list:
    out = list(saver.list(None))
    out.sort(
        key=lambda t: (
            t.config["configurable"]["thread_id"],
            t.config["configurable"]["checkpoint_ns"],
            t.config["configurable"]["checkpoint_id"],
        )
    )
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "sqlite_saver.db"
    write_source(path)
    return path


def test_import_matches_checkpoint_by_checkpoint(source, tmp_path):
    before = stamp(source)
    with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
        count = rust.import_sqlite_saver(source)
        imported = all_tuples(rust)
    assert stamp(source) == before

    ref = sqlite_saver(source)
    try:
        original = all_tuples(ref)
    finally:
        ref.conn.close()
    assert count == len(original) == len(imported)
    assert {t.config["configurable"]["thread_id"] for t in original} == set(THREADS)
    assert any(t.config["configurable"]["checkpoint_ns"] for t in original)
    assert any(t.pending_writes for t in original)
    for a, b in zip(imported, original):
        where = a.config["configurable"]
        assert a.config == b.config, where
        assert a.checkpoint == b.checkpoint, where
        assert a.metadata == b.metadata, where
        assert a.parent_config == b.parent_config, where
        assert a.pending_writes == b.pending_writes, where


def test_import_get_tuple_and_filters_match(source, tmp_path):
    ref = sqlite_saver(source)
    try:
        with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
            rust.import_sqlite_saver(source)
            for thread in THREADS:
                assert rust.get_tuple(cfg(thread)) == ref.get_tuple(cfg(thread)), thread
                assert list(rust.list(cfg(thread))) == list(ref.list(cfg(thread))), thread
                assert list(rust.list(cfg(thread), limit=2)) == list(ref.list(cfg(thread), limit=2))
            for flt in (
                {"source": "loop"},
                {"source": "update"},
                {"step": 1},
                {"source": "input", "step": -1},
            ):
                assert [t.config for t in rust.list(None, filter=flt)] == [
                    t.config for t in ref.list(None, filter=flt)
                ], flt
    finally:
        ref.conn.close()


@pytest.mark.parametrize("thread", ["paused", "sub"])
def test_resume_interrupted_thread_on_copy(source, tmp_path, thread):
    ref_path = tmp_path / "ref.db"
    shutil.copy(source, ref_path)
    app = {"paused": interrupt_app, "sub": subgraph_app}[thread]

    ref = sqlite_saver(ref_path)
    try:
        ref_graph = app().compile(checkpointer=ref)
        assert ref_graph.get_state(cfg(thread)).next
        want = ref_graph.invoke(Command(resume="ok"), cfg(thread))
        want_dump = thread_dump(ref, thread)
    finally:
        ref.conn.close()

    with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
        rust.import_sqlite_saver(source)
        graph = app().compile(checkpointer=rust)
        paused = graph.get_state(cfg(thread), subgraphs=True)
        assert paused.next
        assert paused.tasks[0].interrupts or paused.tasks[0].state.tasks[0].interrupts
        got = graph.invoke(Command(resume="ok"), cfg(thread))
        assert got == want
        assert graph.get_state(cfg(thread)).next == ()
        assert thread_dump(rust, thread) == want_dump


def test_continue_chat_on_copy(source, tmp_path):
    with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
        rust.import_sqlite_saver(source)
        graph = chat_app(["three"]).compile(checkpointer=rust)
        out = graph.invoke({"messages": [HumanMessage("c")]}, cfg("chat"))
        assert [m.content for m in out["messages"]] == ["a", "one", "b", "two", "c", "three"]
        assert len(list(graph.get_state_history(cfg("chat")))) == 12


def test_import_is_idempotent(source, tmp_path):
    with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
        n = rust.import_sqlite_saver(source)
        first = all_tuples(rust)
        # The count is of checkpoints copied: a second import copies none.
        assert n == len(first) > 0
        assert rust.import_sqlite_saver(source) == 0
        assert all_tuples(rust) == first


def test_import_counts_copied_and_keeps_what_was_there(source, tmp_path):
    with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
        n_source = rust.import_sqlite_saver(source)
        thread = all_tuples(rust)[0].config["configurable"]["thread_id"]
        # With one thread gone, a second import copies that thread only, and says so.
        rust.delete_thread(thread)
        dropped = n_source - len(all_tuples(rust))
        assert dropped > 0
        assert rust.import_sqlite_saver(source) == dropped
        assert len(all_tuples(rust)) == n_source


def test_import_small_batches(source, tmp_path):
    with (
        RustSQLiteCheckpointer(tmp_path / "a.db") as a,
        RustSQLiteCheckpointer(tmp_path / "b.db") as b,
    ):
        a.import_sqlite_saver(source)
        b.import_sqlite_saver(source, batch_size=1)
        assert all_tuples(a) == all_tuples(b)


def test_import_while_source_is_open_in_wal(tmp_path):
    """The source is still open by SqliteSaver (its WAL not checkpointed): the import sees
    the committed data and leaves the source usable."""
    path = tmp_path / "live.db"
    ref = sqlite_saver(path)
    try:
        graph = counter_app().compile(checkpointer=ref)
        graph.invoke({"count": 1, "log": []}, cfg("live"))
        with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
            assert rust.import_sqlite_saver(path) == 5
            assert all_tuples(rust) == all_tuples(ref)
        graph.invoke({"count": 2, "log": []}, cfg("live"))
        assert len(list(ref.list(cfg("live")))) == 10
    finally:
        ref.conn.close()


def test_import_with_encrypted_serializer(tmp_path):
    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 16)
    src = tmp_path / "enc.db"
    write_source(src, serde=serde)
    ref = sqlite_saver(src)
    ref = type(ref)(ref.conn, serde=serde)
    try:
        with RustSQLiteCheckpointer(tmp_path / "new.db", serde=serde) as rust:
            rust.import_sqlite_saver(src)
            assert all_tuples(rust) == all_tuples(ref)
    finally:
        ref.conn.close()


@pytest.mark.parametrize("name", ["we#ird?name%20.db", "spaces and 'quotes'.db"])
def test_import_source_path_with_uri_characters(tmp_path, name):
    """The source is opened through an SQLite URI: '#', '?' and '%' in its path must not
    cut it short (which opened, and created, another file)."""
    path = tmp_path / name
    ref = sqlite_saver(path)
    counter_app().compile(checkpointer=ref).invoke({"count": 0, "log": []}, cfg("t"))
    ref.conn.close()
    before = stamp(path)
    with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
        assert rust.import_sqlite_saver(path) == 5
        assert rust.get_tuple(cfg("t")).checkpoint["channel_values"]["count"] == 111
    assert stamp(path) == before
    assert not (tmp_path / "we").exists()


# -- bad sources ---------------------------------------------------------------------------


def test_import_not_a_sqlite_saver_database(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    before = stamp(path)
    with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
        with pytest.raises(ValueError, match=r"not a SqliteSaver database.*users"):
            rust.import_sqlite_saver(path)
        assert list(rust.list(None)) == []
    assert stamp(path) == before


def test_import_not_sqlite(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello " * 1000)
    before = stamp(path)
    with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
        with pytest.raises(ValueError, match="not an SQLite database"):
            rust.import_sqlite_saver(path)
        assert list(rust.list(None)) == []
    assert stamp(path) == before


def test_import_missing_file(tmp_path):
    with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
        with pytest.raises(FileNotFoundError, match=r"nope\.db"):
            rust.import_sqlite_saver(tmp_path / "nope.db")
        assert list(rust.list(None)) == []
    assert not (tmp_path / "nope.db").exists()


def test_import_our_own_database_is_refused(tmp_path):
    path = tmp_path / "ours.db"
    with RustSQLiteCheckpointer(path) as saver:
        counter_app().compile(checkpointer=saver).invoke({"count": 0, "log": []}, cfg("t"))
    before = stamp(path)
    with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
        with pytest.raises(ValueError, match="not a SqliteSaver database"):
            rust.import_sqlite_saver(path)
        assert list(rust.list(None)) == []
    assert stamp(path) == before


def test_import_bad_source_type(tmp_path):
    with RustSQLiteCheckpointer(tmp_path / "new.db") as rust:
        with pytest.raises(TypeError, match="source must be a path"):
            rust.import_sqlite_saver(42)
        assert list(rust.list(None)) == []


IMPORT_CHILD = """
import sys
from fast_langgraph import RustSQLiteCheckpointer
saver = RustSQLiteCheckpointer(sys.argv[2])
print("start", flush=True)
saver.import_sqlite_saver(sys.argv[1], batch_size=10)
print("done", flush=True)
"""


def test_import_killed_midway_then_rerun(source, tmp_path):
    """An import killed at any point leaves a readable database holding exact copies of
    the checkpoints it got to; running it again completes the copy."""
    import signal
    import subprocess
    import sys

    big = tmp_path / "big.db"
    shutil.copy(source, big)
    conn = sqlite3.connect(big)
    for n in range(1, 40):
        for table in ("checkpoints", "writes"):
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            rest = ", ".join(cols[1:])
            conn.execute(
                f"INSERT INTO {table} (thread_id, {rest}) SELECT thread_id || '-{n}', {rest} "
                f"FROM {table} WHERE thread_id NOT LIKE '%-%'"
            )
    conn.commit()
    conn.close()
    dest = tmp_path / "dest.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", IMPORT_CHILD, str(big), str(dest)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "start"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)

    ref = sqlite_saver(big)
    try:
        want = {
            (
                t.config["configurable"]["thread_id"],
                t.config["configurable"]["checkpoint_ns"],
                t.checkpoint["id"],
            ): t
            for t in ref.list(None)
        }
        with RustSQLiteCheckpointer(dest) as rust:
            partial = list(rust.list(None))
            for t in partial:
                key = (
                    t.config["configurable"]["thread_id"],
                    t.config["configurable"]["checkpoint_ns"],
                    t.checkpoint["id"],
                )
                assert rust.get_tuple(t.config) == t
                assert t.checkpoint == want[key].checkpoint
                assert t.metadata == want[key].metadata
                assert t.pending_writes == want[key].pending_writes
            assert rust.import_sqlite_saver(big) == len(want)
            assert all_tuples(rust) == all_tuples(ref)
    finally:
        ref.conn.close()
