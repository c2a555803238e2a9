"""``list()`` with the default ``RustSerializer`` builds each batch's ``CheckpointTuple``s in
the store's bindings (``CheckpointBatches.next_tuples``); with any other serializer the rows
are decoded in Python (``_to_tuple``). Both must give what stock SqliteSaver gives, row for
row, with the same types and the same dict key order: checkpoints whose channel values are
inside the checkpoint, stored apart (bytes) or stored as delta chains, pending writes of
several types, metadata, parent configs, namespaces."""

from __future__ import annotations

import datetime as dt
import fractions
import json
import sqlite3
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Send

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serde_values import same

from fast_langgraph import RustSerializer, RustSQLiteCheckpointer

N = 150  # more than snapshot_every (64): delta chains of several lengths, and new snapshots
AES_KEY = b"0123456789abcdef"

SERDES: dict[str, Callable[[], Any]] = {
    "rust": RustSerializer,
    # Lists of values only pickle writes: stored apart, as chains of pickled deltas.
    "rust-pickle": lambda: RustSerializer(pickle_fallback=True),
    "jsonplus": JsonPlusSerializer,
    "encrypted-rust": lambda: EncryptedSerializer.from_pycryptodome_aes(
        serde=RustSerializer(), key=AES_KEY
    ),
}


def fill(saver: Any, thread: str) -> None:
    """``N`` checkpoints in the root namespace and a few in a subgraph's, each with pending
    writes: a list channel appended to at every step (stored as deltas by our saver), messages,
    a datetime, bytes (stored apart from the checkpoint) and a channel set only at times;
    with a serializer that pickles, a list channel of values only pickle writes."""
    pickled = getattr(saver.serde, "pickle_fallback", False)
    for ns, n in (("", N), ("inner:1", 5)):
        parent = None
        versions: dict[str, Any] = {}
        hits: list[int] = []
        odd: list[fractions.Fraction] = []
        route: dict[str, Any] | None = None
        for i in range(n):
            hits = [*hits, i]
            cp = empty_checkpoint()
            values: dict[str, Any] = {
                "hits": hits,
                "messages": [
                    HumanMessage(f"question {j}", id=f"h{j}") if j % 2 else AIMessage(f"ans {j}")
                    for j in range(i % 3 + 1)
                ],
                "when": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i),
                "raw": f"bytes {i}".encode(),
            }
            if pickled:
                odd = [*odd, fractions.Fraction(i, 7)]
                values["odd"] = odd
            changed = [k for k in values if k != "route"]
            if i % 5 == 0:
                route = {"to": f"node {i}", "ids": [i, str(i)]}
                changed.append("route")
            if route is not None:
                values["route"] = route
            versions = {
                **versions,
                **{k: saver.get_next_version(versions.get(k), None) for k in changed},
            }
            cp["channel_values"] = values
            cp["channel_versions"] = versions
            conf: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
            if parent:
                conf["configurable"]["checkpoint_id"] = parent
            metadata = {"source": "loop", "step": i, "parents": {}, "note": f"é {i}", "x": None}
            saved = saver.put(conf, cp, metadata, {k: versions[k] for k in changed})
            parent = saved["configurable"]["checkpoint_id"]
            if i % 4 != 3:  # some checkpoints without writes
                saver.put_writes(
                    saved,
                    [
                        ("messages", [AIMessage(content=f"w{i}", id=f"w{i}")]),
                        ("route", f"r{i}"),
                        ("when", dt.date(2026, 2, 1 + i % 28)),
                        ("raw", b"\x00\xff" * (i % 3)),
                        ("id", uuid.UUID(int=i)),
                        ("__pregel_tasks", Send("node", {"i": i})),
                    ],
                    f"task-{i}",
                    "~x",
                )


class PythonPath(RustSerializer):
    """RustSerializer under another type: ``list()`` decodes its rows in Python, as before
    the store built tuples itself."""


