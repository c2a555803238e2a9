"""The async faces' Redis client on the event loop (one non-blocking, pipelined connection per
loop), on real redis-server processes: results and counters equal to the sync path's, many
tasks on one loop, loops in several threads, a server restart, a server down or paused (the
loop keeps running), cancellation, large values, close(), and a forked child."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time

import pytest
from conftest import free_port

from fast_langgraph import CacheError, FastLLMCache, FastNodeCache, RustLLMCache, cached
from fast_langgraph.cache import _aget_key, _aget_keys, _aput_key, _aput_keys


def client_ids(redis_client) -> set[int]:
    """The ids of the connections open on the server."""
    gc.collect()  # earlier tests' caches close their connections when collected
    return {int(c["id"]) for c in redis_client.client_list()}


class Ticker:
    """A task counting event-loop turns: it stops counting when something blocks the loop."""

    def __init__(self) -> None:
        self.ticks = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0.001)

    def stop(self) -> None:
        self.task.cancel()


# ---- the same answers as the sync path ----


async def test_async_hits_and_misses_equal_the_sync_paths(redis_url):
    sync = RustLLMCache(redis_url=redis_url, namespace="same")
    aside = RustLLMCache(redis_url=redis_url, namespace="same")
    values = {"none": None, "tuple": (1, "a", (2.5,)), "dict": {"k": [1, 2]}, "big": "x" * 100_000}
    for k, v in values.items():
        k1, pins = sync._key(("sync", k))
        sync._put_key(k1, v, pins)
        k2, pins = aside._key(("async", k))
        await _aput_key(aside, k2, v, pins)
    for k, v in values.items():
        for name in ("sync", "async"):
            key, _ = sync._key((name, k))
            got_sync = sync._get_key(key)
            got_async = await _aget_key(aside, key)
            assert got_sync == got_async == (True, v)
            assert type(got_async[1]) is type(v)
    absent, _ = sync._key("absent")
    assert sync._get_key(absent) == await _aget_key(aside, absent) == (False, None)
    s, a = sync.stats(), aside.stats()
    assert (
        (s["hits"], s["misses"], s["errors"]) == (a["hits"], a["misses"], a["errors"]) == (8, 1, 0)
    )
    assert aside._loop_connected(asyncio.get_running_loop())


async def test_node_cache_aget_aset_equal_get_set(redis_url):
    a = FastNodeCache(redis_url=redis_url, namespace="nodes")
    b = FastNodeCache(redis_url=redis_url, namespace="nodes")
    pairs = {(("graph", f"node{i}"), f"input{i}"): ({"out": i, "t": [i]}, 60) for i in range(5)}
    a.set(dict(list(pairs.items())[:2]))
    await b.aset(dict(list(pairs.items())[2:]))
    keys = [*pairs, (("graph", "node9"), "absent")]
    want = {k: v for k, (v, _) in pairs.items()}
    assert a.get(keys) == await b.aget(keys) == await a.aget(keys) == want
    assert await b.aget([]) == {}
    assert (a.stats()["hits"], a.stats()["misses"]) == (10, 2)


async def test_cached_async_function_and_llm_cache_on_the_loop(redis_url):
    calls = []

    @cached(redis_url=redis_url, namespace="fn")
    async def ask(q: str, n: int = 1) -> tuple:
        calls.append(q)
        return (q, n)

    assert await ask("a") == ("a", 1) and await ask("a", n=1) == ("a", 1)
    assert calls == ["a"] and ask.cache_info().hits == 1

    @cached(redis_url=redis_url, namespace="fn")
    def ask_sync(q: str, n: int = 1) -> tuple:
        return ("never", 0)

    # Another function is another space: no sharing.
    assert ask_sync("a") == ("never", 0)

    llm = FastLLMCache(redis_url=redis_url)
    from langchain_core.outputs import Generation

    await llm.aupdate("prompt", "model", [Generation(text="hi")])
    assert llm.lookup("prompt", "model") == await llm.alookup("prompt", "model")
    assert (await llm.alookup("prompt", "model"))[0].text == "hi"
    assert await llm.alookup("other", "model") is None


# ---- one loop, many tasks; several loops ----


async def test_many_concurrent_tasks_share_one_pipelined_connection(redis_url, redis_client):
    cache = RustLLMCache(redis_url=redis_url, namespace="many")
    before = client_ids(redis_client)
    keys = [cache._key(i)[0] for i in range(400)]
    await asyncio.gather(*(_aput_key(cache, k, {"i": i}) for i, k in enumerate(keys)))
    got = await asyncio.gather(*(_aget_key(cache, k) for k in keys))
    assert got == [(True, {"i": i}) for i in range(400)]
    batches = await asyncio.gather(
        *(_aget_keys(cache, [(k, None) for k in keys[i : i + 7]]) for i in range(0, 400, 7))
    )
    assert [v for batch in batches for _, v in batch] == [{"i": i} for i in range(400)]
    # Every request went over this loop's one connection.
    assert len(client_ids(redis_client) - before) == 1
    assert cache.stats()["hits"] == 800


async def test_a_large_value_is_written_and_read_in_pieces(redis_url):
    cache = RustLLMCache(redis_url=redis_url, namespace="large")
    big = {"text": "y" * (8 << 20), "n": list(range(1000))}
    k, _ = cache._key("big")
    small, _ = cache._key("small")
    # The 8 MB write does not fit the socket buffer at once, and a small request follows it.
    await asyncio.gather(_aput_key(cache, k, big), _aput_key(cache, small, 1))
    found, value = await _aget_key(cache, k)
    assert found and value == big
    assert await _aget_key(cache, small) == (True, 1)


def test_loops_in_two_threads_get_their_own_connections(redis_url, redis_client):
    cache = RustLLMCache(redis_url=redis_url, namespace="threads")
    before = client_ids(redis_client)
    results: dict[str, list] = {}
    loops: dict[str, asyncio.AbstractEventLoop] = {}
    go = threading.Barrier(2)

    def work(name: str) -> None:
        async def main() -> list:
            loops[name] = asyncio.get_running_loop()
            go.wait()
            out = []
            for i in range(200):
                k, _ = cache._key((name, i))
                await _aput_key(cache, k, [name, i])
                out.append(await _aget_key(cache, k))
            assert cache._loop_connected(asyncio.get_running_loop())
            return out

        results[name] = asyncio.run(main())

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for name in ("a", "b"):
        assert results[name] == [(True, [name, i]) for i in range(200)]
    assert loops["a"] is not loops["b"]
    # One connection per loop (still open: the test holds the closed loops).
    assert len(client_ids(redis_client) - before) == 2
    assert cache.stats()["hits"] == 400


def test_a_closed_loops_connection_is_dropped(redis_url, redis_client):
    cache = RustLLMCache(redis_url=redis_url, namespace="closed-loops")
    k, _ = cache._key("k")
    cache._put_key(k, 1)
    before = client_ids(redis_client)
    for _ in range(6):
        assert asyncio.run(_aget_key(cache, k)) == (True, 1)
    # The last loop's connection may remain; every earlier one was closed.
    assert len(client_ids(redis_client) - before) <= 1


# ---- faults ----


async def test_a_server_restart_is_counted_then_the_loop_reconnects(own_server, caplog):
    cache = RustLLMCache(redis_url=own_server.url, namespace="restart")
    k, _ = cache._key("k")
    await _aput_key(cache, k, "before")
    assert await _aget_key(cache, k) == (True, "before")
    own_server.stop()
    with caplog.at_level(logging.WARNING, logger="fast_langgraph.cache"):
        # Down: a miss, counted as an error, logged once; the write is absorbed too.
        assert await _aget_key(cache, k) == (False, None)
        await _aput_key(cache, k, "lost")
        assert await _aget_key(cache, k) == (False, None)
    assert cache.stats()["errors"] >= 2
    assert len([r for r in caplog.records if r.name == "fast_langgraph.cache"]) == 1
    own_server.start()  # empty: nothing persisted
    deadline = time.monotonic() + 10
    while True:
        await _aput_key(cache, k, "after")
        if await _aget_key(cache, k) == (True, "after"):
            break
        assert time.monotonic() < deadline, "did not reconnect"
        await asyncio.sleep(0.1)
    assert cache._loop_connected(asyncio.get_running_loop())


async def test_a_server_down_is_a_miss_or_with_strict_an_error():
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    absorbing = RustLLMCache(redis_url=url)
    strict = RustLLMCache(redis_url=url, strict=True)
    k, _ = absorbing._key("k")
    assert await _aget_key(absorbing, k) == (False, None)
    assert await _aget_keys(absorbing, [(k, None)]) == [(False, None)]
    await _aput_key(absorbing, k, 1)
    await _aput_keys(absorbing, [(k, 1, None, None), (k + b"2", 2, None, None)])
    assert absorbing.stats()["errors"] >= 4
    with pytest.raises(CacheError, match="Redis at"):
        await _aget_key(strict, k)
    with pytest.raises(CacheError, match="Redis at"):
        await _aput_key(strict, k, 1)

    @cached(redis_url=url)
    async def f(x):
        return x * 2

    assert [await f(1), await f(1)] == [2, 2]


async def test_a_paused_server_never_blocks_the_loop(own_server):
    cache = RustLLMCache(redis_url=own_server.url, namespace="paused", io_timeout=0.5)
    strict = RustLLMCache(redis_url=own_server.url, namespace="paused", strict=True, io_timeout=0.5)
    k, _ = cache._key("k")
    await _aput_key(cache, k, "v")
    assert await _aget_key(strict, k) == (True, "v")
    ticker = Ticker()
    own_server.pause()
    try:
        # The request is written and awaited; the loop keeps turning meanwhile.
        pending = asyncio.ensure_future(_aget_key(cache, k))
        strict_pending = asyncio.ensure_future(_aget_key(strict, k))
        start = ticker.ticks
        await asyncio.sleep(0.2)
        assert not pending.done() and not strict_pending.done()
        assert ticker.ticks - start >= 10
        # Past the I/O timeout: a miss counted as an error, or with strict=True an error.
        assert await pending == (False, None)
        with pytest.raises(CacheError, match="no reply within"):
            await strict_pending
    finally:
        own_server.resume()
        ticker.stop()
    # The server answers again: after the short back-off the next requests reconnect.
    await asyncio.sleep(0.6)
    assert await _aget_key(cache, k) == (True, "v")
    assert await _aget_key(strict, k) == (True, "v")
    assert (cache.stats()["errors"], strict.stats()["errors"]) == (1, 0)


async def test_a_cancelled_request_leaves_the_connection_in_step(own_server):
    cache = RustLLMCache(redis_url=own_server.url, namespace="cancel", io_timeout=5)
    keys = [cache._key(i)[0] for i in range(3)]
    for i, k in enumerate(keys):
        await _aput_key(cache, k, i)
    own_server.pause()
    try:
        first = asyncio.ensure_future(_aget_key(cache, keys[0]))
        second = asyncio.ensure_future(_aget_key(cache, keys[1]))
        await asyncio.sleep(0.05)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        own_server.resume()
    # The reply meant for the cancelled request is dropped; the others get their own.
    assert await second == (True, 1)
    assert await _aget_key(cache, keys[2]) == (True, 2)
    assert await asyncio.wait_for(_aget_key(cache, keys[0]), 5) == (True, 0)


async def test_close_drops_the_loops_connection(redis_url, redis_client):
    cache = RustLLMCache(redis_url=redis_url, namespace="close", strict=True)
    k, _ = cache._key("k")
    await _aput_key(cache, k, 1)
    loop = asyncio.get_running_loop()
    assert cache._loop_connected(loop)
    before = client_ids(redis_client)
    cache.close()
    with pytest.raises(CacheError, match="closed"):
        await _aget_key(cache, k)
    await asyncio.sleep(0.05)
    assert not cache._loop_connected(loop)
    assert len(before - client_ids(redis_client)) == 1


# ---- fork ----


def test_a_forked_child_never_uses_the_parents_loop_connection(redis_url):
    cache = RustLLMCache(redis_url=redis_url, namespace="fork", strict=True)
    # The parent's loop runs in a thread and keeps using its connection while the child runs.
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    async def work(who: str, n: int) -> None:
        for i in range(n):
            k, _ = cache._key((who, i))
            await _aput_key(cache, k, [who, i])
            assert await _aget_key(cache, k) == (True, [who, i])

    asyncio.run_coroutine_threadsafe(work("parent-before", 20), loop).result(30)
    assert cache._loop_connected(loop)
    parent = asyncio.run_coroutine_threadsafe(work("parent", 300), loop)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            asyncio.run(work("child", 300))
            code = 0
        finally:
            os._exit(code)
    parent.result(60)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    k, _ = cache._key(("child", 299))
    assert asyncio.run_coroutine_threadsafe(_aget_key(cache, k), loop).result(30) == (
        True,
        ["child", 299],
    )
    loop.call_soon_threadsafe(loop.stop)
    runner.join(10)
    loop.close()
