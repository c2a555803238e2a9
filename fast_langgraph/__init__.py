"""fast-langgraph: a drop-in accelerator for LangGraph, with a Rust core."""

from fast_langgraph._native import (
    CheckpointClosedError,
    CheckpointError,
    DatabaseLockedError,
    FastLangGraphError,
    ForeignDatabaseError,
    SerializationError,
    __version__,
)
from fast_langgraph._settings import configure
from fast_langgraph.checkpoint import RustSQLiteCheckpointer

__all__ = [
    "CheckpointClosedError",
    "CheckpointError",
    "DatabaseLockedError",
    "FastLangGraphError",
    "ForeignDatabaseError",
    "RustSQLiteCheckpointer",
    "SerializationError",
    "__version__",
    "configure",
]
