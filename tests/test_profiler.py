"""fast_langgraph.profiler on real graphs: what it records, its report and exports, compare()
in child processes, and the command line. Timings are never asserted, only structure and
counts."""

from __future__ import annotations

import dataclasses
import json
import operator
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Annotated

import pytest
from graph_apps import sqlite_saver
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import CachePolicy, Send
from typing_extensions import TypedDict

from fast_langgraph import FastNodeCache, RustSQLiteCheckpointer, cached
from fast_langgraph.profiler import (
    CompareError,
    GraphProfiler,
    OutputsDiffer,
    ProfileReport,
    compare,
)
from fast_langgraph.profiler._runner import normalize

ROOT = Path(__file__).resolve().parent.parent


class FanState(TypedDict):
    messages: Annotated[list, add_messages]
    notes: Annotated[list, operator.add]


def fan_out_graph(checkpointer=None, *, width: int = 3, sleep: float = 0.002):
    """plan -> `width` parallel research tasks (Send) -> summarize."""

    def plan(state: FanState) -> dict:
        return {}

    def research(task: dict) -> dict:
        time.sleep(sleep)
        return {"notes": [task["q"]]}

    def summarize(state: FanState) -> dict:
        return {"messages": [AIMessage(content=f"{len(state['notes'])} notes")]}

    b = StateGraph(FanState)
    b.add_node("plan", plan)
    b.add_node("research", research)
    b.add_node("summarize", summarize)
    b.add_edge(START, "plan")
    b.add_conditional_edges(
        "plan", lambda s: [Send("research", {"q": f"q{i}"}) for i in range(width)], ["research"]
    )
    b.add_edge("research", "summarize")
    b.add_edge("summarize", END)
    return b.compile(checkpointer=checkpointer)


def _hello(i: int = 0) -> dict:
    return {"messages": [HumanMessage(content=f"hello {i}")]}


# -- GraphProfiler ----------------------------------------------------------------------------


def test_profiles_nodes_supersteps_and_checkpoints(tmp_path: Path) -> None:
    saver = sqlite_saver(tmp_path / "stock.db")
    graph = fan_out_graph(saver)
    profiler = GraphProfiler(graph)
    config = {"configurable": {"thread_id": "t"}}
    with profiler.profile_run():
        for i in range(3):
            graph.invoke(_hello(i), config)
    r = profiler.report()

    assert r.invokes == 3
    counts = {n.name: n.count for n in r.nodes}
    assert counts == {"plan": 3, "research": 9, "summarize": 3}
    assert r.nodes[0].name == "research"  # slowest (total) first
    assert [n.total_s for n in r.nodes] == sorted((n.total_s for n in r.nodes), reverse=True)
    for n in r.nodes:
        assert n.p50_s <= n.p95_s and n.total_s == pytest.approx(n.mean_s * n.count)

    # Three supersteps per invoke; the fan-out step ran its three tasks at the same time.
    assert len(r.steps) == 9
    fan = [s for s in r.steps if s.nodes == ["research"] * 3]
    assert len(fan) == 3 and all(s.tasks == 3 for s in fan)
    assert max(s.parallel for s in fan) >= 2

    # Checkpointing: one read per invoke, puts and writes every step, bytes serialized.
    assert r.checkpoint["get_tuple"]["count"] == 3
    assert r.checkpoint["put"]["count"] >= 9
    assert r.checkpoint["put_writes"]["count"] >= 9
    assert r.checkpoint_bytes > 0

    # The phases add up: overhead is total minus the time in nodes.
    assert r.overhead_s == pytest.approx(r.total_s - r.in_nodes_s)
    assert r.other_overhead_s == pytest.approx(r.overhead_s - r.checkpoint_outside_nodes_s)
    assert 0 < r.in_nodes_s <= r.total_s
    assert r.node_time_sum_s >= r.in_nodes_s  # parallel tasks overlap

    # The timeline: one entry per invoke, each task a bar on its step's lane.
    assert len(r.timeline) == 3
    lanes = r.timeline[0]["lanes"]
    assert [len(lane["bars"]) for lane in lanes] == [1, 3, 1]
    fan_lane = lanes[1]
    assert fan_lane["rows"] == len({b["slot"] for b in fan_lane["bars"]})


