"""RustSerializer against LangGraph's JsonPlusSerializer: byte-identical dumps_typed, equal
loads_typed (same types, same model_fields_set), the same options, warnings and errors."""

from __future__ import annotations

import logging
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core import messages as lc
from langgraph.checkpoint.serde import _msgpack as lg_msgpack
from langgraph.checkpoint.serde import jsonplus
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.serde.types import _DeltaSnapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serde_values import (
    Color,
    ModelV2,
    Point,
    StrSub,
    Unserializable,
    json_dict,
    messages,
    same,
    values,
)

import fast_langgraph
from fast_langgraph.serde import RustSerializer

# Example counts that keep the file to about half a minute on a busy two-core machine;
# SERDE_EXAMPLES_SCALE=20 runs twenty times as many.
SCALE = float(os.environ.get("SERDE_EXAMPLES_SCALE", "1"))
FAST = settings(
    max_examples=int(250 * SCALE),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MESSAGES = settings(FAST, max_examples=int(80 * SCALE))


@pytest.fixture(autouse=True)
def _quiet_unregistered(caplog: pytest.LogCaptureFixture) -> None:
    # Stock logs one warning per unregistered type; the tests below check them where it matters.
    caplog.set_level(logging.ERROR, logger="langgraph.checkpoint.serde.jsonplus")


def dumps_both(value: Any, **options: Any) -> tuple[Any, Any]:
    out = []
    for ser in (JsonPlusSerializer(**options), RustSerializer(**options)):
        try:
            out.append(ser.dumps_typed(value))
        except Exception as exc:
            out.append(("raised", type(exc), str(exc)))
    return out[0], out[1]


def check_identity(value: Any, **options: Any) -> None:
    stock_bytes, rust_bytes = dumps_both(value, **options)
    assert rust_bytes == stock_bytes
    if stock_bytes[0] == "raised":
        return
    stock, rust = JsonPlusSerializer(**options), RustSerializer(**options)
    expected = stock.loads_typed(stock_bytes)
    got = rust.loads_typed(stock_bytes)
    assert same(got, expected), (got, expected)
    # What was read back writes the same bytes again.
    assert rust.dumps_typed(got) == stock.dumps_typed(expected)


def test_exported() -> None:
    assert fast_langgraph.RustSerializer is RustSerializer
    assert isinstance(RustSerializer(), JsonPlusSerializer)


@FAST
@given(values)
def test_any_value_is_byte_identical_and_reads_back_equal(value: Any) -> None:
    check_identity(value)


@MESSAGES
@given(st.lists(messages, max_size=4))
def test_messages_are_byte_identical_and_read_back_equal(msgs: list) -> None:
    check_identity(msgs)
    check_identity({"messages": msgs, "step": 1})


@MESSAGES
@given(messages, st.data())
def test_messages_mutated_after_construction(msg: Any, data: st.DataObject) -> None:
    # Fields set to other types, or extra attributes, after construction: model_dump's output.
    change = data.draw(
        st.sampled_from(
            ["id_int", "content_tuple", "extra_attr", "model_in_kwargs", "set_in_kwargs", "none"]
        )
    )
    if change == "id_int":
        msg.id = 5
    elif change == "content_tuple":
        msg.content = ("a", {"type": "text", "text": "b"})
    elif change == "extra_attr":
        msg.custom = {"k": 1}
    elif change == "model_in_kwargs":
        msg.additional_kwargs["m"] = ModelV2(name="x")
    elif change == "set_in_kwargs":
        msg.additional_kwargs["s"] = {1, 2}
    check_identity([msg])


def _payload(cls: type, fields: Any) -> tuple[str, bytes]:
    ext = ormsgpack.Ext(
        jsonplus.EXT_PYDANTIC_V2,
        jsonplus._msgpack_enc((cls.__module__, cls.__name__, fields, "model_validate_json")),
    )
    return "msgpack", ormsgpack.packb([ext])


def _stored_variants(msg: Any) -> list[dict]:
    """A message's stored fields as another langchain-core version, or a hand edit, could have
    written them: missing, extra, reordered, and of other types."""
    d = msg.model_dump()
    keys = list(d)
    out = [
        dict(d),
        {k: d[k] for k in keys[1:]},
        {**d, "future_field": 1},
        {k: d[k] for k in reversed(keys)},
        {**d, "id": 7},
        {**d, "content": ("x", "y")},
        {**d, "content": 5},
        {**d, "type": "other"},
        {**d, "additional_kwargs": None},
    ]
    if "tool_calls" in d:
        out += [
            {**d, "tool_calls": [{"name": "f", "args": {"a": 1}, "id": "1"}]},
            {**d, "tool_calls": [{"id": "1", "name": "f", "args": {}, "type": "tool_call"}]},
            {**d, "tool_calls": [{"name": "f", "args": {1: 2}, "id": None, "type": "tool_call"}]},
            {**d, "tool_calls": [], "additional_kwargs": {"tool_calls": []}},
            {**d, "invalid_tool_calls": [{"name": "f", "args": "{", "id": "1", "error": None}]},
            {**d, "usage_metadata": {"input_tokens": 1, "output_tokens": 2}},
            {**d, "usage_metadata": {"output_tokens": 2, "input_tokens": 1, "total_tokens": 3}},
            {**d, "usage_metadata": {"input_tokens": 1, "output_tokens": 2, "total_tokens": True}},
        ]
    if "tool_call_id" in d:
        out += [{**d, "tool_call_id": 12}, {**d, "status": "unknown"}]
    return out


@MESSAGES
@given(messages)
def test_stored_message_fields_decode_as_stock(msg: Any) -> None:
    stock, rust = JsonPlusSerializer(), RustSerializer()
    for fields in _stored_variants(msg):
        data = _payload(type(msg), fields)
        expected, got = stock.loads_typed(data), rust.loads_typed(data)
        assert same(got, expected), (fields, got, expected)


@pytest.mark.parametrize(
    "value",
    [
        Unserializable(),
        {"a": [1, Unserializable()]},
        2**64,
        [-(2**63) - 1],
        {2**70: 1},
        {"\ud800": 1},
        {frozenset([1]): 2},
        1.5 - 1j,
        StrSub("x"),
        {StrSub("k"): Color.RED},
        ormsgpack.Ext(3, b"x"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("pickle_fallback", [False, True])
def test_errors_and_pickle_fallback_match(value: Any, pickle_fallback: bool) -> None:
    stock_bytes, rust_bytes = dumps_both(value, pickle_fallback=pickle_fallback)
    assert rust_bytes == stock_bytes


def _nested(depth: int) -> list:
    out: list = []
    cur = out
    for _ in range(depth - 1):
        cur.append([])
        cur = cur[0]
    return out


@pytest.mark.parametrize("depth", [199, 200, 201, 255, 256, 400])
def test_deep_nesting_matches(depth: int) -> None:
    check_identity(_nested(depth))
    check_identity({"p": Point(_nested(depth), None)})


def test_cycles_raise_as_stock() -> None:
    cyc: list = [1]
    cyc.append(cyc)
    stock_bytes, rust_bytes = dumps_both(cyc)
    assert rust_bytes == stock_bytes
    assert stock_bytes[0] == "raised"


def test_typed_tags() -> None:
    for value in (None, b"ab", bytearray(b"ab"), "s", 1, [b"x"]):
        check_identity(value)


@pytest.mark.parametrize(
    "data",
    [
        ("msgpack", b""),
        ("msgpack", b"\x92\x01"),
        ("msgpack", b"\xc1"),
        ("msgpack", b"\xa2\xff\xfe"),
        ("msgpack", b"\x01\x02"),
        ("msgpack", b"\x81\x92\x01\x02\x01"),
        ("msgpack", b"\x81\x80\x01"),
        ("msgpack", b"\xd4\xff\x00"),
        ("msgpack", b"\xd4\x05\x00"),
        ("msgpack", bytearray(b"\x91\x01")),
        ("msgpack", memoryview(b"\x91\x01")),
        ("msgpack", ormsgpack.packb([ormsgpack.Ext(5, b"\x93\xa1a\xa1b\x80")])),
        ("unknown", b""),
        ("pickle", pickle.dumps(1)),
        ("json", b'{"a": [1, 2]}'),
    ],
    ids=repr,
)
def test_bad_or_odd_input_reads_as_stock(data: tuple[str, Any]) -> None:
    out = []
    for ser in (JsonPlusSerializer(), RustSerializer()):
        try:
            out.append(("ok", ser.loads_typed(data)))
        except Exception as exc:
            out.append(("raised", type(exc), str(exc)))
    assert same(out[1], out[0])


@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"],
    ids=repr,
)
@pytest.mark.parametrize("where", ["short value", "long value", "key", "snapshot"])
def test_message_str_not_utf8_reads_as_stock(bad: bytes, where: str) -> None:
    # Message payloads are read without a Rust UTF-8 check (CPython's decoder checks each
    # str): every kind of invalid UTF-8, anywhere in a message, must still read as stock.
    msg = lc.AIMessage(
        content="content marker, then more than twelve bytes",
        id="idmark",
        additional_kwargs={"keymark": 1},
        response_metadata={"model_name": "m"},
    )
    value: Any = [msg, lc.HumanMessage(content="after", id="2")]
    if where == "snapshot":
        value = _DeltaSnapshot(value)
    kind, data = JsonPlusSerializer().dumps_typed(value)
    assert kind == "msgpack"
    marker = {"short value": b"idmark", "key": b"keymark", "snapshot": b"idmark"}.get(
        where, b"content marker"
    )
    assert data.count(marker) == 1
    data = data.replace(marker, bad + marker[len(bad) :])
    out = []
    for ser in (JsonPlusSerializer(), RustSerializer()):
        try:
            out.append(("ok", ser.loads_typed((kind, data))))
        except Exception as exc:
            out.append(("raised", type(exc), str(exc)))
    assert same(out[1], out[0])


def test_json_revival_with_allowed_modules() -> None:
    msg = lc.HumanMessage(content="hi", id="1")
    data = ("json", pickle.dumps(None)[:0] + _lc2_json(msg))
    for options in ({}, {"allowed_json_modules": True}):
        got = RustSerializer(**options).loads_typed(data)
        assert same(got, JsonPlusSerializer(**options).loads_typed(data))


def _lc2_json(msg: Any) -> bytes:
    import json

    return json.dumps(
        {
            "lc": 2,
            "type": "constructor",
            "id": [*type(msg).__module__.split("."), type(msg).__name__],
            "kwargs": {"content": msg.content, "id": msg.id},
        }
    ).encode()


def _reset_warned() -> None:
    jsonplus._warned_unregistered_types.clear()
    jsonplus._warned_blocked_types.clear()
    jsonplus._warned_unreconstructable_types.clear()


def _load_logged(
    ser: JsonPlusSerializer, data: tuple[str, bytes], caplog: pytest.LogCaptureFixture
) -> tuple[Any, list[str]]:
    _reset_warned()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="langgraph.checkpoint.serde.jsonplus"):
        value = ser.loads_typed(data)
    return value, [r.getMessage() for r in caplog.records]


STATE = {
    "p": Point(1, [2]),
    "m": ModelV2(name="n", count=3),
    "c": Color.RED,
    "msgs": [lc.AIMessage(content="a", id="1"), lc.HumanMessage(content="h")],
    "d": _DeltaSnapshot([lc.HumanMessage(content="x", id="2")]),
}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"allowed_msgpack_modules": None},
        {"allowed_msgpack_modules": [("serde_values", "Point")]},
        {"allowed_msgpack_modules": [Point, ModelV2, Color]},
        {"allowed_msgpack_modules": True},
    ],
    ids=repr,
)
def test_allowlist_blocking_and_warnings_match(
    options: dict, caplog: pytest.LogCaptureFixture
) -> None:
    data = JsonPlusSerializer().dumps_typed(STATE)
    expected, stock_log = _load_logged(JsonPlusSerializer(**options), data, caplog)
    got, rust_log = _load_logged(RustSerializer(**options), data, caplog)
    assert same(got, expected)
    assert rust_log == stock_log


