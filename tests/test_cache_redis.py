"""The Redis tier of every cache face, on a throwaway redis-server (tests/conftest.py):
sharing between caches and processes, keys, TTL, clear, the memory tier, single flight across
processes, faults and URLs."""

from __future__ import annotations

import asyncio
import logging
import operator
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Annotated

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy
from pydantic import SecretStr
from typing_extensions import TypedDict

from fast_langgraph import CacheError, FastLLMCache, FastNodeCache, RustLLMCache, cached

SECRET = "sk-redis-test-0123456789SECRET"


def commandstats(client) -> dict[str, int]:
    info = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in info.items()}


def all_bytes(client) -> bytes:
    out = b""
    for k in client.scan_iter(count=1000):
        out += k + b"\n"
        if client.type(k) == b"string":
            out += client.get(k) or b""
    return out


# ---- RustLLMCache on Redis ----


def test_put_get_delete_clear_between_two_caches(redis_url, redis_client):
    a = RustLLMCache(redis_url=redis_url, namespace="app")
    b = RustLLMCache(redis_url=redis_url, namespace="app")
    other = RustLLMCache(redis_url=redis_url, namespace="other")
    a.put(("prompt", "model"), {"answer": (1, 2), "none": None})
    a.put("none", None)
    assert b.get(("prompt", "model")) == {"answer": (1, 2), "none": None}
    assert type(b.get(("prompt", "model"))["answer"]) is tuple
    assert "none" in b and b.get("none", "default") is None
    assert other.get(("prompt", "model")) is None
    assert len(b) == 2 and len(other) == 0
    assert b.delete("none") is True and "none" not in a
    other.put("x", 1)
    a.clear()
    assert len(a) == 0 and other.get("x") == 1
    s = b.stats()
    assert (s["hits"], s["errors"]) == (3, 0)
    for key in redis_client.scan_iter():
        assert key.count(b"{") == 1 and (b"{app}" in key or b"{other}" in key), key


def test_ttl_is_the_keys_expiry(redis_url, redis_client):
    c = RustLLMCache(redis_url=redis_url, ttl=60)
    c.put("default", 1)
    c.put("own", 2, ttl=5)
    RustLLMCache(redis_url=redis_url).put("forever", 3)
    ttls = sorted(redis_client.pttl(k) for k in redis_client.scan_iter())
    assert ttls[0] == -1  # no expiry
    assert 0 < ttls[1] <= 5000 and 5000 < ttls[2] <= 60000


def test_clear_uses_scan_and_unlink_never_keys(redis_url, redis_client):
    c = RustLLMCache(redis_url=redis_url, namespace="many")
    for i in range(1200):
        c.put(i, i)
    before = commandstats(redis_client)
    c.clear()
    after = commandstats(redis_client)
    assert len(c) == 0
    assert after.get("keys", 0) == before.get("keys", 0)
    assert after["scan"] > before.get("scan", 0) and after["unlink"] > before.get("unlink", 0)


def test_stored_keys_are_digests_and_secrets_never_reach_the_server(redis_url, redis_client):
    class SecretModel(FakeListChatModel):
        api_key: SecretStr

    model = SecretModel(responses=["hi"], api_key=SecretStr(SECRET))

    @cached(redis_url=redis_url)
    def ask(llm, question):
        return llm.invoke(question).content

    assert ask(model, "which key?") == ask(model, "which key?") == "hi"
    data = all_bytes(redis_client)
    assert data and SECRET.encode() not in data and b"which key?" not in data


def test_memory_tier_serves_hits_without_the_server(redis_url, redis_client):
    c = RustLLMCache(redis_url=redis_url, local_max_size=100)
    c.put("k", [1, 2])
    gets = commandstats(redis_client).get("get", 0)
    for _ in range(50):
        assert c.get("k") == [1, 2]
    assert commandstats(redis_client).get("get", 0) == gets
    # Another cache's entries reach this one through the server, then stay in memory.
    RustLLMCache(redis_url=redis_url).put("other", "v")
    assert c.get("other") == "v" and c.get("other") == "v"
    assert commandstats(redis_client)["get"] == gets + 1


def test_a_value_that_fails_to_decode_is_recomputed_and_overwritten(redis_url, redis_client):
    calls = []

    @cached(redis_url=redis_url)
    def f(x):
        calls.append(x)
        return {"x": x}

    assert f(1) == {"x": 1}
    (key,) = [k for k in redis_client.scan_iter() if b":v:" in k]
    redis_client.set(key, b"not a cache value")
    assert f(1) == {"x": 1} and calls == [1, 1]
    assert f(1) == {"x": 1} and calls == [1, 1]
    assert redis_client.get(key).startswith(b"FLG1")


# ---- faults and URLs ----


