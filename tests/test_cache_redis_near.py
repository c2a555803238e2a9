"""The Redis near cache (``near_cache=True``), on the throwaway redis-server of tests/conftest.py:
hits served from memory, invalidated when another client changes, deletes or expires a key;
own writes seen at once; a lost invalidation connection empties it; a forked child follows its
own invalidations; the bound; TTL; a server that refuses tracking; counters. No timing is
asserted: where the server's invalidation must arrive, the tests poll with a bound."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from fast_langgraph import FastNodeCache, RustLLMCache, cached

NS = ("node", "test_near:node")
BOUND = 10.0  # seconds a polled condition may take before the test fails


def until(cond, what: str) -> None:
    """Polls cond() until it holds; fails after BOUND seconds."""
    deadline = time.monotonic() + BOUND
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {BOUND}s: {what}")
        time.sleep(0.01)


def ready(cache) -> None:
    """Waits until the near cache follows the server's invalidations."""
    inner = getattr(cache, "cache", cache)
    until(inner._near_ready, "the near cache's tracking is on")


def names(client, ns: str) -> set[bytes]:
    return set(client.scan_iter(f"flg:{{{ns}}}:v:*"))


def mget_calls(client) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("mget", "get"))


def tracking_client_ids(client) -> list[str]:
    # Flag "t": CLIENT TRACKING is on for the connection.
    return [c["id"] for c in client.client_list() if "t" in c["flags"]]


def two_entries(redis_url, client, ns: str, **kw):
    """A node cache holding k1 -> "v1" and k2 -> "v2", and the server's names of both."""
    c = FastNodeCache(redis_url=redis_url, namespace=ns, near_cache=True, **kw)
    k1, k2 = (NS, "k1"), (NS, "k2")
    c.set({k1: ("v1", None)})
    (n1,) = names(client, ns)
    c.set({k2: ("v2", None)})
    (n2,) = names(client, ns) - {n1}
    return c, k1, k2, n1, n2


def test_near_hits_are_served_from_memory_and_counted(redis_url, redis_client):
    c = FastNodeCache(redis_url=redis_url, namespace="near-hits", near_cache=True)
    assert c.cache.near_cache and c.cache.local
    k = (NS, "k")
    c.set({k: ({"answer": [1, 2]}, None)})
    ready(c)
    assert c.get([k]) == {k: {"answer": [1, 2]}}  # read from the server, kept
    before = mget_calls(redis_client)
    for _ in range(100):
        assert c.get([k]) == {k: {"answer": [1, 2]}}
    assert mget_calls(redis_client) == before, "near hits never ask the server"
    s = c.stats()
    assert s["near_hits"] == 100 and s["hits"] == 101 and s["misses"] == 0
    assert s["near_size"] == 1
    # A plain cache on the same server asks it every time.
    plain = FastNodeCache(redis_url=redis_url, namespace="near-hits")
    assert not plain.cache.near_cache and "near_hits" not in plain.stats()
    plain.get([k])
    assert mget_calls(redis_client) == before + 1


def test_another_clients_change_delete_and_expiry_are_not_served(redis_url, redis_client):
    c, k1, k2, n1, n2 = two_entries(redis_url, redis_client, "near-change")
    ready(c)
    assert c.get([k1]) == {k1: "v1"} and c.get([k1]) == {k1: "v1"}
    assert c.stats()["near_hits"] >= 1
    # Another client overwrites k1 with k2's value: once the invalidation has arrived, the
    # old value is never served again.
    redis_client.copy(n2, n1, replace=True)
    until(lambda: c.get([k1]) == {k1: "v2"}, "the changed value is read")
    for _ in range(50):
        assert c.get([k1]) == {k1: "v2"}
    assert c.stats()["near_invalidations"] >= 1
    # Deleted by another client.
    redis_client.unlink(n1)
    until(lambda: c.get([k1]) == {}, "the deleted entry is a miss")
    assert c.get([k1]) == {}
    # Expired on the server (set by another client).
    assert c.get([k2]) == {k2: "v2"} and c.get([k2]) == {k2: "v2"}
    redis_client.pexpire(n2, 1)
    until(lambda: c.get([k2]) == {}, "the expired entry is a miss")