def test_strict_mode_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lg_msgpack, "STRICT_MSGPACK_ENABLED", True)
    data = JsonPlusSerializer().dumps_typed(STATE)
    expected, stock_log = _load_logged(JsonPlusSerializer(), data, caplog)
    got, rust_log = _load_logged(RustSerializer(), data, caplog)
    assert isinstance(got["p"], dict)  # blocked: its raw data
    assert same(got, expected)
    assert rust_log == stock_log


def test_with_msgpack_allowlist(caplog: pytest.LogCaptureFixture) -> None:
    data = JsonPlusSerializer().dumps_typed(STATE)
    strict_stock = JsonPlusSerializer(allowed_msgpack_modules=None)
    strict_rust = RustSerializer(allowed_msgpack_modules=None)
    wider = strict_rust.with_msgpack_allowlist([Point])
    assert isinstance(wider, RustSerializer)
    expected, stock_log = _load_logged(strict_stock.with_msgpack_allowlist([Point]), data, caplog)
    got, rust_log = _load_logged(wider, data, caplog)
    assert isinstance(got["p"], Point)
    assert same(got, expected) and rust_log == stock_log
    # The original keeps its own allowlist.
    assert isinstance(strict_rust.loads_typed(data)["p"], dict)


def test_custom_ext_hook_sees_every_extension_value() -> None:
    seen: list[int] = []

    def hook(code: int, data: bytes) -> Any:
        seen.append(code)
        return ("ext", code)

    data = JsonPlusSerializer().dumps_typed(STATE)
    got = RustSerializer(__unpack_ext_hook__=hook).loads_typed(data)
    assert same(got, JsonPlusSerializer(__unpack_ext_hook__=hook).loads_typed(data))
    assert got["msgs"] == [("ext", 5), ("ext", 5)]