def test_wrappers_are_removed_after_the_run(tmp_path: Path) -> None:
    saver = sqlite_saver(tmp_path / "stock.db")
    serde = saver.serde
    graph = fan_out_graph(saver)
    profiler = GraphProfiler(graph)
    with profiler.profile_run():
        graph.invoke(_hello(), {"configurable": {"thread_id": "t"}})
    assert saver.serde is serde
    assert not {"put", "aput", "put_writes", "get_tuple", "serde"} & set(vars(saver)) - {"serde"}
    assert "put" not in vars(saver)
    # Runs outside profile_run() are not recorded.
    graph.invoke(_hello(1), {"configurable": {"thread_id": "t"}})
    assert profiler.report().invokes == 1
    profiler.reset()
    assert profiler.report().invokes == 0


async def test_async_graph_each_checkpoint_call_counted_once() -> None:
    saver = RustSQLiteCheckpointer(":memory:")
    graph = fan_out_graph(saver)
    profiler = GraphProfiler(graph)
    with profiler.profile_run():
        for i in range(2):
            await graph.ainvoke(_hello(i), {"configurable": {"thread_id": "a"}})
    r = profiler.report()
    assert r.invokes == 2
    assert {n.name: n.count for n in r.nodes} == {"plan": 2, "research": 6, "summarize": 2}
    # aget_tuple runs get_tuple on a thread: counted once, not twice.
    assert r.checkpoint["get_tuple"]["count"] == 2
    saver.close()


def test_llm_calls_tokens_and_caches() -> None:
    class State(TypedDict):
        messages: Annotated[list, add_messages]

    usage = {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}
    model = GenericFakeChatModel(
        messages=iter([AIMessage(content=f"a{i}", usage_metadata=usage) for i in range(10)])
    )

    @cached
    def lookup(text: str) -> str:
        return text.upper()

    def reply(state: State) -> dict:
        lookup("same question")
        return {"messages": [model.invoke(state["messages"])]}

    def tag(state: State) -> dict:
        return {}

    b = StateGraph(State)
    b.add_node("reply", reply)
    b.add_node("tag", tag, cache_policy=CachePolicy(key_func=lambda state: "same"))
    b.add_edge(START, "reply")
    b.add_edge("reply", "tag")
    graph = b.compile(cache=FastNodeCache())
    profiler = GraphProfiler(graph, watch=[lookup])
    with profiler.profile_run():
        graph.invoke({"messages": [HumanMessage(content="hi")]})
        graph.invoke({"messages": [HumanMessage(content="hi")]})
    r = profiler.report()
    assert r.llm["calls"] == 2
    assert (r.llm["input_tokens"], r.llm["output_tokens"]) == (14, 4)
    assert {n.name: n.llm_calls for n in r.nodes}["reply"] == 2
    # `tag` ran once and was served from the node cache the second time.
    assert r.caches["node cache"] == {"hits": 1, "misses": 1}
    assert {n.name: n.count for n in r.nodes} == {"reply": 2, "tag": 1}
    name = next(k for k in r.caches if "lookup" in k)
    assert r.caches[name] == {"hits": 1, "misses": 1}


