"""Real LangGraph apps used by the checkpointer tests, and helpers that turn what a
checkpointer returns into structures two runs can be compared by.

Checkpoint ids, task ids, message ids and timestamps differ from one run to the next, so
`Normalizer` maps checkpoint ids to their rank in the thread ("c0", "c1", ...), replaces
other uuids with "<uuid>", keeps only the counter part of channel versions and drops
timestamps. Everything else is compared as is.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import sqlite3
from typing import Annotated, Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Interrupt, PregelTask, Send, StateSnapshot, interrupt
from typing_extensions import TypedDict

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def sqlite_saver(path) -> SqliteSaver:
    """LangGraph's own SqliteSaver on a file, as its docs open it."""
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))


# -- apps ----------------------------------------------------------------------------------


def chat_app(replies: list[str]) -> StateGraph:
    """A `messages` state with add_messages, answered by a fake chat model."""
    model = GenericFakeChatModel(messages=iter([AIMessage(content=r) for r in replies]))

    def agent(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    def count(state: MessagesState) -> dict:
        return {}

    b = StateGraph(MessagesState)
    b.add_node("agent", agent)
    b.add_node("count", count)
    b.add_edge(START, "agent")
    b.add_edge("agent", "count")
    b.add_edge("count", END)
    return b


class CounterState(TypedDict):
    count: int
    log: Annotated[list[str], operator.add]


def counter_app() -> StateGraph:
    """Three steps in a row, each adding to a counter and a log."""

    def step(name: str, inc: int):
        def node(state: CounterState) -> dict:
            return {"count": state["count"] + inc, "log": [f"{name}:{state['count']}"]}

        return node

    b = StateGraph(CounterState)
    b.add_node("a", step("a", 1))
    b.add_node("b", step("b", 10))
    b.add_node("c", step("c", 100))
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", "c")
    b.add_edge("c", END)
    return b


class AskState(TypedDict, total=False):
    question: str
    answer: str
    log: Annotated[list[str], operator.add]


def interrupt_app() -> StateGraph:
    """prepare -> ask (interrupts for a human answer) -> finish."""

    def prepare(state: AskState) -> dict:
        return {"question": state["question"].strip() + "?", "log": ["prepare"]}

    def ask(state: AskState) -> dict:
        answer = interrupt({"question": state["question"], "hint": ["yes", "no"]})
        return {"answer": answer, "log": [f"ask:{answer}"]}

    def finish(state: AskState) -> dict:
        return {"log": [f"finish:{state['answer']}"]}

    b = StateGraph(AskState)
    b.add_node("prepare", prepare)
    b.add_node("ask", ask)
    b.add_node("finish", finish)
    b.add_edge(START, "prepare")
    b.add_edge("prepare", "ask")
    b.add_edge("ask", "finish")
    b.add_edge("finish", END)
    return b


class Shared(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    approved: str


class SubState(TypedDict, total=False):
    sub_log: Annotated[list[str], operator.add]
    approved: str


def subgraph_app() -> StateGraph:
    """A parent whose middle node is a subgraph that interrupts: checkpoints get a
    non-empty checkpoint_ns. The two share only `approved`."""

    def sub_a(state: SubState) -> dict:
        return {"sub_log": ["sub_a"]}

    def sub_ask(state: SubState) -> dict:
        approved = interrupt("approve?")
        return {"approved": approved, "sub_log": [f"sub_ask:{approved}"]}

    def sub_b(state: SubState) -> dict:
        return {"sub_log": ["sub_b"]}

    sb = StateGraph(SubState)
    sb.add_node("sub_a", sub_a)
    sb.add_node("sub_ask", sub_ask)
    sb.add_node("sub_b", sub_b)
    sb.add_edge(START, "sub_a")
    sb.add_edge("sub_a", "sub_ask")
    sb.add_edge("sub_ask", "sub_b")
    sb.add_edge("sub_b", END)
    sub = sb.compile()

    def first(state: Shared) -> dict:
        return {"log": ["first"]}

    def last(state: Shared) -> dict:
        return {"log": [f"last:{state.get('approved')}"]}

    b = StateGraph(Shared)
    b.add_node("first", first)
    b.add_node("child", sub)
    b.add_node("last", last)
    b.add_edge(START, "first")
    b.add_edge("first", "child")
    b.add_edge("child", "last")
    b.add_edge("last", END)
    return b


class FanState(TypedDict, total=False):
    items: list[str]
    results: Annotated[list[str], operator.add]
    summary: str


def send_app() -> StateGraph:
    """A Send fan-out: one worker task per item, then a join."""

    def plan(state: FanState) -> dict:
        return {"results": []}

    def fan_out(state: FanState) -> list[Send]:
        return [Send("worker", {"items": [item]}) for item in state["items"]]

    def worker(state: FanState) -> dict:
        return {"results": [state["items"][0].upper()]}

    def join(state: FanState) -> dict:
        return {"summary": ",".join(sorted(state["results"]))}

    b = StateGraph(FanState)
    b.add_node("plan", plan)
    b.add_node("worker", worker)
    b.add_node("join", join)
    b.add_edge(START, "plan")
    b.add_conditional_edges("plan", fan_out, ["worker"])
    b.add_edge("worker", "join")
    b.add_edge("join", END)
    return b


def extend(acc: list, writes: list) -> list:
    """A DeltaChannel's reducer: the lists written, appended in order."""
    out = list(acc)
    for w in writes:
        out.extend(w)
    return out


def delta_app(snapshot_frequency: int = 3) -> StateGraph:
    """add_messages history, a DeltaChannel with snapshots every few updates, a Send fan-out."""
    State = TypedDict(  # noqa: UP013
        "State",
        {
            "messages": Annotated[list, add_messages],
            "notes": Annotated[list, DeltaChannel(extend, snapshot_frequency=snapshot_frequency)],
            "log": Annotated[list, operator.add],
        },
        total=False,
    )

    def bot(state: dict) -> dict:
        n = len(state["messages"])
        return {
            "messages": [AIMessage(f"answer {n}", id=f"ai-{n}")],
            "notes": [f"note {n}"],
            "log": [n],
        }

    def fan(state: dict) -> list[Send]:
        return [Send("worker", {"messages": [], "notes": [], "log": [k]}) for k in range(2)]

    def worker(state: dict) -> dict:
        return {"notes": [f"worker {state['log'][0]}"]}

    b = StateGraph(State)
    b.add_node("bot", bot)
    b.add_node("worker", worker)
    b.add_edge(START, "bot")
    b.add_conditional_edges("bot", fan, ["worker"])
    b.add_edge("worker", END)
    return b


# -- normalization -------------------------------------------------------------------------


class Normalizer:
    """Turns snapshots, checkpoint tuples and values into run-independent structures."""

    def __init__(self, checkpoint_ids: list[str]):
        self.ids = {cid: f"c{i}" for i, cid in enumerate(sorted(set(checkpoint_ids)))}

    @classmethod
    def for_thread(cls, saver, thread_id: str) -> Normalizer:
        ids = [
            t.config["configurable"]["checkpoint_id"]
            for t in saver.list(None)
            if t.config["configurable"]["thread_id"] == thread_id
        ]
        return cls(ids)

    def text(self, s: str) -> str:
        return UUID_RE.sub(lambda m: self.ids.get(m.group(0), "<uuid>"), self.ids.get(s, s))

    def __call__(self, x: Any) -> Any:
        if isinstance(x, str):
            return self.text(x)
        if isinstance(x, BaseMessage):
            d = x.model_dump()
            d.pop("id", None)
            return (type(x).__name__, self(d))
        if isinstance(x, Interrupt):
            return ("Interrupt", self(x.value))
        if isinstance(x, Send):
            return ("Send", x.node, self(x.arg))
        if isinstance(x, StateSnapshot):
            return {
                "values": self(x.values),
                "next": x.next,
                "config": self(x.config),
                "metadata": self(x.metadata),
                "parent_config": self(x.parent_config),
                "tasks": [self(t) for t in x.tasks],
                "interrupts": [self(i) for i in x.interrupts],
            }
        if isinstance(x, PregelTask):
            return {
                "name": x.name,
                "path": self(x.path),
                "error": repr(x.error) if x.error else None,
                "interrupts": [self(i) for i in x.interrupts],
                "state": self(x.state),
                "result": self(x.result),
            }
        if isinstance(x, CheckpointTuple):
            return {
                "config": self(x.config),
                "checkpoint": self.checkpoint(x.checkpoint),
                "metadata": self(x.metadata),
                "parent_config": self(x.parent_config),
                "pending_writes": sorted(
                    (repr(self(ch)), repr(self(v))) for _task, ch, v in x.pending_writes
                ),
            }
        if isinstance(x, dict):
            return {self(k): self(v) for k, v in x.items()}
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            # A named tuple (LangGraph's _DeltaSnapshot): by type name and fields.
            return (type(x).__name__, tuple(self(v) for v in x))
        if isinstance(x, (list, tuple)):
            return type(x)(self(v) for v in x)
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return (type(x).__name__, self(dataclasses.asdict(x)))
        return x

    def checkpoint(self, cp: dict) -> dict:
        def version(v: Any) -> int:
            return int(str(v).split(".")[0])

        return {
            "v": cp["v"],
            "id": self.text(cp["id"]),
            "channel_values": self(cp["channel_values"]),
            "channel_versions": {k: version(v) for k, v in cp["channel_versions"].items()},
            "versions_seen": {
                self.text(node): {k: version(v) for k, v in seen.items()}
                for node, seen in cp["versions_seen"].items()
            },
            "updated_channels": sorted(cp.get("updated_channels") or []),
        }


def thread_dump(saver, thread_id: str) -> list[dict]:
    """Every checkpoint of a thread, in every namespace, normalized, ordered by (ns, id)."""
    norm = Normalizer.for_thread(saver, thread_id)
    tuples = [t for t in saver.list(None) if t.config["configurable"]["thread_id"] == thread_id]
    tuples.sort(
        key=lambda t: (
            t.config["configurable"]["checkpoint_ns"],
            t.config["configurable"]["checkpoint_id"],
        )
    )
    return [norm(t) for t in tuples]


async def athread_dump(saver, thread_id: str) -> list[dict]:
    """``thread_dump`` through ``alist``, numbering the checkpoints of the thread alone."""
    tuples = [
        t async for t in saver.alist(None) if t.config["configurable"]["thread_id"] == thread_id
    ]
    norm = Normalizer([t.config["configurable"]["checkpoint_id"] for t in tuples])
    tuples.sort(
        key=lambda t: (
            t.config["configurable"]["checkpoint_ns"],
            t.config["configurable"]["checkpoint_id"],
        )
    )
    return [norm(t) for t in tuples]


def history_dump(graph, config) -> list[dict]:
    """`get_state_history` of a thread, normalized."""
    saver = graph.checkpointer
    norm = Normalizer.for_thread(saver, config["configurable"]["thread_id"])
    return [norm(s) for s in graph.get_state_history(config)]