def test_encrypted_serializer_wraps_it() -> None:
    key = b"0123456789abcdef"
    rust = EncryptedSerializer.from_pycryptodome_aes(serde=RustSerializer(), key=key)
    stock = EncryptedSerializer.from_pycryptodome_aes(serde=JsonPlusSerializer(), key=key)
    typed = rust.dumps_typed(STATE)
    assert typed[0] == "msgpack+aes"
    assert same(stock.loads_typed(typed), rust.loads_typed(typed))
    assert same(rust.loads_typed(stock.dumps_typed(STATE)), stock.loads_typed(typed))


def constructor_calls(monkeypatch: pytest.MonkeyPatch, classes: tuple[type, ...]) -> list[str]:
    """A list that gets the class name of every object of ``classes`` built through its
    ``__init__`` from now on (until the test ends)."""
    calls: list[str] = []
    for cls in classes:
        original = cls.__init__

        def spy(self: Any, *a: Any, _o: Any = original, **k: Any) -> None:
            calls.append(type(self).__name__)
            _o(self, *a, **k)

        monkeypatch.setattr(cls, "__init__", spy)
    return calls


def test_message_fast_path_builds_without_the_constructor(monkeypatch: pytest.MonkeyPatch) -> None:
    msgs = [
        lc.HumanMessage(content="h", id="1"),
        lc.AIMessage(
            content="a",
            tool_calls=[{"name": "f", "args": {"q": 1}, "id": "c"}],
            usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
        ),
        lc.ToolMessage(content="t", tool_call_id="c"),
    ]
    data = JsonPlusSerializer().dumps_typed(msgs)
    expected = JsonPlusSerializer().loads_typed(data)
    calls = constructor_calls(monkeypatch, (lc.HumanMessage, lc.AIMessage, lc.ToolMessage))
    got = RustSerializer().loads_typed(data)
    assert calls == []
    assert same(got, expected)
    for m in got:
        assert m.model_fields_set == set(type(m).model_fields)


