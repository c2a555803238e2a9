"""fast_langgraph.shim: patch_langgraph, unpatch_langgraph, status, settings, auto-patch."""

from __future__ import annotations

import asyncio
import json
import operator
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated, TypedDict

import pytest

import fast_langgraph
from fast_langgraph import RustSQLiteCheckpointer, shim
from fast_langgraph import executor as fx
from fast_langgraph.shim import executor as shim_executor

ROOT = Path(__file__).resolve().parent.parent
KNOWN = (
    "langchain_core.runnables.config",
    "langchain_core.runnables.base",
    "langchain_core.runnables.configurable",
    "langchain_core.runnables.passthrough",
    "langchain_core.runnables.router",
    "langgraph.pregel._executor",
    "langgraph.prebuilt.tool_node",
    "langgraph.prebuilt.tool_validator",
)


@pytest.fixture(autouse=True)
def _clean():
    shim.unpatch_langgraph()
    yield
    shim.unpatch_langgraph()
    fast_langgraph._settings.reset_configuration()


class State(TypedDict):
    log: Annotated[list, operator.add]


def _fanout_graph(checkpointer=None):
    from langgraph.graph import START, StateGraph

    def node(name):
        return lambda s: {"log": [(name, threading.current_thread().name)]}

    g = StateGraph(State)
    for n in "abc":
        g.add_node(n, node(n))
        g.add_edge(START, n)
    return g.compile(checkpointer=checkpointer)


def _thread_names(result) -> set[str]:
    return {t for _, t in result["log"]}


def test_patch_replaces_every_binding_and_unpatch_restores_them() -> None:
    import importlib

    originals = {m: importlib.import_module(m).get_executor_for_config for m in KNOWN}
    report = shim.patch_langgraph(checkpointer=False)
    assert set(KNOWN) <= set(report.applied["executor"])
    assert report.skipped == {"checkpointer": "turned off by settings"}
    for m in KNOWN:
        assert sys.modules[m].get_executor_for_config is fx.get_executor_for_config, m
    st = shim.status()
    assert st["executor"]["active"] and not st["checkpointer"]["active"]
    shim.unpatch_langgraph()
    for m in KNOWN:
        assert sys.modules[m].get_executor_for_config is originals[m], m
    assert not shim.status()["executor"]["active"]
    shim.unpatch_langgraph()  # idempotent


def test_graphs_run_on_the_pool_only_while_patched() -> None:
    graph = _fanout_graph()
    stock = graph.invoke({"log": []})
    assert any(n.startswith("ThreadPoolExecutor") for n in _thread_names(stock))
    spawned_before = fx.pool_stats()["spawned"]
    shim.patch_langgraph()
    patched = graph.invoke({"log": []})
    assert not any(n.startswith("ThreadPoolExecutor") for n in _thread_names(patched))
    assert [x for x, _ in patched["log"]] == [x for x, _ in stock["log"]]
    assert fx.pool_stats()["threads"] > 0 or fx.pool_stats()["spawned"] > spawned_before
    shim.unpatch_langgraph()
    again = graph.invoke({"log": []})
    assert any(n.startswith("ThreadPoolExecutor") for n in _thread_names(again))


def test_max_concurrency_is_honoured_in_graphs() -> None:
    from langgraph.graph import START, StateGraph

    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def node(s):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        threading.Event().wait(0.01)
        with lock:
            state["now"] -= 1
        return {"log": [1]}

    g = StateGraph(State)
    for i in range(8):
        g.add_node(f"n{i}", node)
        g.add_edge(START, f"n{i}")
    graph = g.compile()
    shim.patch_langgraph()
    assert len(graph.invoke({"log": []}, {"max_concurrency": 2})["log"]) == 8
    assert state["peak"] == 2
    state["peak"] = 0
    graph.invoke({"log": []})
    assert state["peak"] > 2


def test_batch_inside_a_node_on_a_tiny_pool_does_not_deadlock() -> None:
    from langgraph.graph import START, StateGraph

    inner = _fanout_graph()

    def outer_node(s):
        results = inner.batch([{"log": []} for _ in range(6)])
        return {"log": [len(r["log"]) for r in results]}

    g = StateGraph(State)
    for i in range(3):
        g.add_node(f"o{i}", outer_node)
        g.add_edge(START, f"o{i}")
    graph = g.compile()
    stock = graph.invoke({"log": []})
    fast_langgraph.configure(workers=2)
    shim.patch_langgraph()
    assert graph.invoke({"log": []}) == stock == {"log": [3] * 18}
    assert fx.pool_stats()["inline_runs"] > 0