@pytest.mark.parametrize(
    "url",
    ["http://localhost:6379", "localhost:6379", "rediss://localhost:6379", "redis://host:port"],
)
def test_wrong_urls_fail_fast(url):
    with pytest.raises(ValueError, match="Redis URL"):
        RustLLMCache(redis_url=url)
    with pytest.raises(ValueError, match="Redis URL"):
        cached(redis_url=url)(lambda: None)


def test_bad_namespace():
    with pytest.raises(ValueError, match="namespace"):
        RustLLMCache(redis_url="redis://127.0.0.1:1", namespace="a{b}")


def _closed_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_redis_down_never_fails_the_function(caplog):
    calls = []

    @cached(redis_url=_closed_port())
    def f(x):
        calls.append(x)
        return x * 2

    with caplog.at_level(logging.WARNING, logger="fast_langgraph.cache"):
        assert [f(1), f(1), f(2)] == [2, 2, 4]
    assert calls == [1, 1, 2]
    assert f.cache_stats()["errors"] >= 3
    assert len([r for r in caplog.records if r.name == "fast_langgraph.cache"]) == 1
    assert "strict=True" in caplog.records[0].getMessage()


async def test_redis_down_async_and_llm_cache():
    @cached(redis_url=_closed_port())
    async def f(x):
        return x

    assert await f(1) == 1
    model = FakeListChatModel(responses=["a", "b"], cache=FastLLMCache(redis_url=_closed_port()))
    assert model.invoke("q").content == "a"
    assert (await model.ainvoke("q")).content == "b"


def test_strict_raises_when_redis_is_down():
    @cached(redis_url=_closed_port(), strict=True)
    def f(x):
        return x

    with pytest.raises(CacheError, match="Redis at"):
        f(1)
    with pytest.raises(CacheError):
        RustLLMCache(redis_url=_closed_port(), strict=True).get("k")


def test_close(redis_url):
    c = RustLLMCache(redis_url=redis_url, strict=True)
    c.put("k", 1)
    c.close()
    with pytest.raises(CacheError, match="closed"):
        c.get("k")


# ---- single flight across processes ----

FLIGHT = """
    import sys, threading, time
    import redis
    from fast_langgraph import cached
    url, ns = sys.argv[1], sys.argv[2]
    client = redis.Redis.from_url(url)

    @cached(redis_url=url, namespace=ns)
    def answer(q):
        client.incr("calls")
        time.sleep(0.3)
        return f"answer to {q}"

    print("ready", flush=True)
    while not client.exists("go"):
        time.sleep(0.005)
    results = []
    threads = [threading.Thread(target=lambda: results.append(answer("same"))) for _ in range(25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = answer.cache_info()
    print(len(results), set(results) == {"answer to same"}, info.hits + info.misses, flush=True)
"""


def test_one_call_for_100_concurrent_misses_across_4_processes(redis_url, redis_client, tmp_path):
    script = tmp_path / "flight.py"
    script.write_text(textwrap.dedent(FLIGHT))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), redis_url, "flight"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    redis_client.set("go", 1)
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "25 True 25"
    assert int(redis_client.get("calls")) == 1


HOLDER = """
    import sys, time
    from fast_langgraph import cached
    @cached(redis_url=sys.argv[1], lock_timeout=2)
    def answer(q):
        print("holding", flush=True)
        time.sleep(600)
    answer("q")
"""