def test_delta_snapshot_messages_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # A DeltaChannel snapshot (`_DeltaSnapshot`, ext code 7) holding a chat history: its
    # messages are built as a bare list's are, not by the stock hook's constructors.
    snap = _DeltaSnapshot([lc.HumanMessage(content="h", id="1"), lc.AIMessage(content="a", id="2")])
    data = JsonPlusSerializer().dumps_typed(snap)
    expected = JsonPlusSerializer().loads_typed(data)
    calls = constructor_calls(monkeypatch, (lc.HumanMessage, lc.AIMessage))
    got = RustSerializer().loads_typed(data)
    assert calls == []
    assert type(got) is _DeltaSnapshot
    assert same(got, expected)
    # A serializer with its own ext hook still sees the snapshot.
    seen: list[int] = []

    def hook(code: int, payload: bytes) -> Any:
        seen.append(code)
        return ("ext", code)

    got = RustSerializer(__unpack_ext_hook__=hook).loads_typed(data)
    assert same(got, JsonPlusSerializer(__unpack_ext_hook__=hook).loads_typed(data))
    assert seen == [jsonplus.EXT_DELTA_SNAPSHOT] * 2


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x91", b"\x90\x90", b"\xc1", b"\x92\x01\xa5ab"],
    ids=["empty", "truncated", "trailing", "invalid", "short-string"],
)
def test_bad_delta_snapshot_payload_reads_as_stock(payload: bytes) -> None:
    data = ("msgpack", ormsgpack.packb(ormsgpack.Ext(jsonplus.EXT_DELTA_SNAPSHOT, payload)))
    out = []
    for ser in (JsonPlusSerializer(), RustSerializer()):
        try:
            out.append(("ok", ser.loads_typed(data)))
        except Exception as exc:
            out.append(("raised", type(exc), str(exc)))
    assert same(out[1], out[0])


@settings(FAST, max_examples=int(60 * SCALE))
@given(json_dict)
def test_dict_keys_of_every_kind(d: dict) -> None:
    check_identity({1: d, None: 2, False: 3, 1.5: 4, "s": 5, -7: d})


def test_copies_build_their_own_codec() -> None:
    import copy

    data = JsonPlusSerializer().dumps_typed(STATE)
    ser = RustSerializer()
    ser.loads_typed(data)
    for clone in (copy.copy(ser), copy.deepcopy(ser)):
        assert isinstance(clone, RustSerializer)
        assert same(clone.loads_typed(data), ser.loads_typed(data))


def test_threads_share_a_serializer() -> None:
    from concurrent.futures import ThreadPoolExecutor

    ser, stock = RustSerializer(), JsonPlusSerializer()
    values = [
        {"messages": [lc.AIMessage(content=f"m{i}-{j}", id=f"{i}-{j}") for j in range(20)], "i": i}
        for i in range(16)
    ]

    def roundtrip(v: Any) -> bool:
        out = True
        for _ in range(20):
            typed = ser.dumps_typed(v)
            out &= typed == stock.dumps_typed(v) and same(
                ser.loads_typed(typed), stock.loads_typed(typed)
            )
        return out

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(roundtrip, values))
