"""Hit and miss cost per call of @cached and the caches LangChain and LangGraph users use today,
and the Redis tier against LangGraph's own RedisCache.

Run: .venv/bin/python benches/bench_cache.py [--quick] [--no-redis | --redis-only]

Everything runs side by side in one process, interleaved (each round times every contender in
turn), and figures are medians over the rounds. In-memory figures are nanoseconds per call;
"x lru" is the ratio to functools.lru_cache's hit on the same arguments where there is one
(the first row's otherwise). The Redis rows start a throwaway redis-server on a loopback port
(Debian's redis-server; scripts/install-test-servers.sh installs it).
"""

from __future__ import annotations

import asyncio
import functools
import operator
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from typing import Annotated

from langchain_core.caches import InMemoryCache as LCInMemoryCache
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage
from langgraph.cache.memory import InMemoryCache as LGInMemoryCache
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy
from typing_extensions import TypedDict

from fast_langgraph import FastLLMCache, FastNodeCache, cached

QUICK = "--quick" in sys.argv
REPEAT = 5 if QUICK else 9


def per_call(stmt: str, number: int, **names) -> float:
    """Nanoseconds per call of `stmt` (source text, so no lambda adds to it), median of REPEAT."""
    return (
        statistics.median(timeit.repeat(stmt, number=number, repeat=REPEAT, globals=names))
        / number
        * 1e9
    )


