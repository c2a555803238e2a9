"""Checkpoint metadata is stored as the text ``json.dumps(metadata, ensure_ascii=False)``
gives: written in Rust for plain JSON types, by Python's encoder for anything else."""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fast_langgraph import RustSQLiteCheckpointer
from fast_langgraph._native import metadata_json


def stock(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.text(alphabet=st.characters(max_codepoint=0x7F))
)
plain = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=12), plain, max_size=6))
def test_the_text_is_json_dumps_for_plain_values(md: dict[str, Any]) -> None:
    assert metadata_json(md) == stock(md)


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"a": []},
        {"a": {}},
        {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "tiny": 5e-324, "big": 1e16},
        {"f": [0.1, -0.0, 1.5e-7, 123456789.125, 1e22]},
        {"i": [2**63, -(2**63) - 1, 10**40, 0, -1]},
        {"s": 'quote " back \\ nl \n cr \r tab \t bs \b ff \f nul \0 esc \x1b del \x7f'},
        {"ü": "é中😀", "parents": {"": "x"}, "t": (1, [2, (3,)])},
    ],
)
def test_edge_values_give_json_dumps_text(value: dict[str, Any]) -> None:
    assert metadata_json(value) == stock(value)


class Level(enum.IntEnum):
    HIGH = 2


class Tag(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        {"level": Level.HIGH},  # an int subclass: Python writes it
        {"tag": Tag("x")},
        {1: "int key"},
        {"k": {None: 1}},
        {"s": "lone \ud800 surrogate"},
        {"set": {1, 2}},
        {"deep": json.loads("[" * 70 + "]" * 70)},
    ],
)
def test_anything_else_is_left_to_python(value: dict[str, Any]) -> None:
    assert metadata_json(value) is None


def test_a_circular_value_is_left_to_python() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert metadata_json({"loop": loop}) is None


def test_stored_metadata_reads_back_and_matches_json_dumps(tmp_path) -> None:
    """Through put: plain metadata and metadata Python must write (an IntEnum, an int key)
    are both stored as json.dumps writes them, and read back as json.loads reads that."""
    from langgraph.checkpoint.base import empty_checkpoint

    with RustSQLiteCheckpointer(tmp_path / "m.db") as saver:
        for i, md in enumerate(
            [
                {"source": "loop", "step": 3, "parents": {}, "note": "é\n", "score": 0.1},
                {"source": "input", "level": Level.HIGH, "map": {1: "one"}},
            ]
        ):
            cp = empty_checkpoint()
            cfg = {"configurable": {"thread_id": f"t{i}", "checkpoint_ns": ""}}
            saver.put(cfg, cp, md, {})
            row = saver._store.get(f"t{i}", "", None, [])
            assert row is not None and row.metadata_json == stock(md)
            got = saver.get_tuple(cfg)
            assert got is not None and got.metadata == json.loads(stock(md))


# -- what put stores: get_checkpoint_metadata(config, metadata), encoded in one native call ----

from langgraph.checkpoint.base import get_checkpoint_metadata  # noqa: E402

from fast_langgraph._native import SerializationError  # noqa: E402
from fast_langgraph.checkpoint._engine_saver import stored_metadata  # noqa: E402


def stock_put(config: Any, metadata: dict[str, Any]) -> tuple[str, str | None]:
    """What the savers stored before: LangGraph's merge, then json.dumps; str(run_id)."""
    md = dict(get_checkpoint_metadata(config, metadata) if config is not None else metadata)
    run_id = md.get("run_id")
    return stock(md), None if run_id is None else str(run_id)


keys = st.sampled_from(
    [
        "source",
        "step",
        "run_id",
        "thread_id",
        "checkpoint_ns",
        "langgraph_node",
        "__secret",
        "user",
        "parents",
        "note",
    ]
) | st.text(max_size=6)
config_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text() | plain
text_with_nul = st.text(alphabet=st.sampled_from(["a", "\0", "é", "\n"]), max_size=6)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(keys, plain | text_with_nul, max_size=5),
    st.none() | st.dictionaries(keys, config_values | text_with_nul, max_size=5),
    st.none() | st.dictionaries(keys, config_values | text_with_nul, max_size=5),
    st.booleans(),
)
def test_stored_metadata_is_the_merge_json_dumps_writes(
    md: dict[str, Any], meta: Any, conf: Any, with_config: bool
) -> None:
    config: Any = {}
    if meta is not None:
        config["metadata"] = meta
    if conf is not None:
        config["configurable"] = conf
    config = config if with_config else None
    want = stock_put(config, md)
    assert stored_metadata(config, md, "c1") == want
    # The native path itself, whenever it takes the values.
    from langgraph.checkpoint.base import EXCLUDED_METADATA_KEYS

    from fast_langgraph._native import put_metadata_json

    got = put_metadata_json(config, md, EXCLUDED_METADATA_KEYS)
    assert got is None or got == want


@pytest.mark.parametrize(
    ("config", "md"),
    [
        ({"configurable": {"level": Level.HIGH}}, {}),  # an int subclass copied from the config
        ({"configurable": {"tag": Tag("a\0b")}}, {"t": Tag("x\0")}),  # str subclasses: stripped
        ({"metadata": {1: "int key"}}, {}),
        ({}, {"map": {1: "one"}}),
        ({"configurable": {"run_id": 7}}, {"source": "x"}),
        ({"metadata": {"run_id": "r\0"}}, {}),
        ({"configurable": {"run_id": "c"}, "metadata": {"run_id": "m"}}, {}),
        (None, {"s": "keeps \0 without a config", "run_id": 1.5}),
    ],
)
def test_stored_metadata_odd_values_match(config: Any, md: dict[str, Any]) -> None:
    try:
        want = stock_put(config, md)
    except Exception as e:  # LangGraph's merge refuses an int key in the config: so do we
        with pytest.raises(type(e)):
            stored_metadata(config, md, "c1")
        return
    assert stored_metadata(config, md, "c1") == want


def test_unencodable_metadata_names_the_key_and_checkpoint() -> None:
    with pytest.raises(SerializationError) as e:
        stored_metadata({"configurable": {}}, {"ok": 1, "bad": object()}, "cp-1")
    assert "metadata key 'bad' of checkpoint 'cp-1'" in str(e.value)
    assert "value of type object" in str(e.value)