def test_many_threads_invoking_at_once() -> None:
    graph = _fanout_graph()
    shim.patch_langgraph()
    with fx.BatchExecutor(max_concurrency=16) as batch:
        results = batch.map(lambda _: graph.invoke({"log": []}), range(64))
    assert all(sorted(x for x, _ in r["log"]) == ["a", "b", "c"] for r in results)


def test_patch_is_idempotent_and_thread_safe() -> None:
    reports: list[shim.PatchReport] = []
    threads = [
        threading.Thread(target=lambda: reports.append(shim.patch_langgraph())) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reports) == 8
    assert all(r.applied == reports[0].applied for r in reports)
    assert shim.status()["executor"]["active"]
    # One unpatch undoes it all, however many patch calls there were.
    shim.unpatch_langgraph()
    assert not shim.status()["executor"]["active"]
    assert not shim.status()["checkpointer"]["active"]


def test_patch_prints_nothing_unless_asked(capsys) -> None:
    shim.patch_langgraph()
    assert capsys.readouterr().out == ""
    shim.patch_langgraph(verbose=True)
    assert "applied executor" in capsys.readouterr().out


def test_untested_langgraph_version_warns_and_skips(monkeypatch) -> None:
    monkeypatch.setattr(shim, "_langgraph_version", lambda: (9, 0))
    with pytest.warns(RuntimeWarning, match="outside the tested range"):
        report = shim.patch_langgraph()
    assert report.applied == {}
    assert "9.0" in report.skipped["executor"] and "9.0" in report.skipped["checkpointer"]
    assert not shim.status()["executor"]["active"]


def test_a_binding_that_cannot_be_replaced_is_not_reported_applied(monkeypatch) -> None:
    monkeypatch.setattr(shim_executor, "PROOF", "no.such.module")
    report = shim.patch_langgraph(checkpointer=False)
    assert "executor" not in report.applied
    assert "no.such.module" in report.skipped["executor"]
    assert not shim.status()["executor"]["active"]


def test_settings_resolve_arguments_then_configure_then_env_then_default(monkeypatch) -> None:
    get = fast_langgraph._settings.get_setting
    monkeypatch.delenv("FAST_LANGGRAPH_WORKERS", raising=False)
    assert get("workers") == 64
    monkeypatch.setenv("FAST_LANGGRAPH_WORKERS", "12")
    assert get("workers") == 12
    fast_langgraph.configure(workers=7)
    assert get("workers") == 7
    assert get("workers", 3) == 3
    monkeypatch.setenv("FAST_LANGGRAPH_PATCH_CHECKPOINTER", "0")
    assert get("checkpointer") is False
    report = shim.patch_langgraph()
    assert "checkpointer" in report.skipped and "executor" in report.applied
    with pytest.warns(RuntimeWarning, match="already patched"):
        fast_langgraph.configure(checkpointer=True)
    assert "checkpointer" in shim.patch_langgraph().applied
    with pytest.raises(TypeError):
        fast_langgraph.configure(executor="yes")  # type: ignore[arg-type]


def _run(code: str, **env: str) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FAST_LANGGRAPH_")}
    full_env.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


_PROBE = """
import json, operator, threading
from typing import Annotated, TypedDict
{before}
from langgraph.graph import StateGraph, START
{after}
import fast_langgraph.shim as shim
class S(TypedDict):
    log: Annotated[list, operator.add]
g = StateGraph(S)
for n in "abc":
    g.add_node(n, lambda s, n=n: {{"log": [threading.current_thread().name]}})
    g.add_edge(START, n)
names = g.compile().invoke({{"log": []}})["log"]
print(json.dumps({{"stock_threads": any(x.startswith("ThreadPoolExecutor") for x in names),
                  "active": shim.status()["executor"]["active"]}}))
"""


