"""Retention with LangGraph's `DeltaChannel`: `prune(strategy="keep_latest")`, `delete_for_runs`,
`copy_thread` and `prune_older_than` keep every ancestor (and its writes) that a kept
checkpoint needs to rebuild its delta channels, so what is kept reads back unchanged.

Real graphs: a chat with an `add_messages` history and a `DeltaChannel` list that stores a
snapshot every 3 updates.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated

import pytest
from conftest import cfg
from graph_apps import Normalizer, extend
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from fast_langgraph import RustSQLiteCheckpointer


class State(TypedDict):
    messages: Annotated[list, add_messages]
    items: Annotated[list, DeltaChannel(extend, snapshot_frequency=3)]


def delta_graph(saver):
    def bot(state: State) -> dict:
        n = len(state["messages"])
        return {"messages": [AIMessage(f"answer {n}")], "items": [f"item {n}"]}

    b = StateGraph(State)
    b.add_node("bot", bot)
    b.add_edge(START, "bot")
    b.add_edge("bot", END)
    return b.compile(checkpointer=saver)


def run_turns(graph, thread: str, turns: range, run_id: str | None = None) -> None:
    for i in turns:
        config = cfg(thread)
        if run_id is not None:
            # One run id per invocation (LangGraph takes a repeated one for a retry of it).
            config["metadata"] = {"run_id": f"{run_id}-{i}"}
        graph.invoke({"messages": [HumanMessage(f"q{i}")], "items": [f"in {i}"]}, config)


def states_by_id(graph, thread: str) -> dict[str, dict]:
    """Every checkpoint of the thread that get_state_history returns, by id, as its values."""
    norm = Normalizer([])
    return {
        s.config["configurable"]["checkpoint_id"]: norm(s.values)
        for s in graph.get_state_history(cfg(thread))
    }


def count(saver, thread: str) -> int:
    return sum(1 for _ in saver.list(cfg(thread)))


@pytest.fixture
def saver(tmp_path):
    """The saver of the tests that tests/test_postgres_retention.py runs on Postgres too (it
    imports them, and gives them its own ``saver``)."""
    with RustSQLiteCheckpointer(tmp_path / "a.db") as s:
        yield s


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "no-delta"])
def test_prune_keep_latest_keeps_what_delta_channels_need(tmp_path, delta: bool) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db", delta=delta) as saver:
        graph = delta_graph(saver)
        run_turns(graph, "t", range(7))
        run_turns(graph, "other", range(2))
        before = states_by_id(graph, "t")
        latest = graph.get_state(cfg("t"))
        assert len(latest.values["items"]) == 14
        n_before = count(saver, "t")

        saver.prune(["t"], strategy="keep_latest")

        after = states_by_id(graph, "t")
        # Something was deleted, and what is kept reads back as it did.
        assert 1 < len(after) < n_before
        assert after == {cid: before[cid] for cid in after}
        assert Normalizer([])(graph.get_state(cfg("t")).values) == Normalizer([])(latest.values)
        assert saver.check() == []
        # The thread goes on from the kept state.
        run_turns(graph, "t", range(7, 8))
        assert len(graph.get_state(cfg("t")).values["items"]) == 16
        # Another thread is untouched.
        assert count(saver, "other") > 1


def test_prune_without_delta_channels_keeps_only_the_latest(tmp_path) -> None:
    class Plain(TypedDict):
        messages: Annotated[list, add_messages]

    b = StateGraph(Plain)
    b.add_node("bot", lambda s: {"messages": [AIMessage("a")]})
    b.add_edge(START, "bot")
    b.add_edge("bot", END)
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        graph = b.compile(checkpointer=saver)
        for i in range(4):
            graph.invoke({"messages": [HumanMessage(f"q{i}")]}, cfg("t"))
        values = graph.get_state(cfg("t")).values
        saver.prune(["t"])
        assert count(saver, "t") == 1
        assert graph.get_state(cfg("t")).values == values


def test_delete_for_runs_keeps_ancestors_a_later_run_needs(saver) -> None:
    graph = delta_graph(saver)
    run_turns(graph, "t", range(4), run_id="old")
    run_turns(graph, "t", range(4, 5), run_id="new")
    old = [f"old-{i}" for i in range(4)]
    assert {t.metadata.get("run_id") for t in saver.list(cfg("t"))} == {*old, "new-4"}
    before = states_by_id(graph, "t")
    new_ids = {
        t.config["configurable"]["checkpoint_id"]
        for t in saver.list(cfg("t"))
        if t.metadata.get("run_id") == "new-4"
    }
    saver.delete_for_runs(old)
    after = states_by_id(graph, "t")
    assert new_ids <= set(after)
    assert len(after) < len(before)
    assert after == {cid: before[cid] for cid in after}
    assert len(graph.get_state(cfg("t")).values["items"]) == 10


def test_delete_for_runs_deletes_a_run_nothing_needs(saver) -> None:
    graph = delta_graph(saver)
    run_turns(graph, "gone", range(3), run_id="r1")
    run_turns(graph, "kept", range(3), run_id="r2")
    saver.delete_for_runs([f"r1-{i}" for i in range(3)])
    assert count(saver, "gone") == 0
    assert len(graph.get_state(cfg("kept")).values["items"]) == 6


def test_copy_thread_rebuilds_delta_channels_in_the_copy(saver) -> None:
    graph = delta_graph(saver)
    run_turns(graph, "src", range(5))
    saver.copy_thread("src", "dst")
    assert list(states_by_id(graph, "dst").values()) == list(states_by_id(graph, "src").values())
    run_turns(graph, "dst", range(5, 6))
    assert len(graph.get_state(cfg("dst")).values["items"]) == 12
    assert len(graph.get_state(cfg("src")).values["items"]) == 10


def _newest_time(saver, thread: str) -> datetime:
    newest = uuid.UUID(saver.get_tuple(cfg(thread)).config["configurable"]["checkpoint_id"])
    ticks = ((newest.int >> 80) << 12) | ((newest.int >> 64) & 0xFFF)
    return datetime.fromtimestamp((ticks - 0x01B21DD213814000) / 1e7, timezone.utc)


def test_prune_older_than_deletes_idle_threads_only(saver) -> None:
    graph = delta_graph(saver)
    run_turns(graph, "idle", range(2))
    run_turns(graph, "busy", range(2))
    # Turns until the busy thread's newest checkpoint is a few ms younger (no sleeping).
    while _newest_time(saver, "busy") - _newest_time(saver, "idle") < timedelta(milliseconds=5):
        run_turns(graph, "busy", range(1))
    cutoff = _newest_time(saver, "idle") + timedelta(milliseconds=2)
    now = cutoff + timedelta(days=30)
    busy = states_by_id(graph, "busy")

    assert saver.prune_older_than(timedelta(days=30), now=now) == 1
    assert count(saver, "idle") == 0
    assert states_by_id(graph, "busy") == busy
    # Nothing is idle for more than 31 days.
    assert saver.prune_older_than(timedelta(days=31), now=now) == 0
    # A naive `now` is refused (local or UTC would be a guess), and nothing is deleted.
    naive = now.replace(tzinfo=None) + timedelta(days=1)
    with pytest.raises(ValueError, match="timezone-aware"):
        asyncio.run(saver.aprune_older_than(timedelta(days=1), now=naive))
    assert count(saver, "busy") > 0
    assert asyncio.run(saver.aprune_older_than(timedelta(days=1), now=now + timedelta(days=1))) == 1
    assert count(saver, "busy") == 0


def test_prune_older_than_keep_latest_keeps_delta_ancestors(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        graph = delta_graph(saver)
        run_turns(graph, "t", range(7))
        latest = Normalizer([])(graph.get_state(cfg("t")).values)
        n_before = count(saver, "t")
        now = datetime.now(timezone.utc) + timedelta(days=2)
        assert saver.prune_older_than(timedelta(days=1), strategy="keep_latest", now=now) == 1
        assert 1 < count(saver, "t") < n_before
        assert Normalizer([])(graph.get_state(cfg("t")).values) == latest


def test_prune_older_than_checks_its_arguments(saver) -> None:
    with pytest.raises(TypeError, match="max_idle"):
        saver.prune_older_than(3600)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_idle"):
        saver.prune_older_than(timedelta(seconds=-1))
    with pytest.raises(TypeError, match="now"):
        saver.prune_older_than(timedelta(1), now="today")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strategy"):
        saver.prune_older_than(timedelta(1), strategy="all")  # type: ignore[arg-type]


# ---- seeds kept inside a checkpoint row -------------------------------------------------
#
# A small value is kept inside its checkpoint's row rather than stored apart. A DeltaChannel's
# history ends at the nearest ancestor holding a value of the channel either way, and so do the
# ancestors retention keeps: those before it are deleted.

# One checkpoint of a hand-made history: its name, its parent's name (None for the root), its
# channel values (each small, so kept inside its row), its channel versions (every one of them
# new in it) and its metadata's counters_since_delta_snapshot. Each is made by a run of its own,
# "r-<name>", and gets one pending write per channel it has a version of.
Step = tuple[str, str | None, dict, dict, dict]

# ``ch`` became a DeltaChannel: the root and ``seed`` hold its plain value, ``middle`` and
# ``last`` only a version, with the writes that rebuild it.
ONE_CHANNEL: list[Step] = [
    ("root", None, {"ch": [0]}, {"ch": "1"}, {}),
    ("seed", "root", {"ch": [1, 2]}, {"ch": "2"}, {}),
    ("middle", "seed", {}, {"ch": "3"}, {"ch": 1}),
    ("last", "middle", {}, {"ch": "4"}, {"ch": 2}),
]

# Two DeltaChannels whose histories end at different ancestors: ``b`` at ``b_seed``, ``a`` at
# the later ``a_seed``, whose row keeps ``a`` inside but not ``b``.
TWO_CHANNELS: list[Step] = [
    ("root", None, {"a": [0], "b": [0]}, {"a": "1", "b": "1"}, {}),
    ("b_seed", "root", {"b": [9]}, {"a": "2", "b": "2"}, {"a": 1}),
    ("a_seed", "b_seed", {"a": [1]}, {"a": "3", "b": "3"}, {"b": 1}),
    ("last", "a_seed", {}, {"a": "4", "b": "4"}, {"a": 1, "b": 2}),
]

# A forked history: two branches from ``seed``, and the newest checkpoint on the second.
FORKED: list[Step] = [
    ("root", None, {"ch": [0]}, {"ch": "1"}, {}),
    ("seed", "root", {"ch": [1, 2]}, {"ch": "2"}, {}),
    ("left", "seed", {}, {"ch": "3"}, {"ch": 1}),
    ("left_last", "left", {}, {"ch": "4"}, {"ch": 2}),
    ("right", "seed", {}, {"ch": "3"}, {"ch": 1}),
    ("right_last", "right", {}, {"ch": "4"}, {"ch": 2}),
]


def assert_reads_back(got, tup) -> None:
    """``got``, read after retention, is the tuple ``tup`` read before it: the same
    checkpoint, metadata, parent and pending writes."""
    assert got is not None and tup is not None
    assert (got.checkpoint, got.metadata, got.parent_config, got.pending_writes) == (
        tup.checkpoint,
        tup.metadata,
        tup.parent_config,
        tup.pending_writes,
    )


def retain(saver, how: str) -> None:
    """Thread "t" pruned to its newest checkpoint (``prune``, or ``prune_older_than`` two
    days on), or run "r-root" deleted (``delete_for_runs``): what each keeps is asserted by
    the caller."""
    if how == "prune":
        saver.prune(["t"], strategy="keep_latest")
    elif how == "prune_older_than":
        now = datetime.now(timezone.utc) + timedelta(days=2)
        assert saver.prune_older_than(timedelta(days=1), strategy="keep_latest", now=now) == 1
    else:
        saver.delete_for_runs(["r-root"])


def _put_steps(s, thread: str, steps: list[Step]) -> dict[str, dict]:
    """Puts ``steps`` on saver ``s``, in order; returns each one's config, by name."""
    from langgraph.checkpoint.base import empty_checkpoint

    configs: dict[str, dict] = {}
    for n, (name, parent, values, versions, counters) in enumerate(steps):
        cp = empty_checkpoint()
        cp["channel_values"] = values
        cp["channel_versions"] = versions
        metadata = {"run_id": f"r-{name}", "counters_since_delta_snapshot": counters}
        parent_config = configs[parent] if parent else cfg(thread, checkpoint_ns="")
        configs[name] = s.put(parent_config, cp, metadata, dict(versions))
        s.put_writes(
            configs[name], [(ch, [10 * n + i]) for i, ch in enumerate(versions)], f"task-{name}"
        )
    return configs


