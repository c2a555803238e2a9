"""`RustSQLiteCheckpointer.export_sqlite_saver`: the way back to `langgraph-checkpoint-sqlite`'s
own schema. Real graphs (messages, a DeltaChannel, interrupts, a subgraph namespace, a Send
fan-out, forks, several threads) run on a RustSQLiteCheckpointer file; after the export, stock
SqliteSaver on the new file gives the same states and histories, resumes paused threads the same
way, and the file is refused or left alone wherever it should be."""

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
    delta_app,
    interrupt_app,
    send_app,
    sqlite_saver,
    subgraph_app,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.types import Command

from fast_langgraph import RustSQLiteCheckpointer
from fast_langgraph.checkpoint.sqlite_saver import SQLITE_SAVER_DDL

APPS = {
    "done": counter_app,
    "forked": counter_app,
    "paused": interrupt_app,
    "sub": subgraph_app,
    "chat": lambda: chat_app(["one", "two", "three"]),
    "fan": send_app,
    "notes": delta_app,
}


def write_threads(saver, delta_turns: int = 6, snapshot_frequency: int = 3) -> None:
    """Every kind of thread the tests compare, through real graphs on ``saver``."""
    counter = counter_app().compile(checkpointer=saver)
    counter.invoke({"count": 0, "log": []}, cfg("done"))
    counter.invoke({"count": 5, "log": []}, cfg("forked"))
    old = next(s for s in counter.get_state_history(cfg("forked")) if s.next == ("b",))
    edited = counter.update_state(old.config, {"count": 50}, as_node="a")
    counter.invoke(None, edited)
    interrupt_app().compile(checkpointer=saver).invoke({"question": "who"}, cfg("paused"))
    subgraph_app().compile(checkpointer=saver).invoke({"log": []}, cfg("sub"))
    chat = chat_app(["one", "two", "three"]).compile(checkpointer=saver)
    chat.invoke({"messages": [HumanMessage("a", id="ha")]}, cfg("chat"))
    chat.invoke({"messages": [HumanMessage("b", id="hb")]}, cfg("chat"))
    send_app().compile(checkpointer=saver).invoke({"items": ["k", "l", "m"]}, cfg("fan"))
    notes = delta_app(snapshot_frequency).compile(checkpointer=saver)
    for i in range(delta_turns):
        notes.invoke(
            {"messages": [HumanMessage(f"q{i}", id=f"h-{i}")], "notes": [f"in {i}"]}, cfg("notes")
        )
        if i == 1:
            notes.update_state(
                cfg("notes"), {"notes": ["edited"], "messages": [HumanMessage("x", id="e")]}
            )


def states(saver, threads=APPS, snapshot_frequency: int = 3) -> dict:
    """get_state (with subgraphs) and get_state_history of every thread, through the graph
    that wrote it."""
    out = {}
    for thread, app in threads.items():
        builder = delta_app(snapshot_frequency) if thread == "notes" else app()
        graph = builder.compile(checkpointer=saver)
        out[thread] = (
            graph.get_state(cfg(thread), subgraphs=True),
            list(graph.get_state_history(cfg(thread))),
        )
    return out


def stamp(*paths) -> list:
    out = []
    for p in paths:
        if os.path.exists(p):
            st = os.stat(p)
            out.append((hashlib.sha256(open(p, "rb").read()).hexdigest(), st.st_mtime_ns))
        else:
            out.append(None)
    return out


def rows(path) -> dict:
    """Every row of a SqliteSaver file, by table, sorted."""
    conn = sqlite3.connect(path)
    try:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall())
            for table in ("checkpoints", "writes")
        }
    finally:
        conn.close()


