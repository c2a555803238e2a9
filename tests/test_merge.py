"""fast_langgraph.add_messages against LangGraph's add_messages, and langgraph_state_update /
merge_dicts against their plain-Python definitions."""

from __future__ import annotations

import copy
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    HumanMessageChunk,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.graph.message import add_messages as lg_add_messages

import fast_langgraph
from fast_langgraph import add_messages, langgraph_state_update, merge_dicts

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
POOL = ["a", "b", "c", "d", "e"]

# --- message specs: plain data that builds fresh, independent inputs for each implementation ---

ids = st.one_of(st.none(), st.sampled_from(POOL))
texts = st.sampled_from(["", "hi", "hello", "x y", "ünï"])
specs = st.one_of(
    st.tuples(st.just("human"), texts, ids),
    st.tuples(st.just("ai"), texts, ids),
    st.tuples(st.just("system"), texts, ids),
    st.tuples(st.just("tool"), texts, ids),
    st.tuples(st.just("ai_chunk"), texts, ids),
    st.tuples(st.just("human_chunk"), texts, ids),
    st.tuples(st.just("remove"), texts, st.sampled_from([*POOL, "zz", REMOVE_ALL_MESSAGES])),
    st.tuples(st.just("dict"), texts, ids),
    st.tuples(st.just("tuple"), texts, st.none()),
    st.tuples(st.just("str"), texts, st.none()),
)
left_specs = st.one_of(
    *[st.tuples(st.just(k), texts, ids) for k in ("human", "ai", "system", "tool")],
    st.tuples(st.just("ai_chunk"), texts, ids),
    st.tuples(st.just("dict"), texts, ids),
    st.tuples(st.just("str"), texts, st.none()),
)


def build(spec: tuple[str, str, str | None]) -> Any:
    kind, text, id_ = spec
    if kind == "human":
        return HumanMessage(content=text, id=id_)
    if kind == "ai":
        return AIMessage(content=text, id=id_)
    if kind == "system":
        return SystemMessage(content=text, id=id_)
    if kind == "tool":
        return ToolMessage(content=text, id=id_, tool_call_id="call-1")
    if kind == "ai_chunk":
        return AIMessageChunk(content=text, id=id_)
    if kind == "human_chunk":
        return HumanMessageChunk(content=text, id=id_)
    if kind == "remove":
        return RemoveMessage(id=id_)
    if kind == "dict":
        d: dict[str, Any] = {"role": "user", "content": text}
        if id_ is not None:
            d["id"] = id_
        return d
    if kind == "tuple":
        return ("assistant", text)
    return text


def canonical(result: Any, known_ids: set[str]) -> list[Any]:
    """Messages with every generated id replaced by its order of first appearance."""
    names: dict[str, str] = {}
    out = []
    for m in result:
        if isinstance(m, BaseMessage) and m.id is not None and m.id not in known_ids:
            assert UUID4.match(m.id), m.id
            m = m.model_copy(update={"id": names.setdefault(m.id, f"gen-{len(names)}")})
        out.append(m)
    return out


def run(fn: Any, left: Any, right: Any, fmt: Any) -> tuple[str, Any]:
    try:
        if fmt is None:
            return "ok", fn(left, right)
        return "ok", fn(left, right, format=fmt)
    except Exception as e:
        return "err", (type(e), str(e))


def compare(left_spec: list, right_spec: list, fmt: Any, single_left=False, single_right=False):
    def inputs():
        left = [build(s) for s in left_spec]
        right = [build(s) for s in right_spec]
        return (left[0] if single_left and left else left), (
            right[0] if single_right and right else right
        )

    known = set(POOL) | {"zz", REMOVE_ALL_MESSAGES}
    expected = run(lg_add_messages, *inputs(), fmt)
    got = run(add_messages, *inputs(), fmt)
    assert got[0] == expected[0], (got, expected)
    if expected[0] == "err":
        assert got[1] == expected[1]
        return
    assert isinstance(got[1], list)
    assert canonical(got[1], known) == canonical(expected[1], known)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    left=st.lists(left_specs, max_size=8),
    right=st.lists(specs, max_size=6),
    fmt=st.sampled_from([None, None, None, "langchain-openai", "bogus", ""]),
)
def test_same_as_langgraph(left, right, fmt):
    compare(left, right, fmt)


