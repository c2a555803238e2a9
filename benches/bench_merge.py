"""LangGraph's add_messages vs fast_langgraph.add_messages, and langgraph_state_update vs the
plain-Python equivalent. Interleaved rounds, medians of per-call times (the machine is noisy).

    .venv/bin/python benches/bench_merge.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import timeit
import uuid

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph.message import add_messages as lg_add_messages

from fast_langgraph import add_messages, langgraph_state_update


def history(n: int) -> list:
    return [
        (HumanMessage if i % 2 else AIMessage)(content=f"message {i}", id=str(uuid.uuid4()))
        for i in range(n)
    ]


def new_messages(k: int) -> list:
    return [AIMessage(content=f"new {j}", id=str(uuid.uuid4())) for j in range(k)]


def py_state_update(state, update, append_keys=()):
    out = {**state, **update}
    for k in append_keys:
        if k in update and k in state:
            out[k] = state[k] + update[k]
    return out


def per_call(fn, number: int) -> float:
    return timeit.timeit(fn, number=number) / number


def compare(cases, rounds: int):
    """cases: name -> (baseline fn, ours fn, calls per round). Returns name -> (base, ours) medians."""
    samples = {name: ([], []) for name in cases}
    for r in range(rounds):
        for name, (base, ours, number) in cases.items():
            pair = [(0, base), (1, ours)] if r % 2 == 0 else [(1, ours), (0, base)]
            for idx, fn in pair:
                samples[name][idx].append(per_call(fn, number))
    return {name: (statistics.median(b), statistics.median(o)) for name, (b, o) in samples.items()}


def fmt_us(s: float) -> str:
    return f"{s * 1e6:9.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()

    cases = {}
    for n in (10, 100, 1000, 5000):
        hist = history(n)
        for k in (1, 10):
            new = new_messages(k)
            number = max(20, 20000 // (n + 10))
            cases[f"add_messages n={n:<5} +{k:<2}"] = (
                lambda h=hist, m=new: lg_add_messages(h, m),
                lambda h=hist, m=new: add_messages(h, m),
                number,
            )
    # Appending messages without ids (ids generated, as for user input and tool results).
    for n in (10, 1000):
        hist = history(n)
        cases[f"add_messages n={n:<5} +1 no id"] = (
            lambda h=hist: lg_add_messages(h, [HumanMessage("hi")]),
            lambda h=hist: add_messages(h, [HumanMessage("hi")]),
            max(20, 20000 // (n + 10)),
        )

    small = {"messages": history(3), "count": 1, "user": "x", "flag": True}
    large = {f"key{i}": i for i in range(200)} | {
        "messages": history(1000),
        "docs": list(range(1000)),
    }
    for label, state in (("small", small), ("large", large)):
        upd_plain = {"count": 2, "user": "y"}
        upd_append = {"messages": new_messages(1), "count": 2}
        cases[f"state_update {label:<5} replace"] = (
            lambda s=state, u=upd_plain: py_state_update(s, u),
            lambda s=state, u=upd_plain: langgraph_state_update(s, u),
            2000,
        )
        cases[f"state_update {label:<5} append"] = (
            lambda s=state, u=upd_append: py_state_update(s, u, ("messages",)),
            lambda s=state, u=upd_append: langgraph_state_update(s, u, ("messages",)),
            2000,
        )

    results = compare(cases, args.rounds)
    print(f"{'case':<34}{'baseline µs':>12}{'ours µs':>10}{'speed-up':>10}")
    for name, (base, ours) in results.items():
        print(f"{name:<34}{fmt_us(base):>12}{fmt_us(ours):>10}{base / ours:>9.2f}x")


if __name__ == "__main__":
    main()