@pytest.fixture(scope="module", params=[True, False], ids=["delta", "no-delta"])
def source(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "ours.db"
    saver = RustSQLiteCheckpointer(path, delta=request.param)
    write_threads(saver)
    yield saver
    saver.close()


def test_stock_reads_the_export_as_the_source(source, tmp_path):
    src_files = [source._store.path, source._store.path + "-wal"]
    before = stamp(*src_files)
    want = states(source)
    n_source = len(list(source.list(None)))

    target = tmp_path / "back.db"
    count = source.export_sqlite_saver(target)
    # The source was only read.
    assert stamp(*src_files) == before
    assert count == n_source
    stock = sqlite_saver(target)
    try:
        assert type(stock).__name__ == "SqliteSaver"
        got = states(stock)
        assert len(list(stock.list(None))) == n_source
        # Every kind of thread is there, namespaces and pending writes included.
        all_stock = list(stock.list(None))
        assert any(t.config["configurable"]["checkpoint_ns"] for t in all_stock)
        assert any(t.pending_writes for t in all_stock)
    finally:
        stock.conn.close()
    for thread in APPS:
        assert got[thread][0] == want[thread][0], thread
        assert got[thread][1] == want[thread][1], thread
        assert len(want[thread][1]) > 1, thread


def test_export_has_stock_schema(source, tmp_path):
    """The same tables, columns and keys stock setup() creates, and WAL as it leaves it."""
    source.export_sqlite_saver(tmp_path / "back.db")
    stock = sqlite_saver(tmp_path / "stock.db")
    stock.setup()
    stock.conn.close()

    def schema(path):
        conn = sqlite3.connect(path)
        try:
            tables = {
                name: [tuple(r) for r in conn.execute(f"PRAGMA table_info({name})")]
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            indexes = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master"))
            return tables, indexes, conn.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            conn.close()

    assert schema(tmp_path / "back.db") == schema(tmp_path / "stock.db")
    assert "CREATE TABLE IF NOT EXISTS checkpoints" in SQLITE_SAVER_DDL


@pytest.mark.parametrize("thread", ["paused", "sub"])
def test_paused_threads_resume_on_the_export_as_on_the_source(tmp_path, thread):
    app = APPS[thread]
    with RustSQLiteCheckpointer(tmp_path / "ours.db") as ours:
        graph = app().compile(checkpointer=ours)
        graph.invoke({"question": "who"} if thread == "paused" else {"log": []}, cfg(thread))
        ours.export_sqlite_saver(tmp_path / "back.db")
        want = graph.invoke(Command(resume="ok"), cfg(thread))
        want_history = list(graph.get_state_history(cfg(thread)))
    stock = sqlite_saver(tmp_path / "back.db")
    try:
        graph = app().compile(checkpointer=stock)
        paused = graph.get_state(cfg(thread), subgraphs=True)
        assert paused.next
        assert paused.tasks[0].interrupts or paused.tasks[0].state.tasks[0].interrupts
        assert graph.invoke(Command(resume="ok"), cfg(thread)) == want
        got_history = list(graph.get_state_history(cfg(thread)))
    finally:
        stock.conn.close()
    # The turns after the export have new checkpoint ids: compare what they hold.
    assert [(s.values, s.next, s.metadata["step"]) for s in got_history] == [
        (s.values, s.next, s.metadata["step"]) for s in want_history
    ]


def test_import_then_export_gives_back_stock_rows(tmp_path):
    """A stock file imported and exported again: every row as stock wrote it. Ids, parents,
    type tags, metadata bytes and every pending write are the same bytes; each checkpoint
    decodes to what stock's decodes to (the channel values may come in another order: this
    layout keeps them per channel; and a DeltaChannel snapshot shows in every checkpoint that
    holds its version, where stock's inline layout shows it once)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    stock = sqlite_saver(tmp_path / "stock.db")
    write_threads(stock)
    stock.conn.close()
    with RustSQLiteCheckpointer(tmp_path / "ours.db") as ours:
        n = ours.import_sqlite_saver(tmp_path / "stock.db")
        assert ours.export_sqlite_saver(tmp_path / "back.db") == n
    want, got = rows(tmp_path / "stock.db"), rows(tmp_path / "back.db")
    assert got["writes"] == want["writes"]
    assert [r[:5] + r[6:] for r in got["checkpoints"]] == [
        r[:5] + r[6:] for r in want["checkpoints"]
    ]
    serde = JsonPlusSerializer()
    same_bytes = 0
    for g, w in zip(got["checkpoints"], want["checkpoints"]):
        a, b = serde.loads_typed((g[4], g[5])), serde.loads_typed((w[4], w[5]))
        if g[0] == "notes":
            a_values, b_values = a.pop("channel_values"), b.pop("channel_values")
            assert {k: v for k, v in a_values.items() if k != "notes"} == {
                k: v for k, v in b_values.items() if k != "notes"
            }
            assert "notes" not in b_values or a_values["notes"] == b_values["notes"]
        assert a == b, g[:3]
        same_bytes += g[5] == w[5]
    # Most are the very bytes stock wrote.
    assert same_bytes > len(got["checkpoints"]) // 2


def test_export_again_is_idempotent_and_adds_what_is_new(tmp_path):
    target = tmp_path / "back.db"
    with RustSQLiteCheckpointer(tmp_path / "ours.db") as ours:
        write_threads(ours)
        n = ours.export_sqlite_saver(target)
        first = rows(target)
        assert n == len(first["checkpoints"])
        # Nothing new: nothing copied, nothing changed.
        assert ours.export_sqlite_saver(target) == 0
        assert rows(target) == first
        # Two more turns on one thread, one new thread: only those are copied.
        chat = chat_app(["four", "five", "six"]).compile(checkpointer=ours)
        chat.invoke({"messages": [HumanMessage("c", id="hc")]}, cfg("chat"))
        chat.invoke({"messages": [HumanMessage("d", id="hd")]}, cfg("new"))
        added = len(list(ours.list(None))) - n
        assert ours.export_sqlite_saver(target, batch_size=1) == added > 0
        want = states(ours, {"chat": APPS["chat"], "new": APPS["chat"], "done": APPS["done"]})
    stock = sqlite_saver(target)
    try:
        assert states(stock, {"chat": APPS["chat"], "new": APPS["chat"], "done": APPS["done"]}) == (
            want
        )
    finally:
        stock.conn.close()
    again = rows(target)
    for table in ("checkpoints", "writes"):
        assert set(first[table]) <= set(again[table])


def test_small_batches_write_the_same_rows(source, tmp_path):
    assert source.export_sqlite_saver(tmp_path / "a.db") == source.export_sqlite_saver(
        tmp_path / "b.db", batch_size=1
    )
    assert rows(tmp_path / "a.db") == rows(tmp_path / "b.db")


def test_export_with_encrypted_serializer(tmp_path):
    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"k" * 16)
    with RustSQLiteCheckpointer(tmp_path / "ours.db", serde=serde) as ours:
        write_threads(ours, delta_turns=3)
        want = states(ours)
        ours.export_sqlite_saver(tmp_path / "back.db")
    raw = sqlite3.connect(tmp_path / "back.db")
    assert {t for (t,) in raw.execute("SELECT DISTINCT type FROM checkpoints")} == {"msgpack+aes"}
    raw.close()
    stock = sqlite_saver(tmp_path / "back.db")
    stock = type(stock)(stock.conn, serde=serde)
    try:
        assert states(stock) == want
    finally:
        stock.conn.close()


async def test_async_sqlite_saver_reads_the_export(source, tmp_path):
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    source.export_sqlite_saver(tmp_path / "back.db")
    want = {
        thread: list(APPS[thread]().compile(checkpointer=source).get_state_history(cfg(thread)))
        for thread in ("chat", "sub", "paused")
    }
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "back.db")) as saver:
        for thread, history in want.items():
            graph = APPS[thread]().compile(checkpointer=saver)
            assert [s async for s in graph.aget_state_history(cfg(thread))] == history


def test_the_shim_reads_the_export_as_stock_does(source, tmp_path):
    from langgraph.checkpoint.sqlite import SqliteSaver

    import fast_langgraph.shim

    source.export_sqlite_saver(tmp_path / "back.db")
    want = states(source)
    fast_langgraph.shim.patch_langgraph(executor=False, add_messages=False, serde=False)
    try:
        saver = SqliteSaver(sqlite3.connect(tmp_path / "back.db", check_same_thread=False))
        assert saver.accelerated
        try:
            assert states(saver) == want
        finally:
            saver.close_store()
            saver.conn.close()
    finally:
        fast_langgraph.shim.unpatch_langgraph()


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(turns=st.integers(1, 10), snapshot_frequency=st.integers(1, 4))
def test_delta_channel_threads_of_any_length(turns, snapshot_frequency, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("delta")
    threads = {"notes": APPS["notes"]}
    with RustSQLiteCheckpointer(tmp / "ours.db") as ours:
        graph = delta_app(snapshot_frequency).compile(checkpointer=ours)
        for i in range(turns):
            graph.invoke(
                {"messages": [HumanMessage(f"q{i}", id=f"h-{i}")], "notes": [f"in {i}"]},
                cfg("notes"),
            )
        want = states(ours, threads, snapshot_frequency)
        n = ours.export_sqlite_saver(tmp / "back.db")
        assert n == len(list(ours.list(None)))
    stock = sqlite_saver(tmp / "back.db")
    try:
        assert states(stock, threads, snapshot_frequency) == want
        out = (
            delta_app(snapshot_frequency)
            .compile(checkpointer=stock)
            .invoke({"messages": [HumanMessage("more", id="h-more")]}, cfg("notes"))
        )
        assert out["notes"][-3:] == [f"note {2 * turns + 1}", "worker 0", "worker 1"]
    finally:
        stock.conn.close()


# -- what is refused, and left as it is ---------------------------------------------------


def small_source(path) -> RustSQLiteCheckpointer:
    saver = RustSQLiteCheckpointer(path)
    counter_app().compile(checkpointer=saver).invoke({"count": 0, "log": []}, cfg("t"))
    return saver


def test_a_file_with_other_tables_is_refused(tmp_path):
    target = tmp_path / "app.db"
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.execute("INSERT INTO users VALUES (1)")
    conn.commit()
    conn.close()
    before = stamp(target)
    with small_source(tmp_path / "ours.db") as ours:
        with pytest.raises(ValueError, match=r"app\.db.*holds other data.*users"):
            ours.export_sqlite_saver(target)
    assert stamp(target) == before


def test_a_checkpoints_table_of_another_shape_is_refused(tmp_path):
    target = tmp_path / "other.db"
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE checkpoints (id INTEGER, body TEXT)")
    conn.execute("CREATE TABLE writes (id INTEGER)")
    conn.commit()
    conn.close()
    before = stamp(target)
    with small_source(tmp_path / "ours.db") as ours:
        with pytest.raises(ValueError, match=r"other\.db.*checkpoints table with other columns"):
            ours.export_sqlite_saver(target)
    assert stamp(target) == before


def test_our_own_layout_is_refused(tmp_path):
    with small_source(tmp_path / "other.db"):
        pass
    before = stamp(tmp_path / "other.db")
    with small_source(tmp_path / "ours.db") as ours:
        with pytest.raises(ValueError, match=r"other\.db.*holds other data"):
            ours.export_sqlite_saver(tmp_path / "other.db")
    assert stamp(tmp_path / "other.db") == before


def test_another_sqlite_saver_file_is_refused(tmp_path):
    """A SqliteSaver file holding checkpoints this checkpointer does not: never merged into."""
    other = sqlite_saver(tmp_path / "stock.db")
    counter_app().compile(checkpointer=other).invoke({"count": 0, "log": []}, cfg("theirs"))
    other.conn.close()
    before = rows(tmp_path / "stock.db")
    with small_source(tmp_path / "ours.db") as ours:
        with pytest.raises(ValueError, match=r"stock\.db.*holds 5 checkpoint\(s\).*'theirs'"):
            ours.export_sqlite_saver(tmp_path / "stock.db")
    assert rows(tmp_path / "stock.db") == before


def test_an_export_of_a_thread_deleted_since_is_refused(tmp_path):
    with small_source(tmp_path / "ours.db") as ours:
        ours.export_sqlite_saver(tmp_path / "back.db")
        before = rows(tmp_path / "back.db")
        ours.delete_thread("t")
        with pytest.raises(ValueError, match=r"back\.db.*does not"):
            ours.export_sqlite_saver(tmp_path / "back.db")
    assert rows(tmp_path / "back.db") == before


def test_not_sqlite_is_refused(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("hello " * 1000)
    before = stamp(target)
    with small_source(tmp_path / "ours.db") as ours:
        with pytest.raises(ValueError, match=r"notes\.txt.*not an SQLite database"):
            ours.export_sqlite_saver(target)
    assert stamp(target) == before


def test_the_source_itself_is_refused(tmp_path):
    with small_source(tmp_path / "ours.db") as ours:
        before = list(ours.list(None))
        with pytest.raises(ValueError, match=r"ours\.db.*own database"):
            ours.export_sqlite_saver(tmp_path / "ours.db")
        os.link(tmp_path / "ours.db", tmp_path / "hardlink.db")
        with pytest.raises(ValueError, match=r"hardlink\.db.*own database"):
            ours.export_sqlite_saver(tmp_path / "hardlink.db")
        assert list(ours.list(None)) == before


def test_bad_arguments(tmp_path):
    with small_source(tmp_path / "ours.db") as ours:
        with pytest.raises(TypeError, match="target must be a path"):
            ours.export_sqlite_saver(42)
        with pytest.raises(ValueError, match="batch_size"):
            ours.export_sqlite_saver(tmp_path / "x.db", batch_size=0)
        with pytest.raises(ValueError, match="file path"):
            ours.export_sqlite_saver(":memory:")
        with pytest.raises(IsADirectoryError, match="is a directory"):
            ours.export_sqlite_saver(tmp_path)
    assert not (tmp_path / "x.db").exists()


def test_an_empty_file_is_accepted(tmp_path):
    (tmp_path / "empty.db").write_bytes(b"")
    with small_source(tmp_path / "ours.db") as ours:
        assert ours.export_sqlite_saver(tmp_path / "empty.db") == 5


def test_a_closed_checkpointer_is_refused(tmp_path):
    ours = small_source(tmp_path / "ours.db")
    ours.close()
    with pytest.raises(Exception, match="closed"):
        ours.export_sqlite_saver(tmp_path / "back.db")
    assert not (tmp_path / "back.db").exists()


@pytest.mark.parametrize("name", ["we#ird?name%20.db", "spaces and 'quotes'.db"])
def test_target_path_with_uri_characters(tmp_path, name):
    with small_source(tmp_path / "ours.db") as ours:
        assert ours.export_sqlite_saver(tmp_path / name) == 5
    stock = sqlite_saver(tmp_path / name)
    try:
        assert stock.get_tuple(cfg("t")).checkpoint["channel_values"]["count"] == 111
    finally:
        stock.conn.close()
    assert sorted(os.listdir(tmp_path)) == sorted(
        [n for n in os.listdir(tmp_path) if not n.startswith("we") or n.startswith(name)]
    )
    assert not (tmp_path / "we").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)
