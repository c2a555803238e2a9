"""FastNodeCache reads and writes several keys at once: one round trip per graph step.

On a real redis-server (tests/conftest.py) and real SQLite files, checked against LangGraph's
own InMemoryCache: a graph whose cached nodes run in one step gives the same results and runs
its nodes the same number of times, and the server sees one MGET per step (never a GET per
node); a write of several pairs is one MULTI/EXEC pipeline.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.cache.memory import InMemoryCache
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy
from typing_extensions import TypedDict

from fast_langgraph import FastNodeCache


def commandstats(client) -> dict[str, int]:
    info = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in info.items()}


class State(TypedDict):
    x: int
    log: Annotated[list[str], operator.add]


FANOUT = ("a", "b", "c", "d")


def fanout_graph(calls: list[str], cache):
    """START fans out to four cached nodes (one step), which join in a cached node."""

    def make(name: str):
        def node(state: State) -> dict:
            calls.append(name)
            return {"log": [f"{name}{state['x']}"]}

        node.__name__ = f"node_{name}"
        return node

    def join(state: State) -> dict:
        calls.append("join")
        return {"log": [f"join{len(state['log'])}"]}

    b = StateGraph(State)
    for name in FANOUT:
        b.add_node(name, make(name), cache_policy=CachePolicy(ttl=60))
        b.add_edge(START, name)
    b.add_node("join", join, cache_policy=CachePolicy())
    b.add_edge(list(FANOUT), "join")
    b.add_edge("join", END)
    return b.compile(cache=cache)


def run(graph, inputs):
    return [graph.invoke({"x": x, "log": []}) for x in inputs]


async def arun(graph, inputs):
    return [await graph.ainvoke({"x": x, "log": []}) for x in inputs]


INPUTS = [1, 2, 1, 3, 2, 1]


def stock():
    calls: list[str] = []
    return run(fanout_graph(calls, InMemoryCache()), INPUTS), sorted(calls)


def test_fanout_graph_on_redis_matches_inmemorycache_with_one_mget_per_step(
    redis_url, redis_client
):
    want_out, want_calls = stock()
    calls: list[str] = []
    cache = FastNodeCache(redis_url=redis_url)
    before = commandstats(redis_client)
    out = run(fanout_graph(calls, cache), INPUTS)
    after = commandstats(redis_client)
    assert out == want_out
    assert sorted(calls) == want_calls
    # Two cached steps per run (the fan-out, the join): one MGET each, no GET.
    assert after.get("mget", 0) - before.get("mget", 0) == 2 * len(INPUTS)
    assert after.get("get", 0) == before.get("get", 0)
    # A replica with a fresh cache hits every node.
    calls2: list[str] = []
    assert run(fanout_graph(calls2, FastNodeCache(redis_url=redis_url)), INPUTS) == want_out
    assert calls2 == []


async def test_fanout_graph_async_on_redis_and_file(redis_url, redis_client, tmp_path):
    want_out, want_calls = stock()
    for make in (
        lambda: FastNodeCache(redis_url=redis_url, namespace="async"),
        lambda: FastNodeCache(redis_url=redis_url, namespace="local", local_max_size=10),
        lambda: FastNodeCache(path=str(tmp_path / "nodes.db")),
    ):
        calls: list[str] = []
        before = commandstats(redis_client)
        out = await arun(fanout_graph(calls, make()), INPUTS)
        assert out == want_out
        assert sorted(calls) == want_calls
        assert commandstats(redis_client).get("get", 0) == before.get("get", 0)
        # Another process's cache over the same file or server: every node is a hit.
        calls2: list[str] = []
        assert await arun(fanout_graph(calls2, make()), INPUTS) == want_out
        assert calls2 == []


def test_fanout_graph_on_a_file_matches_inmemorycache(tmp_path):
    want_out, want_calls = stock()
    path = str(tmp_path / "nodes.db")
    calls: list[str] = []
    assert run(fanout_graph(calls, FastNodeCache(path=path)), INPUTS) == want_out
    assert sorted(calls) == want_calls
    calls2: list[str] = []
    assert run(fanout_graph(calls2, FastNodeCache(path=path)), INPUTS) == want_out
    assert calls2 == []


def test_a_write_of_several_pairs_is_one_pipeline(redis_url, redis_client):
    cache = FastNodeCache(redis_url=redis_url)
    pairs = {(("n", f"f{i}"), f"k{i}"): ({"v": i}, 60 if i % 2 else None) for i in range(5)}
    before = commandstats(redis_client)
    cache.set(pairs)
    after = commandstats(redis_client)
    assert after.get("multi", 0) - before.get("multi", 0) == 1
    assert after.get("set", 0) - before.get("set", 0) == 5
    got = FastNodeCache(redis_url=redis_url).get([*pairs, (("n", "f9"), "k9")])
    assert got == {k: v for k, (v, _) in pairs.items()}
    ttls = sorted(redis_client.pttl(k) for k in redis_client.scan_iter())
    assert ttls[:3] == [-1, -1, -1] and all(0 < t <= 60_000 for t in ttls[3:])


def test_batch_reads_count_hits_and_misses_like_single_reads(tmp_path):
    path = str(tmp_path / "c.db")
    FastNodeCache(path=path).set({(("n",), "a"): (1, None), (("n",), "b"): (2, None)})
    cache = FastNodeCache(path=path)
    cache.set({(("m",), "c"): (3, None)})  # in memory too
    got = cache.get([(("n",), "a"), (("m",), "c"), (("n",), "zz"), (("n",), "b")])
    assert got == {(("n",), "a"): 1, (("m",), "c"): 3, (("n",), "b"): 2}
    s = cache.stats()
    assert (s["hits"], s["misses"]) == (3, 1)


async def test_redis_down_batches_call_through(caplog):
    cache = FastNodeCache(redis_url="redis://127.0.0.1:1/0")
    keys = [(("n",), "a"), (("n",), "b")]
    cache.set({k: (1, None) for k in keys})
    assert cache.get(keys) == {}
    assert await cache.aget(keys) == {}
    await cache.aset({k: (1, None) for k in keys})
    s = cache.stats()
    # One failed call per batch (four), and stats()'s own count of the entries (one).
    assert s["errors"] == 5 and s["misses"] == 4


# ---- identity with InMemoryCache, batch by batch ----

NAMESPACES = [("n",), ("n", "sub"), ("other",)]
full_keys = st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(["k1", "k2", "k3"]))
# LangGraph's serializer (ours and InMemoryCache's) takes 64-bit integers only.
ints = st.integers(-(2**63), 2**63 - 1)
values = st.one_of(ints, st.text(max_size=5), st.lists(ints, max_size=3))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.dictionaries(full_keys, values, max_size=4)),
        st.tuples(st.just("get"), st.lists(full_keys, max_size=5)),
        st.tuples(
            st.just("clear"),
            st.one_of(st.none(), st.lists(st.sampled_from(NAMESPACES), max_size=2)),
        ),
    ),
    max_size=12,
)


@pytest.mark.parametrize("backend", ["memory", "file", "redis", "redis+local"])
def test_batches_behave_as_inmemorycache(backend, request, tmp_path_factory):
    redis_url = request.getfixturevalue("redis_url") if backend.startswith("redis") else None
    counter = iter(range(10**6))

    def make() -> FastNodeCache:
        n = next(counter)
        if backend == "file":
            return FastNodeCache(path=str(tmp_path_factory.mktemp("b") / f"{n}.db"))
        if backend == "redis":
            return FastNodeCache(redis_url=redis_url, namespace=f"h{n}")
        if backend == "redis+local":
            return FastNodeCache(redis_url=redis_url, namespace=f"h{n}", local_max_size=100)
        return FastNodeCache()

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ops)
    def check(script):
        ours, theirs = make(), InMemoryCache()
        for op, arg in script:
            if op == "set":
                pairs = {k: (v, None) for k, v in arg.items()}
                ours.set(pairs)
                theirs.set(pairs)
            elif op == "get":
                assert ours.get(arg) == theirs.get(arg)
                assert asyncio.run(ours.aget(arg)) == theirs.get(arg)
            else:
                ours.clear(arg)
                theirs.clear(arg)
        ours.close()

    check()


def test_node_values_are_stored_as_the_serializer_wrote_them(tmp_path):
    import sqlite3

    path = tmp_path / "raw.db"
    cache = FastNodeCache(path=str(path))
    value = {"log": ["x"], "n": (1, 2)}
    cache.set({(("n",), "k"): (value, None)})
    cache.close()
    tag, data = cache.serde.dumps_typed(value)
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, value FROM flg_cache").fetchall()
    assert rows == [(f"raw|{tag}", data)]
    # Read back as InMemoryCache reads it: through the serializer, once.
    assert FastNodeCache(path=str(path)).get([(("n",), "k")]) == {
        (("n",), "k"): cache.serde.loads_typed((tag, data))
    }
