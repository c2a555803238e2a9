"""Moving in from ``langgraph-checkpoint-sqlite``: reading a SqliteSaver database (the one place
in fast-langgraph that uses Python's ``sqlite3``, always on the *source* file, read-only).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fast_langgraph._native import NewCheckpoint, NewWrites
    from fast_langgraph.checkpoint.saver import RustSQLiteCheckpointer

__all__ = ["import_sqlite_saver", "is_sqlite_saver_file"]

SQLITE_SAVER_TABLES = frozenset({"checkpoints", "writes"})


def _open_read_only(path: str) -> sqlite3.Connection:
    # A percent-encoded URI: '#', '?' or '%' in the path must not end or alter it.
    return sqlite3.connect(f"{Path(os.path.abspath(path)).as_uri()}?mode=ro", uri=True)


def _table_names(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def is_sqlite_saver_file(path: str) -> bool:
    """Whether ``path`` is an SQLite file with SqliteSaver's tables (opened read-only)."""
    try:
        src = _open_read_only(path)
    except sqlite3.Error:
        return False
    try:
        return SQLITE_SAVER_TABLES <= _table_names(src)
    except sqlite3.DatabaseError:
        return False
    finally:
        src.close()


def import_sqlite_saver(
    saver: RustSQLiteCheckpointer, source: str | os.PathLike[str], batch_size: int = 200
) -> int:
    """Copy a SqliteSaver database into ``saver``; see
    ``RustSQLiteCheckpointer.import_sqlite_saver``. Returns the number of checkpoints copied
    (those ``saver`` already held are left as they are and not counted)."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"import_sqlite_saver: source must be a path, got {type(source).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"import_sqlite_saver: batch_size must be an int >= 1, got {batch_size!r}")
    src_path = os.fspath(source)
    if not os.path.exists(src_path):
        raise FileNotFoundError(f"import_sqlite_saver: no such file: {src_path!r}")
    src = _open_read_only(src_path)
    try:
        tables = _table_names(src)
    except sqlite3.DatabaseError as e:
        src.close()
        raise ValueError(f"import_sqlite_saver: {src_path!r} is not an SQLite database: {e}") from e
    try:
        if not SQLITE_SAVER_TABLES <= tables:
            raise ValueError(
                f"import_sqlite_saver: {src_path!r} is not a SqliteSaver database "
                f"(tables: {sorted(tables)})"
            )
        return _import_rows(saver, src, batch_size)
    finally:
        src.close()


def _import_rows(saver: RustSQLiteCheckpointer, src: sqlite3.Connection, batch_size: int) -> int:
    from fast_langgraph._native import CheckpointKey, NewWrite, NewWrites

    cols = {r[1] for r in src.execute("PRAGMA table_info(writes)")}
    task_path = "task_path" if "task_path" in cols else "''"
    writes_by_cp: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
    for thread_id, ns, cid, task_id, path, idx, channel, type_, value in src.execute(
        f"SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, {task_path}, idx, channel, "
        "type, value FROM writes"
    ):
        writes_by_cp.setdefault((thread_id, ns, cid), []).append(
            (task_id, path, idx, channel, type_, value)
        )
    seen_blobs: set[tuple[str, str, str, str]] = set()
    checkpoints: list[NewCheckpoint] = []
    write_args: list[NewWrites] = []
    copied = 0
    rows = src.execute(
        "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, "
        "metadata FROM checkpoints ORDER BY thread_id, checkpoint_ns, checkpoint_id"
    )
    for thread_id, ns, cid, parent_id, type_, data, metadata in rows:
        checkpoint = saver.serde.loads_typed((type_, data))
        values = checkpoint.get("channel_values", {})
        new_versions = {}
        for ch, ver in checkpoint["channel_versions"].items():
            key = (str(thread_id), ns, ch, str(ver))
            if ch in values and key not in seen_blobs:
                seen_blobs.add(key)
                new_versions[ch] = ver
        md: Any = json.loads(metadata) if metadata is not None else {}
        checkpoints.append(
            saver._new_checkpoint(str(thread_id), ns, parent_id, checkpoint, md, new_versions, None)
        )
        by_task: dict[tuple[str, str], list[NewWrite]] = {}
        for task_id, path, idx, channel, wtype, value in writes_by_cp.get((thread_id, ns, cid), []):
            by_task.setdefault((task_id, path), []).append(NewWrite(idx, channel, wtype, value))
        for (task_id, path), items in by_task.items():
            write_args.append(
                NewWrites(CheckpointKey(str(thread_id), ns, cid), task_id, path or "", items)
            )
        if len(checkpoints) >= batch_size:
            copied += saver._store.import_many(checkpoints, write_args)
            checkpoints, write_args = [], []
    if checkpoints or write_args:
        copied += saver._store.import_many(checkpoints, write_args)
    return copied