def python_path(
    ours: RustSQLiteCheckpointer, serde_name: str, method: str
) -> RustSQLiteCheckpointer:
    """A saver reading ours' file with the Python decoding of rows, to compare with (ours
    itself with EncryptedSerializer, whose decoding is the only one). With RustSerializer the
    store builds ours' tuples: ours is made to fail if ``method`` decodes a row in Python."""
    if serde_name.startswith("rust"):

        def not_here(*_: Any) -> Any:
            raise AssertionError(f"{method}() decoded a row in Python with RustSerializer")

        ours._to_tuple = not_here  # type: ignore[method-assign]
    if serde_name == "encrypted-rust":
        return ours
    pickles = serde_name == "rust-pickle"
    return RustSQLiteCheckpointer(ours.path, serde=PythonPath(pickle_fallback=pickles))


def both(tmp_path: Path, serde_name: str) -> tuple[RustSQLiteCheckpointer, SqliteSaver, Any]:
    """Ours and stock SqliteSaver, each with its own serializer of the kind named, holding
    the same checkpoints (ids included)."""
    ours = RustSQLiteCheckpointer(str(tmp_path / "ours.db"), serde=SERDES[serde_name]())
    conn = sqlite3.connect(str(tmp_path / "stock.db"), check_same_thread=False)
    stock = SqliteSaver(conn, serde=SERDES[serde_name]())
    recorded: list[tuple] = []
    real_put, real_writes = stock.put, stock.put_writes
    stock.put = lambda *a: recorded.append(("put", a)) or real_put(*a)  # type: ignore[method-assign]
    stock.put_writes = lambda *a: recorded.append(("writes", a)) or real_writes(*a)  # type: ignore[method-assign]
    fill(stock, "same")
    for kind, args in recorded:
        (ours.put if kind == "put" else ours.put_writes)(*args)
    return ours, stock, conn


def check(ours: Any, stock: Any, slow: Any, config: Any, **kwargs: Any) -> None:
    """``ours.list`` gives stock's tuples, and exactly (types, dict key order) what the
    Python decoding of the same rows gives (``slow``: the same file, decoded in Python)."""
    got = list(ours.list(config, **kwargs))
    assert got == list(stock.list(config, **kwargs))
    before = list(slow.list(config, **kwargs))
    assert len(got) == len(before)
    for g, b in zip(got, before):
        assert type(g) is type(b)
        assert same(tuple(g), tuple(b)), g.config


@pytest.mark.parametrize("serde_name", list(SERDES))
def test_list_gives_stock_sqlite_savers_tuples(tmp_path: Path, serde_name: str) -> None:
    ours, stock, conn = both(tmp_path, serde_name)
    slow = python_path(ours, serde_name, "list")
    try:
        # The database holds values stored apart from the checkpoint and, where they are
        # not msgpack (which the store puts inside the checkpoint), delta chains.
        rows = [r for batch in ours._store.list_batches(thread_id="same") for r in batch]
        assert any(len(v.segments) == 1 for r in rows for v in r.values)
        if serde_name in ("rust-pickle", "encrypted-rust"):
            assert any(len(v.segments) > 2 for r in rows for v in r.values)
        for config in (
            {"configurable": {"thread_id": "same"}},
            {"configurable": {"thread_id": "same", "checkpoint_ns": "inner:1"}},
            None,
        ):
            check(ours, stock, slow, config)
        config = {"configurable": {"thread_id": "same", "checkpoint_ns": ""}}
        want = list(stock.list(config))
        assert len(want) == N
        assert want[-1].parent_config is None and want[0].pending_writes
        check(ours, stock, slow, config, limit=70)
        check(ours, stock, slow, config, before=want[10].config, limit=3)
        check(ours, stock, slow, config, filter={"step": 7})
        check(ours, stock, slow, config, filter={"parents": {}}, limit=5)
    finally:
        ours.close()
        slow.close()
        conn.close()