@settings(max_examples=100, deadline=None)
@given(
    left=st.lists(left_specs, min_size=1, max_size=3), right=st.lists(specs, min_size=1, max_size=3)
)
def test_same_as_langgraph_single_values(left, right):
    compare(left, right, None, single_left=True, single_right=True)


def test_generated_ids_are_unique_uuid4_and_assigned_in_place():
    left = [HumanMessage("a") for _ in range(50)]
    right = [AIMessage("b") for _ in range(50)]
    out = add_messages(left, right)
    got = [m.id for m in out]
    assert all(UUID4.match(i) for i in got)
    assert len(set(got)) == 100
    # As LangGraph does, the input messages get the ids.
    assert [m.id for m in left + right] == got


def test_results_are_new_lists_and_inputs_keep_their_order():
    left = [HumanMessage("a", id="1"), AIMessage("b", id="2")]
    before = list(left)
    out = add_messages(left, [])
    assert out == left and out is not left
    out = add_messages(left, [AIMessage("c", id="2")])
    assert left == before
    assert [m.content for m in out] == ["a", "c"]


def test_errors_match_langgraph():
    with pytest.raises(ValueError, match=r"delete a message with an ID that doesn't exist \('x'\)"):
        add_messages([HumanMessage("a", id="1")], [RemoveMessage(id="x")])
    with pytest.raises(ValueError, match="Unrecognized format='nope'"):
        add_messages([], [HumanMessage("a")], format="nope")
    with pytest.raises(ValueError, match="Only received: 'left'"):
        add_messages([HumanMessage("a")], None)
    with pytest.raises(TypeError, match=r"add_messages\(\) got an unexpected keyword argument"):
        add_messages([], [], colour="red")
    for bad in [1, {"content": "no role"}, ("martian", "hi")]:
        expected = run(lg_add_messages, [], [bad], None)
        assert expected[0] == "err"
        assert run(add_messages, [], [bad], None) == expected


