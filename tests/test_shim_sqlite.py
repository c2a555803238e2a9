"""The shim's SqliteSaver works on the user's own file, in langgraph-checkpoint-sqlite's schema:
stock and shimmed processes alternate or run at once on one file and see each other's turns,
the rows are the bytes stock writes, no sibling file appears, and files left by the old
sibling-file swap are merged back."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from shim_sqlite_app import build, norm

from fast_langgraph import RustSQLiteCheckpointer, shim
from fast_langgraph.shim._sqlite import AcceleratedSqliteSaver

APP = str(Path(__file__).with_name("shim_sqlite_app.py"))
SQLITE_FILES = {"-wal", "-shm", "-journal"}


@pytest.fixture(autouse=True)
def _unpatched():
    shim.unpatch_langgraph()
    yield
    shim.unpatch_langgraph()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAST_LANGGRAPH_")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(APP).parent), env.get("PYTHONPATH", "")])
    return env


def _app(db: Path, mode: str, thread: str, first: int, turns: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, APP, str(db), mode, thread, str(first), str(turns)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(p: subprocess.Popen) -> str:
    out, err = p.communicate(timeout=240)
    assert p.returncode == 0, err
    return out.strip()


def _stock_view(db: Path, thread: str) -> dict[str, Any]:
    """What stock SqliteSaver, in this unpatched process, reads from the file."""
    with SqliteSaver.from_conn_string(str(db)) as saver:
        graph = build().compile(checkpointer=saver)
        config = {"configurable": {"thread_id": thread}}
        state = graph.get_state(config)
        return {
            "values": state.values,
            "next": state.next,
            "history": [norm(s) for s in graph.get_state_history(config)],
        }


def _extra_files(directory: Path, db: Path) -> list[str]:
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.name != db.name and p.name.removeprefix(db.name) not in SQLITE_FILES
    )


def test_stock_and_patched_processes_alternate_on_one_file(tmp_path: Path) -> None:
    mixed, stock = tmp_path / "mixed" / "app.db", tmp_path / "stock" / "app.db"
    mixed.parent.mkdir()
    stock.parent.mkdir()
    # Two turns per process, in the order patched, stock, stock, patched, patched, stock.
    modes = ["patched", "stock", "stock", "patched", "patched", "stock"]
    for i, mode in enumerate(modes):
        saver = _finish(_app(mixed, mode, "t", 2 * i, 2))
        assert saver == ("AcceleratedSqliteSaver" if mode == "patched" else "SqliteSaver")
    _finish(_app(stock, "stock", "t", 0, 2 * len(modes)))

    got, want = _stock_view(mixed, "t"), _stock_view(stock, "t")
    assert got == want
    assert len(want["history"]) > 20
    assert "answer-r1" in want["values"]["log"] and "answer-r11" in want["values"]["log"]
    assert _extra_files(mixed.parent, mixed) == []
    assert _extra_files(stock.parent, stock) == []


def test_a_stock_and_a_patched_process_write_one_file_at_once(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with SqliteSaver.from_conn_string(str(db)) as saver:
        saver.setup()  # both processes then find the tables
    turns = 20
    procs = [_app(db, "stock", "by-stock", 0, turns), _app(db, "patched", "by-shim", 0, turns)]
    assert [_finish(p) for p in procs] == ["SqliteSaver", "AcceleratedSqliteSaver"]
    by_stock, by_shim = _stock_view(db, "by-stock"), _stock_view(db, "by-shim")
    # The same turns give the same states and histories.
    assert repr(by_stock).replace("by-stock", "<t>") == repr(by_shim).replace("by-shim", "<t>")
    assert by_stock["values"]["log"].count("plan") == turns // 2
    assert _extra_files(tmp_path, db) == []


def test_each_side_sees_the_other_in_one_process(tmp_path: Path) -> None:
    db = str(tmp_path / "app.db")
    stock_conn = sqlite3.connect(db, check_same_thread=False)
    stock_saver = SqliteSaver(stock_conn)
    shim.patch_langgraph()
    fast_conn = sqlite3.connect(db, check_same_thread=False)
    fast_saver = SqliteSaver(fast_conn)
    assert isinstance(fast_saver, AcceleratedSqliteSaver) and fast_saver.accelerated
    assert type(stock_saver) is SqliteSaver  # built before the patch: stays stock
    config = {"configurable": {"thread_id": "t"}}
    fast_graph = build().compile(checkpointer=fast_saver)
    stock_graph = build().compile(checkpointer=stock_saver)
    fast_graph.invoke({"log": ["a"]}, config)  # stops at the question
    assert stock_graph.get_state(config).next == ("ask",)
    from langgraph.types import Command

    stock_graph.invoke(Command(resume="x"), config)
    assert fast_graph.get_state(config).values["log"][-1] == "answer-x"
    assert [norm(s) for s in fast_graph.get_state_history(config)] == [
        norm(s) for s in stock_graph.get_state_history(config)
    ]
    fast_saver.close_store()
    fast_conn.close()
    stock_conn.close()


def test_a_directory_gives_stocks_error_and_no_sibling(tmp_path: Path) -> None:
    def error() -> BaseException:
        with pytest.raises(Exception) as info:
            with SqliteSaver.from_conn_string(str(tmp_path)):
                pass
        return info.value

    stock = error()
    shim.patch_langgraph()
    patched = error()
    assert type(patched) is type(stock) and str(patched) == str(stock)
    assert not Path(str(tmp_path) + ".flg").exists()


def test_durability_is_the_users_connection_setting(tmp_path: Path) -> None:
    shim.patch_langgraph()
    for level in (2, 1, 3):
        conn = sqlite3.connect(str(tmp_path / f"d{level}.db"), check_same_thread=False)
        conn.execute(f"PRAGMA synchronous={level}")
        saver = SqliteSaver(conn)
        saver.put(
            {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, empty_checkpoint(), {}, {}
        )
        assert saver._flg().synchronous == level
        saver.close_store()
        conn.close()
    with SqliteSaver.from_conn_string(str(tmp_path / "default.db")) as saver:
        assert saver.get_tuple({"configurable": {"thread_id": "none"}}) is None
        assert saver._flg().synchronous == 2  # FULL, as a fresh sqlite3 connection has


def test_memory_databases_stay_on_stock_code() -> None:
    shim.patch_langgraph()
    with SqliteSaver.from_conn_string(":memory:") as saver:
        assert isinstance(saver, AcceleratedSqliteSaver) and not saver.accelerated
        graph = build().compile(checkpointer=saver)
        graph.invoke({"log": ["a"]}, {"configurable": {"thread_id": "t"}})
        assert len(list(saver.list(None))) > 0


def test_stock_api_stays(tmp_path: Path) -> None:
    shim.patch_langgraph()
    conn = sqlite3.connect(str(tmp_path / "app.db"), check_same_thread=False)
    saver = SqliteSaver(conn)
    assert saver.conn is conn
    saver.setup()
    with saver.lock:
        pass
    saver.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, empty_checkpoint(), {}, {})
    with saver.cursor(transaction=False) as cur:
        assert cur.execute("SELECT count(*) FROM checkpoints").fetchone() == (1,)
    saver.close_store()
    conn.close()
    # A closed connection fails as it does in stock.
    with pytest.raises(sqlite3.ProgrammingError):
        saver.get_tuple({"configurable": {"thread_id": "t"}})


def test_async_saver_shares_the_file_with_stock(tmp_path: Path) -> None:
    db = str(tmp_path / "app.db")

    async def run() -> tuple[Any, Any]:
        async with AsyncSqliteSaver.from_conn_string(db) as saver:
            assert type(saver).__name__ == "AcceleratedAsyncSqliteSaver"
            graph = build().compile(checkpointer=saver)
            config = {"configurable": {"thread_id": "t"}}
            await graph.ainvoke({"log": ["a"]}, config)
            state = await graph.aget_state(config)
            history = [norm(s) async for s in graph.aget_state_history(config)]
            # The sync API, from another thread, as stock allows.
            listed = await asyncio.to_thread(lambda: len(list(saver.list(config))))
            assert listed == len(history)
            return state.next, history

    shim.patch_langgraph()
    nxt, history = asyncio.run(run())
    shim.unpatch_langgraph()
    view = _stock_view(Path(db), "t")
    assert view["next"] == nxt == ("ask",)
    assert view["history"] == history
    assert _extra_files(tmp_path, Path(db)) == []


# -- the same rows as stock, for any sequence of calls ---------------------------------------

_ids = st.sampled_from(["t1", "t2", "3"])
_ns = st.sampled_from(["", "child:1"])
_meta = st.fixed_dictionaries(
    {"source": st.sampled_from(["loop", "input", "update"]), "step": st.integers(-1, 5)},
    optional={"note": st.text(max_size=8), "flag": st.booleans(), "x": st.none()},
)
_channels = st.sampled_from(["a", "b", "__error__", "__interrupt__", "c"])
_put = st.tuples(st.just("put"), _ids, _ns, st.integers(0, 40), _meta, st.text(max_size=20))
_writes = st.tuples(
    st.just("writes"),
    _ids,
    _ns,
    st.integers(0, 40),
    st.text("abc", min_size=1, max_size=3),
    st.lists(st.tuples(_channels, st.integers(-1000, 1000)), max_size=4),
    st.sampled_from(["", "~a", "~b"]),
)
_delete = st.tuples(st.just("delete"), _ids)
_filters = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={"source": st.sampled_from(["loop", "input"])}),
    st.fixed_dictionaries({"step": st.integers(-1, 5)}),
    st.fixed_dictionaries({"flag": st.booleans()}),
    st.fixed_dictionaries({"x": st.none()}),
)


def _rows(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    return {
        "checkpoints": conn.execute(
            "SELECT *, typeof(checkpoint), typeof(metadata) FROM checkpoints ORDER BY 1, 2, 3"
        ).fetchall(),
        "writes": conn.execute(
            "SELECT *, typeof(value) FROM writes ORDER BY 1, 2, 3, 4, 6"
        ).fetchall(),
    }


def _apply(saver: Any, op: tuple) -> None:
    kind = op[0]
    if kind == "put":
        _, thread, ns, n, meta, value = op
        cp = empty_checkpoint()
        cp["id"] = f"{n:08d}"
        cp["ts"] = "2026-01-01T00:00:00+00:00"
        cp["channel_values"] = {"v": value}
        parent = {"checkpoint_id": f"{n - 1:08d}"} if n else {}
        config = {"configurable": {"thread_id": thread, "checkpoint_ns": ns, **parent}}
        saver.put(config, cp, meta, {})
    elif kind == "writes":
        _, thread, ns, n, task, writes, path = op
        config = {
            "configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": f"{n:08d}"}
        }
        saver.put_writes(config, writes, task, path)
    else:
        saver.delete_thread(op[1])


def _listing(saver: Any, config: Any, flt: Any, before: Any, limit: Any) -> list:
    return [
        (t.config, t.checkpoint, t.metadata, t.parent_config, t.pending_writes)
        for t in saver.list(config, filter=flt, before=before, limit=limit)
    ]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(st.one_of(_put, _put, _writes, _writes, _delete), max_size=25),
    config=st.one_of(st.none(), _ids.map(lambda t: {"configurable": {"thread_id": t}})),
    flt=_filters,
    before=st.one_of(
        st.none(), st.integers(0, 40).map(lambda n: {"configurable": {"checkpoint_id": f"{n:08d}"}})
    ),
    limit=st.one_of(st.none(), st.integers(0, 5)),
)
def test_same_rows_and_reads_as_stock(tmp_path_factory, ops, config, flt, before, limit) -> None:
    d = tmp_path_factory.mktemp("same")
    stock_conn = sqlite3.connect(str(d / "stock.db"), check_same_thread=False)
    fast_conn = sqlite3.connect(str(d / "fast.db"), check_same_thread=False)
    stock, fast = SqliteSaver(stock_conn), AcceleratedSqliteSaver(fast_conn)
    try:
        for op in ops:
            _apply(stock, op)
            _apply(fast, op)
        stock.setup()
        fast.setup()
        assert _rows(fast_conn) == _rows(stock_conn)
        assert _listing(fast, config, flt, before, limit) == _listing(
            stock, config, flt, before, limit
        )
        for thread in ("t1", "t2", "3"):
            for ns in ("", "child:1"):
                for cid in (None, "00000003"):
                    c = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
                    if cid:
                        c["configurable"]["checkpoint_id"] = cid
                    assert fast.get_tuple(c) == stock.get_tuple(c)
    finally:
        fast.close_store()
        stock_conn.close()
        fast_conn.close()


# -- files left by the old sibling-file swap --------------------------------------------------


def test_an_old_sibling_file_is_merged_back_once(tmp_path: Path, caplog) -> None:
    db = tmp_path / "app.db"
    config = {"configurable": {"thread_id": "t"}}
    # The user's file: one turn written by stock.
    with SqliteSaver.from_conn_string(str(db)) as saver:
        build().compile(checkpointer=saver).invoke({"log": ["stock-1"]}, config)
        before = len(list(saver.list(config)))
    # The old swap's sibling: an import of that file, then turns written only there.
    old = RustSQLiteCheckpointer(str(db) + ".flg")
    old.import_sqlite_saver(str(db))
    graph = build().compile(checkpointer=old)
    from langgraph.types import Command

    graph.invoke(Command(resume="y"), config)
    graph.invoke({"log": ["flg-2"]}, {"configurable": {"thread_id": "other"}})
    want = {
        "t": [norm(s) for s in graph.get_state_history(config)],
        "other": [
            norm(s) for s in graph.get_state_history({"configurable": {"thread_id": "other"}})
        ],
    }
    old.close()

    shim.patch_langgraph()
    with caplog.at_level(logging.WARNING, logger="fast_langgraph.shim"):
        with SqliteSaver.from_conn_string(str(db)) as saver:
            assert saver.get_tuple(config) is not None
    merged = [r for r in caplog.records if "merged" in r.getMessage()]
    assert len(merged) == 1
    assert not Path(str(db) + ".flg").exists() and Path(str(db) + ".flg.merged").exists()
    shim.unpatch_langgraph()
    assert _stock_view(db, "t")["history"] == want["t"]
    assert _stock_view(db, "other")["history"] == want["other"]
    assert len(want["t"]) > before
    # A second open finds nothing to merge and logs nothing.
    caplog.clear()
    shim.patch_langgraph()
    with caplog.at_level(logging.WARNING, logger="fast_langgraph.shim"):
        with SqliteSaver.from_conn_string(str(db)) as saver:
            saver.get_tuple(config)
    assert not [r for r in caplog.records if "merged" in r.getMessage()]


def test_metadata_is_stored_as_stock_stores_it(tmp_path: Path) -> None:
    shim.patch_langgraph()
    with SqliteSaver.from_conn_string(str(tmp_path / "app.db")) as saver:
        saver.put(
            {"configurable": {"thread_id": "t", "checkpoint_ns": ""}},
            empty_checkpoint(),
            {"source": "input", "step": -1, "note": "é"},
            {},
        )
        with saver.cursor(transaction=False) as cur:
            (md,) = cur.execute("SELECT metadata FROM checkpoints").fetchone()
    assert isinstance(md, bytes)
    assert json.loads(md) == {"source": "input", "step": -1, "note": "é"}


# -- fork -------------------------------------------------------------------------------------


def test_forked_children_checkpoint_with_a_module_level_graph(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    p = subprocess.run(
        [sys.executable, APP, "fork", str(db)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ok"
    for thread in ("os-fork", "pool-a", "pool-b", "pool-c"):
        view = _stock_view(db, thread)
        # Three turns: start, answer, start again (stopped at the question).
        assert view["values"]["log"].count("plan") == 2, thread
        assert "answer-r1" in view["values"]["log"]
        assert view["next"] == ("ask",)
    assert _stock_view(db, "parent")["values"]["log"][-1] == "answer-r1"
    with sqlite3.connect(str(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert _extra_files(tmp_path, db) == []


def test_the_users_connection_closing_in_this_process_loses_nothing(tmp_path: Path) -> None:
    # The user's own sqlite3 connections open and close beside the shim's store in this
    # process. With two copies of SQLite in one process, each close folded and deleted the WAL
    # under the store, and its later commits were invisible to every new connection.
    db = str(tmp_path / "app.db")
    shim.patch_langgraph()
    conn = sqlite3.connect(db, check_same_thread=False)
    saver = SqliteSaver(conn)
    graph = build().compile(checkpointer=saver)
    for n in range(4):
        graph.invoke({"log": [f"in{n}"]}, {"configurable": {"thread_id": f"t{n}"}})
        other = sqlite3.connect(db)
        other.execute("SELECT count(*) FROM checkpoints").fetchone()
        other.close()
    expected = len(list(saver.list(None)))
    fresh = sqlite3.connect(db)
    assert fresh.execute("SELECT count(*) FROM checkpoints").fetchone() == (expected,)
    fresh.close()
    saver.close_store()
    conn.close()


def test_two_processes_opening_at_once_merge_a_sibling_once(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with SqliteSaver.from_conn_string(str(db)) as saver:
        saver.setup()
    old = RustSQLiteCheckpointer(str(db) + ".flg")
    build().compile(checkpointer=old).invoke({"log": ["x"]}, {"configurable": {"thread_id": "t"}})
    want = len(list(old.list(None)))
    old.close()
    code = (
        "import sys, fast_langgraph.shim as s; s.patch_langgraph()\n"
        "from langgraph.checkpoint.sqlite import SqliteSaver\n"
        "with SqliteSaver.from_conn_string(sys.argv[1]) as saver:\n"
        "    print(len(list(saver.list(None))))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(db)], env=_env(), stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == [str(want), str(want)]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "app.db.flg" not in names and "app.db.flg.merged" in names
    assert not any(n.startswith("app.db.flg.merged-2") for n in names), names


def test_bytes_and_bytearray_values_are_stored_as_stock_stores_them(tmp_path: Path) -> None:
    # LangGraph's serializer returns a bytearray write value as itself ("bytearray", data).
    stock_conn = sqlite3.connect(str(tmp_path / "stock.db"), check_same_thread=False)
    fast_conn = sqlite3.connect(str(tmp_path / "fast.db"), check_same_thread=False)
    stock, fast = SqliteSaver(stock_conn), AcceleratedSqliteSaver(fast_conn)
    try:
        for saver in (stock, fast):
            _apply(saver, ("put", "t", "", 0, {}, "v"))
            _apply(
                saver,
                ("writes", "t", "", 0, "task", [("a", bytearray(b"x\x00y")), ("b", b"z")], ""),
            )
        assert fast.accelerated
        assert _rows(fast_conn) == _rows(stock_conn)
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        got = fast.get_tuple(config)
        assert got == stock.get_tuple(config)
        assert got is not None and [type(w[2]) for w in got.pending_writes] == [bytearray, bytes]
    finally:
        fast.close_store()
        stock_conn.close()
        fast_conn.close()
