"""RustSerializer against LangGraph's JsonPlusSerializer: dumps_typed and loads_typed.

Same process, interleaved rounds, medians (benches/_common.py). Three values:

- history: a 1,000-message chat (human, AI with usage metadata and ids, every tenth AI message
  with a tool call and its ToolMessage reply), about 300 KB packed, as a state's
  ``messages`` channel holds it;
- 1 KB state: a mixed channel-values dict (a few messages, strings, numbers, a list, a nested
  dict, a UUID and a datetime), about 1 KB packed;
- 35 KB state: a dict of 112 messages plus the same mixed fields, about 35 KB packed.

Before timing, each value's bytes are checked to be identical between the two serializers.

Run: .venv/bin/python benches/bench_serde.py [--rounds N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import uuid
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, table

from fast_langgraph.serde import RustSerializer

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
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


if __name__ == "__main__":
    main()
