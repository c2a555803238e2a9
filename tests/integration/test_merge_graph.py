"""install_rust_add_messages() on real graphs: it reaches graphs compiled before the call, leaves
other reducers alone, restores LangGraph's class exactly, and a chat graph gives the same states
and checkpoints with and without it."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage
from langgraph.channels.binop import BinaryOperatorAggregate
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages as lg_add_messages
from typing_extensions import TypedDict

import fast_langgraph.merge as merge_mod
from fast_langgraph.merge import (
    install_rust_add_messages,
    is_rust_add_messages_installed,
    uninstall_rust_add_messages,
)

ORIGINAL_SLOT = BinaryOperatorAggregate.__dict__["operator"]


@pytest.fixture(autouse=True)
def _restore():
    yield
    uninstall_rust_add_messages()
    assert BinaryOperatorAggregate.__dict__["operator"] is ORIGINAL_SLOT


@pytest.fixture
def rust_calls(monkeypatch):
    calls = []
    real = merge_mod._merge

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(merge_mod, "_merge", counting)
    return calls


class Mixed(TypedDict):
    messages: Annotated[list[AnyMessage], lg_add_messages]
    formatted: Annotated[list[AnyMessage], lg_add_messages(format="langchain-openai")]
    total: Annotated[int, operator.add]
    log: Annotated[list, operator.add]


def mixed_graph():
    def node(state: Mixed):
        return {
            "messages": [AIMessage(f"reply {state['total']}")],
            "formatted": [("assistant", "ok")],
            "total": 1,
            "log": ["step"],
        }

    b = StateGraph(Mixed)
    b.add_node("node", node)
    b.add_edge(START, "node")
    b.add_edge("node", END)
    return b.compile()


def test_install_reaches_graphs_compiled_before(rust_calls):
    graph = mixed_graph()  # compiled before installing
    graph.invoke({"messages": [HumanMessage("hi")], "total": 0, "log": []})
    assert rust_calls == []

    assert install_rust_add_messages() is True
    assert install_rust_add_messages() is False  # idempotent
    assert is_rust_add_messages_installed()
    out = graph.invoke({"messages": [HumanMessage("hi")], "total": 0, "log": []})
    # The input's write to "messages", and the node's to both add_messages channels.
    assert len(rust_calls) == 3
    assert any(len(c) == 3 and c[2] == "langchain-openai" for c in rust_calls)
    assert out["total"] == 1 and out["log"] == ["step"]
    assert [type(m) for m in out["messages"]] == [HumanMessage, AIMessage]

    assert uninstall_rust_add_messages() is True
    assert uninstall_rust_add_messages() is False
    n = len(rust_calls)
    graph.invoke({"messages": [HumanMessage("hi")], "total": 0, "log": []})
    assert len(rust_calls) == n


def test_other_reducers_untouched():
    calls = []

    def my_reducer(a, b):
        calls.append(1)
        return a + b

    ch = BinaryOperatorAggregate(list, my_reducer)
    add_ch = BinaryOperatorAggregate(list, operator.add)
    lg_ch = BinaryOperatorAggregate(list, lg_add_messages)
    install_rust_add_messages()
    assert ch.operator is my_reducer
    assert add_ch.operator is operator.add
    assert lg_ch.operator is merge_mod._swapped_add_messages
    ch.update([[1]])
    assert calls == [1] and ch.get() == [1]
    # Copies store LangGraph's reducer, so nothing needs fixing after uninstall.
    copied = lg_ch.copy()
    assert ORIGINAL_SLOT.__get__(copied) is lg_add_messages
    assert copied == lg_ch
    uninstall_rust_add_messages()
    assert copied.operator is lg_add_messages and lg_ch.operator is lg_add_messages


def test_user_choice_of_fast_add_messages_survives_uninstall():
    ch = BinaryOperatorAggregate(list, merge_mod.add_messages)
    install_rust_add_messages()
    assert ch.copy().operator is merge_mod.add_messages
    uninstall_rust_add_messages()
    assert ch.operator is merge_mod.add_messages


# --- a real chat graph, with and without ---------------------------------------------------------


def fixed_uuids(monkeypatch):
    counter = iter(range(10**6))
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=next(counter), version=4))


def chat_graph():
    model = GenericFakeChatModel(
        messages=iter([AIMessage(f"answer {i}", id=f"ai-{i}") for i in range(100)])
    )

    def chatbot(state: MessagesState):
        return {"messages": [model.invoke(state["messages"])]}

    def tidy(state: MessagesState):
        # Drop the oldest message once the history is long, and edit the newest in place.
        msgs = state["messages"]
        out = [AIMessage(msgs[-1].content + "!", id=msgs[-1].id)]
        if len(msgs) > 6:
            out.append(RemoveMessage(id=msgs[0].id))
        return {"messages": out}

    b = StateGraph(MessagesState)
    b.add_node("chatbot", chatbot)
    b.add_node("tidy", tidy)
    b.add_edge(START, "chatbot")
    b.add_edge("chatbot", "tidy")
    b.add_edge("tidy", END)
    return b.compile(checkpointer=InMemorySaver())


def run_chat(graph):
    config = {"configurable": {"thread_id": "t"}}
    for i in range(6):
        graph.invoke(
            {"messages": [("user", f"question {i}"), {"role": "user", "content": "more"}]}, config
        )
    states = [
        (s.values, s.next, s.metadata["step"], s.metadata["source"], s.metadata.get("writes"))
        for s in graph.get_state_history(config)
    ]
    # InMemorySaver's versions end in a random fraction; the counter before it is what matters.
    checkpoints = [
        (
            t.checkpoint["channel_values"],
            {k: str(v).split(".")[0] for k, v in t.checkpoint["channel_versions"].items()},
            [(channel, value) for _task_id, channel, value in t.pending_writes],  # ids hold times
        )
        for t in graph.checkpointer.list(config)
    ]
    return graph.get_state(config).values, states, checkpoints


def test_chat_graph_same_states_and_checkpoints(monkeypatch, rust_calls):
    fixed_uuids(monkeypatch)
    plain = run_chat(chat_graph())

    fixed_uuids(monkeypatch)
    graph = chat_graph()  # compiled before installing
    assert install_rust_add_messages()
    fast = run_chat(graph)

    assert len(rust_calls) > 10
    assert fast[0] == plain[0]
    assert len(fast[0]["messages"]) == 6 * 3 - 4  # four removals
    assert len(fast[1]) == len(plain[1])
    for i, (got, want) in enumerate(zip(fast[1], plain[1])):
        for name, g, w in zip(("values", "next", "step", "source", "writes"), got, want):
            assert g == w, (i, name)
    assert len(fast[2]) == len(plain[2])
    for i, (got, want) in enumerate(zip(fast[2], plain[2])):
        for name, g, w in zip(("channel_values", "channel_versions", "pending_writes"), got, want):
            assert g == w, (i, name)
