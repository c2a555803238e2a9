"""FastLLMCache with LangChain's fake chat models, FastNodeCache on real LangGraph graphs."""

from __future__ import annotations

import operator
from typing import Annotated

import pytest
from langchain_core.globals import set_llm_cache
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage
from langgraph.cache.base import BaseCache as LangGraphBaseCache
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy
from typing_extensions import TypedDict

from fast_langgraph import FastLLMCache, FastNodeCache


class Clock:
    def __init__(self, now: float = 2_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- FastLLMCache ----


def test_chat_model_cache_argument():
    cache = FastLLMCache()
    model = FakeListChatModel(responses=["first", "second"], cache=cache)
    assert model.invoke("hi").content == "first"
    # Without the cache the fake model would answer "second".
    assert model.invoke("hi").content == "first"
    assert model.invoke([HumanMessage("hi")]).content == "first"
    assert model.invoke("other").content == "second"
    s = cache.stats()
    assert (s["hits"], s["misses"], s["size"]) == (2, 2, 2)


def test_set_llm_cache_global():
    cache = FastLLMCache()
    set_llm_cache(cache)
    try:
        model = FakeListChatModel(responses=["a", "b"])
        assert [model.invoke("q").content for _ in range(3)] == ["a", "a", "a"]
        assert cache.stats()["hits"] == 2
    finally:
        set_llm_cache(None)


def test_model_parameters_are_part_of_the_key():
    cache = FastLLMCache()
    a = FakeListChatModel(responses=["from a"], cache=cache)
    b = FakeListChatModel(responses=["from b"], cache=cache)
    assert a.invoke("q").content == "from a"
    assert b.invoke("q").content == "from b"


async def test_async_chat_model():
    cache = FastLLMCache()
    model = FakeListChatModel(responses=["first", "second"], cache=cache)
    assert (await model.ainvoke("hi")).content == "first"
    assert (await model.ainvoke("hi")).content == "first"
    await cache.aclear()
    assert (await model.ainvoke("hi")).content == "second"


def test_llm_cache_ttl():
    clock = Clock()
    cache = FastLLMCache(ttl=30, clock=clock)
    model = FakeListChatModel(responses=["first", "second"], cache=cache)
    assert model.invoke("hi").content == "first"
    clock.now += 29
    assert model.invoke("hi").content == "first"
    clock.now += 1
    assert model.invoke("hi").content == "second"


async def test_persistent_llm_cache(tmp_path):
    path = str(tmp_path / "llm.db")
    model = FakeListChatModel(responses=["first", "second"], cache=FastLLMCache(path=path))
    assert model.invoke("hi").content == "first"
    # A new cache on the same file, as after a restart; same model parameters.
    fresh = FakeListChatModel(responses=["first", "second"], cache=FastLLMCache(path=path))
    msg = fresh.invoke("hi")
    assert msg.content == "first"
    assert (await fresh.ainvoke("hi")).content == "first"
    assert fresh.cache.stats()["misses"] == 0


# ---- FastNodeCache ----


class State(TypedDict):
    text: str
    log: Annotated[list[str], operator.add]


def counting_graph(node_name: str, calls: list, ttl: int | None = None, suffix: str = "!"):
    def node(state: State) -> dict:
        calls.append(state["text"])
        return {"text": state["text"] + suffix, "log": [node_name]}

    builder = StateGraph(State)
    builder.add_node(node_name, node, cache_policy=CachePolicy(ttl=ttl))
    builder.add_edge(START, node_name)
    builder.add_edge(node_name, END)
    return builder


def test_is_a_langgraph_cache():
    assert isinstance(FastNodeCache(), LangGraphBaseCache)


def test_cached_node_is_skipped_on_a_hit():
    calls: list = []
    graph = counting_graph("answer", calls).compile(cache=FastNodeCache())
    first = graph.invoke({"text": "hi", "log": []})
    second = graph.invoke({"text": "hi", "log": []})
    assert first == second == {"text": "hi!", "log": ["answer"]}
    assert calls == ["hi"]
    graph.invoke({"text": "other", "log": []})
    assert calls == ["hi", "other"]


def test_node_runs_again_after_its_ttl():
    clock = Clock()
    calls: list = []
    graph = counting_graph("answer", calls, ttl=60).compile(cache=FastNodeCache(clock=clock))
    graph.invoke({"text": "hi", "log": []})
    clock.now += 59
    graph.invoke({"text": "hi", "log": []})
    assert calls == ["hi"]
    clock.now += 1
    graph.invoke({"text": "hi", "log": []})
    assert calls == ["hi", "hi"]


def one_node_graph(node_name, func):
    builder = StateGraph(State)
    builder.add_node(node_name, func, cache_policy=CachePolicy())
    builder.add_edge(START, node_name)
    builder.add_edge(node_name, END)
    return builder


def test_two_graphs_sharing_one_cache_keep_their_own_results():
    cache = FastNodeCache()
    calls: list = []

    def agent_a(state: State) -> dict:
        calls.append("a")
        return {"text": state["text"] + " from a"}

    def agent_b(state: State) -> dict:
        calls.append("b")
        return {"text": state["text"] + " from b"}

    # Same node name, same input, different node functions.
    graph_a = one_node_graph("agent", agent_a).compile(cache=cache)
    graph_b = one_node_graph("agent", agent_b).compile(cache=cache)
    for _ in range(2):
        assert graph_a.invoke({"text": "q", "log": []})["text"] == "q from a"
        assert graph_b.invoke({"text": "q", "log": []})["text"] == "q from b"
    assert calls == ["a", "b"]


def test_scopes_separate_graphs_built_by_one_factory():
    shared = FastNodeCache()
    calls_a: list = []
    calls_b: list = []
    # Both node functions are `counting_graph.<locals>.node`: only the scope tells them apart.
    graph_a = counting_graph("agent", calls_a, suffix=" from a").compile(cache=shared.scoped("a"))
    graph_b = counting_graph("agent", calls_b, suffix=" from b").compile(cache=shared.scoped("b"))
    for _ in range(2):
        assert graph_a.invoke({"text": "q", "log": []})["text"] == "q from a"
        assert graph_b.invoke({"text": "q", "log": []})["text"] == "q from b"
    assert (len(calls_a), len(calls_b)) == (1, 1)
    graph_a.clear_cache()
    shared.scoped("a").clear()
    graph_a.invoke({"text": "q", "log": []})
    graph_b.invoke({"text": "q", "log": []})
    assert (len(calls_a), len(calls_b)) == (2, 1)


@pytest.mark.parametrize(
    "name", ["a,b", "a.b/c;d", "with space", "日本語", "a\x00b", "'\"", "(tuple, like)"]
)
def test_odd_node_names(name):
    cache = FastNodeCache()
    calls: list = []
    other_calls: list = []
    graph = counting_graph(name, calls).compile(cache=cache)
    # A neighbour whose name is a prefix or extension of this one.
    other = counting_graph(name + ",", other_calls).compile(cache=cache)
    for _ in range(2):
        assert graph.invoke({"text": "q", "log": []}) == {"text": "q!", "log": [name]}
        assert other.invoke({"text": "q", "log": []}) == {"text": "q!", "log": [name + ","]}
    assert (len(calls), len(other_calls)) == (1, 1)
    graph.clear_cache()
    graph.invoke({"text": "q", "log": []})
    other.invoke({"text": "q", "log": []})
    assert (len(calls), len(other_calls)) == (2, 1)


def test_clear_cache_by_node():
    calls: dict[str, int] = {"one": 0, "two": 0}

    def make(name):
        def node(state: State) -> dict:
            calls[name] += 1
            return {"log": [name]}

        node.__qualname__ = f"node_{name}"
        return node

    builder = StateGraph(State)
    builder.add_node("one", make("one"), cache_policy=CachePolicy())
    builder.add_node("two", make("two"), cache_policy=CachePolicy())
    builder.add_edge(START, "one")
    builder.add_edge("one", "two")
    builder.add_edge("two", END)
    graph = builder.compile(cache=FastNodeCache())
    graph.invoke({"text": "q", "log": []})
    graph.invoke({"text": "q", "log": []})
    assert calls == {"one": 1, "two": 1}
    graph.clear_cache(["one"])
    graph.invoke({"text": "q", "log": []})
    assert calls == {"one": 2, "two": 1}


async def test_async_graph():
    calls: list = []
    graph = counting_graph("answer", calls).compile(cache=FastNodeCache())
    assert await graph.ainvoke({"text": "hi", "log": []}) == {"text": "hi!", "log": ["answer"]}
    assert await graph.ainvoke({"text": "hi", "log": []}) == {"text": "hi!", "log": ["answer"]}
    assert calls == ["hi"]
    await graph.aclear_cache()
    await graph.ainvoke({"text": "hi", "log": []})
    assert calls == ["hi", "hi"]


def test_hit_returns_a_fresh_copy():
    cache = FastNodeCache()
    ns, key = ("ns",), "k"
    cache.set({(ns, key): ([("channel", {"a": [1]})], None)})
    first = cache.get([(ns, key)])[(ns, key)]
    first[0][1]["a"].append(2)
    # LangGraph's serializer gives tuples back as lists, as with its InMemoryCache.
    assert cache.get([(ns, key)])[(ns, key)] == [["channel", {"a": [1]}]]


def test_persistent_node_cache(tmp_path):
    path = str(tmp_path / "nodes.db")
    calls: list = []
    graph = counting_graph("answer", calls).compile(cache=FastNodeCache(path=path))
    graph.invoke({"text": "hi", "log": []})
    graph2 = counting_graph("answer", calls).compile(cache=FastNodeCache(path=path))
    assert graph2.invoke({"text": "hi", "log": []}) == {"text": "hi!", "log": ["answer"]}
    assert calls == ["hi"]