async def test_async_hits_follow_invalidations(redis_url, redis_client):
    c, k1, _, n1, n2 = two_entries(redis_url, redis_client, "near-async")
    ready(c)
    assert await c.aget([k1]) == {k1: "v1"}
    assert await c.aget([k1]) == {k1: "v1"}
    assert c.stats()["near_hits"] >= 1
    redis_client.copy(n2, n1, replace=True)
    deadline = time.monotonic() + BOUND
    while (await c.aget([k1])) != {k1: "v2"}:
        assert time.monotonic() < deadline, "the changed value is read"
        await asyncio.sleep(0.01)
    hits = c.stats()["near_hits"]
    assert await c.aget([k1]) == {k1: "v2"}
    assert c.stats()["near_hits"] == hits + 1


def test_own_writes_deletes_and_clears_are_seen_at_once(redis_url):
    a = RustLLMCache(redis_url=redis_url, namespace="near-own", near_cache=True)
    b = RustLLMCache(redis_url=redis_url, namespace="near-own", near_cache=True)
    ready(a)
    a.put("k", 1)
    assert a.get("k") == 1 and a.get("k") == 1 and b.get("k") == 1 and b.get("k") == 1
    assert a.stats()["near_hits"] >= 1 and b.stats()["near_hits"] >= 1
    b.put("k", 2)
    assert a.get("k") == 2 and b.get("k") == 2
    a.delete("k")
    assert a.get("k") is None and b.get("k") is None
    a.put("k", 3)
    assert b.get("k") == 3 and b.get("k") == 3
    b.clear()
    assert a.get("k") is None and b.get("k") is None


def test_losing_the_invalidation_connection_empties_the_near_cache(redis_url, redis_client):
    c, k1, _, n1, n2 = two_entries(redis_url, redis_client, "near-lost")
    ready(c)
    assert c.get([k1]) == {k1: "v1"} and c.get([k1]) == {k1: "v1"}
    ids = tracking_client_ids(redis_client)
    assert ids, "a connection with tracking on"
    for i in ids:
        redis_client.client_kill_filter(_id=i)
    # Changed while nobody tracks it: no invalidation will ever say so, yet it is not served.
    redis_client.copy(n2, n1, replace=True)
    until(lambda: c.get([k1]) == {k1: "v2"}, "the value changed while untracked is read")
    assert c.stats()["near_flushes"] >= 1
    # Tracking comes back on a new connection, and hits with it.
    ready(c)
    until(lambda: tracking_client_ids(redis_client), "tracking is on again")
    assert not set(tracking_client_ids(redis_client)) & set(ids)
    c.get([k1])
    hits = c.stats()["near_hits"]
    assert c.get([k1]) == {k1: "v2"}
    assert c.stats()["near_hits"] == hits + 1


def test_a_server_restart_empties_the_near_cache(own_server):
    c = RustLLMCache(redis_url=own_server.url, namespace="near-restart", near_cache=True)
    ready(c)
    c.put("k", 1)
    assert c.get("k") == 1 and c.get("k") == 1
    assert c.stats()["near_hits"] == 1
    # The new server (no persistence) has no entry, and sent no invalidation for it.
    own_server.stop()
    own_server.start()
    until(lambda: c.get("k") is None, "the entry lost with the server is a miss")
    assert c.stats()["near_flushes"] >= 1
    ready(c)

    def stored_and_read() -> bool:
        c.put("k", 2)  # the first call on a pooled connection of the old server fails
        return c.get("k") == 2

    until(stored_and_read, "the new value is stored and read")
    hits = c.stats()["near_hits"]
    assert c.get("k") == 2 and c.stats()["near_hits"] == hits + 1


def test_a_silent_server_serves_no_near_hits(own_server):
    c = RustLLMCache(
        redis_url=own_server.url, namespace="near-silent", near_cache=True, io_timeout=0.3
    )
    ready(c)
    c.put("k", 1)
    assert c.get("k") == 1 and c.get("k") == 1
    own_server.pause()
    try:
        # Its invalidations could not arrive: once the lease of the last answered PING ran
        # out, the near entry is not served (the read goes to the server, which fails).
        until(lambda: not c._near_ready(), "near hits stop")
        hits = c.stats()["near_hits"]
        assert c.get("k") is None
        assert c.stats()["near_hits"] == hits and c.stats()["errors"] >= 1
    finally:
        own_server.resume()
    until(lambda: c.get("k") == 1, "the server answers again")


