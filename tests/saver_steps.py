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


def read_all(saver: Any, thread: str) -> list[dict[str, Any]]:
    """The channel values of every checkpoint of ``thread``, newest first."""
    return [t.checkpoint["channel_values"] for t in saver.list(cfg(thread))]


class Opaque:
    """A value msgpack cannot write: the serializer pickles it (``pickle_fallback``)."""

    def __eq__(self, other: object) -> bool:
        return type(other) is Opaque


def pickled_checkpoint() -> tuple[Any, dict[str, str]]:
    """A checkpoint with a small value to keep inside and a field only pickle writes (so its
    row is stored as pickle), with its channel versions."""
    versions = {"docs": "1", "n": "1"}
    cp = empty_checkpoint()
    cp["channel_values"] = {"docs": SMALL, "n": 0}
    cp["channel_versions"] = dict(versions)
    cp["versions_seen"] = {"node": {"odd": Opaque()}}  # type: ignore[dict-item]
    return cp, versions


def continue_pickled(other: Any, first: str, versions: dict[str, str]) -> None:
    """Reads the pickled checkpoint ``first`` with ``other`` (a saver that did not write it)
    and continues the thread: the read knows the small value is inside (without its bytes),
    and the next checkpoint carries it."""
    got = other.get_tuple(cfg("t"))
    assert got is not None and got.checkpoint["channel_values"] == {"docs": SMALL, "n": 0}
    held = other._placed.get(("t", ""))
    assert held is not None and held["docs"] == ("1", True, None)
    bumped = {**versions, "n": "2"}
    second = step(other, "t", first, {"docs": SMALL, "n": 1}, bumped, ["n"])
    assert values_at(other, "t", second) == {"docs": SMALL, "n": 1}
