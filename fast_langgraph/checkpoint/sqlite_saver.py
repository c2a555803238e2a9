"""Moving between ``RustSQLiteCheckpointer`` and ``langgraph-checkpoint-sqlite``'s own file
layout: ``import_sqlite_saver`` reads a SqliteSaver database (read-only) into a
``RustSQLiteCheckpointer``, and ``export_sqlite_saver`` writes a ``RustSQLiteCheckpointer``'s
checkpoints into a new file in SqliteSaver's schema. These are the places in
``fast_langgraph.checkpoint`` that use Python's ``sqlite3``, and only on the SqliteSaver file.
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

__all__ = ["export_sqlite_saver", "import_sqlite_saver", "is_sqlite_saver_file"]

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
        # store_unplaced: an unchanged DeltaChannel snapshot is stored apart again (a blob
        # already stored under its version is left as it is), so an import refers to no blob it
        # does not write.
        checkpoints.append(
            saver._new_checkpoint(
                str(thread_id),
                ns,
                parent_id,
                checkpoint,
                md,
                new_versions,
                None,
                store_unplaced=True,
            )[0]
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


# -- moving out: a RustSQLiteCheckpointer written back in SqliteSaver's schema ---------------

# The tables, columns and keys ``SqliteSaver.setup()`` creates (langgraph-checkpoint-sqlite 3.x),
# so that stock SqliteSaver reads the file as its own; tests compare them with stock's.
SQLITE_SAVER_DDL = """
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint BLOB,
    metadata BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE TABLE IF NOT EXISTS writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    task_path TEXT NOT NULL DEFAULT '',
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT,
    value BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
"""
_CHECKPOINT_COLUMNS = (
    "thread_id",
    "checkpoint_ns",
    "checkpoint_id",
    "parent_checkpoint_id",
    "type",
    "checkpoint",
    "metadata",
)
_WRITE_COLUMNS = (
    "thread_id",
    "checkpoint_ns",
    "checkpoint_id",
    "task_id",
    "task_path",
    "idx",
    "channel",
    "type",
    "value",
)
_INSERT_CHECKPOINT = (
    "INSERT OR IGNORE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
    "parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_WRITE = (
    "INSERT OR IGNORE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, "
    "idx, channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def export_sqlite_saver(
    saver: RustSQLiteCheckpointer, target: str | os.PathLike[str], batch_size: int = 200
) -> int:
    """Write every checkpoint of ``saver`` into ``target`` in SqliteSaver's schema; see
    ``RustSQLiteCheckpointer.export_sqlite_saver``. Returns the number of checkpoints copied."""
    if not isinstance(target, (str, os.PathLike)):
        raise TypeError(f"export_sqlite_saver: target must be a path, got {type(target).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"export_sqlite_saver: batch_size must be an int >= 1, got {batch_size!r}")
    saver._check_open()
    dst_path = os.fspath(target)
    if dst_path in ("", ":memory:") or dst_path.startswith("file:"):
        raise ValueError(f"export_sqlite_saver: target must be a file path, got {dst_path!r}")
    src_path = saver._store.path
    if os.path.exists(dst_path) and src_path not in ("", ":memory:") and os.path.exists(src_path):
        if os.path.samefile(dst_path, src_path):
            raise ValueError(
                f"export_sqlite_saver: {dst_path!r} is this checkpointer's own database; "
                "export writes to another file"
            )
    if os.path.isdir(dst_path):
        raise IsADirectoryError(f"export_sqlite_saver: {dst_path!r} is a directory")
    dst = _open_target(dst_path)
    try:
        _check_target(saver, dst, dst_path)
        return _export_rows(saver, dst, batch_size)
    finally:
        dst.close()


def _open_target(path: str) -> sqlite3.Connection:
    try:
        # A percent-encoded URI, as for the source; mode=rwc creates a missing file.
        conn = sqlite3.connect(
            f"{Path(os.path.abspath(path)).as_uri()}?mode=rwc", uri=True, isolation_level=None
        )
    except sqlite3.Error as e:
        raise ValueError(f"export_sqlite_saver: cannot open {path!r}: {e}") from e
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as e:
        conn.close()
        raise ValueError(
            f"export_sqlite_saver: {path!r} exists and is not an SQLite database ({e}); "
            "it was left as it is"
        ) from e
    return conn


def _check_target(saver: RustSQLiteCheckpointer, dst: sqlite3.Connection, path: str) -> None:
    """A new or empty file, or an earlier export of this checkpointer; anything else is
    refused before a byte is written."""
    tables = {
        r[0]
        for r in dst.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        if not r[0].startswith("sqlite_")
    }
    if not tables:
        return
    if tables != SQLITE_SAVER_TABLES:
        raise ValueError(
            f"export_sqlite_saver: {path!r} holds other data (tables: {sorted(tables)}); "
            "export writes only to a new file, an empty one, or an earlier export of the same "
            "checkpointer. It was left as it is"
        )
    for table, want in (("checkpoints", _CHECKPOINT_COLUMNS), ("writes", _WRITE_COLUMNS)):
        cols = tuple(r[1] for r in dst.execute(f"PRAGMA table_info({table})"))
        if cols != want:
            raise ValueError(
                f"export_sqlite_saver: {path!r} has a {table} table with other columns than "
                f"SqliteSaver's ({list(cols)}); it was left as it is"
            )
    # Every checkpoint already there must be one of ours: the threads it holds are read back
    # from the checkpointer one at a time.
    held: dict[str, list[tuple[Any, Any, Any]]] = {}
    for key in dst.execute("SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints"):
        held.setdefault(str(key[0]), []).append(key)
    foreign: list[tuple[Any, Any, Any]] = []
    for thread_id, keys in held.items():
        ours = {
            (row.checkpoint_ns, row.checkpoint_id) for row in saver._store.list(thread_id=thread_id)
        }
        foreign.extend(k for k in keys if (k[1], k[2]) not in ours)
    if foreign:
        thread_id, ns, cid = foreign[0]
        raise ValueError(
            f"export_sqlite_saver: {path!r} holds {len(foreign)} checkpoint(s) this "
            f"checkpointer does not (first: thread {thread_id!r}, namespace {ns!r}, id {cid!r}); "
            "export adds to an earlier export of the same checkpointer only, never to other "
            "data. It was left as it is"
        )


def _in_stock_order(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint with its keys in the order LangGraph's ``create_checkpoint`` gives them
    (``channel_values`` right after ``id``), which this checkpointer's storage does not keep:
    msgpack writes a dict's keys in order, so this gives the bytes stock wrote."""
    if "id" not in checkpoint or "channel_values" not in checkpoint:
        return checkpoint
    out: dict[str, Any] = {}
    for key, value in checkpoint.items():
        if key == "channel_values":
            continue
        out[key] = value
        if key == "id":
            out["channel_values"] = checkpoint["channel_values"]
    return out


