"""``RustSerializer``: LangGraph's ``JsonPlusSerializer`` wire format, encoded and decoded in Rust.

``RustSerializer`` is a subclass of ``JsonPlusSerializer`` with the same constructor, options
(``pickle_fallback``, ``allowed_json_modules``, ``allowed_msgpack_modules``,
``with_msgpack_allowlist``) and behaviour under ``LANGGRAPH_STRICT_MSGPACK``. Its
``dumps_typed`` returns the bytes ``JsonPlusSerializer.dumps_typed`` returns for the same value,
byte for byte; its ``loads_typed`` returns equal objects of the same types. Whatever the Rust
walk does not write or read exactly goes through the stock code for that value, so errors,
warnings and the allowlist decisions are stock's own. See docs/serde.md.

``install_default_serde()`` makes LangGraph's savers and node caches that are built without a
serializer use ``RustSerializer``; ``uninstall_default_serde()`` reverts it.
"""

from __future__ import annotations

import datetime
import importlib
import types
import typing
import uuid
from typing import Any, Literal

import ormsgpack
from langchain_core import messages as _lc_messages
from langgraph.checkpoint.serde import _msgpack as _lg_msgpack
from langgraph.checkpoint.serde import jsonplus as _jp
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fast_langgraph._native import MsgpackCodec

__all__ = [
    "RustSerializer",
    "default_serde_installed",
    "install_default_serde",
    "uninstall_default_serde",
]

_EMPTY_BYTES = b""
# Returned by MsgpackCodec.decode when ormsgpack must decide.
_FALLBACK = object()

# The message classes with a native path: every one LangGraph lists as safe. Chunks are
# encoded natively but always decoded through their validating constructor (their
# after-validators derive fields from one another).
_MESSAGE_CLASSES = (
    ("AIMessage", True),
    ("AIMessageChunk", False),
    ("HumanMessage", True),
    ("HumanMessageChunk", False),
    ("SystemMessage", True),
    ("SystemMessageChunk", False),
    ("ChatMessage", True),
    ("ChatMessageChunk", False),
    ("ToolMessage", True),
    ("ToolMessageChunk", False),
    ("FunctionMessage", True),
    ("FunctionMessageChunk", False),
    ("RemoveMessage", True),
)


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__total__")


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _field_kind(tp: Any) -> tuple[str, list[str | None]] | None:
    """The field kind the Rust walk checks for an annotation; None when it has none."""
    if tp is Any:
        return "any", []
    if tp is str:
        return "str", []
    origin = typing.get_origin(tp)
    if origin is Literal:
        values = list(typing.get_args(tp))
        return ("literal", values) if all(isinstance(v, str) for v in values) else None
    if origin is dict:
        return "dict", []
    if origin is list:
        (item,) = typing.get_args(tp) or (None,)
        return ("dict_list", []) if _is_typeddict(item) else None
    args = _union_args(tp)
    if args is None:
        return None
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return None
        (inner,) = rest
        if inner is str:
            return "opt_str", []
        if _is_typeddict(inner):
            return "opt_dict", []
        if typing.get_origin(inner) is Literal:
            values = list(typing.get_args(inner))
            if all(isinstance(v, str) for v in values):
                return "literal", [*values, None]
        return None
    if len(args) == 2 and args[0] is str and typing.get_origin(args[1]) is list:
        (item,) = typing.get_args(args[1])
        item_args = _union_args(item) or ()
        if len(item_args) == 2 and item_args[0] is str and typing.get_origin(item_args[1]) is dict:
            return "content", []
    return None


def _resolves_to_itself(cls: type) -> bool:
    """Whether a stored (module, name) of ``cls`` resolves to ``cls``, as the stock ext hook
    resolves it."""
    return getattr(importlib.import_module(cls.__module__), cls.__name__, None) is cls


def _message_specs() -> list[tuple[type, list[tuple[str, str, list[str | None]]], bool, bool]]:
    """Each message class with its fields' kinds; a class with a field of another shape, a
    custom ``__new__`` or private attributes is left to the stock path."""
    specs: list[tuple[type, list[tuple[str, str, list[str | None]]], bool, bool]] = []
    for name, fast_decode in _MESSAGE_CLASSES:
        cls = getattr(_lc_messages, name, None)
        if cls is None:
            continue
        if not _resolves_to_itself(cls):
            continue
        if cls.__new__ is not object.__new__ or getattr(cls, "__private_attributes__", None):
            continue
        fields = []
        for field_name, info in cls.model_fields.items():
            kind = _field_kind(info.annotation)
            if kind is None:
                break
            fields.append((field_name, kind[0], kind[1]))
        else:
            specs.append((cls, fields, fast_decode, name == "AIMessage"))
    return specs


_SPECS = _message_specs()
_NATIVES = [
    (uuid.UUID, "uuid"),
    (datetime.datetime, "datetime"),
    (datetime.date, "date"),
    (datetime.timedelta, "timedelta"),
]
_SAFE = [list(k) for k in _lg_msgpack.SAFE_MSGPACK_TYPES]
_SAFE_METHODS = [list(k) for k in _lg_msgpack.SAFE_MSGPACK_METHODS]


def _new_codec(ext_hook: Any, native_ext: bool) -> Any:
    return MsgpackCodec(
        _jp._msgpack_enc,
        ext_hook,
        native_ext,
        _FALLBACK,
        _SPECS,
        _NATIVES,
        _SAFE,
        _SAFE_METHODS,
    )