def test_a_forked_child_follows_its_own_invalidations(redis_url, redis_client):
    c, k1, _, n1, n2 = two_entries(redis_url, redis_client, "near-fork")
    ready(c)
    assert c.get([k1]) == {k1: "v1"} and c.get([k1]) == {k1: "v1"}
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            # The parent's near entries are not served before the child tracks on its own.
            ready(c)
            assert c.get([k1]) == {k1: "v1"}
            hits = c.stats()["near_hits"]
            assert c.get([k1]) == {k1: "v1"}
            assert c.stats()["near_hits"] == hits + 1
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's invalidation connection was not disturbed by the child.
    assert c.stats()["near_flushes"] == 0
    redis_client.copy(n2, n1, replace=True)
    until(lambda: c.get([k1]) == {k1: "v2"}, "the parent still follows invalidations")
    assert c.stats()["near_flushes"] == 0


def test_a_forked_child_does_not_keep_the_parents_connection(redis_url, redis_client):
    # Without the fork hook the child's copy of the socket kept the connection (and its
    # tracking) open on the server after the parent closed it, for the child's whole life.
    others = set(tracking_client_ids(redis_client))
    c = RustLLMCache(redis_url=redis_url, namespace="near-fork-close", near_cache=True)
    ready(c)
    ours = set(tracking_client_ids(redis_client)) - others
    assert len(ours) == 1
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(w)
        os.read(r, 1)  # lives until the parent has looked
        os._exit(0)
    os.close(r)
    try:
        c.close()
        del c
        until(
            lambda: not ours & set(tracking_client_ids(redis_client)),
            "the server drops the closed tracking connection while the child lives",
        )
    finally:
        os.write(w, b"x")
        os.close(w)
        os.waitpid(pid, 0)


def test_the_near_cache_is_bounded(redis_url):
    c = RustLLMCache(redis_url=redis_url, namespace="near-bound", near_cache=True, local_max_size=3)
    ready(c)
    for i in range(10):
        c.put(i, i)
    for _ in range(2):
        for i in range(10):
            assert c.get(i) == i
    s = c.stats()
    assert s["near_size"] == 3 and s["evictions"] > 0 and s["size"] == 10
    default = RustLLMCache(redis_url=redis_url, namespace="near-bound", near_cache=True)
    assert default.stats()["near_size"] == 0


def test_entries_expire_by_this_processs_clock(redis_url):
    now = [1_000_000.0]
    c = RustLLMCache(
        redis_url=redis_url, namespace="near-ttl", near_cache=True, clock=lambda: now[0]
    )
    ready(c)
    c.put("k", "v", ttl=10)
    assert c.get("k") == "v" and c.get("k") == "v"
    assert c.stats()["near_hits"] == 1
    now[0] += 11
    assert c.get("k") is None


def test_cached_functions_on_the_near_cache(redis_url):
    calls = []

    @cached(redis_url=redis_url, namespace="near-fn", near_cache=True)
    def f(x: int) -> list[int]:
        calls.append(x)
        return [x, x]

    ready(f.cache)
    assert f(1) == [1, 1] and f(1) == [1, 1] and f(1) == [1, 1]
    assert calls == [1]
    assert f.cache_stats()["near_hits"] >= 1
    f.cache_clear()
    assert f(1) == [1, 1] and calls == [1, 1]


def test_a_server_that_refuses_tracking_serves_every_read_itself(redis_url, redis_client):
    redis_client.execute_command(
        "ACL", "SETUSER", "no-client", "on", ">pw", "~*", "+@all", "-client"
    )
    try:
        url = redis_url.replace("redis://", "redis://no-client:pw@")
        c = RustLLMCache(redis_url=url, namespace="near-refused", near_cache=True)
        c.put("k", 1)
        for _ in range(20):
            assert c.get("k") == 1
            time.sleep(0.01)
        s = c.stats()
        assert not c._near_ready() and s["near_hits"] == 0 and s["hits"] == 20
    finally:
        redis_client.execute_command("ACL", "DELUSER", "no-client")


def test_near_cache_needs_a_redis_url(tmp_path):
    with pytest.raises(ValueError, match="near_cache"):
        RustLLMCache(near_cache=True)
    with pytest.raises(ValueError, match="near_cache"):
        FastNodeCache(path=str(tmp_path / "c.db"), near_cache=True)
