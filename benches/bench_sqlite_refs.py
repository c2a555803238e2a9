"""A put that changes only a counter and refers to an unchanged value stored apart (a 5 KB
string, a blob): RustSQLiteCheckpointer against stock SqliteSaver, side by side in one process
(bench_checkpoint.py's contenders, each on its own file). Interleaved rounds of batches of 20
puts continuing one thread each; the median per put. Such a put looks the blob up by its key
in its write transaction (retention by another saver on the file may have deleted it since).

Run: `.venv/bin/python benches/bench_sqlite_refs.py [--rounds N]`. The fast_langgraph measured
is the interpreter's: run it with another checkout's `.venv/bin/python` to measure that build.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint

sys.path.insert(0, os.path.dirname(__file__))
import bench_checkpoint as b
from _common import interleaved

BIG = "large value " * 450  # ~5 KB: stored apart, as a blob


def refs_step(saver: Any) -> Callable[[], None]:
    """A step: the next checkpoint of one thread, changing only the counter ``n`` and leaving
    ``doc`` (5 KB) unchanged. The thread's first checkpoint is stored here."""
    thread = str(uuid.uuid4())
    cp = empty_checkpoint()
    v = saver.get_next_version(None, None)
    cp["channel_values"] = {"doc": BIG, "n": 0}
    cp["channel_versions"] = {"doc": v, "n": v}
    config = saver.put(
        {"configurable": {"thread_id": thread, "checkpoint_ns": ""}},
        cp,
        {"source": "loop", "step": 0},
        dict(cp["channel_versions"]),
    )
    state = {"config": config, "prev": cp, "i": 0}

    def step() -> None:
        prev = state["prev"]
        state["i"] += 1
        c = empty_checkpoint()
        n = saver.get_next_version(prev["channel_versions"]["n"], None)
        c["channel_values"] = {"doc": BIG, "n": state["i"]}
        c["channel_versions"] = {"doc": prev["channel_versions"]["doc"], "n": n}
        state["config"] = saver.put(state["config"], c, {"source": "loop", "step": 1}, {"n": n})
        state["prev"] = c

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    savers = b.make_savers(tempfile.mkdtemp(), "refs")
    names = ["RustSQLiteCheckpointer", b.EQUAL, b.DEFAULT]
    steps = {name: refs_step(savers[name]) for name in names}
    got = interleaved(steps, rounds=args.rounds, reps=args.reps)
    for name in names:
        saver = savers[name]
        tup = saver.get_tuple({"configurable": {"thread_id": _thread(saver), "checkpoint_ns": ""}})
        assert tup is not None and tup.checkpoint["channel_values"]["doc"] == BIG, name
    print(f"load {os.getloadavg()[0]:.2f}")
    print(b.table("put referring to an unchanged 5 KB blob, per put", got))


def _thread(saver: Any) -> str:
    """The thread of the saver's newest checkpoint (each saver has one thread)."""
    return next(iter(saver.list(None, limit=1))).config["configurable"]["thread_id"]


if __name__ == "__main__":
    main()
