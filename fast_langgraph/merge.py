"""State merging in Rust: an `add_messages`-compatible reducer, `langgraph_state_update` and
`merge_dicts`, and the hooks that make compiled graphs use the Rust reducer.

`add_messages` is a drop-in for `langgraph.graph.message.add_messages`: same signature (including
`format=` and use as a decorator factory), same results, same errors. The pass over the messages
(type checks, ids, the id-index merge) runs in Rust; only the conversions that need LangChain
(dicts, tuples, strings and chunks into messages; the OpenAI format) call back into Python.

`install_rust_add_messages()` makes every `BinaryOperatorAggregate` channel whose reducer is
LangGraph's `add_messages` call the Rust reducer instead, including channels of graphs compiled
before the call. `uninstall_rust_add_messages()` restores LangGraph's class exactly.
"""

from __future__ import annotations

import uuid
import warnings
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, cast

from langchain_core.messages import (
    BaseMessage,
    BaseMessageChunk,
    RemoveMessage,
    convert_to_messages,
    message_chunk_to_message,
)
from langgraph.channels.binop import BinaryOperatorAggregate
from langgraph.graph import message as _lg_message

from fast_langgraph._native import MessageMerger, langgraph_state_update, merge_dicts

__all__ = [
    "REMOVE_ALL_MESSAGES",
    "add_messages",
    "install_rust_add_messages",
    "is_rust_add_messages_installed",
    "langgraph_state_update",
    "merge_dicts",
    "uninstall_rust_add_messages",
]

REMOVE_ALL_MESSAGES = "__remove_all__"


def _coerce(messages: list) -> list:
    # Called only when some item is not a plain message: LangGraph's conversion of the list.
    return [
        message_chunk_to_message(cast(BaseMessageChunk, m)) for m in convert_to_messages(messages)
    ]