@pytest.mark.parametrize("order", ["before", "after"])
def test_patch_works_before_or_after_langgraph_is_imported(order: str) -> None:
    patch = "import fast_langgraph.shim; fast_langgraph.shim.patch_langgraph()"
    code = _PROBE.format(
        before=patch if order == "before" else "", after=patch if order == "after" else ""
    )
    assert json.loads(_run(code)) == {"stock_threads": False, "active": True}


def test_auto_patch_env_patches_at_interpreter_start() -> None:
    code = _PROBE.format(before="", after="")
    assert json.loads(_run(code, FAST_LANGGRAPH_AUTO_PATCH="1")) == {
        "stock_threads": False,
        "active": True,
    }
    assert json.loads(_run(code)) == {"stock_threads": True, "active": False}
    # Without the variable, the .pth line imports nothing.
    assert _run("import sys; print('fast_langgraph' in sys.modules)") == "False"
    assert (
        _run("import sys; print('fast_langgraph' in sys.modules)", FAST_LANGGRAPH_AUTO_PATCH="0")
        == "False"
    )


def test_auto_patch_failure_warns_and_the_interpreter_still_starts() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAST_LANGGRAPH_")}
    env.update(FAST_LANGGRAPH_AUTO_PATCH="1", FAST_LANGGRAPH_PATCH_EXECUTOR="maybe")
    out = subprocess.run(
        [sys.executable, "-c", "print('started')"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "started"
    assert "FAST_LANGGRAPH_PATCH_EXECUTOR" in out.stderr


def test_the_pth_file_is_installed() -> None:
    import site

    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    assert any(os.path.exists(os.path.join(d, "fast_langgraph_autopatch.pth")) for d in dirs)


# -- checkpointer swap ----------------------------------------------------------------------


def _counter_graph(checkpointer):
    from langgraph.graph import START, StateGraph

    g = StateGraph(State)
    g.add_node("n", lambda s: {"log": [len(s["log"])]})
    g.add_edge(START, "n")
    return g.compile(checkpointer=checkpointer)


def test_sqlite_saver_is_accelerated_in_place_and_resumes_existing_threads(tmp_path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    from fast_langgraph.shim._sqlite import AcceleratedSqliteSaver

    db = tmp_path / "state.db"
    cfg = {"configurable": {"thread_id": "t"}}
    with SqliteSaver.from_conn_string(str(db)) as stock:
        assert type(stock) is SqliteSaver
        _counter_graph(stock).invoke({"log": []}, cfg)
        _counter_graph(stock).invoke({"log": []}, cfg)
        stock_history = [s.values for s in _counter_graph(stock).get_state_history(cfg)]

    report = shim.patch_langgraph(executor=False)
    assert report.applied["checkpointer"] == [
        "langgraph.checkpoint.sqlite.SqliteSaver",
        "langgraph.checkpoint.sqlite.aio.AsyncSqliteSaver",
    ]
    conn = sqlite3.connect(str(db), check_same_thread=False)
    saver = SqliteSaver(conn)
    assert isinstance(saver, SqliteSaver) and isinstance(saver, AcceleratedSqliteSaver)
    assert not isinstance(saver, RustSQLiteCheckpointer)
    graph = _counter_graph(saver)
    assert [s.values for s in graph.get_state_history(cfg)] == stock_history
    assert graph.invoke({"log": []}, cfg)["log"] == [0, 1, 2]
    saver.close_store()
    conn.close()

    shim.unpatch_langgraph()
    with SqliteSaver.from_conn_string(str(db)) as restored:
        assert type(restored) is SqliteSaver
        # The turn written under the shim is in the user's file.
        assert _counter_graph(restored).get_state(cfg).values["log"] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def test_memory_connections_stay_on_stock_code_and_the_swap_can_be_left_out() -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    shim.patch_langgraph()
    saver = SqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))
    assert not saver.accelerated
    assert _counter_graph(saver).invoke({"log": []}, {"configurable": {"thread_id": "m"}})[
        "log"
    ] == [0]
    shim.unpatch_langgraph()
    shim.patch_langgraph(checkpointer=False)
    assert type(SqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))) is SqliteSaver


