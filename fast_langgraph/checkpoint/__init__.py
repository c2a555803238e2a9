"""`RustSQLiteCheckpointer`: a LangGraph checkpointer on SQLite, with its storage engine in Rust.

One module per concept:

- :mod:`fast_langgraph.checkpoint.saver`: ``RustSQLiteCheckpointer``, LangGraph's
  ``BaseCheckpointSaver`` interface (serialization, configs, ``CheckpointTuple``);
- :mod:`fast_langgraph.checkpoint._deltas`: the bookkeeping of append-only deltas;
- :mod:`fast_langgraph.checkpoint._batches`: ``list`` rows decoded in batches with the garbage
  collector paused (shared by every saver here and the shim);
- :mod:`fast_langgraph.checkpoint.sqlite_saver`: moving between this layout and a
  ``langgraph-checkpoint-sqlite`` database (``import_sqlite_saver`` reads one,
  ``export_sqlite_saver`` writes one), the only place that uses Python's ``sqlite3``.

The SQL lives in Rust (``fast_langgraph._native.CheckpointStore``).
"""

from fast_langgraph.checkpoint.saver import RustSQLiteCheckpointer
from fast_langgraph.checkpoint.sqlite_saver import is_sqlite_saver_file

__all__ = ["RustSQLiteCheckpointer", "is_sqlite_saver_file"]