def interleaved_ns(stmts: dict[str, str], number: int, names: dict) -> dict[str, float]:
    """Median nanoseconds per call of each statement, the statements timed in turn each round."""
    samples: dict[str, list[float]] = {k: [] for k in stmts}
    for stmt in stmts.values():
        timeit.timeit(stmt, number=max(1, number // 10), globals=names)  # warm-up
    for _ in range(REPEAT):
        for label, stmt in stmts.items():
            samples[label].append(timeit.timeit(stmt, number=number, globals=names) / number * 1e9)
    return {k: statistics.median(v) for k, v in samples.items()}


def miss_cost(make, args_list) -> float:
    """Nanoseconds per call when every call misses (fresh argument each time)."""
    best = float("inf")
    for _ in range(REPEAT):
        f = make()
        it = iter(args_list)
        n = len(args_list)
        t = timeit.timeit(lambda f=f, it=it: f(next(it)), number=n)
        best = min(best, t / n * 1e9)
    return best


def ident(x):
    return x


def main() -> None:
    if "--redis-only" in sys.argv:
        redis_main()
        return
    rows: list[tuple[str, float]] = []
    n = 200_000 if QUICK else 1_000_000

    # --- hashable argument, hit ---
    lru = functools.lru_cache(maxsize=1024)(ident)
    memo: dict = {}

    def dict_memo(x):
        try:
            return memo[x]
        except KeyError:
            memo[x] = v = ident(x)
            return v

    ours = cached(max_size=1024)(ident)
    ours_ttl = cached(max_size=1024, ttl=3600)(ident)
    for f in (lru, dict_memo, ours, ours_ttl):
        f("what is the capital of France?")
    q = "what is the capital of France?"
    names = dict(locals())
    hits = interleaved_ns(
        {
            "hit, hashable str: functools.lru_cache": "lru(q)",
            "hit, hashable str: dict memo": "dict_memo(q)",
            "hit, hashable str: @cached": "ours(q)",
            "hit, hashable str: @cached(ttl=3600)": "ours_ttl(q)",
        },
        n,
        names,
    )
    rows.extend(hits.items())
    base = hits["hit, hashable str: functools.lru_cache"]

    # The case: a string plus three keyword arguments.
    def ask(q, *, model="gpt-4o-mini", temperature=0.0, top_p=1.0):
        return q

    lru_kw = functools.lru_cache(maxsize=1024)(ask)
    ours_kw = cached(max_size=1024)(ask)
    call = 'f(q, model="gpt-4o-mini", temperature=0.5, top_p=0.9)'
    for f in (lru_kw, ours_kw):
        f(q, model="gpt-4o-mini", temperature=0.5, top_p=0.9)
    kw = interleaved_ns(
        {
            "hit, str + 3 kwargs: functools.lru_cache": call.replace("f(", "lru_kw(", 1),
            "hit, str + 3 kwargs: @cached": call.replace("f(", "ours_kw(", 1),
            "call, str + 3 kwargs: uncached function": call.replace("f(", "ask(", 1),
        },
        n,
        dict(locals()),
    )
    rows.extend(kw.items())
    kw_ratio = kw["hit, str + 3 kwargs: @cached"] / kw["hit, str + 3 kwargs: functools.lru_cache"]

    lru3 = functools.lru_cache(maxsize=1024)(lambda a, b, c: a)
    ours3 = cached(max_size=1024)(lambda a, b, c: a)
    lru3(1, "gpt", 0.5)
    ours3(1, "gpt", 0.5)
    three = interleaved_ns(
        {
            "hit, 3 hashable args: functools.lru_cache": 'lru3(1, "gpt", 0.5)',
            "hit, 3 hashable args: @cached": 'ours3(1, "gpt", 0.5)',
        },
        n,
        dict(locals()),
    )
    rows.extend(three.items())

    # --- unhashable arguments, hit ---
    msgs = [HumanMessage("what is the capital of France?")]
    plain = [{"role": "user", "content": "what is the capital of France?"}]
    ours_msgs = cached(max_size=1024)(lambda m: "Paris")
    ours_msgs(msgs)
    ours_msgs(plain)
    m = n // 20
    rows.append(("hit, list of dicts: @cached", per_call("ours_msgs(plain)", m, **locals())))
    rows.append(("hit, list of HumanMessage: @cached", per_call("ours_msgs(msgs)", m, **locals())))
    # lru_cache cannot take them; the usual workaround keys on repr().
    lru_repr = functools.lru_cache(maxsize=1024)(lambda r: "Paris")
    lru_repr(repr(plain))
    rows.append(
        (
            "hit, list of dicts: lru_cache on repr()",
            per_call("lru_repr(repr(plain))", m, **locals()),
        )
    )

    # --- misses ---
    keys = [f"question {i}" for i in range(50_000 if QUICK else 200_000)]
    rows.append(
        (
            "miss, hashable str: functools.lru_cache",
            miss_cost(lambda: functools.lru_cache(maxsize=1024)(ident), keys),
        )
    )
    rows.append(
        ("miss, hashable str: @cached", miss_cost(lambda: cached(max_size=1024)(ident), keys))
    )

    # --- LangChain chat model: no cache vs InMemoryCache vs FastLLMCache ---
    k = 2_000 if QUICK else 10_000
    for label, cache in (
        ("LangChain InMemoryCache", LCInMemoryCache()),
        ("FastLLMCache", FastLLMCache()),
    ):
        model = FakeListChatModel(responses=["Paris"], cache=cache)
        model.invoke("capital of France?")
        rows.append(
            (
                f"chat model hit: {label}",
                per_call('model.invoke("capital of France?")', k, **locals()),
            )
        )

    # --- LangGraph cached node ---
    class S(TypedDict):
        text: str
        log: Annotated[list[str], operator.add]

    def node(state: S) -> dict:
        return {"text": state["text"] + "!"}

    for label, cache in (
        ("LangGraph InMemoryCache", LGInMemoryCache()),
        ("FastNodeCache", FastNodeCache()),
    ):
        b = StateGraph(S)
        b.add_node("n", node, cache_policy=CachePolicy())
        b.add_edge(START, "n")
        b.add_edge("n", END)
        g = b.compile(cache=cache)
        g.invoke({"text": "q", "log": []})
        rows.append(
            (
                f"graph with cached node, hit: {label}",
                per_call('g.invoke({"text": "q", "log": []})', k // 5, **locals()),
            )
        )

    # --- 2 threads, hit path ---
    def two_threads(f, arg, calls):
        def work():
            for _ in range(calls):
                f(arg)

        best = float("inf")
        for _ in range(REPEAT):
            ts = [threading.Thread(target=work) for _ in range(2)]
            t0 = timeit.default_timer()
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            best = min(best, (timeit.default_timer() - t0) / (2 * calls) * 1e9)
        return best

    tn = n // 4
    rows.append(("2 threads, hit, hashable: functools.lru_cache", two_threads(lru, q, tn)))
    rows.append(("2 threads, hit, hashable: @cached", two_threads(ours, q, tn)))
    rows.append(("2 threads, hit, list of dicts: @cached", two_threads(ours_msgs, plain, tn // 20)))

    print(f"Python {sys.version.split()[0]}, {'quick' if QUICK else 'full'} run")
    print(f"{'case':<55} {'ns/call':>10} {'x lru':>7}")
    for label, ns in rows:
        print(f"{label:<55} {ns:>10.0f} {ns / base:>7.2f}")
    hit = dict(rows)["hit, hashable str: @cached"]
    print(f"\n@cached hit / lru_cache hit, one str = {hit / base:.2f}")
    print(f"@cached hit / lru_cache hit, str + 3 kwargs = {kw_ratio:.2f} (target <= 2)")

    if "--no-redis" not in sys.argv:
        redis_main()


# ---- Redis ----


def start_redis() -> tuple[str, subprocess.Popen, str]:
    """A throwaway redis-server on a free loopback port, no persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: bash scripts/install-test-servers.sh (or --no-redis)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="flg-bench-redis-")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", workdir, "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0", proc, workdir


WRITES = [("text", "an answer of a few words " * 8), ("log", ["node"])]
NS = ("node", "bench_cache:node")


def make_cache(kind: str, url: str):
    import redis
    from langgraph.cache.redis import RedisCache

    if kind == "LangGraph RedisCache":
        return RedisCache(redis.Redis.from_url(url))
    if kind == "FastNodeCache(redis_url)":
        return FastNodeCache(redis_url=url)
    if kind == "FastNodeCache(redis_url, local_max_size)":
        return FastNodeCache(redis_url=url, local_max_size=4096)
    if kind == "FastNodeCache(redis_url, near_cache)":
        return FastNodeCache(redis_url=url, near_cache=True)
    raise ValueError(kind)


def near_ready(cache) -> None:
    """Waits until a near cache follows the server's invalidations (hits come from memory)."""
    inner = getattr(cache, "cache", cache)
    if getattr(inner, "near_cache", False):
        deadline = time.monotonic() + 10
        while not inner._near_ready() and time.monotonic() < deadline:
            time.sleep(0.01)


KINDS = [
    "LangGraph RedisCache",
    "FastNodeCache(redis_url)",
    "FastNodeCache(redis_url, local_max_size)",
    "FastNodeCache(redis_url, near_cache)",
]


def node_graph(cache):
    class S(TypedDict):
        text: str
        log: Annotated[list[str], operator.add]

    def node(state: S) -> dict:
        return {"text": state["text"] + "!", "log": ["node"]}

    b = StateGraph(S)
    b.add_node("n", node, cache_policy=CachePolicy(ttl=3600))
    b.add_edge(START, "n")
    b.add_edge("n", END)
    return b.compile(cache=cache)


def interleaved_us(contenders: dict, reps: int) -> dict[str, float]:
    """Median microseconds per call of each zero-argument callable, timed in turn each round."""
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for fn in contenders.values():
        fn()
    for _ in range(REPEAT):
        for label, fn in contenders.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            samples[label].append((time.perf_counter() - t0) / reps * 1e6)
    return {k: statistics.median(v) for k, v in samples.items()}


def interleaved_async_us(contenders: dict, reps: int) -> dict[str, float]:
    """The same for coroutine functions, awaited one after another on one event loop."""
    samples: dict[str, list[float]] = {k: [] for k in contenders}

    async def run() -> None:
        for fn in contenders.values():
            await fn()
        for _ in range(REPEAT):
            for label, fn in contenders.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    await fn()
                samples[label].append((time.perf_counter() - t0) / reps * 1e6)

    asyncio.run(run())
    return {k: statistics.median(v) for k, v in samples.items()}


def hot_worker(kind: str, url: str, threads: int, seconds: float, go, out) -> None:
    """One process of the hot-key run: `threads` threads reading 100 hot keys for `seconds`."""
    keys = [(NS, f"hot{i}") for i in range(100)]
    if kind.startswith("@cached"):
        f = cached(redis_url=url, near_cache="near_cache" in kind)(hot_function)
        call = lambda i: f(i % 100)  # noqa: E731
        f(0)
        near_ready(f.cache)
    else:
        cache = make_cache(kind, url)
        call = lambda i: cache.get([keys[i % 100]])  # noqa: E731
        call(0)
        near_ready(cache)
    counts = [0] * threads

    def work(t: int) -> None:
        i = t
        go.wait()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(20):
                call(i)
                i += 1
            counts[t] += 20

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(sum(counts))


def hot_function(i: int) -> list:
    return WRITES


def flight_worker(url: str, threads: int, go, out) -> None:
    """One process of the single-flight run: `threads` threads missing on one key at once."""
    import redis

    client = redis.Redis.from_url(url)

    @cached(redis_url=url, namespace="flight")
    def slow_llm_call(q: str) -> str:
        client.incr("flight:calls")
        time.sleep(0.5)
        return f"answer to {q}"

    go.wait()
    ts = [threading.Thread(target=slow_llm_call, args=("same question",)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(slow_llm_call.cache_info().hits)


def redis_main() -> None:
    import multiprocessing as mp

    import redis

    url, proc, workdir = start_redis()
    try:
        client = redis.Redis.from_url(url)
        caches = {k: make_cache(k, url) for k in KINDS}
        for c in caches.values():
            c.get([(NS, "warm")])
            near_ready(c)
        reps = 300 if QUICK else 1000
        print(
            f"\nRedis {client.info()['redis_version']} on 127.0.0.1, redis-py {redis.__version__}"
        )

        # Cache-level hits and misses (the node cache interface LangGraph calls).
        key = (NS, "k")
        for c in caches.values():
            c.set({key: (WRITES, None)})
        hits = interleaved_us({k: (lambda c=c: c.get([key])) for k, c in caches.items()}, reps)
        ahits = interleaved_async_us(
            {k: (lambda c=c: c.aget([key])) for k, c in caches.items()}, reps
        )
        counter = iter(range(10**9))

        def miss(c):
            k = (NS, f"miss{next(counter)}")
            c.get([k])
            c.set({k: (WRITES, 3600)})

        async def amiss(c):
            k = (NS, f"miss{next(counter)}")
            await c.aget([k])
            await c.aset({k: (WRITES, 3600)})

        misses = interleaved_us({k: (lambda c=c: miss(c)) for k, c in caches.items()}, reps // 2)
        amisses = interleaved_async_us(
            {k: (lambda c=c: amiss(c)) for k, c in caches.items()}, reps // 2
        )

        # A one-node graph whose node is cached: invoke and ainvoke on a hit.
        graphs = {k: node_graph(c) for k, c in caches.items()}
        ghits = interleaved_us(
            {k: (lambda g=g: g.invoke({"text": "q", "log": []})) for k, g in graphs.items()},
            reps // 5,
        )
        aghits = interleaved_async_us(
            {k: (lambda g=g: g.ainvoke({"text": "q", "log": []})) for k, g in graphs.items()},
            reps // 5,
        )
        base = "LangGraph RedisCache"
        for title, res in (
            ("node cache get, hit (sync)", hits),
            ("node cache aget, hit (async)", ahits),
            ("node cache get + set, miss (sync)", misses),
            ("node cache aget + aset, miss (async)", amisses),
            ("graph.invoke, cached node hit", ghits),
            ("graph.ainvoke, cached node hit", aghits),
        ):
            print(f"\n{title}")
            print(f"  {'contender':<44} {'us/call':>9} {'speed-up':>9}")
            for k, us in res.items():
                print(f"  {k:<44} {us:>9.1f} {res[base] / us:>8.2f}x")

        # @cached on Redis, no comparator in LangGraph.
        fc = cached(redis_url=url)(hot_function)
        fl = cached(redis_url=url, local_max_size=1024)(hot_function)
        fn = cached(redis_url=url, near_cache=True)(hot_function)

        @cached(redis_url=url)
        async def afc(i: int) -> list:
            return WRITES

        @cached(redis_url=url, near_cache=True)
        async def afn(i: int) -> list:
            return WRITES

        fc(1), fl(1), fn(1)
        near_ready(fn.cache)
        own = interleaved_us(
            {
                "@cached(redis_url) hit": lambda: fc(1),
                "@cached(redis_url, local_max_size) hit": lambda: fl(1),
                "@cached(redis_url, near_cache) hit": lambda: fn(1),
            },
            reps,
        )
        aown = interleaved_async_us(
            {
                "@cached(redis_url) async hit": lambda: afc(1),
                "@cached(redis_url, near_cache) async hit": lambda: afn(1),
            },
            reps,
        )
        print()
        for k, us in {**own, **aown}.items():
            print(f"  {k:<44} {us:>9.1f} us/call")

        # 4 processes x 8 threads on a hot key set.
        ctx = mp.get_context("spawn")
        seconds = 1.0 if QUICK else 2.0
        for c in caches.values():
            c.set({(NS, f"hot{i}"): (WRITES, None) for i in range(100)})
        for i in range(100):
            fc(i)
        rates: dict[str, list[float]] = {}
        for _ in range(1 if QUICK else 3):
            for kind in [*KINDS, "@cached(redis_url)", "@cached(redis_url, near_cache)"]:
                go, out = ctx.Event(), ctx.Queue()
                ps = [
                    ctx.Process(target=hot_worker, args=(kind, url, 8, seconds, go, out))
                    for _ in range(4)
                ]
                for p in ps:
                    p.start()
                time.sleep(3.0)  # imports
                go.set()
                total = sum(out.get(timeout=120) for _ in ps)
                for p in ps:
                    p.join()
                rates.setdefault(kind, []).append(total / seconds)
        print("\n4 processes x 8 threads, 100 hot keys")
        print(f"  {'contender':<44} {'hits/s':>9} {'vs LangGraph':>12}")
        lg = statistics.median(rates[base])
        for k, r in rates.items():
            print(f"  {k:<44} {statistics.median(r):>9.0f} {statistics.median(r) / lg:>11.2f}x")

        # 100 concurrent misses on one key across 4 processes.
        client.delete("flight:calls")
        go, out = ctx.Event(), ctx.Queue()
        ps = [ctx.Process(target=flight_worker, args=(url, 25, go, out)) for _ in range(4)]
        for p in ps:
            p.start()
        time.sleep(3.0)
        go.set()
        hits_total = sum(out.get(timeout=120) for _ in ps)
        for p in ps:
            p.join()
        calls = int(client.get("flight:calls") or 0)
        print(
            f"\n100 concurrent misses on one key, 4 processes x 25 threads: {calls} call(s) of the "
            f"function (must be 1), {hits_total} callers served as hits"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
