"""get_delta_channel_history: our native walk (bounded statements following parent pointers)
returns exactly what LangGraph's reference walk (BaseCheckpointSaver's, a get_tuple per
ancestor) returns on the same stored data, for generated chains: snapshots and plain values
at random steps, several channels, parallel writes with task paths, writes at the target."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from fast_langgraph import RustPostgresCheckpointer


@pytest.fixture(scope="module")
def saver(pg_server):
    s = RustPostgresCheckpointer(pg_server.url(pg_server.create_database("delta")))
    s.setup()
    yield s
    s.close()


step_st = st.fixed_dictionaries(
    {
        # per channel: None (no value), "snap" (a _DeltaSnapshot) or "plain" (a list)
        "values": st.fixed_dictionaries(
            {ch: st.sampled_from([None, None, "snap", "plain"]) for ch in ("a", "b")}
        ),
        # writes: (channel, task_path) pairs, several tasks per step
        "writes": st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c"]), st.sampled_from(["", "~pull, 01", "~pull, 02"])
            ),
            max_size=4,
        ),
    }
)


def _build(saver, steps) -> list[dict]:
    tid = str(uuid.uuid4())
    parent = None
    configs = []
    for i, step in enumerate(steps):
        config = {"configurable": {"thread_id": tid, "checkpoint_ns": ""}}
        if parent:
            config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
        values, versions = {}, {}
        for ch, kind in step["values"].items():
            if kind == "snap":
                values[ch] = _DeltaSnapshot([f"{ch}{i}"])
            elif kind == "plain":
                values[ch] = [f"{ch}{i}", i]
            if kind:
                versions[ch] = saver.get_next_version(None, None)
        cp = Checkpoint(
            v=1,
            id=str(uuid6(clock_seq=-1)),
            ts="",
            channel_values=values,
            channel_versions=versions,
            versions_seen={},
            updated_channels=None,
        )
        parent = saver.put(config, cp, {"source": "loop", "step": i}, versions)
        configs.append(parent)
        for j, (ch, path) in enumerate(step["writes"]):
            saver.put_writes(parent, [(ch, f"{ch}@{i}.{j}")], f"{j:08d}-{uuid.uuid4()}", path)
    return configs


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step_st, min_size=1, max_size=8), pick=st.integers(0, 7))
def test_native_history_matches_the_reference_walk(saver, steps, pick):
    configs = _build(saver, steps)
    target = configs[min(pick, len(configs) - 1)]
    channels = ["a", "b", "c"]
    got = saver.get_delta_channel_history(config=target, channels=channels)
    want = BaseCheckpointSaver.get_delta_channel_history(saver, config=target, channels=channels)
    assert got == want


async def test_async_and_edge_cases(saver):
    configs = _build(
        saver,
        [
            {"values": {"a": "snap", "b": None}, "writes": []},
            {"values": {"a": None, "b": None}, "writes": [("a", "")]},
            {"values": {"a": None, "b": None}, "writes": [("a", "~pull, 02"), ("a", "~pull, 01")]},
        ],
    )
    head = configs[-1]
    assert await saver.aget_delta_channel_history(config=head, channels=[]) == {}
    got = await saver.aget_delta_channel_history(config=head, channels=["a", "b"])
    want = await BaseCheckpointSaver.aget_delta_channel_history(
        saver, config=head, channels=["a", "b"]
    )
    assert got == want
    assert got["a"]["seed"] == _DeltaSnapshot(["a0"])
    assert "seed" not in got["b"]
    # The latest checkpoint when the config names none; an unknown thread has no history.
    latest = {"configurable": {"thread_id": head["configurable"]["thread_id"], "checkpoint_ns": ""}}
    assert saver.get_delta_channel_history(config=latest, channels=["a"]) == {"a": got["a"]}
    unknown = {"configurable": {"thread_id": "nobody", "checkpoint_ns": ""}}
    assert saver.get_delta_channel_history(config=unknown, channels=["a"]) == {"a": {"writes": []}}


def test_long_chain_pages(saver):
    """More ancestors than one statement reads (512): the walk pages on."""
    steps = [
        {"values": {"a": "snap" if i == 0 else None, "b": None}, "writes": [("a", "")]}
        for i in range(1100)
    ]
    configs = _build(saver, steps)
    got = saver.get_delta_channel_history(config=configs[-1], channels=["a"])
    assert got["a"]["seed"] == _DeltaSnapshot(["a0"])
    assert len(got["a"]["writes"]) == 1099
    assert got == BaseCheckpointSaver.get_delta_channel_history(
        saver, config=configs[-1], channels=["a"]
    )


# -- values the caller holds are not read again (delta=True) ------------------------------------


def _snap_then_plain_child(saver) -> tuple[list[dict], str]:
    configs = _build(
        saver,
        [
            {"values": {"a": "snap", "b": "plain"}, "writes": [("a", "")]},
            {"values": {"a": None, "b": None}, "writes": []},
        ],
    )
    version = str(saver.get_tuple(configs[0]).checkpoint["channel_versions"]["a"])
    return configs, version


def test_the_store_leaves_out_the_values_the_caller_holds(saver):
    configs, version = _snap_then_plain_child(saver)
    conf = configs[0]["configurable"]
    tid, cid = conf["thread_id"], conf["checkpoint_id"]
    whole = saver._store.get(tid, "", cid)
    # The small plain list "b" travels inside the checkpoint; the snapshot "a" is a blob.
    assert sorted(v.channel for v in whole.values) == ["a"]
    skipped = saver._store.get(tid, "", cid, [("a", version)])
    assert [v.channel for v in skipped.values] == []
    # A pair that names another version is read.
    assert len(saver._store.get(tid, "", cid, [("a", "other")]).values) == 1
    head = configs[-1]["configurable"]["checkpoint_id"]
    (full,) = saver._store.delta_history(tid, "", head, ["a"])
    (held,) = saver._store.delta_history(tid, "", head, ["a"], [("a", version)])
    assert full.seed.segments and full.seed_version == version
    assert held.seed is not None and not held.seed.segments and held.seed_version == version
    assert [w.channel for w in held.writes] == [w.channel for w in full.writes] == ["a"]


def test_kept_seeds_read_back_the_same_as_fresh_containers(saver):
    configs, version = _snap_then_plain_child(saver)
    first = saver.get_delta_channel_history(config=configs[-1], channels=["a"])
    tid = configs[0]["configurable"]["thread_id"]
    assert saver._seeds.versions(tid, "", ["a"]) == [("a", version)]
    second = saver.get_delta_channel_history(config=configs[-1], channels=["a"])
    assert first == second
    assert first == BaseCheckpointSaver.get_delta_channel_history(
        saver, config=configs[-1], channels=["a"]
    )
    assert first["a"]["seed"].value is not second["a"]["seed"].value
    # Changing what a read returned does not change the next read.
    first["a"]["seed"].value.append("changed")
    assert saver.get_delta_channel_history(config=configs[-1], channels=["a"]) == second
    # get_tuple takes the kept snapshot too, as a fresh container.
    one = saver.get_tuple(configs[0]).checkpoint["channel_values"]
    two = saver.get_tuple(configs[0]).checkpoint["channel_values"]
    assert one == two == {"a": _DeltaSnapshot(["a0"]), "b": ["b0", 0]}
    assert one["a"].value is not two["a"].value


def test_a_seed_dropped_from_the_cache_is_read_again(saver):
    configs, _ = _snap_then_plain_child(saver)
    want = saver.get_delta_channel_history(config=configs[-1], channels=["a"])
    # The store is asked to leave the seed out, but the cache loses it before it is taken
    # (another thread's reads evicted it).
    real_get = saver._seeds.get
    saver._seeds.get = lambda key: None
    try:
        assert saver.get_delta_channel_history(config=configs[-1], channels=["a"]) == want
        assert saver.get_tuple(configs[0]).checkpoint["channel_values"]["a"] == _DeltaSnapshot(
            ["a0"]
        )
    finally:
        saver._seeds.get = real_get


def test_a_version_stored_again_is_read_again(saver):
    configs, version = _snap_then_plain_child(saver)
    assert saver.get_delta_channel_history(config=configs[-1], channels=["a"])["a"][
        "seed"
    ] == _DeltaSnapshot(["a0"])
    # The same checkpoint and version stored again with another value.
    root = saver.get_tuple(configs[0])
    cp = root.checkpoint
    cp["channel_values"] = {"a": _DeltaSnapshot(["new"])}
    saver.put(
        {
            "configurable": {
                "thread_id": root.config["configurable"]["thread_id"],
                "checkpoint_ns": "",
            }
        },
        cp,
        {"source": "loop", "step": 0},
        {"a": version},
    )
    assert saver.get_delta_channel_history(config=configs[-1], channels=["a"])["a"][
        "seed"
    ] == _DeltaSnapshot(["new"])