def test_report_print_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # research sleeps 50 ms in each of 3 tasks, so it stays the slowest node on a loaded machine
    # (with 2 ms, a slow summarize step once came first).
    graph = fan_out_graph(sqlite_saver(tmp_path / "s.db"), sleep=0.05)
    profiler = GraphProfiler(graph)
    with profiler.profile_run():
        graph.invoke(_hello(), {"configurable": {"thread_id": "t"}})
    profiler.print_report()
    out = capsys.readouterr().out
    assert out.index("research") < out.index("plan")  # slowest first
    assert "put_writes" in out and "framework overhead" in out

    profiler.export(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    again = ProfileReport.from_dict(data)
    assert again.invokes == 1 and again.nodes[0].name == "research"

    profiler.export(tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "research" in page
    for needle in ("<script", "<link", "src=", "url(", "@import"):
        assert needle not in page  # self-contained: nothing is fetched


def test_profiler_refuses_a_graph_that_is_not_compiled() -> None:
    b = StateGraph(FanState)
    with pytest.raises(TypeError, match=r"compile\(\)"):
        GraphProfiler(b)
    with pytest.raises(TypeError, match="compiled LangGraph graph"):
        GraphProfiler(42)


def test_normalize_replaces_ids_and_timestamps() -> None:
    a = AIMessage(content="x", id="lc_run--0b0e5a4f-6d0c-4a35-9b8e-3f2f0e1d9c11-0")
    b = AIMessage(content="x", id="lc_run--9f9e5a4f-1111-4a35-9b8e-3f2f0e1d9c11-0")
    assert normalize({"m": [a]}) == normalize({"m": [b]})
    assert normalize(AIMessage(content="x")) != normalize(AIMessage(content="y"))
    assert normalize({"created_at": 1.5, "t": "at 2025-01-02T03:04:05.123Z"}) == {
        "created_at": "<timestamp>",
        "t": "at <timestamp>",
    }


# -- compare() --------------------------------------------------------------------------------

APP = """
import operator, sqlite3, tempfile
from typing import Annotated
from langchain_core.messages import AIMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Send
from typing_extensions import TypedDict
from fast_langgraph import cached


class State(TypedDict):
    messages: Annotated[list, add_messages]
    notes: Annotated[list, operator.add]


@cached
def lookup(q: str) -> str:
    return q.upper()


def research(task):
    return {"notes": [lookup(task["q"])]}


def reply(state):
    return {"messages": [AIMessage(content=f"{len(state['messages'])}: {MARK}")]}


def build_graph():
    b = StateGraph(State)
    b.add_node("research", research)
    b.add_node("reply", reply)
    b.add_conditional_edges(START, lambda s: [Send("research", {"q": q}) for q in "abab"])
    b.add_edge("research", "reply")
    b.add_edge("reply", END)
    db = tempfile.mkdtemp() + "/app.db"
    return b.compile(checkpointer=SqliteSaver(sqlite3.connect(db, check_same_thread=False)))


graph = build_graph()
"""


def _app(tmp_path: Path, mark: str = "'same'", name: str = "app.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(APP).replace("MARK", mark))
    return path


def test_compare_reports_speedup_phases_and_what_was_applied(tmp_path: Path) -> None:
    lines: list[str] = []
    inputs = [_hello(i) for i in range(3)]
    r = compare(f"{_app(tmp_path)}:build_graph", inputs, runs=2, progress=lines.append)
    assert r.rounds == 2 and r.invokes_per_round == 3
    assert len(r.stock_rounds_s) == len(r.accelerated_rounds_s) == 2
    assert r.speedup > 0 and r.speedup_min <= r.speedup_max
    assert set(r.phases["stock"]) == {"total", "nodes", "checkpointing", "other"}
    assert set(r.gain_share) == {"nodes", "checkpointing", "other"}
    assert r.profiles["stock"].invokes == r.profiles["accelerated"].invokes == 3
    applied = " | ".join(r.applied)
    # The shim's in-place SqliteSaver, on a copy of the app's database.
    assert "AcceleratedSqliteSaver on a copy of the app's database" in applied
    # What the shim applied, from its own report.
    assert "fast_langgraph.shim.patch_langgraph()" in applied
    assert "shim: add_messages" in applied and "shim: executor" in applied
    assert "@cached lookup" in applied
    stock = " | ".join(r.stock_setup)
    assert "fast_langgraph.shim: not patched" in stock
    assert "checkpointer: SqliteSaver on a copy" in stock and "@cached lookup: disabled" in stock
    # The accelerated process served repeated sub-queries from the cache; stock did not.
    acc_cache = r.profiles["accelerated"].caches
    assert any(c["hits"] > 0 for c in acc_cache.values())
    assert any("round 2/2" in line for line in lines)
    text = r.format()
    assert "speedup" in text and "checkpointing" in text
    # A profiled round that saved nothing gets no shares of a saving (they would be negative
    # or above 100%).
    slow = {**r.phases["accelerated"], "total": r.phases["stock"]["total"] + 0.001}
    worse = dataclasses.replace(r, phases={**r.phases, "accelerated": slow})
    assert "time saved by phase: none in the profiled round" in worse.format()
    faster = {**r.phases["accelerated"], "total": r.phases["stock"]["total"] - 0.001}
    better = dataclasses.replace(r, phases={**r.phases, "accelerated": faster})
    assert "time saved by phase: nodes " in better.format()
    r.export(tmp_path / "c.html")
    assert "stock vs accelerated" in (tmp_path / "c.html").read_text()
    r.export(tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["rounds"] == 2


def test_compare_refuses_when_outputs_differ(tmp_path: Path) -> None:
    # The reply says whether the Rust reducer is installed: true only when accelerated.
    mark = "__import__('fast_langgraph.merge').merge.is_rust_add_messages_installed()"
    app = _app(tmp_path, mark=mark)
    with pytest.raises(OutputsDiffer, match="no speedup") as e:
        compare(f"{app}:build_graph", [_hello()], runs=1, progress=False)
    assert "invoke 1 differs" in str(e.value) and "False" in str(e.value)


def test_compare_refuses_a_nondeterministic_graph(tmp_path: Path) -> None:
    app = _app(tmp_path, mark="__import__('random').random()")
    with pytest.raises(OutputsDiffer):
        compare(f"{app}:build_graph", [_hello()], runs=1, progress=False)


def test_compare_reports_the_apps_error(tmp_path: Path) -> None:
    app = tmp_path / "broken.py"
    app.write_text("def build_graph():\n    raise RuntimeError('no model key')\n")
    with pytest.raises(CompareError, match="no model key"):
        compare(f"{app}:build_graph", [{}], runs=1, progress=False)
    with pytest.raises(CompareError, match="no attribute 'nope'"):
        compare(f"{app}:nope", [{}], runs=1, progress=False)


def test_compare_argument_errors() -> None:
    def local_builder():  # not importable from another process
        return None

    with pytest.raises(TypeError, match="module-level"):
        compare(local_builder, [{}])
    with pytest.raises(ValueError, match="runs"):
        compare("app.py:graph", [{}], runs=0)
    with pytest.raises(ValueError, match="inputs"):
        compare("app.py:graph", [])


# -- the command line -------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fast_langgraph", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_cli_profile_writes_html_and_json(tmp_path: Path) -> None:
    _app(tmp_path)
    msg = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    p = _cli(
        "profile",
        "app.py:graph",
        "--input",
        msg,
        "--input",
        msg,
        "--html",
        "r.html",
        "--json",
        "r.json",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert "2 invoke(s)" in p.stdout and "research" in p.stdout
    assert "<svg" in (tmp_path / "r.html").read_text()
    assert json.loads((tmp_path / "r.json").read_text())["invokes"] == 2


def test_cli_compare(tmp_path: Path) -> None:
    _app(tmp_path)
    msg = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    p = _cli(
        "profile",
        "app.py:build_graph",
        "--input",
        msg,
        "--compare",
        "--runs",
        "1",
        "--html",
        "c.html",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert "speedup" in p.stdout and "AcceleratedSqliteSaver" in p.stdout
    assert "[compare] round 1/1" in p.stderr
    assert (tmp_path / "c.html").exists()


@pytest.mark.parametrize(
    "target,inp,message",
    [
        ("missing.py:graph", "{}", "no such file: missing.py"),
        ("app.py:graf", "{}", "has no attribute 'graf'"),
        ("app.py:State", "{}", "is the class State, not a compiled LangGraph graph"),
        ("app.py:operator", "{}", "not a compiled LangGraph graph"),
        ("app.py", "{}", "is not of the form path/to/app.py:graph"),
        ("app.py:graph", "{messages", "--input #1 is not valid JSON"),
    ],
)
def test_cli_errors(tmp_path: Path, target: str, inp: str, message: str) -> None:
    _app(tmp_path)
    p = _cli("profile", target, "--input", inp, cwd=tmp_path)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr


def test_cli_uncompiled_graph(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from typing_extensions import TypedDict\nfrom langgraph.graph import StateGraph\n"
        "class S(TypedDict):\n    x: int\nbuilder = StateGraph(S)\n"
    )
    p = _cli("profile", "app.py:builder", "--input", "{}", cwd=tmp_path)
    assert p.returncode == 2 and "call .compile() on it" in p.stderr


def test_agent_demo_profiles_in_process() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import agent_demo
    finally:
        sys.path.remove(str(ROOT / "examples"))
    agent_demo.research_llm.cache_clear()
    graph = agent_demo.build_graph()
    profiler = GraphProfiler(graph, watch=[agent_demo.research_llm])
    with profiler.profile_run():
        for inp in agent_demo.inputs():
            graph.invoke(inp, {"configurable": {"thread_id": "demo"}})
    r = profiler.report()
    names = {n.name for n in r.nodes}
    assert {"router", "agent", "tools", "plan", "research", "summarize", "chat"} <= names
    assert r.tools["calls"] == 4
    assert r.llm["calls"] > 0 and r.llm["input_tokens"] > 0
    assert max(s.parallel for s in r.steps) >= 2
    hits = next(c for k, c in r.caches.items() if "research_llm" in k)
    assert hits["hits"] > 0 and hits["misses"] > 0


def _app_with_database(tmp_path: Path) -> tuple[Path, Path]:
    """An app whose SqliteSaver file sits beside it and already holds a thread."""
    app = tmp_path / "dbapp.py"
    app.write_text(
        textwrap.dedent(APP)
        .replace("MARK", "'same'")
        .replace(
            'db = tempfile.mkdtemp() + "/app.db"',
            'db = __import__("os").path.join(__import__("os").path.dirname(__file__), "app.db")',
        )
    )
    db = tmp_path / "app.db"
    conn = sqlite3.connect(str(db))
    saver = SqliteSaver(conn)
    saver.setup()
    conn.execute(
        "INSERT INTO checkpoints VALUES ('mine', '', '1', NULL, 'msgpack', x'80', x'7b7d')"
    )
    conn.commit()
    conn.close()
    return app, db


def _snapshot(directory: Path) -> dict[str, bytes]:
    """The files of the directory, but SQLite's -shm index and an empty -wal, which any
    reader of a WAL database may leave."""
    return {
        p.name: p.read_bytes()
        for p in directory.iterdir()
        if p.is_file()
        and not p.name.endswith((".html", ".json", ".py", "-shm"))
        and not (p.name.endswith("-wal") and p.stat().st_size == 0)
    }


def test_compare_never_touches_the_apps_database(tmp_path: Path) -> None:
    app, _db = _app_with_database(tmp_path)
    before = _snapshot(tmp_path)
    r = compare(f"{app}:build_graph", [_hello()], runs=1, progress=False)
    assert "copy of the app's database" in " | ".join(r.applied)
    assert _snapshot(tmp_path) == before  # no new file, no changed byte


def test_cli_profile_runs_on_a_copy_unless_asked(tmp_path: Path) -> None:
    _app_path, db = _app_with_database(tmp_path)
    before = _snapshot(tmp_path)
    msg = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    p = _cli("profile", "dbapp.py:graph", "--input", msg, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert _snapshot(tmp_path) == before
    p = _cli("profile", "dbapp.py:graph", "--input", msg, "--use-app-database", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    with sqlite3.connect(str(db)) as conn:
        threads = {r[0] for r in conn.execute("SELECT thread_id FROM checkpoints")}
    assert threads == {"mine", "fast-langgraph-profile"}


def test_the_stock_side_is_stock_under_auto_patch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAST_LANGGRAPH_AUTO_PATCH", "1")
    r = compare(f"{_app(tmp_path)}:build_graph", [_hello()], runs=1, progress=False)
    stock = " | ".join(r.stock_setup)
    assert "fast_langgraph.shim: not patched" in stock
    assert "checkpointer: SqliteSaver on" in stock
    assert "AcceleratedSqliteSaver" in " | ".join(r.applied)


def test_cli_config_is_passed_to_the_graph(tmp_path: Path) -> None:
    (tmp_path / "cfgapp.py").write_text(
        textwrap.dedent(
            """
            from langgraph.graph import START, StateGraph
            from typing_extensions import TypedDict

            class S(TypedDict):
                seen: str

            def node(state, config):
                return {"seen": config["configurable"]["user"]}

            b = StateGraph(S)
            b.add_node("node", node)
            b.add_edge(START, "node")
            graph = b.compile()
            """
        )
    )
    ok = _cli(
        "profile",
        "cfgapp.py:graph",
        "--input",
        "{}",
        "--config",
        '{"configurable": {"user": "u1"}}',
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    bad = _cli("profile", "cfgapp.py:graph", "--input", "{}", "--config", "[1]", cwd=tmp_path)
    assert bad.returncode == 2 and "--config must be a JSON object" in bad.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["profile", "app.py:graph"], "the following arguments are required: --input"),
        (["profile", "app.py:graph", "--input", "{}", "--runs", "x"], "invalid int value"),
        (["nope"], "invalid choice"),
        (["profile", "boom.py:graph", "--input", "{}"], "ValueError: the app failed"),
    ],
)
def test_cli_errors_are_one_line_with_status_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    _app(tmp_path)
    (tmp_path / "boom.py").write_text(
        textwrap.dedent(
            """
            from langgraph.graph import START, StateGraph
            from typing_extensions import TypedDict

            class S(TypedDict):
                x: int

            def node(state):
                raise ValueError("the app failed")

            b = StateGraph(S)
            b.add_node("node", node)
            b.add_edge(START, "node")
            graph = b.compile()
            """
        )
    )
    p = _cli(*args, cwd=tmp_path)
    assert p.returncode == 2
    assert message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