def test_async_sqlite_saver_is_accelerated_too(tmp_path) -> None:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from fast_langgraph.shim._sqlite import AcceleratedAsyncSqliteSaver

    db = tmp_path / "a.db"
    cfg = {"configurable": {"thread_id": "t"}}

    async def run() -> tuple[list, list]:
        async with AsyncSqliteSaver.from_conn_string(str(db)) as stock:
            await _counter_graph(stock).ainvoke({"log": []}, cfg)
        shim.patch_langgraph(executor=False)
        async with AsyncSqliteSaver.from_conn_string(str(db)) as s1:
            assert isinstance(s1, AcceleratedAsyncSqliteSaver)
            first = (await _counter_graph(s1).ainvoke({"log": []}, cfg))["log"]
            s1.close_store()
        async with aiosqlite.connect(str(db)) as conn:
            s2 = AsyncSqliteSaver(conn)
            assert isinstance(s2, AcceleratedAsyncSqliteSaver)
            second = (await _counter_graph(s2).aget_state(cfg)).values["log"]
            s2.close_store()
        shim.unpatch_langgraph()
        async with AsyncSqliteSaver.from_conn_string(str(db)) as stock:
            third = (await _counter_graph(stock).aget_state(cfg)).values["log"]
        return first, second, third

    first, second, third = asyncio.run(run())
    assert first == [0, 1] and second == [0, 1] and third == [0, 1]


from langgraph.graph.message import add_messages as _lg_add_messages  # noqa: E402


class _Chat(TypedDict):
    messages: Annotated[list, _lg_add_messages]
    log: Annotated[list, operator.add]


def test_add_messages_patch_reaches_graphs_compiled_before_and_unpatch_restores(
    monkeypatch,
) -> None:
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.channels.binop import BinaryOperatorAggregate
    from langgraph.graph import START, StateGraph

    from fast_langgraph import merge as merge_mod

    calls = []
    real = merge_mod._merge

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(merge_mod, "_merge", counting)

    builder = StateGraph(_Chat)
    builder.add_node("bot", lambda s: {"messages": [AIMessage(content="hi", id="a")], "log": ["x"]})
    builder.add_edge(START, "bot")
    graph = builder.compile()  # before patching
    original_slot = BinaryOperatorAggregate.__dict__["operator"]

    report = shim.patch_langgraph(executor=False, checkpointer=False)
    assert report.applied["add_messages"] == [
        "langgraph.channels.binop.BinaryOperatorAggregate.operator"
    ]
    assert shim.status()["add_messages"]["active"] is True
    out = graph.invoke({"messages": [HumanMessage(content="q", id="h")], "log": []})
    assert [m.content for m in out["messages"]] == ["q", "hi"] and out["log"] == ["x"]
    assert len(calls) == 2  # the input's write and the node's; operator.add is untouched

    shim.unpatch_langgraph()
    assert shim.status()["add_messages"] == {"active": False, "targets": [], "notes": []}
    assert BinaryOperatorAggregate.__dict__["operator"] is original_slot
    graph.invoke({"messages": [HumanMessage(content="q", id="h")], "log": []})
    assert len(calls) == 2

    report = shim.patch_langgraph(executor=False, checkpointer=False, add_messages=False)
    assert report.skipped["add_messages"] == "turned off by settings"
    assert shim.status()["add_messages"]["active"] is False


# -- honest reports -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["abc", "0", "-3"])
def test_a_bad_workers_variable_is_reported_and_skipped_at_patch_time(monkeypatch, raw) -> None:
    monkeypatch.setenv("FAST_LANGGRAPH_WORKERS", raw)
    with pytest.warns(RuntimeWarning, match="FAST_LANGGRAPH_WORKERS"):
        report = shim.patch_langgraph()
    assert "FAST_LANGGRAPH_WORKERS" in report.notes
    assert "using the default 64" in report.notes["FAST_LANGGRAPH_WORKERS"]
    assert "note FAST_LANGGRAPH_WORKERS" in str(report)
    assert "executor" in report.applied
    # Graphs still run, on a pool of the default size.
    from langgraph.graph import START, StateGraph

    g = StateGraph(State)
    g.add_node("n", lambda s: {"log": ["ok"]})
    g.add_edge(START, "n")
    assert g.compile().invoke({"log": []}) == {"log": ["ok"]}
    assert shim.status()["pool"]["max_threads"] == 64
    assert "FAST_LANGGRAPH_WORKERS" in shim.status()["settings"]["invalid"]


