"""Hit and miss cost per call of @cached and the caches LangChain and LangGraph users use today.

Run: .venv/bin/python benches/bench_cache.py [--quick]

Everything runs side by side in one process. Figures are nanoseconds per call (the best of
several repeats); "x lru" is the ratio to functools.lru_cache's hit in the same run.
"""

from __future__ import annotations

import functools
import operator
import sys
import threading
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
REPEAT = 3 if QUICK else 7


def per_call(stmt: str, number: int, **names) -> float:
    """Nanoseconds per call of `stmt` (source text, so no lambda adds to it), best of REPEAT."""
    return min(timeit.repeat(stmt, number=number, repeat=REPEAT, globals=names)) / number * 1e9


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
    base = per_call("lru(q)", n, **locals())
    rows.append(("hit, hashable str: functools.lru_cache", base))
    rows.append(("hit, hashable str: dict memo", per_call("dict_memo(q)", n, **locals())))
    rows.append(("hit, hashable str: @cached", per_call("ours(q)", n, **locals())))
    rows.append(("hit, hashable str: @cached(ttl=3600)", per_call("ours_ttl(q)", n, **locals())))
    lru3 = functools.lru_cache(maxsize=1024)(lambda a, b, c: a)
    ours3 = cached(max_size=1024)(lambda a, b, c: a)
    lru3(1, "gpt", 0.5)
    ours3(1, "gpt", 0.5)
    rows.append(
        (
            "hit, 3 hashable args: functools.lru_cache",
            per_call('lru3(1, "gpt", 0.5)', n, **locals()),
        )
    )
    rows.append(("hit, 3 hashable args: @cached", per_call('ours3(1, "gpt", 0.5)', n, **locals())))

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
    print(f"\n@cached hit / lru_cache hit = {hit / base:.2f} (target <= 3)")


if __name__ == "__main__":
    main()