def test_decorator_factory_and_signature():
    import inspect

    reducer = add_messages(format="langchain-openai")
    assert callable(reducer)
    params = list(inspect.signature(reducer).parameters.values())
    assert sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) == 2
    out = reducer([], [{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    expected = lg_add_messages(format="langchain-openai")(
        [], [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    )
    assert [type(m) for m in out] == [type(m) for m in expected]
    assert [m.content for m in out] == [m.content for m in expected]


def test_remove_all_keeps_what_follows():
    left = [HumanMessage("a", id="1")]
    out = add_messages(
        left, [AIMessage("x"), RemoveMessage(id=REMOVE_ALL_MESSAGES), AIMessage("y", id="9")]
    )
    assert [m.id for m in out] == ["9"]


def test_non_str_ids_take_the_python_path():
    # Ids compare by Python equality; an int id set after construction still merges like LangGraph.
    def make():
        a, b = HumanMessage("a"), AIMessage("b")
        a.id, b.id = 7, 7
        return [a], [b]

    assert add_messages(*make()) == lg_add_messages(*make())


def test_free_threading_smoke():
    hist = [HumanMessage(str(i), id=str(i)) for i in range(200)]
    barrier = threading.Barrier(4)

    def work(k: int) -> list:
        barrier.wait()
        return [len(add_messages(hist, [AIMessage("n", id=f"new-{k}-{j}")])) for j in range(200)]

    with ThreadPoolExecutor(4) as ex:
        for counts in ex.map(work, range(4)):
            assert counts == [201] * 200


def test_exported():
    assert fast_langgraph.add_messages is add_messages
    assert "langgraph_state_update" in fast_langgraph.__all__


# --- langgraph_state_update ----------------------------------------------------------------------


def py_state_update(state, update, append_keys=(), reducers=None):
    out = {**state, **update}
    for k in append_keys:
        if k in update:
            out[k] = (
                state[k] + update[k]
                if k in state
                else (list(update[k]) if type(update[k]) is list else update[k])
            )
    for k, f in (reducers or {}).items():
        if k in update and k in state:
            out[k] = f(state[k], update[k])
    return out


keys = st.sampled_from(["messages", "count", "notes", "x", "y"])
values = st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=4))


@settings(max_examples=200, deadline=None)
@given(
    state=st.dictionaries(keys, values, max_size=5),
    update=st.dictionaries(keys, values, max_size=5),
    append=st.lists(keys, max_size=3, unique=True),
    reduce_count=st.booleans(),
)
def test_state_update_matches_python(state, update, append, reduce_count):
    reducers = {"count": lambda a, b: (a, b)} if reduce_count and "count" not in append else None
    state_before, update_before = copy.deepcopy(state), copy.deepcopy(update)
    expected = run(lambda s, u: py_state_update(s, u, append, reducers), state, update, None)
    got = run(lambda s, u: langgraph_state_update(s, u, append, reducers), state, update, None)
    assert got == expected
    assert state == state_before and update == update_before
    if got[0] == "ok":
        out = got[1]
        assert out is not state and out is not update
        for k in append:
            if k in update and type(out[k]) is list:
                assert out[k] is not state.get(k) and out[k] is not update.get(k)


def test_state_update_details():
    state = {"messages": [1, 2], "n": 1}
    out = langgraph_state_update(state, {"messages": [3], "n": 2}, append_keys=("messages",))
    assert out == {"messages": [1, 2, 3], "n": 2}
    assert state == {"messages": [1, 2], "n": 1}
    out = langgraph_state_update({}, {"messages": [3]}, append_keys=["messages"])
    assert out["messages"] == [3]
    assert langgraph_state_update({"a": 1}, {}) == {"a": 1}
    with pytest.raises(ValueError, match="both append_keys and reducers"):
        langgraph_state_update({}, {}, ["k"], {"k": max})
    with pytest.raises(TypeError):
        langgraph_state_update({"k": [1]}, {"k": (2,)}, ["k"])
    # A LangGraph reducer works as a reducer here too.
    out = langgraph_state_update(
        {"messages": [HumanMessage("a", id="1")]},
        {"messages": [AIMessage("b", id="2")]},
        reducers={"messages": add_messages},
    )
    assert [m.id for m in out["messages"]] == ["1", "2"]


# --- merge_dicts ----------------------------------------------------------------------------------


def py_merge_dicts(a, b):
    def cp(v):
        if type(v) is dict:
            return {k: cp(x) for k, x in v.items()}
        if type(v) is list:
            return [cp(x) for x in v]
        return v

    out = {k: cp(v) for k, v in a.items()}
    for k, v in b.items():
        if k in a and type(a[k]) is dict and type(v) is dict:
            out[k] = py_merge_dicts(a[k], v)
        else:
            out[k] = cp(v)
    return out


nested = st.recursive(
    st.one_of(st.integers(), st.text(max_size=2), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=12,
)


def containers(v, acc):
    if type(v) in (dict, list):
        acc.append(v)
        for x in v.values() if type(v) is dict else v:
            containers(x, acc)
    return acc


@settings(max_examples=200, deadline=None)
@given(a=st.dictionaries(keys, nested, max_size=4), b=st.dictionaries(keys, nested, max_size=4))
def test_merge_dicts_matches_python_and_shares_no_container(a, b):
    a_before, b_before = copy.deepcopy(a), copy.deepcopy(b)
    out = merge_dicts(a, b)
    assert out == py_merge_dicts(a, b)
    assert list(out) == list(py_merge_dicts(a, b))
    assert a == a_before and b == b_before
    inputs = {id(c) for c in containers(a, []) + containers(b, [])}
    assert not any(id(c) in inputs for c in containers(out, []))


def test_merge_dicts_cycle_is_an_error():
    a: dict = {}
    a["self"] = a
    with pytest.raises(ValueError, match="nesting too deep"):
        merge_dicts({}, a)
