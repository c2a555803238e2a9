"""`get_delta_channel_history` (LangGraph's `DeltaChannel` support) on RustSQLiteCheckpointer.

- LangGraph's delta-channel-history conformance spec (vendored, see tests/vendor/), through the
  async API and through the sync API called from a worker thread, with our append-only deltas
  on and off, on a file and in memory. The number of spec tests that ran is asserted.
- Random parent chains (forks, snapshots, plain values, writes with task paths, several
  channels) give what LangGraph's reference walk over `get_tuple` gives, and what stock
  SqliteSaver's override gives.
- A chain that loops ends; a missing target or root gives empty histories.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from conftest import cfg
from graph_apps import sqlite_saver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from test_conformance import SyncThroughThread
from vendor.langgraph_conformance.test_delta_channel_history import (
    ALL_DELTA_CHANNEL_HISTORY_TESTS,
    run_delta_channel_history_tests,
)

from fast_langgraph import RustSQLiteCheckpointer

# The spec at the vendored commit has 8 tests.
EXPECTED_SPEC_TESTS = 8


def test_the_vendored_spec_has_the_expected_tests() -> None:
    assert len(ALL_DELTA_CHANNEL_HISTORY_TESTS) == EXPECTED_SPEC_TESTS


def test_the_method_is_overridden() -> None:
    # LangGraph's conformance runner skips a capability whose method is inherited.
    for name in ("get_delta_channel_history", "aget_delta_channel_history"):
        assert getattr(RustSQLiteCheckpointer, name) is not getattr(BaseCheckpointSaver, name)


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "no-delta"])
@pytest.mark.parametrize("cls", [RustSQLiteCheckpointer, SyncThroughThread])
@pytest.mark.parametrize("where", ["file", "memory"])
def test_delta_channel_history_spec(cls, delta: bool, where: str, tmp_path) -> None:
    path = str(tmp_path / "spec.db") if where == "file" else ":memory:"
    ran: list[tuple[str, bool, str | None]] = []

    async def run() -> tuple[int, int, list[str]]:
        with cls(path, delta=delta) as saver:
            return await run_delta_channel_history_tests(
                saver, on_test_result=lambda _cap, name, ok, err: ran.append((name, ok, err))
            )

    passed, failed, failures = asyncio.run(run())
    assert failures == [] and failed == 0, "\n".join(failures)
    assert passed == EXPECTED_SPEC_TESTS
    assert [name for name, ok, _ in ran if ok] == [
        t.__name__ for t in ALL_DELTA_CHANNEL_HISTORY_TESTS
    ]


# -- random chains against the reference walk and stock SqliteSaver --------------------------


def _put(saver, thread: str, parent: str | None, values: dict, versions: dict) -> dict:
    config = cfg(thread, checkpoint_ns="")
    if parent is not None:
        config["configurable"]["checkpoint_id"] = parent
    cp = Checkpoint(
        v=1,
        id=str(uuid6(clock_seq=-1)),
        ts="",
        channel_values=values,
        channel_versions=versions,
        versions_seen={},
        updated_channels=None,
    )
    return saver.put(config, cp, {"source": "loop", "step": 0, "parents": {}}, dict(versions))


# One step of a random history: which earlier checkpoint is the parent (a fork when it is not
# the last), what each channel stores there (nothing, a snapshot, a plain list), and the writes
# of a few tasks with task paths.
step = st.tuples(
    st.integers(min_value=0, max_value=1000),  # parent: index into the steps so far
    st.lists(st.sampled_from(["none", "snap", "plain"]), min_size=2, max_size=2),
    st.lists(
        st.tuples(
            st.sampled_from(["", "~a", "~b", "~a:1"]),  # task_path
            st.sampled_from(["t1", "t2", "t3"]),  # task_id
            st.lists(st.sampled_from(["a", "b", "other"]), min_size=1, max_size=3),
        ),
        max_size=3,
    ),
)


def _build(
    saver,
    thread: str,
    steps: list,
) -> list[dict]:
    configs: list[dict] = []
    for i, (parent_pick, stores, tasks) in enumerate(steps):
        parent = (
            configs[parent_pick % len(configs)]["configurable"]["checkpoint_id"]
            if configs
            else None
        )
        values: dict[str, Any] = {}
        versions: dict[str, Any] = {}
        for ch, how in zip(["a", "b"], stores):
            if how == "snap":
                values[ch] = _DeltaSnapshot([f"{ch}-snap-{i}"])
            elif how == "plain":
                values[ch] = [f"{ch}-plain-{i}", i]
            if how != "none":
                versions[ch] = f"{i + 1:032}.0"
        config = _put(saver, thread, parent, values, versions)
        configs.append(config)
        for path, task_id, channels in tasks:
            saver.put_writes(
                config,
                [(ch, f"{ch}@{i}/{path}/{task_id}/{k}") for k, ch in enumerate(channels)],
                task_id,
                path,
            )
    return configs


def _norm(history: dict) -> dict:
    out = {}
    for ch, entry in history.items():
        seed = entry.get("seed", "<no seed>")
        if isinstance(seed, _DeltaSnapshot):
            seed = ("snapshot", seed.value)
        out[ch] = {"writes": [(w[1], w[2]) for w in entry["writes"]], "seed": seed}
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=12), target_pick=st.integers(0, 1000))
def test_random_chains_match_the_reference_walk_and_sqlite_saver(
    steps, target_pick, tmp_path_factory
):
    tmp = tmp_path_factory.mktemp("chains")
    stock = sqlite_saver(tmp / "stock.db")
    with (
        RustSQLiteCheckpointer(tmp / "ours.db") as ours,
        RustSQLiteCheckpointer(tmp / "ours-nodelta.db", delta=False) as plain,
    ):
        per_saver = {
            name: _build(s, "t", steps)
            for name, s in [("ours", ours), ("plain", plain), ("stock", stock)]
        }
        target = target_pick % len(steps)
        for channels in (["a"], ["b", "a"], ["a", "b", "missing"]):
            results = {}
            for name, s in [("ours", ours), ("plain", plain), ("stock", stock)]:
                config = per_saver[name][target]
                got = s.get_delta_channel_history(config=config, channels=channels)
                reference = BaseCheckpointSaver.get_delta_channel_history(
                    s, config=config, channels=channels
                )
                assert _norm(got) == _norm(reference), name
                results[name] = _norm(got)
            # Checkpoint ids differ between savers, values do not.
            assert results["ours"] == results["stock"] == results["plain"]
            # The latest checkpoint, named by a config without checkpoint_id.
            latest = ours.get_delta_channel_history(config=cfg("t"), channels=channels)
            latest_ref = BaseCheckpointSaver.get_delta_channel_history(
                ours, config=cfg("t"), channels=channels
            )
            assert _norm(latest) == _norm(latest_ref)
    stock.conn.close()


def test_async_form_matches_the_sync_form(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        configs = _build(
            saver,
            "t",
            [
                (0, ["snap", "none"], [("", "t1", ["a"])]),
                (0, ["none", "none"], [("~a", "t2", ["a", "b"])]),
                (1, ["none", "plain"], [("~b", "t1", ["a"])]),
                (2, ["none", "none"], []),
            ],
        )
        sync = saver.get_delta_channel_history(config=configs[-1], channels=["a", "b"])
        via_async = asyncio.run(
            saver.aget_delta_channel_history(config=configs[-1], channels=["a", "b"])
        )
        assert _norm(sync) == _norm(via_async)
        assert _norm(sync)["a"]["writes"] == [
            ("a", "a@0//t1/0"),
            ("a", "a@1/~a/t2/0"),
            ("a", "a@2/~b/t1/0"),
        ]


def test_a_chain_that_loops_ends_and_matches_sqlite_saver(tmp_path) -> None:
    stock = sqlite_saver(tmp_path / "stock.db")
    with RustSQLiteCheckpointer(tmp_path / "ours.db") as ours:
        results = []
        for saver in (ours, stock):
            first = _put(saver, "t", None, {}, {})
            saver.put_writes(first, [("a", "w1")], "t1")
            second = _put(saver, "t", first["configurable"]["checkpoint_id"], {}, {})
            saver.put_writes(second, [("a", "w2")], "t1")
            # Re-put the first checkpoint under the second: its parent is now its child.
            cp = saver.get_tuple(first).checkpoint
            saver.put(second, cp, {"source": "loop", "step": 0, "parents": {}}, {})
            third = _put(saver, "t", second["configurable"]["checkpoint_id"], {}, {})
            results.append(_norm(saver.get_delta_channel_history(config=third, channels=["a"])))
        assert results[0] == results[1]
        assert results[0]["a"]["seed"] == "<no seed>"
    stock.conn.close()


def test_missing_target_namespace_and_empty_channels(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        assert saver.get_delta_channel_history(config=cfg("nobody"), channels=["a"]) == {
            "a": {"writes": []}
        }
        configs = _build(saver, "t", [(0, ["snap", "none"], [("", "t1", ["a"])])])
        assert saver.get_delta_channel_history(config=configs[0], channels=[]) == {}
        missing = cfg("t", checkpoint_ns="", checkpoint_id=str(uuid.uuid4()))
        assert saver.get_delta_channel_history(config=missing, channels=["a"]) == {
            "a": {"writes": []}
        }
        # checkpoint_ns=None names no checkpoint, as get_tuple.
        assert saver.get_delta_channel_history(
            config=cfg("t", checkpoint_ns=None), channels=["a"]
        ) == {"a": {"writes": []}}


# -- decoded seeds kept between reads (delta=True) ----------------------------------------------


def test_kept_seeds_read_back_as_fresh_containers(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        configs = _build(
            saver, "t", [(0, ["snap", "none"], [("", "t1", ["a"])]), (0, ["none", "none"], [])]
        )
        first = saver.get_delta_channel_history(config=configs[-1], channels=["a"])
        second = saver.get_delta_channel_history(config=configs[-1], channels=["a"])
        assert _norm(first) == _norm(second)
        assert first["a"]["seed"].value is not second["a"]["seed"].value
        # Changing the list a read returned does not change the next read.
        first["a"]["seed"].value.append("changed")
        third = saver.get_delta_channel_history(config=configs[-1], channels=["a"])
        assert _norm(third) == _norm(second)


def test_a_version_stored_again_is_read_again(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        root = _put(saver, "t", None, {"a": _DeltaSnapshot(["old"])}, {"a": "1"})
        child = _put(saver, "t", root["configurable"]["checkpoint_id"], {}, {})
        assert saver.get_delta_channel_history(config=child, channels=["a"])["a"]["seed"].value == [
            "old"
        ]
        # The same checkpoint and version stored again with another value.
        cp = saver.get_tuple(root).checkpoint
        cp["channel_values"] = {"a": _DeltaSnapshot(["new"])}
        saver.put(
            cfg("t", checkpoint_ns=""), cp, {"source": "loop", "step": 0, "parents": {}}, {"a": "1"}
        )
        assert saver.get_delta_channel_history(config=child, channels=["a"])["a"]["seed"].value == [
            "new"
        ]


def test_another_saver_on_the_file_sees_deletes(tmp_path) -> None:
    path = tmp_path / "a.db"
    with RustSQLiteCheckpointer(path) as reader, RustSQLiteCheckpointer(path) as writer:
        configs = _build(
            writer, "t", [(0, ["snap", "none"], [("", "t1", ["a"])]), (0, ["none", "none"], [])]
        )
        assert "seed" in reader.get_delta_channel_history(config=configs[-1], channels=["a"])["a"]
        writer.delete_thread("t")
        assert reader.get_delta_channel_history(config=configs[-1], channels=["a"]) == {
            "a": {"writes": []}
        }


def test_a_kept_snapshot_in_the_checkpoint_itself_reads_back_fresh(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        configs = _build(saver, "t", [(0, ["snap", "plain"], [])])
        first = saver.get_tuple(configs[0]).checkpoint["channel_values"]
        second = saver.get_tuple(configs[0]).checkpoint["channel_values"]
        assert first == second == {"a": _DeltaSnapshot(["a-snap-0"]), "b": ["b-plain-0", 0]}
        assert first["a"].value is not second["a"].value
        first["a"].value.append("changed")
        assert saver.get_tuple(configs[0]).checkpoint["channel_values"]["a"] == _DeltaSnapshot(
            ["a-snap-0"]
        )
        # With deltas off nothing is kept.
    with RustSQLiteCheckpointer(tmp_path / "a.db", delta=False) as plain:
        assert plain.get_tuple(configs[0]).checkpoint["channel_values"]["a"] == _DeltaSnapshot(
            ["a-snap-0"]
        )


def test_a_snapshot_in_the_checkpoint_is_kept_beside_an_older_one(tmp_path) -> None:
    with RustSQLiteCheckpointer(tmp_path / "a.db") as saver:
        configs = _build(saver, "t", [(0, ["snap", "none"], []), (0, ["snap", "none"], [])])
        # The older snapshot is kept first (a history read), then the newer one is read.
        saver.get_delta_channel_history(
            config=cfg("t", checkpoint_ns="", checkpoint_id="x"), channels=["a"]
        )
        saver.get_tuple(configs[0])
        saver.get_tuple(configs[1])
        assert len(saver._seeds) == 2
        assert saver.get_tuple(configs[1]).checkpoint["channel_values"]["a"] == _DeltaSnapshot(
            ["a-snap-1"]
        )
