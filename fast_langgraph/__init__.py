"""fast-langgraph: a drop-in accelerator for LangGraph, with a Rust core."""

from fast_langgraph._native import (
    CacheCorruptError,
    CacheError,
    CheckpointClosedError,
    CheckpointConflictError,
    CheckpointError,
    DatabaseLockedError,
    DeltaBaseMissingError,
    FastLangGraphError,
    ForeignDatabaseError,
    SerializationError,
    __version__,
)
from fast_langgraph._settings import configure
from fast_langgraph.cache import FastLLMCache, FastNodeCache, RustLLMCache, cached
from fast_langgraph.checkpoint import RustSQLiteCheckpointer
from fast_langgraph.merge import add_messages, langgraph_state_update, merge_dicts
from fast_langgraph.postgres import RustPostgresCheckpointer
from fast_langgraph.serde import RustSerializer

__all__ = [
    "CacheCorruptError",
    "CacheError",
    "CheckpointClosedError",
    "CheckpointConflictError",
    "CheckpointError",
    "DatabaseLockedError",
    "DeltaBaseMissingError",
    "FastLLMCache",
    "FastLangGraphError",
    "FastNodeCache",
    "ForeignDatabaseError",
    "RustLLMCache",
    "RustPostgresCheckpointer",
    "RustSQLiteCheckpointer",
    "RustSerializer",
    "SerializationError",
    "__version__",
    "add_messages",
    "cached",
    "configure",
    "langgraph_state_update",
    "merge_dicts",
]