def _histories(s, configs: dict[str, dict], channels: list[str]) -> dict[str, dict]:
    return {
        name: s.get_delta_channel_history(config=c, channels=channels)
        for name, c in configs.items()
    }


@pytest.mark.parametrize(
    ("steps", "how", "gone"),
    [
        (ONE_CHANNEL, "prune", {"root"}),
        (ONE_CHANNEL, "prune_older_than", {"root"}),
        (ONE_CHANNEL, "delete_for_runs", {"root"}),
        (TWO_CHANNELS, "prune", {"root"}),
        (TWO_CHANNELS, "delete_for_runs", set()),  # b_seed needs it for a
        (FORKED, "prune", {"root", "left", "left_last"}),
        (FORKED, "delete_for_runs", {"root"}),
    ],
    ids=[
        "one-prune",
        "one-prune_older_than",
        "one-delete_for_runs",
        "two-prune",
        "two-delete_for_runs",
        "forked-prune",
        "forked-delete_for_runs",
    ],
)
def test_retention_stops_at_a_seed_kept_inside_a_checkpoint_row(
    tmp_path, steps: list[Step], how: str, gone: set[str]
) -> None:
    """Retention keeps the ancestors up to the one holding the seed of each channel, kept
    inside its row, with their writes, and not those before it; what is kept reads back as
    before, with the histories SqliteSaver gives for the same puts."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    channels = sorted({ch for step in steps for ch in step[3]})
    with SqliteSaver.from_conn_string(":memory:") as stock:
        want = _histories(stock, _put_steps(stock, "stock", steps), channels)
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        configs = _put_steps(saver, "t", steps)
        assert saver.storage_stats()["blobs"] == 0  # every value kept inside its row
        assert _histories(saver, configs, channels) == want
        before = {name: saver.get_tuple(c) for name, c in configs.items()}
        retain(saver, how)
        ids = {t.config["configurable"]["checkpoint_id"] for t in saver.list(cfg("t"))}
        kept = {name for name, c in configs.items() if c["configurable"]["checkpoint_id"] in ids}
        assert kept == set(configs) - gone
        for name in kept:
            assert_reads_back(saver.get_tuple(configs[name]), before[name])
        # Every checkpoint kept for what it is (the newest; with delete_for_runs, every one
        # the deleted run did not make) rebuilds the delta channels it needs (those its metadata
        # lists and it holds no value of) as SqliteSaver does.
        newest = max(kept, key=lambda n: configs[n]["configurable"]["checkpoint_id"])
        for name, _, values, _, counters in steps:
            if name == newest or (how == "delete_for_runs" and name != "root"):
                needed = [ch for ch in counters if ch not in values]
                got = saver.get_delta_channel_history(config=configs[name], channels=needed)
                assert got == {ch: want[name][ch] for ch in needed}
        assert saver.check() == []


def test_a_seed_kept_inside_ends_only_its_own_channels_history(tmp_path) -> None:
    """``a_seed`` keeps ``a`` inside its row and not ``b``: ``b``'s history goes on past it, to
    ``b_seed``, which retention keeps."""
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        configs = _put_steps(saver, "t", TWO_CHANNELS)
        history = saver.get_delta_channel_history(config=configs["last"], channels=["a", "b"])
        assert history["a"]["seed"] == [1]
        assert history["b"]["seed"] == [9]
        saver.prune(["t"], strategy="keep_latest")
        assert count(saver, "t") == 3
        assert (
            saver.get_delta_channel_history(config=configs["last"], channels=["a", "b"]) == history
        )
