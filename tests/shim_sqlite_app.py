"""A small LangGraph app on a SqliteSaver file, run stock or under the shim, turn by turn.

Each turn either starts a run (a fan-out, then a node that asks a question with
``interrupt``) or, when the thread waits on the question, resumes it. A thread therefore
always has pending writes between two turns, which the next process must see.

Run: ``python shim_sqlite_app.py DB MODE THREAD FIRST_TURN TURNS`` with MODE ``stock`` or
``patched``; prints the type of the saver it got.
"""

from __future__ import annotations

import operator
import re
import sys
from typing import Annotated, Any, TypedDict

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?")
_VOLATILE = {"checkpoint_id", "parent_checkpoint_id", "id", "run_id", "ts", "created_at"}


def norm(value: Any) -> Any:
    """Ids and timestamps replaced by placeholders; objects turned into comparable data."""
    if isinstance(value, dict):
        return {k: ("<volatile>" if k in _VOLATILE else norm(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if hasattr(value, "_asdict"):
            return norm(value._asdict())
        return type(value)(norm(v) for v in value)
    if isinstance(value, str):
        return _TS.sub("<ts>", _UUID.sub("<uuid>", value))
    if hasattr(value, "__dataclass_fields__"):
        return norm({k: getattr(value, k) for k in value.__dataclass_fields__})
    return value


class State(TypedDict):
    log: Annotated[list, operator.add]


def build():
    from langgraph.graph import START, StateGraph
    from langgraph.types import Send, interrupt

    def ask(state: State) -> dict:
        answer = interrupt({"question": f"after {len(state['log'])}?"})
        return {"log": [f"answer-{answer}"]}

    g = StateGraph(State)
    g.add_node("plan", lambda s: {"log": ["plan"]})
    g.add_node("work", lambda item: {"log": [f"work-{item}"]})
    g.add_node("ask", ask)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", lambda s: [Send("work", i) for i in range(3)])
    g.add_edge("work", "ask")
    return g


def turn(graph: Any, thread: str, n: int) -> None:
    from langgraph.types import Command

    config = {"configurable": {"thread_id": thread}}
    if graph.get_state(config).next:
        graph.invoke(Command(resume=f"r{n}"), config)
    else:
        graph.invoke({"log": [f"in{n}"]}, config)


def main() -> None:
    db, mode, thread, first, turns = sys.argv[1:6]
    if mode == "patched":
        import fast_langgraph.shim

        report = fast_langgraph.shim.patch_langgraph()
        assert "checkpointer" in report.applied, report
    from langgraph.checkpoint.sqlite import SqliteSaver

    with SqliteSaver.from_conn_string(db) as saver:
        graph = build().compile(checkpointer=saver)
        for n in range(int(first), int(first) + int(turns)):
            turn(graph, thread, n)
        print(type(saver).__name__)


def fork_main() -> None:
    """``python shim_sqlite_app.py fork DB``: a module-level graph on the shim, used in the
    parent, then in children made by ``os.fork()`` and by a multiprocessing fork pool."""
    import multiprocessing
    import os

    import fast_langgraph.shim

    fast_langgraph.shim.patch_langgraph()
    from langgraph.checkpoint.sqlite import SqliteSaver

    db = sys.argv[2]
    saver_cm = SqliteSaver.from_conn_string(db)
    global GRAPH
    GRAPH = build().compile(checkpointer=saver_cm.__enter__())
    turn(GRAPH, "parent", 0)  # opens the store and starts the worker pool in the parent
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for n in range(3):
                turn(GRAPH, "os-fork", n)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_pool_turns, ["pool-a", "pool-b", "pool-c"])
    turn(GRAPH, "parent", 1)  # the parent's store still works
    print("ok")


def _pool_turns(thread: str) -> None:
    for n in range(3):
        turn(GRAPH, thread, n)


GRAPH: Any = None

if __name__ == "__main__" and sys.argv[1] == "fork":
    fork_main()
    sys.exit(0)

if __name__ == "__main__":
    main()