def test_a_crashed_lock_holder_blocks_nobody_past_the_lock_expiry(redis_url, tmp_path):
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(HOLDER))
    holder = subprocess.Popen(
        [sys.executable, str(script), redis_url], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    code = f"""
        from fast_langgraph import cached
        @cached(redis_url={redis_url!r}, lock_timeout=2)
        def answer(q):
            return "computed after the holder died"
        print(answer("q"))
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "computed after the holder died"


async def test_async_waiting_for_another_process_keeps_the_event_loop_running(redis_url):
    async def ask(q):
        return f"mine: {q}"

    space = f"{ask.__module__}.{ask.__qualname__}"
    f = cached(redis_url=redis_url, lock_timeout=20)(ask)
    other = RustLLMCache(redis_url=redis_url, _space=space)
    # The key the wrapper will use: the same encoding, through a sync twin on the same space.
    twin = cached(redis_url=redis_url)(lambda q: None)
    key, _ = twin._make_key(("q",), None)
    token = other._lock(key)
    assert token is not None

    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    t = asyncio.create_task(ticker())
    call = asyncio.create_task(f("q"))
    while ticks < 50:
        await asyncio.sleep(0.001)
    assert not call.done()  # still waiting for the other holder's value
    other._put_key(key, "from the other process")
    other._unlock(key, token)
    assert await call == "from the other process"
    t.cancel()
    assert f.cache_info().hits == 1


def test_sync_waiting_releases_the_gil(redis_url):
    def ask(q):
        return f"mine: {q}"

    space = f"{ask.__module__}.{ask.__qualname__}"
    f = cached(redis_url=redis_url, lock_timeout=20)(ask)
    other = RustLLMCache(redis_url=redis_url, _space=space)
    key, _ = f._make_key(("q",), None)
    token = other._lock(key)
    result = []
    waiter = threading.Thread(target=lambda: result.append(f("q")))
    waiter.start()
    spins = 0
    deadline = time.monotonic() + 30
    while spins < 200_000 and time.monotonic() < deadline:
        spins += 1  # pure Python: runs only while the waiter has released the GIL
    assert waiter.is_alive()
    other._put_key(key, "from the other process")
    other._unlock(key, token)
    waiter.join(30)
    assert result == ["from the other process"]
    assert (f.cache_info().hits, f.cache_info().misses) == (1, 0)


# ---- FastLLMCache and FastNodeCache on Redis ----


def test_llm_cache_shared_between_replicas(redis_url):
    # Same model parameters (they are part of LangChain's key), one process each.
    a = FakeListChatModel(responses=["first", "second"], cache=FastLLMCache(redis_url=redis_url))
    b = FakeListChatModel(responses=["first", "second"], cache=FastLLMCache(redis_url=redis_url))
    assert a.invoke("hi").content == "first"
    assert a.invoke("other").content == "second"
    assert b.invoke("other").content == "second"  # the other replica's answer
    assert b.invoke("new").content == "first"  # b's own model was not called before
    assert b.cache.stats()["hits"] == 1


async def test_llm_cache_async_and_local_tier(redis_url):
    cache = FastLLMCache(redis_url=redis_url, local_max_size=10, ttl=60)
    model = FakeListChatModel(responses=["first", "second"], cache=cache)
    assert (await model.ainvoke("hi")).content == "first"
    assert (await model.ainvoke("hi")).content == "first"
    await cache.aclear()
    assert (await model.ainvoke("hi")).content == "second"


class State(TypedDict):
    text: str
    log: Annotated[list[str], operator.add]


def graph(calls: list, cache):
    def node(state: State) -> dict:
        calls.append(state["text"])
        return {"text": state["text"] + "!", "log": ["n"]}

    def other(state: State) -> dict:
        calls.append("other")
        return {"log": ["o"]}

    b = StateGraph(State)
    b.add_node("n", node, cache_policy=CachePolicy(ttl=120))
    b.add_node("o", other, cache_policy=CachePolicy())
    b.add_edge(START, "n")
    b.add_edge("n", "o")
    b.add_edge("o", END)
    return b.compile(cache=cache)


def test_node_cache_shared_between_replicas(redis_url, redis_client):
    calls: list = []
    g1 = graph(calls, FastNodeCache(redis_url=redis_url))
    g2 = graph(calls, FastNodeCache(redis_url=redis_url))
    out = g1.invoke({"text": "hi", "log": []})
    assert g2.invoke({"text": "hi", "log": []}) == out == {"text": "hi!", "log": ["n", "o"]}
    assert calls == ["hi", "other"]
    assert any(0 < redis_client.pttl(k) <= 120_000 for k in redis_client.scan_iter())
    g2.clear_cache(["n"])
    g1.invoke({"text": "hi", "log": []})
    assert calls == ["hi", "other", "hi"]
    g1.clear_cache()
    g2.invoke({"text": "hi", "log": []})
    assert calls == ["hi", "other", "hi", "hi", "other"]


async def test_node_cache_async(redis_url):
    calls: list = []
    g = graph(calls, FastNodeCache(redis_url=redis_url, local_max_size=100))
    assert await g.ainvoke({"text": "a", "log": []}) == await g.ainvoke({"text": "a", "log": []})
    assert calls == ["a", "other"]
    await g.aclear_cache()
    await g.ainvoke({"text": "a", "log": []})
    assert len(calls) == 4


def test_node_cache_scopes_on_redis(redis_url):
    shared = FastNodeCache(redis_url=redis_url)
    calls_a: list = []
    calls_b: list = []
    ga = graph(calls_a, shared.scoped("a"))
    gb = graph(calls_b, shared.scoped("b"))
    for _ in range(2):
        ga.invoke({"text": "q", "log": []})
        gb.invoke({"text": "q", "log": []})
    assert (len(calls_a), len(calls_b)) == (2, 2)
    shared.scoped("a").clear()
    ga.invoke({"text": "q", "log": []})
    gb.invoke({"text": "q", "log": []})
    assert (len(calls_a), len(calls_b)) == (4, 2)


def _forked(work) -> int:
    """Runs work() in a forked child while the parent runs it too; the child's exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work("child")
            code = 0
        finally:
            os._exit(code)
    work("parent")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_uses_its_own_connections(redis_url):
    c = RustLLMCache(redis_url=redis_url, strict=True)
    c.put("before", 1)
    assert c.get("before") == 1  # the pool now holds a connection

    def work(who: str) -> None:
        for i in range(300):
            c.put(f"{who}{i}", [who, i])
            assert c.get(f"{who}{i}") == [who, i]

    assert _forked(work) == 0
    assert c.get("child299") == ["child", 299] and c.get("parent299") == ["parent", 299]