def _export_rows(saver: RustSQLiteCheckpointer, dst: sqlite3.Connection, batch_size: int) -> int:
    mode = dst.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":  # pragma: no cover - a file system without shared memory
        dst.execute(f"PRAGMA journal_mode={mode}")
    dst.executescript(SQLITE_SAVER_DDL)
    dumps = saver.serde.dumps_typed
    copied = 0
    checkpoints: list[tuple[Any, ...]] = []
    writes: list[tuple[Any, ...]] = []

    def flush() -> int:
        if not checkpoints and not writes:
            return 0
        dst.execute("BEGIN IMMEDIATE")
        try:
            before = dst.total_changes
            dst.executemany(_INSERT_CHECKPOINT, checkpoints)
            added = dst.total_changes - before
            dst.executemany(_INSERT_WRITE, writes)
            dst.execute("COMMIT")
        except BaseException:
            dst.execute("ROLLBACK")
            raise
        checkpoints.clear()
        writes.clear()
        return added

    for thread_id in saver._store.thread_ids():
        for row in saver._store.list(thread_id=thread_id):
            # The checkpoint as the graph put it, values included, serialized as stock does.
            tup = saver._to_tuple(row, None)
            type_, data = dumps(_in_stock_order(dict(tup.checkpoint)))
            checkpoints.append(
                (
                    row.thread_id,
                    row.checkpoint_ns,
                    row.checkpoint_id,
                    row.parent_checkpoint_id,
                    type_,
                    data if type(data) is bytes else bytes(data),
                    row.metadata_json.encode("utf-8", "ignore"),
                )
            )
            key = (row.thread_id, row.checkpoint_ns, row.checkpoint_id)
            writes.extend(
                (*key, w.task_id, w.task_path, w.idx, w.channel, w.type_tag, w.data)
                for w in row.writes
            )
            if len(checkpoints) >= batch_size:
                copied += flush()
    copied += flush()
    return copied
