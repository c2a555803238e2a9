"""Direct puts and reads of one thread's checkpoints, for the tests of what a saver keeps
inside its checkpoint rows (tests/test_inline_values.py for SQLite,
tests/test_postgres_inline_values.py for PostgreSQL): any saver of ours takes them."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint

# A value small enough to travel inside its checkpoint, and one too large to.
SMALL = [HumanMessage("short question", id="s1"), AIMessage("short answer", id="s2")]
LARGE = [HumanMessage("x" * 3000, id="l1")]


def cfg(thread: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def values_at(saver: Any, thread: str, checkpoint_id: str) -> dict[str, Any]:
    got = saver.get_tuple(cfg(thread, checkpoint_id))
    assert got is not None
    return got.checkpoint["channel_values"]


def step(saver: Any, thread: str, parent: str | None, values: dict, versions: dict, changed) -> str:
    """Puts a checkpoint of ``values`` at ``versions`` after ``parent``, the channels of
    ``changed`` new; returns its id."""
    cp = empty_checkpoint()
    cp["channel_values"] = dict(values)
    cp["channel_versions"] = dict(versions)
    return saver.put(cfg(thread, parent), cp, {"step": 1}, {k: versions[k] for k in changed})[
        "configurable"
    ]["checkpoint_id"]