def test_a_bad_switch_variable_is_reported_and_skipped(monkeypatch) -> None:
    monkeypatch.setenv("FAST_LANGGRAPH_PATCH_EXECUTOR", "maybe")
    with pytest.warns(RuntimeWarning, match="FAST_LANGGRAPH_PATCH_EXECUTOR"):
        report = shim.patch_langgraph()
    assert "executor" in report.applied  # the default, on
    assert "FAST_LANGGRAPH_PATCH_EXECUTOR" in report.notes


def test_a_second_patch_with_other_options_applies_them() -> None:
    first = shim.patch_langgraph()
    assert {"executor", "checkpointer", "add_messages"} <= set(first.applied)
    second = shim.patch_langgraph(executor=False, add_messages=False, workers=8)
    assert second.skipped["executor"] == "turned off by settings (was applied: reverted)"
    assert not shim.status()["executor"]["active"]
    assert not shim.status()["add_messages"]["active"]
    assert shim.status()["checkpointer"]["active"]
    assert "64 -> 8" in second.notes["workers"]
    third = shim.patch_langgraph(executor=True, add_messages=True)
    assert "executor" in third.applied and shim.status()["executor"]["active"]


def test_configure_after_patching_says_it_changes_nothing_live() -> None:
    shim.patch_langgraph()
    with pytest.warns(RuntimeWarning, match="patch_langgraph\\(\\) again"):
        fast_langgraph.configure(executor=False)
    assert shim.status()["executor"]["active"]  # unchanged, as the warning says
    assert "executor" in shim.patch_langgraph().skipped  # applied by the next call
    assert not shim.status()["executor"]["active"]
    fast_langgraph.configure(workers=5)  # applies to executors made from now on: no warning
    assert shim.status()["pool"]["max_threads"] in (5, 64)


def test_savers_built_before_the_patch_are_named(tmp_path) -> None:
    import gc

    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(tmp_path / "early.db"), check_same_thread=False)
    early = SqliteSaver(conn)
    graph = _counter_graph(early)  # compiled before the patch: keeps the stock saver
    report = shim.patch_langgraph()
    assert "checkpointer" in report.applied
    assert "early.db" in report.notes["checkpointer"]
    assert "built before the patch" in report.notes["checkpointer"]
    unreached = shim.status()["checkpointer"]["unreached"]
    assert any("early.db" in u for u in unreached)
    assert type(graph.checkpointer) is SqliteSaver
    del graph, early
    conn.close()
    gc.collect()
    assert not any("early.db" in u for u in shim.status()["checkpointer"]["unreached"])


# -- the serializer patch -------------------------------------------------------------------


def test_serde_patch_reaches_savers_built_after_it_and_keeps_results() -> None:
    from graph_apps import chat_app
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from fast_langgraph import RustSerializer

    def run() -> tuple[type, list]:
        saver = InMemorySaver()
        graph = chat_app(["one", "two"]).compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "t"}}
        for text in ("hi", "again"):
            graph.invoke({"messages": [HumanMessage(content=text, id=text)]}, config)
        history = [
            [(type(m).__name__, m.content) for m in s.values["messages"]]
            for s in graph.get_state_history(config)
        ]
        return type(saver.serde), history

    built_before = InMemorySaver()
    stock_type, stock_history = run()
    report = shim.patch_langgraph(executor=False, checkpointer=False, add_messages=False)
    assert "langgraph.checkpoint.base.BaseCheckpointSaver.serde" in report.applied["serde"]
    assert "langgraph.cache.base.BaseCache.serde" in report.applied["serde"]
    assert shim.status()["serde"]["active"]
    patched_type, patched_history = run()
    assert stock_type is JsonPlusSerializer and patched_type is RustSerializer
    assert patched_history == stock_history and len(stock_history) > 4
    assert type(built_before.serde) is JsonPlusSerializer  # built before: keeps its serializer

    shim.unpatch_langgraph()
    assert shim.status()["serde"] == {"active": False, "targets": [], "notes": []}
    assert type(InMemorySaver().serde) is JsonPlusSerializer


def test_serde_patch_can_be_turned_off() -> None:
    report = shim.patch_langgraph(serde=False, executor=False)
    assert report.skipped["serde"] == "turned off by settings"
    assert not shim.status()["serde"]["active"]
    fast_langgraph.configure(serde=False)  # the autouse fixture forgets it afterwards
    assert "serde" not in shim.patch_langgraph().applied