@pytest.mark.parametrize("serde_name", list(SERDES))
def test_get_tuple_gives_stock_sqlite_savers_tuple(tmp_path: Path, serde_name: str) -> None:
    """``get_tuple`` with the default serializer builds its tuple in the store's bindings
    too (``CheckpointStore.get_tuple``): the same tuple as stock SqliteSaver's, and exactly
    (types, key order) what the Python decoding of the same row gives, for the latest
    checkpoint and for checkpoints named by id (whose tuple keeps the caller's config)."""
    ours, stock, conn = both(tmp_path, serde_name)
    slow = python_path(ours, serde_name, "get_tuple")
    try:
        listed = list(stock.list({"configurable": {"thread_id": "same", "checkpoint_ns": ""}}))
        configs: list[dict[str, Any]] = [
            {"configurable": {"thread_id": "same"}},
            {"configurable": {"thread_id": "same", "checkpoint_ns": "inner:1"}},
            {"configurable": {"thread_id": "other"}},
        ]
        configs += [
            {"configurable": {**t.config["configurable"], "extra": i}}
            for i, t in enumerate(listed[::9])
        ]
        configs.append({"configurable": {"thread_id": "same", "checkpoint_id": "missing"}})
        for config in configs:
            got = ours.get_tuple(config)
            want = stock.get_tuple(config)
            assert got == want, config
            before = slow.get_tuple(config)
            if got is None:
                assert before is None
                continue
            assert type(got) is type(before)
            assert same(tuple(got), tuple(before)), config
            if "checkpoint_id" in config["configurable"]:
                assert got.config is config
        # Read twice, the latest gives the same tuple (the second read may reuse DeltaChannel
        # seeds and lists remembered by the first).
        latest = {"configurable": {"thread_id": "same", "checkpoint_ns": ""}}
        assert same(tuple(ours.get_tuple(latest)), tuple(slow.get_tuple(latest)))
        assert ours.get_tuple(latest) == stock.get_tuple(latest)
    finally:
        ours.close()
        slow.close()
        conn.close()


def test_a_write_that_cannot_be_decoded_is_raised_at_its_row(tmp_path: Path) -> None:
    path = str(tmp_path / "ours.db")
    with RustSQLiteCheckpointer(path) as ours:
        fill(ours, "t")
    bad_step = N - 40
    with sqlite3.connect(path) as conn:
        changed = conn.execute(
            "UPDATE flg_writes SET type = 'unknown-kind' WHERE task_id = ? AND channel = 'route'",
            (f"task-{bad_step}",),
        ).rowcount
    assert changed == 1
    with RustSQLiteCheckpointer(path) as ours:
        got = []
        with pytest.raises(NotImplementedError, match="unknown-kind"):
            for tup in ours.list({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}):
                got.append(tup.metadata["step"])
        # Every row before it, in order, then the error.
        assert got == list(range(N - 1, bad_step, -1))


def test_metadata_is_read_as_json_loads_reads_it(tmp_path: Path) -> None:
    """Text this saver never writes (whitespace around the value, or no JSON at all) is read
    as ``json.loads`` reads it, or fails as it fails."""
    path = str(tmp_path / "ours.db")
    with RustSQLiteCheckpointer(path) as ours:
        fill(ours, "t")
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    with RustSQLiteCheckpointer(path) as ours:
        ids = [t.config["configurable"]["checkpoint_id"] for t in ours.list(config)]
    spaced = ' \n{"step": 3, "é": [1.5, null]}\t'
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE flg_checkpoints SET metadata = ? WHERE checkpoint_id = ?", (spaced, ids[2])
        )
    with RustSQLiteCheckpointer(path) as ours:
        got = [t.metadata for t in ours.list(config)]
    assert got[2] == json.loads(spaced) == {"step": 3, "é": [1.5, None]}
    assert got[1] == {
        "source": "loop",
        "step": N - 2,
        "parents": {},
        "note": f"é {N - 2}",
        "x": None,
    }
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE flg_checkpoints SET metadata = '{\"step\": 3} trailing' WHERE checkpoint_id = ?",
            (ids[5],),
        )
    with RustSQLiteCheckpointer(path) as ours:
        steps = []
        with pytest.raises(json.JSONDecodeError, match="Extra data"):
            for tup in ours.list(config):
                steps.append(tup.metadata["step"])
    assert len(steps) == 5
