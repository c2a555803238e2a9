"""RustLLMCache and @cached: exact keys, TTL on an injected clock, threads, asyncio, persistence."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel

from fast_langgraph import (
    CacheCorruptError,
    ForeignDatabaseError,
    RustLLMCache,
    cached,
)


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- RustLLMCache ----


def test_holds_python_objects_and_none():
    c = RustLLMCache(max_size=10)
    value = {"messages": [AIMessage("hi")], "n": 1}
    c.put("k", value)
    c.put("none", None)
    assert c.get("k") is value
    assert "none" in c
    assert c.get("none", "default") is None
    assert c.get("missing", "default") == "default"
    assert len(c) == 2
    assert c.delete("k") is True
    assert c.delete("k") is False
    c.clear()
    assert len(c) == 0


def test_stats_count_hits_misses_evictions():
    c = RustLLMCache(max_size=2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # b is now least recently used
    c.put("c", 3)
    assert "b" not in c
    assert c.get("b") is None
    s = c.stats()
    assert (s["hits"], s["misses"], s["evictions"], s["size"], s["max_size"]) == (1, 1, 1, 2, 2)


def test_contains_does_not_count():
    c = RustLLMCache()
    c.put("a", 1)
    assert "a" in c and "b" not in c
    assert (c.stats()["hits"], c.stats()["misses"]) == (0, 0)


def test_ttl_expiry_with_injected_clock():
    clock = Clock()
    c = RustLLMCache(max_size=10, ttl=60, clock=clock)
    c.put("a", 1)
    c.put("b", 2, ttl=5)
    clock.now += 4.9
    assert c.get("b") == 2
    clock.now += 0.1
    assert c.get("b") is None and "b" not in c
    clock.now += 54.9
    assert c.get("a") == 1
    clock.now += 0.1
    assert c.get("a") is None
    assert len(c) == 0
    assert c.stats()["expirations"] == 2


def test_expired_entries_are_swept_before_live_ones_are_evicted():
    clock = Clock()
    c = RustLLMCache(max_size=2, clock=clock)
    c.put("old", 1, ttl=1)
    c.put("live", 2)
    clock.now += 1
    c.put("new", 3)
    assert c.get("live") == 2 and c.get("new") == 3
    assert (c.stats()["evictions"], c.stats()["expirations"]) == (0, 1)


@pytest.mark.parametrize("bad", [-1, 0])
def test_bad_max_size(bad):
    with pytest.raises(ValueError, match="max_size"):
        RustLLMCache(max_size=bad)
    with pytest.raises(ValueError, match="max_size"):
        cached(max_size=bad)(lambda: None)


def test_bad_ttl():
    with pytest.raises(ValueError, match="ttl"):
        RustLLMCache(ttl=-1)
    with pytest.raises(ValueError, match="ttl"):
        RustLLMCache().put("a", 1, ttl=float("nan"))


def test_unbounded():
    c = RustLLMCache(max_size=None)
    for i in range(5000):
        c.put(i, i)
    assert len(c) == 5000 and c.max_size is None


# ---- keys ----


DISTINCT_KEYS = [
    1,
    True,
    1.0,
    "1",
    b"1",
    (1,),
    [1],
    {1},
    frozenset({1}),
    {"1": 1},
    None,
    0,
    False,
    0.0,
    -0.0,
    "",
    (),
    [],
    2**70,
    str(2**70),
    ("a", "b"),
    ("ab",),
    ["a", ["b"]],
    [["a"], "b"],
    HumanMessage("hi"),
    AIMessage("hi"),
    HumanMessage("hi "),
    [HumanMessage("hi")],
]


def test_different_keys_never_share_an_entry():
    c = RustLLMCache(max_size=1000)
    for i, k in enumerate(DISTINCT_KEYS):
        c.put(k, i)
    for i, k in enumerate(DISTINCT_KEYS):
        assert c.get(k) == i, k
    assert len(c) == len(DISTINCT_KEYS)


def test_equal_unhashable_keys_share_an_entry():
    c = RustLLMCache()
    c.put({"a": [1, {"b": 2}], "c": 3}, "v")
    assert c.get({"c": 3, "a": [1, {"b": 2}]}) == "v"
    c.put([HumanMessage("hi"), AIMessage("yo")], "m")
    assert c.get([HumanMessage("hi"), AIMessage("yo")]) == "m"


class Query(BaseModel):
    text: str
    top_k: int = 3


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_pydantic_and_dataclass_keys():
    c = RustLLMCache()
    c.put(Query(text="a"), 1)
    c.put(Query(text="a", top_k=4), 2)
    c.put(Point(1, 2), 3)
    assert c.get(Query(text="a")) == 1
    assert c.get(Query(text="a", top_k=4)) == 2
    assert c.get(Point(1, 2)) == 3
    assert c.get(Point(2, 1)) is None


def test_identity_keys_keep_their_object_alive():
    class Thing:
        pass

    c = RustLLMCache()
    t = Thing()
    c.put(t, "mine")
    assert c.get(t) == "mine"
    assert c.get(Thing()) is None


def test_self_containing_key_is_an_error():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nests deeper"):
        RustLLMCache().put(loop, 1)


# ---- @cached ----


def test_cached_sync_basics():
    calls = []

    @cached
    def answer(question, *, temperature=0.0):
        calls.append(question)
        return None if question == "none" else f"{question}!"

    assert answer("a") == "a!" and answer("a") == "a!"
    assert answer("none") is None and answer("none") is None
    assert answer("a", temperature=0.5) == "a!"
    assert calls == ["a", "none", "a"]
    assert answer.__name__ == "answer" and answer.__wrapped__ is not None
    info = answer.cache_info()
    assert (info.hits, info.misses, info.currsize, info.maxsize) == (2, 3, 3, 1024)
    answer.cache_clear()
    assert answer.cache_info().currsize == 0
    assert answer.cache_stats()["hits"] == 2


def test_cached_unhashable_arguments():
    calls = []

    @cached(max_size=10)
    def chat(messages, config):
        calls.append(1)
        return len(messages)

    msgs = [HumanMessage("hi"), AIMessage("hello")]
    assert chat(msgs, {"model": "x"}) == 2
    assert chat([HumanMessage("hi"), AIMessage("hello")], {"model": "x"}) == 2
    assert chat(msgs, {"model": "y"}) == 2
    assert chat([HumanMessage("hi"), AIMessage("hello!")], {"model": "x"}) == 2
    assert len(calls) == 3


def test_cached_exceptions_are_not_cached():
    calls = []

    @cached
    def flaky(x):
        calls.append(x)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return x

    with pytest.raises(RuntimeError):
        flaky(1)
    assert flaky(1) == 1 and flaky(1) == 1
    assert len(calls) == 2


def test_cached_methods_are_per_instance():
    class Agent:
        def __init__(self, name):
            self.name = name
            self.calls = 0

        @cached
        def reply(self, text):
            self.calls += 1
            return f"{self.name}: {text}"

    a, b = Agent("a"), Agent("b")
    assert a.reply("hi") == "a: hi" and a.reply("hi") == "a: hi"
    assert b.reply("hi") == "b: hi"
    assert (a.calls, b.calls) == (1, 1)
    assert Agent.reply.cache_info().currsize == 2


def test_cached_key_function():
    calls = []

    @cached(key=lambda prompt, request_id: prompt)
    def ask(prompt, request_id):
        calls.append(request_id)
        return prompt.upper()

    assert ask("x", 1) == "X" and ask("x", 2) == "X"
    assert calls == [1]


def test_cached_ttl_with_injected_clock():
    clock = Clock()
    calls = []

    @cached(ttl=10, clock=clock)
    def f(x):
        calls.append(x)
        return x

    f(1)
    clock.now += 9.99
    f(1)
    clock.now += 0.01
    f(1)
    assert calls == [1, 1]
    assert f.cache_stats()["expirations"] == 1


def test_cached_bad_input():
    with pytest.raises(TypeError, match="expects a function"):
        cached(42)
    with pytest.raises(TypeError, match="key must be a callable"):
        cached(key="text")
    with pytest.raises(TypeError, match="generator"):

        @cached
        def gen():
            yield 1


def test_sync_function_returning_a_coroutine_is_refused():
    async def inner():
        return 1

    @cached
    def sneaky():
        return inner()

    with pytest.raises(TypeError, match="awaitable"):
        sneaky()
    assert sneaky.cache_info().currsize == 0


def test_recursive_call_with_the_same_key_does_not_deadlock():
    depth = []

    @cached
    def f(x):
        depth.append(x)
        return f(x) if len(depth) < 3 else "done"

    assert f(1) == "done"


# ---- threads ----


def test_thread_stress_counts_and_values_stay_exact():
    calls = []
    lock = threading.Lock()

    @cached(max_size=1000)
    def square(x):
        with lock:
            calls.append(x)
        return x * x

    threads, per_thread, keys = 8, 2000, 50

    def work(t):
        for i in range(per_thread):
            k = (i * 7 + t) % keys
            assert square(k) == k * k

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    info = square.cache_info()
    assert info.hits + info.misses == threads * per_thread
    assert sorted(calls) == list(range(keys)), "each key computed exactly once"
    assert info.currsize == keys


def test_thread_stress_on_a_small_shared_cache():
    c = RustLLMCache(max_size=16)
    threads, per_thread = 8, 3000

    def work(t):
        for i in range(per_thread):
            k = (t, i % 40)
            c.put(k, [t, i])
            v = c.get(k)
            assert v is None or v[0] == t
            c.delete((t, (i + 3) % 40))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    s = c.stats()
    assert s["hits"] + s["misses"] == threads * per_thread
    assert len(c) <= 16


def test_thread_single_flight():
    calls = []
    started = threading.Event()
    release = threading.Event()

    @cached
    def slow(q):
        calls.append(q)
        started.set()
        release.wait(10)
        return f"answer to {q}"

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(slow, "same question") for _ in range(8)]
        started.wait(10)
        release.set()
        results = [f.result() for f in futures]
    assert results == ["answer to same question"] * 8
    assert calls == ["same question"]


def test_thread_single_flight_shares_the_exception_but_does_not_cache_it():
    calls = []
    started = threading.Event()
    release = threading.Event()

    @cached
    def failing(q):
        calls.append(q)
        started.set()
        release.wait(10)
        if len(calls) == 1:
            raise ValueError("upstream down")
        return "ok"

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(failing, "q") for _ in range(4)]
        started.wait(10)
        release.set()
        errors = [f.exception() for f in futures]
    assert all(isinstance(e, ValueError) for e in errors)
    assert failing("q") == "ok"
    assert len(calls) == 2


# ---- asyncio ----


async def test_async_caches_the_awaited_result():
    calls = []

    @cached
    async def ask(q):
        calls.append(q)
        await asyncio.sleep(0)
        return q * 2

    assert await ask("a") == "aa"
    assert await ask("a") == "aa"
    assert calls == ["a"]
    assert ask.cache_info().hits == 1
    assert asyncio.iscoroutinefunction(ask)


async def test_async_single_flight():
    calls = []
    gate = asyncio.Event()

    @cached
    async def ask(q):
        calls.append(q)
        await gate.wait()
        return f"answer to {q}"

    tasks = [asyncio.create_task(ask("same")) for _ in range(20)]
    tasks += [asyncio.create_task(ask("other")) for _ in range(5)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert results == ["answer to same"] * 20 + ["answer to other"] * 5
    assert sorted(calls) == ["other", "same"]
    info = ask.cache_info()
    assert info.hits + info.misses == 25


async def test_async_exception_reaches_waiters_and_is_not_cached():
    calls = []
    gate = asyncio.Event()

    @cached
    async def ask(q):
        calls.append(q)
        await gate.wait()
        if len(calls) == 1:
            raise RuntimeError("rate limited")
        return "ok"

    tasks = [asyncio.create_task(ask("q")) for _ in range(5)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await ask("q") == "ok"
    assert len(calls) == 2


async def test_async_cancelled_leader_does_not_fail_waiters():
    calls = []
    gate = asyncio.Event()

    @cached
    async def ask(q):
        calls.append(q)
        await gate.wait()
        return "ok"

    leader = asyncio.create_task(ask("q"))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(ask("q"))
    await asyncio.sleep(0.01)
    leader.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    assert await waiter == "ok"
    assert len(calls) == 2


async def test_async_methods():
    class Bot:
        @cached
        async def reply(self, text):
            return (id(self), text)

    b = Bot()
    assert await b.reply("x") == await b.reply("x")
    assert Bot.reply.cache_info().hits == 1


# ---- persistence ----


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_persistence_across_a_process_restart(tmp_path):
    path = str(tmp_path / "llm.db")
    _run(f"""
        from langchain_core.messages import AIMessage
        from fast_langgraph import RustLLMCache
        c = RustLLMCache(path={path!r}, ttl=100, clock=lambda: 1000.0)
        c.put(("prompt", "model"), [AIMessage("cached answer")])
        c.put("short", {{"n": 1}}, ttl=5)
        c.put("none_value", None)  # the default TTL (100 s) applies
    """)
    out = _run(f"""
        from fast_langgraph import RustLLMCache
        c = RustLLMCache(path={path!r}, ttl=100, clock=lambda: 1004.0)
        v = c.get(("prompt", "model"))
        print(type(v[0]).__name__, v[0].content, c.get("short"), "none_value" in c, len(c))
    """)
    assert out == "AIMessage cached answer {'n': 1} True 3"
    out = _run(f"""
        from fast_langgraph import RustLLMCache
        c = RustLLMCache(path={path!r}, clock=lambda: 1006.0)
        print(c.get(("prompt", "model")) is not None, c.get("short", "expired"))
        c2 = RustLLMCache(path={path!r}, clock=lambda: 1100.0)
        print(c2.get(("prompt", "model"), "expired"), "none_value" in c2, len(c2))
    """)
    assert out.splitlines() == ["True expired", "expired False 0"]


def test_cached_with_path_runs_once_across_processes(tmp_path):
    path = str(tmp_path / "fn.db")
    code = f"""
        from fast_langgraph import cached
        @cached(path={path!r})
        def expensive(messages):
            print("computed")
            return {{"answer": len(messages)}}
        print(expensive([{{"role": "user", "content": "hi"}}]))
    """
    assert _run(code).splitlines() == ["computed", "{'answer': 1}"]
    assert _run(code).splitlines() == ["{'answer': 1}"]


def test_unserializable_value_with_path(tmp_path):
    c = RustLLMCache(path=str(tmp_path / "c.db"))
    with pytest.raises(TypeError, match="cannot store a value of type"):
        c.put("k", threading.Lock())
    assert "k" not in c

    @cached(path=str(tmp_path / "f.db"))
    def f():
        return threading.Lock()

    with pytest.raises(TypeError, match="cannot store"):
        f()


def test_identity_key_with_path_is_refused(tmp_path):
    class Thing:
        pass

    c = RustLLMCache(path=str(tmp_path / "c.db"))
    with pytest.raises(TypeError, match="identity"):
        c.put(Thing(), 1)


def test_not_a_database_file_is_refused_untouched(tmp_path):
    p = tmp_path / "junk.db"
    p.write_bytes(b"definitely not an sqlite database " * 100)
    with pytest.raises(ForeignDatabaseError, match="is not an SQLite database"):
        RustLLMCache(path=str(p))
    assert p.read_bytes().startswith(b"definitely")


@pytest.mark.parametrize(
    "setup",
    [
        "CREATE VIEW v AS SELECT 1",
        "PRAGMA user_version = 7",
        "PRAGMA application_id = 42",
        "CREATE TABLE flg_cache_meta (key TEXT PRIMARY KEY, value TEXT); CREATE TABLE users (id)",
    ],
    ids=["only-a-view", "user-version", "application-id", "ours-plus-users"],
)
def test_a_file_another_program_claimed_is_refused_untouched(tmp_path, setup):
    # The same vetting as the checkpoint database (src/sqlite_file.rs).
    p = tmp_path / "claimed.db"
    with sqlite3.connect(p) as conn:
        conn.executescript(setup)
    conn.close()
    before = p.read_bytes()
    with pytest.raises(ForeignDatabaseError, match="it was not modified"):
        RustLLMCache(path=str(p))
    assert p.read_bytes() == before


def test_foreign_sqlite_file_is_refused(tmp_path):
    p = tmp_path / "other.db"
    with sqlite3.connect(p) as conn:
        conn.execute("CREATE TABLE users (id)")
    with pytest.raises(ForeignDatabaseError, match="not a fast-langgraph cache"):
        RustLLMCache(path=str(p))


def test_tampered_entry_is_reported_never_returned(tmp_path):
    p = str(tmp_path / "c.db")
    RustLLMCache(path=p).put("k", "right answer")
    with sqlite3.connect(p) as conn:
        (value,) = conn.execute("SELECT value FROM flg_cache").fetchone()
        conn.execute("UPDATE flg_cache SET value = ?", (value.replace(b"right", b"wrong"),))
    c = RustLLMCache(path=p)
    with pytest.raises(CacheCorruptError, match="checksum"):
        c.get("k")
    c.clear()
    assert c.get("k") is None
