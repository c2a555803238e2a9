"""RustSerializer against LangGraph's JsonPlusSerializer: dumps_typed and loads_typed.

Same process, interleaved rounds, medians (benches/_common.py). Three values:

- history: a 1,000-message chat (human, AI with usage metadata and ids, every tenth AI message
  with a tool call and its ToolMessage reply), about 300 KB packed, as a state's
  ``messages`` channel holds it;
- 1 KB state: a mixed channel-values dict (a few messages, strings, numbers, a list, a nested
  dict, a UUID and a datetime), about 1 KB packed;
- 35 KB state: a dict of 112 messages plus the same mixed fields, about 35 KB packed.

Before timing, each value's bytes are checked to be identical between the two serializers.

With ``--graph``, also the 8-node graph of bench_checkpoint.py end to end (invocations per
second over 20 threads) on stock InMemorySaver and SqliteSaver, unpatched against built while
``install_default_serde()`` is in place (the only difference: their default serializer).

Run: .venv/bin/python benches/bench_serde.py [--rounds N] [--graph]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, table

from fast_langgraph.serde import RustSerializer, install_default_serde, uninstall_default_serde

TEXT = "The quick brown fox jumps over the lazy dog, step by step. "


def _id(i: int) -> str:
    return str(uuid.UUID(int=i * 7919 + 1))


def history(n: int) -> list:
    out: list = []
    i = 0
    while len(out) < n:
        out.append(HumanMessage(content=f"question {i}: {TEXT}", id=_id(len(out))))
        if i % 10 == 9:
            call_id = f"call_{i}"
            out.append(
                AIMessage(
                    content="",
                    id=_id(len(out)),
                    tool_calls=[{"name": "search", "args": {"query": f"q{i}"}, "id": call_id}],
                    response_metadata={"model_name": "gpt-4o", "finish_reason": "tool_calls"},
                    usage_metadata={
                        "input_tokens": 100 + i,
                        "output_tokens": 20,
                        "total_tokens": 120 + i,
                    },
                )
            )
            out.append(
                ToolMessage(content=f"result {i}: {TEXT}", tool_call_id=call_id, id=_id(len(out)))
            )
        out.append(
            AIMessage(
                content=f"answer {i}: {TEXT}",
                id=_id(len(out)),
                response_metadata={"model_name": "gpt-4o", "finish_reason": "stop"},
                usage_metadata={
                    "input_tokens": 200 + i,
                    "output_tokens": 50,
                    "total_tokens": 250 + i,
                },
            )
        )
        i += 1
    return out[:n]


def mixed(n_messages: int) -> dict:
    return {
        "messages": history(n_messages),
        "user": {"name": "Ada", "id": 42, "roles": ["admin", "dev"], "score": 0.97},
        "step": 7,
        "query": "how are checkpoints stored?",
        "docs": [f"doc-{k}" for k in range(8)],
        "run_id": uuid.UUID(int=12345),
        "started": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "flags": {"verbose": True, "retries": 3, "threshold": None},
    }


def bench_graph(rounds: int, threads: int = 20, per_thread: int = 10) -> None:
    from bench_checkpoint import build_graph, converse
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    tmp = tempfile.mkdtemp()

    def sqlite(tag: str) -> SqliteSaver:
        saver = SqliteSaver(sqlite3.connect(f"{tmp}/{tag}.db", check_same_thread=False))
        saver.setup()
        return saver

    savers: dict[str, Any] = {"InMemorySaver": InMemorySaver(), "SqliteSaver": sqlite("stock")}
    install_default_serde()
    try:
        savers["InMemorySaver + serde patch"] = InMemorySaver()
        savers["SqliteSaver + serde patch"] = sqlite("patched")
    finally:
        uninstall_default_serde()
    assert isinstance(savers["SqliteSaver + serde patch"].serde, RustSerializer)
    graphs = {name: build_graph(saver) for name, saver in savers.items()}

    def run(name: str) -> float:
        return converse(graphs[name], threads, per_thread, threads)[0]

    for name in graphs:
        run(name)
    samples: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(rounds):
        for name in graphs:
            samples[name].append(run(name))
    res = {name: statistics.median(v) for name, v in samples.items()}
    print(f"\nend to end: 8-node graph, {threads * per_thread} invocations over {threads} threads")
    print(f"  {'contender':<34} {'invokes/s':>12} {'vs unpatched':>14}")
    for name, v in res.items():
        base = res[name.replace(" + serde patch", "")]
        print(f"  {name:<34} {v:>12.1f} {v / base:>13.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--graph", action="store_true", help="also the 8-node graph end to end")
    args = parser.parse_args()
    stock, rust = JsonPlusSerializer(), RustSerializer()
    cases = {
        "1,000-message history": (history(1000), 2),
        "1 KB state": (mixed(2), 400),
        "35 KB state": (mixed(112), 20),
    }
    for label, (value, reps) in cases.items():
        typed = stock.dumps_typed(value)
        assert rust.dumps_typed(value) == typed, f"{label}: bytes differ"
        assert rust.loads_typed(typed) == stock.loads_typed(typed), f"{label}: values differ"
        size = len(typed[1])
        dumps = interleaved(
            {
                "JsonPlusSerializer": lambda v=value: stock.dumps_typed(v),
                "RustSerializer": lambda v=value: rust.dumps_typed(v),
            },
            rounds=args.rounds,
            reps=reps,
        )
        print(table(f"dumps_typed, {label} ({size:,} bytes)", dumps, baseline="JsonPlusSerializer"))
        loads = interleaved(
            {
                "JsonPlusSerializer": lambda t=typed: stock.loads_typed(t),
                "RustSerializer": lambda t=typed: rust.loads_typed(t),
            },
            rounds=args.rounds,
            reps=reps,
        )
        print(table(f"loads_typed, {label} ({size:,} bytes)", loads, baseline="JsonPlusSerializer"))
    if args.graph:
        bench_graph(max(3, args.rounds // 3))


if __name__ == "__main__":
    main()