def _format_messages(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    try:
        from langchain_core.messages import convert_to_openai_messages
    except ImportError:  # pragma: no cover - langchain-core < 0.3.11
        msg = (
            "Must have langchain-core>=0.3.11 installed to use automatic message "
            "formatting (format='langchain-openai'). Please update your langchain-core "
            "version or remove the 'format' flag. Returning un-formatted "
            "messages."
        )
        warnings.warn(msg, stacklevel=2)
        return list(messages)
    return convert_to_messages(convert_to_openai_messages(messages))


def _finish(merged: list, format: Any) -> list:
    if format == "langchain-openai":
        return _format_messages(merged)
    if format:
        msg = f"Unrecognized {format=}. Expected one of 'langchain-openai', None."
        raise ValueError(msg)
    return merged


def _python_merge(left: list, right: list, format: Any) -> list:
    """LangGraph's merge on coerced lists whose ids are set: the path for ids that are not
    `str` (they compare by Python equality, which the Rust plan does not model)."""
    remove_all_idx = None
    for idx, m in enumerate(right):
        if isinstance(m, RemoveMessage) and m.id == REMOVE_ALL_MESSAGES:
            remove_all_idx = idx
    if remove_all_idx is not None:
        return right[remove_all_idx + 1 :]
    merged = left.copy()
    merged_by_id = {m.id: i for i, m in enumerate(merged)}
    ids_to_remove = set()
    for m in right:
        if (existing_idx := merged_by_id.get(m.id)) is not None:
            if isinstance(m, RemoveMessage):
                ids_to_remove.add(m.id)
            else:
                ids_to_remove.discard(m.id)
                merged[existing_idx] = m
        else:
            if isinstance(m, RemoveMessage):
                raise ValueError(
                    f"Attempting to delete a message with an ID that doesn't exist ('{m.id}')"
                )
            merged_by_id[m.id] = len(merged)
            merged.append(m)
    if ids_to_remove:
        merged = [m for m in merged if m.id not in ids_to_remove]
    return _finish(merged, format)


def _new_id() -> uuid.UUID:
    # Looked up on each call, as LangGraph does, so that patching uuid.uuid4 reaches both.
    return uuid.uuid4()


_merger = MessageMerger(
    BaseMessage,
    BaseMessageChunk,
    RemoveMessage,
    _coerce,
    _new_id,
    _finish,
    _python_merge,
)
_merge = _merger.merge


def _add_messages_impl(
    left: Any,
    right: Any,
    *,
    format: Literal["langchain-openai"] | None = None,
) -> Any:
    return _merge(left, right, format)


# So that a bad keyword reads as LangGraph's: "add_messages() got an unexpected keyword argument".
_add_messages_impl.__name__ = _add_messages_impl.__qualname__ = "add_messages"


def _add_messages_wrapper(func: Callable) -> Callable:
    def add_messages(left: Any = None, right: Any = None, **kwargs: Any) -> Any:
        if left is not None and right is not None:
            if kwargs:
                return func(left, right, **kwargs)
            return _merge(left, right)
        elif left is not None or right is not None:
            msg = (
                f"Must specify non-null arguments for both 'left' and 'right'. Only "
                f"received: '{'left' if left else 'right'}'."
            )
            raise ValueError(msg)
        else:
            return partial(func, **kwargs)

    add_messages.__doc__ = _lg_message.add_messages.__doc__
    add_messages.__module__ = __name__
    return add_messages


add_messages = _add_messages_wrapper(_add_messages_impl)
"""Drop-in for `langgraph.graph.message.add_messages`, merged in Rust."""

# --- Making compiled graphs use the Rust reducer -----------------------------------------------

# LangGraph's reducer, as the module defines it; and the undecorated function that its
# decorator-factory form (`add_messages(format=...)`) wraps in a `partial`.
_LG_ADD_MESSAGES = _lg_message.add_messages
_LG_INNER = next(
    (
        c.cell_contents
        for c in (getattr(_LG_ADD_MESSAGES, "__closure__", None) or ())
        if callable(c.cell_contents)
    ),
    None,
)

# What the channel sees in place of LangGraph's reducer while installed: a function of its own
# (not `add_messages` itself), so that writing it back maps to LangGraph's, and a channel the user
# built with `fast_langgraph.add_messages` keeps that choice after uninstalling.
_swapped_add_messages = _add_messages_wrapper(_add_messages_impl)
_swapped_add_messages.__name__ = "add_messages"
_swapped_add_messages.__qualname__ = "add_messages"

# LangGraph's `partial(func, format=...)` objects -> ours, and back.
_to_ours: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_to_theirs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_ORIGINAL_OPERATOR = BinaryOperatorAggregate.__dict__.get("operator")


def _ours(op: Any) -> Any:
    if op is _LG_ADD_MESSAGES:
        return _swapped_add_messages
    if type(op) is partial and _LG_INNER is not None and op.func is _LG_INNER and not op.args:
        mine = _to_ours.get(op)
        if mine is None:
            mine = partial(_add_messages_impl, **op.keywords)
            _to_ours[op] = mine
            _to_theirs[mine] = op
        return mine
    return op


def _theirs(op: Any) -> Any:
    if op is _swapped_add_messages:
        return _LG_ADD_MESSAGES
    if type(op) is partial:
        original = _to_theirs.get(op)
        if original is not None:
            return original
    return op


def _make_operator_property(slot: Any) -> property:
    get_slot, set_slot, del_slot = slot.__get__, slot.__set__, slot.__delete__

    def fget(self: Any) -> Any:
        return _ours(get_slot(self, type(self)))

    def fset(self: Any, value: Any) -> None:
        # The slot always holds what LangGraph would hold, so uninstalling needs no walk over
        # existing channels.
        set_slot(self, _theirs(value))

    def fdel(self: Any) -> None:
        del_slot(self)

    return property(
        fget, fset, fdel, "The reducer; LangGraph's add_messages reads as the Rust one."
    )


def is_rust_add_messages_installed() -> bool:
    """Whether channels currently see the Rust reducer in place of LangGraph's."""
    return isinstance(BinaryOperatorAggregate.__dict__.get("operator"), property)


def install_rust_add_messages() -> bool:
    """Make every `BinaryOperatorAggregate` channel whose reducer is LangGraph's `add_messages`
    (plain, or `add_messages(format=...)`) use the Rust reducer, including channels of graphs
    compiled before this call. Other reducers are untouched.

    The channel class's `operator` slot is wrapped in a property: reading it maps LangGraph's
    reducer to the Rust one, writing maps back, so the slots keep holding LangGraph's objects.

    Returns:
        True if this call installed it; False if it was already installed, or this LangGraph's
        channel class does not have the layout this relies on.
    """
    if is_rust_add_messages_installed():
        return False
    slot = _ORIGINAL_OPERATOR
    if slot is None or not hasattr(slot, "__set__") or isinstance(slot, property):
        return False
    if not callable(_LG_ADD_MESSAGES) or _LG_INNER is None:
        return False
    BinaryOperatorAggregate.operator = _make_operator_property(slot)  # type: ignore[misc,assignment]
    return True


def uninstall_rust_add_messages() -> bool:
    """Restore LangGraph's channel class exactly.

    Returns:
        True if this call removed the Rust reducer; False if it was not installed.
    """
    if not is_rust_add_messages_installed():
        return False
    BinaryOperatorAggregate.operator = _ORIGINAL_OPERATOR  # type: ignore[misc,assignment]
    return True
