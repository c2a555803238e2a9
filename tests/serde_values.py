"""Hypothesis strategies for values a LangGraph serializer meets, and a structural equality
that tells types apart and treats NaN as equal to NaN (shared by the serializer tests)."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import math
import pathlib
from collections import deque
from typing import Any, NamedTuple

import pydantic
import pydantic.v1
from hypothesis import strategies as st
from langchain_core import messages as lc
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.types import Command, Interrupt, Send


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(str, enum.Enum):
    FAST = "fast"


@dataclasses.dataclass
class Point:
    x: Any
    y: Any = None


class Pair(NamedTuple):
    left: Any
    right: Any


PlainNT = collections.namedtuple("PlainNT", "a b")


class ModelV2(pydantic.BaseModel):
    name: str
    count: int = 0
    tags: list[str] = []
    extra: Any = None


class ModelV1(pydantic.v1.BaseModel):
    name: str
    count: int = 0


class StrSub(str):
    pass


class Unserializable:
    """No hook knows it: both serializers raise (or pickle, with pickle_fallback)."""

    def __eq__(self, other: object) -> bool:
        return type(other) is Unserializable

    __hash__ = object.__hash__


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down; NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, (list, tuple, deque)):
        if isinstance(a, tuple) and hasattr(a, "_fields"):
            return same(tuple(a), tuple(b))
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (
            list(a.keys()) == list(b.keys())
            and all(same(k1, k2) for k1, k2 in zip(a, b))
            and all(same(a[k], b[k]) for k in a)
        )
    if isinstance(a, pydantic.BaseModel):
        return (
            same(a.__dict__, b.__dict__)
            and a.model_fields_set == b.model_fields_set
            and same(a.__pydantic_extra__, b.__pydantic_extra__)
            and a.__pydantic_private__ == b.__pydantic_private__
        )
    if isinstance(a, pydantic.v1.BaseModel):
        return same(a.__dict__, b.__dict__) and a.__fields_set__ == b.__fields_set__
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, Send):
        return same(a.node, b.node) and same(a.arg, b.arg) and a.timeout == b.timeout
    return bool(a == b)


# --- leaves -------------------------------------------------------------------------------

surrogate_text = st.sampled_from(["\ud800", "a\udfffb", "\ud83d\ude00", "x\udc80\ud800"])
text = st.one_of(st.text(max_size=40), st.text(min_size=30, max_size=300), surrogate_text)
ints = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 127, 128, 255, 256, 65535, 65536, 2**32, -32, -33, -129, -(2**31) - 1]),
)
big_ints = st.sampled_from([2**64, -(2**63) - 1, 10**30])
floats = st.floats(allow_nan=True, allow_infinity=True)
tzs = st.sampled_from(
    [
        None,
        dt.timezone.utc,
        dt.timezone(dt.timedelta(hours=5, minutes=30)),
        dt.timezone(dt.timedelta(hours=-3), "BRT"),
    ]
)
datetimes = st.builds(
    lambda d, tz: d.replace(tzinfo=tz), st.datetimes(min_value=dt.datetime(1, 1, 2)), tzs
)
times = st.builds(lambda t, tz: t.replace(tzinfo=tz), st.times(), tzs)
decimals = st.decimals(allow_nan=False, allow_infinity=True, places=None)
hashables = st.one_of(st.none(), st.booleans(), ints, text, st.floats(allow_nan=False))

leaves = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    text,
    st.binary(max_size=40),
    st.binary(max_size=40).map(bytearray),
    datetimes,
    st.dates(),
    times,
    st.timedeltas(),
    st.uuids(),
    decimals,
    st.sampled_from(list(Color) + list(Level) + list(Mode)),
    st.sampled_from([pathlib.Path("/tmp/x"), pathlib.PurePosixPath("a/b")]),
)


# --- LangChain messages -------------------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=12))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
json_dict = st.dictionaries(st.text(max_size=8), json_value, max_size=3)
content = st.one_of(
    st.text(max_size=60),
    st.lists(
        st.one_of(
            st.text(max_size=20),
            st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}),
        ),
        max_size=3,
    ),
)
ids = st.one_of(st.none(), st.text(min_size=1, max_size=12))
tool_calls = st.lists(
    st.builds(
        lambda name, args, id_: {"name": name, "args": args, "id": id_, "type": "tool_call"},
        st.text(max_size=10),
        json_dict,
        ids,
    ),
    max_size=2,
)
usage = st.one_of(
    st.none(),
    st.builds(
        lambda i, o: {"input_tokens": i, "output_tokens": o, "total_tokens": i + o},
        st.integers(0, 10**6),
        st.integers(0, 10**6),
    ),
    st.builds(
        lambda i: {
            "input_tokens": i,
            "output_tokens": 1,
            "total_tokens": i + 1,
            "input_token_details": {"cache_read": i},
        },
        st.integers(0, 100),
    ),
)
common = {
    "content": content,
    "additional_kwargs": json_dict,
    "response_metadata": json_dict,
    "id": ids,
    "name": st.one_of(st.none(), st.text(max_size=8)),
}


def _make(cls: type) -> Any:
    # A plain callable, so hypothesis infers nothing from the model's fields.
    return lambda **kwargs: cls(**kwargs)


def _msg(cls: type, **extra: Any) -> st.SearchStrategy:
    return st.builds(_make(cls), **common, **extra)


messages = st.one_of(
    _msg(lc.HumanMessage),
    _msg(lc.HumanMessageChunk),
    _msg(lc.SystemMessage),
    _msg(lc.SystemMessageChunk),
    _msg(lc.AIMessage, tool_calls=tool_calls, usage_metadata=usage),
    _msg(lc.AIMessageChunk, usage_metadata=usage),
    st.builds(
        lambda c, tc: lc.AIMessageChunk(
            content=c,
            tool_call_chunks=[
                {"name": t["name"], "args": "{}", "id": t["id"], "index": i}
                for i, t in enumerate(tc)
            ],
        ),
        content,
        tool_calls,
    ),
    _msg(
        lc.ToolMessage,
        tool_call_id=st.text(max_size=8),
        status=st.sampled_from(["success", "error"]),
    ),
    _msg(lc.ToolMessageChunk, tool_call_id=st.text(max_size=8)),
    _msg(lc.ChatMessage, role=st.text(max_size=8)),
    _msg(lc.ChatMessageChunk, role=st.text(max_size=8)),
    st.builds(_make(lc.FunctionMessage), content=content, name=st.text(max_size=8)),
    st.builds(_make(lc.FunctionMessageChunk), content=content, name=st.text(max_size=8)),
    st.builds(_make(lc.RemoveMessage), id=st.text(min_size=1, max_size=8)),
    st.builds(
        lambda i, a: lc.AIMessage(
            content="",
            additional_kwargs={
                "tool_calls": [
                    {"id": i, "type": "function", "function": {"name": "f", "arguments": a}}
                ]
            },
        ),
        st.text(max_size=5),
        st.sampled_from(['{"a": 1}', "not json", "{}"]),
    ),
    st.builds(
        _make(lc.ToolMessage),
        content=content,
        tool_call_id=st.text(max_size=8),
        artifact=json_value,
    ),
)


# --- everything ---------------------------------------------------------------------------


def _objects(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.builds(Point, inner, inner),
        st.builds(Pair, inner, inner),
        st.builds(PlainNT, inner, inner),
        st.builds(_make(ModelV2), name=st.text(max_size=8), count=st.integers(0, 9), extra=inner),
        st.builds(_make(ModelV1), name=st.text(max_size=8), count=st.integers(0, 9)),
        st.builds(Send, st.text(max_size=8), inner),
        st.builds(_make(Interrupt), value=inner, id=st.text(max_size=8)),
        st.builds(_make(Command), goto=st.text(max_size=5), update=inner),
        st.builds(_DeltaSnapshot, inner),
        st.frozensets(hashables, max_size=3),
        st.sets(hashables, max_size=3),
        st.lists(inner, max_size=3).map(deque),
        messages,
    )


values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(text, inner, max_size=4),
        st.dictionaries(hashables, inner, max_size=3),
        _objects(inner),
    ),
    max_leaves=12,
)
