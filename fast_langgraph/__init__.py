"""fast-langgraph: a drop-in accelerator for LangGraph, with a Rust core."""

from fast_langgraph._native import (
    CheckpointClosedError,
    CheckpointError,
    DatabaseLockedError,
    DeltaBaseMissingError,
    FastLangGraphError,
    ForeignDatabaseError,
    SerializationError,
    __version__,
)
from fast_langgraph.checkpoint import RustSQLiteCheckpointer
from fast_langgraph.merge import add_messages, langgraph_state_update, merge_dicts

__all__ = [
    "CheckpointClosedError",
    "CheckpointError",
    "DatabaseLockedError",
    "DeltaBaseMissingError",
    "FastLangGraphError",
    "ForeignDatabaseError",
    "RustSQLiteCheckpointer",
    "SerializationError",
    "add_messages",
    "langgraph_state_update",
    "merge_dicts",
    "__version__",
]
