"""fast-langgraph: a drop-in accelerator for LangGraph, with a Rust core."""

from fast_langgraph._native import (
    CacheCorruptError,
    CacheError,
    CheckpointClosedError,
    CheckpointError,
    DatabaseLockedError,
    FastLangGraphError,
    ForeignDatabaseError,
    SerializationError,
    __version__,
)
from fast_langgraph.cache import FastLLMCache, FastNodeCache, RustLLMCache, cached
from fast_langgraph.checkpoint import RustSQLiteCheckpointer

__all__ = [
    "CacheCorruptError",
    "CacheError",
    "CheckpointClosedError",
    "CheckpointError",
    "DatabaseLockedError",
    "FastLLMCache",
    "FastLangGraphError",
    "FastNodeCache",
    "ForeignDatabaseError",
    "RustLLMCache",
    "RustSQLiteCheckpointer",
    "SerializationError",
    "__version__",
    "cached",
]