# Encoding depends on nothing per serializer; one codec serves them all.
_ENCODER = _new_codec(_jp._msgpack_ext_hook, False)


class RustSerializer(JsonPlusSerializer):
    """``JsonPlusSerializer``'s wire format, encoded and decoded in Rust.

    Takes the same arguments as ``JsonPlusSerializer`` and is a subclass of it, so it can be
    passed anywhere a LangGraph serializer goes, including inside ``EncryptedSerializer``.

    - ``dumps_typed(obj)`` returns exactly what ``JsonPlusSerializer.dumps_typed(obj)`` returns,
      with the same options; values it cannot write exactly (and every error, and the
      ``pickle_fallback`` path) go through the stock code.
    - ``loads_typed(data)`` returns objects equal to, and of the same types as, the stock
      result. Extension values go through the serializer's own ext hook (allowlist, warnings,
      blocked types as raw data), except LangGraph's always-allowed types, ``DeltaChannel``
      snapshots (``_DeltaSnapshot``) and LangChain messages, which are built here; a message
      without re-validation when the stored fields are exactly the class's current fields
      with the types validation leaves unchanged, through the class's constructor otherwise.
    """

    def __getstate__(self) -> dict[str, Any]:
        # copy, deepcopy and pickle leave the codec behind; the copy builds its own.
        state = self.__dict__.copy()
        state.pop("_fast_langgraph_codec", None)
        return state

    def _codec(self) -> Any:
        # One codec per serializer configuration; a copy made by with_msgpack_allowlist has
        # another ext hook and builds its own.
        hook = self._unpack_ext_hook
        cached = self.__dict__.get("_fast_langgraph_codec")
        if cached is None or cached[0] is not hook:
            codec = _new_codec(hook, not self._custom_unpack_ext_hook)
            cached = (hook, codec)
            self.__dict__["_fast_langgraph_codec"] = cached
        return cached[1]

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if obj is None:
            return "null", _EMPTY_BYTES
        if isinstance(obj, (bytes, bytearray)):
            return JsonPlusSerializer.dumps_typed(self, obj)
        data = _ENCODER.encode(obj)
        if data is None:
            return JsonPlusSerializer.dumps_typed(self, obj)
        return "msgpack", data

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        type_, data_ = data
        if type_ == "msgpack":
            value = self._codec().decode(data_)
            if value is _FALLBACK:
                return ormsgpack.unpackb(
                    data_, ext_hook=self._unpack_ext_hook, option=ormsgpack.OPT_NON_STR_KEYS
                )
            return value
        return JsonPlusSerializer.loads_typed(self, data)


# --- the default serializer of LangGraph's savers and caches -------------------------------

# (module, class) pairs whose `serde` class attribute is the default a saver or cache built
# without a serializer takes (`serde or self.serde`). The base classes hold it for every saver
# and cache LangGraph ships; a subclass listed here is patched too if it sets its own.
_DEFAULT_SERDE_OWNERS = (
    ("langgraph.checkpoint.base", "BaseCheckpointSaver"),
    ("langgraph.cache.base", "BaseCache"),
    ("langgraph.checkpoint.memory", "InMemorySaver"),
    ("langgraph.checkpoint.sqlite", "SqliteSaver"),
    ("langgraph.checkpoint.sqlite.aio", "AsyncSqliteSaver"),
    ("langgraph.checkpoint.postgres", "PostgresSaver"),
    ("langgraph.checkpoint.postgres.aio", "AsyncPostgresSaver"),
    ("langgraph.cache.memory", "InMemoryCache"),
    ("langgraph.cache.sqlite", "SqliteCache"),
    ("langgraph.cache.redis", "RedisCache"),
)
# What install_default_serde replaced: (class, the original serializer).
# (class, the serializer it had): the class is a saver or cache class with a ``serde`` attribute.
_installed: list[tuple[Any, Any]] = []


def install_default_serde() -> list[str]:
    """Make LangGraph's savers and node caches built without a serializer use
    ``RustSerializer``.

    The default a saver or cache takes when ``serde`` is not given is the class attribute
    ``serde`` (``BaseCheckpointSaver.serde``, ``BaseCache.serde``), shared by every subclass:
    ``InMemorySaver``, ``SqliteSaver``, ``AsyncSqliteSaver``, ``PostgresSaver`` (if
    installed) and LangGraph's caches. Each one that is still a stock ``JsonPlusSerializer`` is
    replaced by a ``RustSerializer`` with the same ``pickle_fallback``; a serializer someone
    else set is left alone. Savers and caches built before the call keep the serializer they
    have. Checkpoints written either way are byte-identical.

    Returns:
        The patched attributes, as ``"module.Class.serde"``; empty when already installed.
    """
    if _installed:
        return []
    patched = []
    for module_name, class_name in _DEFAULT_SERDE_OWNERS:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        current = cls.__dict__.get("serde")
        if type(current) is not JsonPlusSerializer:
            continue
        cls.serde = RustSerializer(pickle_fallback=current.pickle_fallback)
        _installed.append((cls, current))
        patched.append(f"{module_name}.{class_name}.serde")
    return patched


def uninstall_default_serde() -> None:
    """Put back the serializers ``install_default_serde`` replaced (where they are still
    ours)."""
    while _installed:
        cls, original = _installed.pop()
        if isinstance(cls.__dict__.get("serde"), RustSerializer):
            cls.serde = original


def default_serde_installed() -> bool:
    """True between ``install_default_serde()`` and ``uninstall_default_serde()``."""
    return bool(_installed)
