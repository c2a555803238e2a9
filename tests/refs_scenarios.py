"""The steps shared by the tests of a put that refers to a blob another saver's retention
deleted, on either backend (tests/test_sqlite_refs.py, tests/test_postgres_refs.py): a
checkpoint with a large value stored apart, the next one changing only a counter, and a
`DeltaChannel` snapshot left unchanged by a saver that never saw the thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import cfg
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.types import _DeltaSnapshot

BIG = "large value " * 450  # ~5 KB: stored apart, as a blob
META = {"source": "loop", "step": 0}
SNAP = _DeltaSnapshot(["first message", "second message"])


def first_put(saver, thread: str, metadata: dict[str, Any] = META):
    """Puts a checkpoint with a large value and a counter; returns it and its config."""
    cp = empty_checkpoint()
    v = saver.get_next_version(None, None)
    cp["channel_values"] = {"doc": BIG, "n": 0}
    cp["channel_versions"] = {"doc": v, "n": v}
    return cp, saver.put(cfg(thread), cp, metadata, dict(cp["channel_versions"]))


def next_put(saver, prev, config):
    """Puts the checkpoint after ``prev``, which changes only the counter."""
    cp = empty_checkpoint()
    n = saver.get_next_version(prev["channel_versions"]["n"], None)
    cp["channel_values"] = {"doc": BIG, "n": 1}
    cp["channel_versions"] = {"doc": prev["channel_versions"]["doc"], "n": n}
    return saver.put(config, cp, {**META, "step": 1}, {"n": n})


def reads_back_whole(saver, thread: str, config) -> None:
    got = saver.get_tuple(cfg(thread))
    assert got is not None
    assert got.config["configurable"]["checkpoint_id"] == config["configurable"]["checkpoint_id"]
    assert got.checkpoint["channel_values"] == {"doc": BIG, "n": 1}


def unchanged_snapshot_after_a_delete(
    saver, replica, reader, delete: Callable[[], None], metadata: dict[str, Any] = META
) -> None:
    """``saver`` puts a checkpoint of thread "t" with a snapshot; ``delete()`` deletes the
    thread's blobs (another saver's retention); ``replica``, which neither wrote nor read the
    thread, puts the next checkpoint leaving the snapshot unchanged, then one after a write
    that appends to it. Both it and ``reader`` read the snapshot back, and its history."""
    cp = empty_checkpoint()
    v1 = saver.get_next_version(None, None)
    cp["channel_values"] = {"messages": SNAP, "n": 0}
    cp["channel_versions"] = {"messages": v1, "n": v1}
    first = saver.put(cfg("t"), cp, metadata, dict(cp["channel_versions"]))
    delete()
    nxt = empty_checkpoint()
    v2 = replica.get_next_version(v1, None)
    nxt["channel_values"] = {"messages": _DeltaSnapshot(list(SNAP.value)), "n": 1}
    nxt["channel_versions"] = {"messages": v1, "n": v2}
    config = replica.put(first, nxt, {**META, "step": 1}, {"n": v2})
    for s in (replica, reader):
        got = s.get_tuple(config)
        assert got is not None
        assert got.checkpoint["channel_values"] == {"messages": SNAP, "n": 1}
    # The next step appends a message: a write, and a checkpoint without the channel's value,
    # which LangGraph rebuilds from the snapshot and the writes after it.
    replica.put_writes(config, [("messages", "third message")], "task-1")
    last = empty_checkpoint()
    v3 = replica.get_next_version(v2, None)
    last["channel_values"] = {"n": 2}
    last["channel_versions"] = {"messages": v3, "n": v3}
    config = replica.put(config, last, {**META, "step": 2}, {"messages": v3, "n": v3})
    for s in (replica, reader):
        history = s.get_delta_channel_history(config=config, channels=["messages"])
        assert history == {
            "messages": {"seed": SNAP, "writes": [("task-1", "messages", "third message")]}
        }
