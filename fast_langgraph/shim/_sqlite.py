"""The checkpointer half of the shim: ``SqliteSaver`` and ``AsyncSqliteSaver`` accelerated in
place.

Under the shim, ``SqliteSaver(conn)`` (and so ``SqliteSaver.from_conn_string(path)``, which
calls it) gives an ``AcceleratedSqliteSaver``: a subclass of ``SqliteSaver`` that keeps
everything stock has (``conn``, ``lock``, ``setup()``, ``cursor()``, the errors) and runs
``get_tuple``, ``list``, ``put``, ``put_writes`` and ``delete_thread`` on a Rust store
(``fast_langgraph._native.SqliteSaverStore``) opened on **the same file**, in
``langgraph-checkpoint-sqlite``'s own schema: its ``checkpoints`` and ``writes`` tables, the
same columns, the same bytes. Stock SqliteSaver and the shim can therefore use one file in turn
or at the same time (WAL and a busy timeout), and each sees what the other wrote.

The Rust store commits at the ``synchronous`` level of the user's own connection (``FULL``
unless the user changed it), opens lazily on first use, and again in a forked child.

A database the Rust store cannot share (``:memory:``, a temporary database) stays on stock
code. ``AsyncSqliteSaver`` works the same way (``AcceleratedAsyncSqliteSaver``); its ``a*``
methods run the store's calls on a worker thread, never on the event loop.

Earlier releases kept the shim's data in a sibling file ``<path>.flg``. On first open, any
checkpoint such a file holds that the user's file lacks is merged back, with its writes, and
the sibling is renamed ``<path>.flg.merged``; one log record says what was merged.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.utils import _metadata_predicate, load_pending_writes

from fast_langgraph._native import FastLangGraphError, SqliteSaverStore
from fast_langgraph.checkpoint._batches import decoded

__all__ = ["AcceleratedSqliteSaver", "install", "stock_instances", "uninstall"]

SIBLING_SUFFIX = ".flg"
MERGED_SUFFIX = ".flg.merged"
_MISSING = object()
_log = logging.getLogger("fast_langgraph.shim")

# Guards opening stores and merging siblings. Re-made in a forked child: a thread of the
# parent may have held it at the moment of the fork.
_open_lock = threading.Lock()


def _reset_lock_in_child() -> None:
    global _open_lock
    _open_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)

# Every store this process opened, closed at exit so that the last connection folds the WAL
# back into the user's file, as stock's closed connection does.
_open_stores: weakref.WeakSet[SqliteSaverStore] = weakref.WeakSet()


@atexit.register
def _close_stores() -> None:
    for store in list(_open_stores):
        store.close()


# -- what both savers share -------------------------------------------------------------------


class _Target:
    """Where a saver's store lives: the user's file, and the durability of their connection."""

    __slots__ = ("path", "synchronous")

    def __init__(self, path: str | None, synchronous: int) -> None:
        self.path = path  # None: the database cannot be shared (memory, temporary)
        self.synchronous = synchronous


def _target_from_rows(database_list: Sequence[Any], synchronous: Any) -> _Target:
    path = None
    for _seq, name, file in database_list:
        if name == "main":
            path = file or None
    level = synchronous if isinstance(synchronous, int) and 0 <= synchronous <= 3 else 2
    return _Target(path, level)


def _sqlite_library() -> int:
    """A ``dlopen`` handle through which the store finds the SQLite that Python's ``sqlite3``
    module runs on. The store must use that one library: the user's connection has the same
    file open in this process, and two copies of SQLite in one process break each other's
    locks (a connection closing in one copy deletes the WAL under the other)."""
    global _LIBRARY
    if _LIBRARY is None:
        import _sqlite3
        import ctypes

        _LIBRARY = ctypes.CDLL(_sqlite3.__file__)._handle
    return _LIBRARY


_LIBRARY: int | None = None


class Unshareable(Exception):
    """The store cannot use the SQLite library Python's ``sqlite3`` uses (for example a Python
    build that links SQLite in statically without exporting it): the saver stays on stock
    code."""


_unshareable_reason: str | None = None


def unshareable_reason() -> str | None:
    """Why savers stay on stock code in this process, or None."""
    return _unshareable_reason


def _open_store(path: str, synchronous: int, serde: Any) -> SqliteSaverStore:
    global _unshareable_reason
    with _open_lock:
        try:
            library = _sqlite_library()
            store = SqliteSaverStore(path, sqlite_library=library, synchronous=synchronous)
        except FastLangGraphError as e:
            # This file cannot run on the store (SQLite would not switch it to WAL, another
            # connection holds it exclusively, ...): this saver stays on stock code, which
            # reports whatever stock reports for the file.
            _log.warning(
                "fast_langgraph: SqliteSaver on %s stays on stock code: the Rust store could "
                "not open it (%s)",
                path,
                e,
            )
            raise Unshareable(str(e)) from e
        except (OSError, ValueError, AttributeError) as e:
            # ctypes could not load the library, or it lacks SQLite's functions or is too old.
            if _unshareable_reason is None:
                _unshareable_reason = f"Python's SQLite cannot be shared: {e}"
                _log.warning(
                    "fast_langgraph: SqliteSaver stays on stock code in this process: %s",
                    _unshareable_reason,
                )
            raise Unshareable(_unshareable_reason) from e
        _open_stores.add(store)
        try:
            _merge_sibling(store, path, serde)
        except Exception as e:  # never fail the user's call over the old sibling file
            _log.warning(
                "fast_langgraph: could not merge %s into %s (%r); it was left as it is",
                path + SIBLING_SUFFIX,
                path,
                e,
            )
        return store


def _typed_blob(typed: tuple[str, Any]) -> tuple[str, bytes]:
    """A serializer's (type, data) with the data as ``bytes``: LangGraph's serializer returns a
    ``bytearray`` value as itself (type "bytearray"), which stock binds as the same BLOB."""
    type_, data = typed
    return type_, data if type(data) is bytes else bytes(data)


def _checkpoint_args(
    saver: Any,
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
) -> dict[str, Any]:
    type_, data = _typed_blob(saver.serde.dumps_typed(checkpoint))
    md = json.dumps(get_checkpoint_metadata(config, metadata), ensure_ascii=False).encode(
        "utf-8", "ignore"
    )
    return {
        "thread_id": str(config["configurable"]["thread_id"]),
        "checkpoint_ns": config["configurable"]["checkpoint_ns"],
        "checkpoint_id": checkpoint["id"],
        "parent_checkpoint_id": config["configurable"].get("checkpoint_id"),
        "type_tag": type_,
        "checkpoint": data,
        "metadata": md,
    }


def _saved_config(config: RunnableConfig, checkpoint: Checkpoint) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": config["configurable"]["thread_id"],
            "checkpoint_ns": config["configurable"]["checkpoint_ns"],
            "checkpoint_id": checkpoint["id"],
        }
    }


def _writes_args(
    saver: Any,
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
) -> dict[str, Any]:
    return {
        "thread_id": str(config["configurable"]["thread_id"]),
        "checkpoint_ns": str(config["configurable"]["checkpoint_ns"]),
        "checkpoint_id": str(config["configurable"]["checkpoint_id"]),
        "replace": all(w[0] in WRITES_IDX_MAP for w in writes),
        "writes": [
            (
                task_id,
                task_path,
                WRITES_IDX_MAP.get(channel, idx),
                channel,
                *_typed_blob(saver.serde.dumps_typed(value)),
            )
            for idx, (channel, value) in enumerate(writes)
        ],
    }


def _get_tuple(
    saver: Any, store: SqliteSaverStore, config: RunnableConfig
) -> CheckpointTuple | None:
    checkpoint_ns = config["configurable"].get("checkpoint_ns", "")
    checkpoint_id = get_checkpoint_id(config)
    rows = store.list(
        thread_id=str(config["configurable"]["thread_id"]),
        checkpoint_ns=checkpoint_ns,
        checkpoint_id=checkpoint_id or None,
        limit=None if checkpoint_id else 1,
    )
    if not rows:
        return None
    row = rows[0]
    if not checkpoint_id:
        config = {
            "configurable": {
                "thread_id": row.thread_id,
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": row.checkpoint_id,
            }
        }
    return _tuple(saver, row, config, checkpoint_ns)


def _tuple(saver: Any, row: Any, config: RunnableConfig, checkpoint_ns: str) -> CheckpointTuple:
    return CheckpointTuple(
        config,
        saver.serde.loads_typed((row.type_tag, row.checkpoint)),
        json.loads(row.metadata) if row.metadata is not None else {},
        (
            {
                "configurable": {
                    "thread_id": row.thread_id,
                    "checkpoint_ns": checkpoint_ns,
                    "checkpoint_id": row.parent_checkpoint_id,
                }
            }
            if row.parent_checkpoint_id
            else None
        ),
        load_pending_writes(row.writes, saver.serde),
    )


def _list_rows(
    store: SqliteSaverStore,
    config: RunnableConfig | None,
    filter: dict[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
) -> list[Any]:
    """The rows stock's ``list`` selects: the predicates of its ``search_where``, in order."""
    kwargs: dict[str, Any] = {}
    if config is not None:
        kwargs["thread_id"] = config["configurable"]["thread_id"]
        checkpoint_ns = config["configurable"].get("checkpoint_ns")
        if checkpoint_ns is not None:
            kwargs["checkpoint_ns"] = checkpoint_ns
        if checkpoint_id := get_checkpoint_id(config):
            kwargs["checkpoint_id"] = checkpoint_id
    if filter:
        # Stock's own conversion (and its check of the keys, with its error).
        _predicates, values = _metadata_predicate(filter)
        kwargs["filter"] = list(zip(filter.keys(), values, strict=True))
    if before is not None:
        before_id = get_checkpoint_id(before)
        if before_id is None:
            return []  # stock's "checkpoint_id < NULL" selects nothing
        kwargs["before"] = before_id
    if limit is not None:
        kwargs["limit"] = limit
    return store.list(**kwargs)


def _listed_tuple(saver: Any, row: Any) -> CheckpointTuple:
    config: RunnableConfig = {
        "configurable": {
            "thread_id": row.thread_id,
            "checkpoint_ns": row.checkpoint_ns,
            "checkpoint_id": row.checkpoint_id,
        }
    }
    return _tuple(saver, row, config, row.checkpoint_ns)


# -- SqliteSaver ------------------------------------------------------------------------------


class _SyncStoreMethods(BaseCheckpointSaver[str]):
    """The sync methods both accelerated savers share: each runs on the Rust store that
    ``_sync_flg()`` gives, or on stock code (the next class in the MRO) when it gives None."""

    _flg_store: SqliteSaverStore | None

    def _sync_flg(self) -> SqliteSaverStore | None:  # pragma: no cover - each saver defines it
        raise NotImplementedError

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        store = self._sync_flg()
        if store is None:
            return super().get_tuple(config)
        return _get_tuple(self, store, config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        store = self._sync_flg()
        if store is None:
            yield from super().list(config, filter=filter, before=before, limit=limit)
            return
        # Decoded in batches with the garbage collector paused, as RustSQLiteCheckpointer.list.
        rows = _list_rows(store, config, filter, before, limit)
        yield from decoded(rows, partial(_listed_tuple, self))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        store = self._sync_flg()
        if store is None:
            return super().put(config, checkpoint, metadata, new_versions)
        store.put(**_checkpoint_args(self, config, checkpoint, metadata))
        return _saved_config(config, checkpoint)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        store = self._sync_flg()
        if store is None:
            return super().put_writes(config, writes, task_id, task_path)
        store.put_writes(**_writes_args(self, config, writes, task_id, task_path))
        return None

    def delete_thread(self, thread_id: str) -> None:
        store = self._sync_flg()
        if store is None:
            return super().delete_thread(thread_id)
        store.delete_thread(str(thread_id))
        return None

    def close_store(self) -> None:
        """Close the Rust store's connections (the user's ``conn`` is theirs to close)."""
        store, self._flg_store = self._flg_store, None
        if store is not None:
            store.close()


class AcceleratedSqliteSaver(_SyncStoreMethods, SqliteSaver):
    """``SqliteSaver`` with its reads and writes on the Rust store, on the same file.

    Everything stock has stays: ``conn``, ``lock``, ``setup()``, ``cursor()``,
    ``get_delta_channel_history()``. ``get_tuple``, ``list``, ``put``, ``put_writes`` and
    ``delete_thread`` read and write the same tables through ``SqliteSaverStore``: group
    commit, ``list`` in one statement with its pending writes, reads on a pool of connections
    without the saver's lock, the GIL released. Commits run at the ``synchronous`` level of
    ``conn``.
    """

    def __init__(self, conn: sqlite3.Connection, *, serde: Any = None) -> None:
        super().__init__(conn, serde=serde)
        try:
            self._flg_target = _target_from_rows(
                conn.execute("PRAGMA database_list").fetchall(),
                conn.execute("PRAGMA synchronous").fetchone()[0],
            )
        except (sqlite3.Error, AttributeError, TypeError):
            # Not a usable sqlite3 connection: stock code gives the user the error it gives.
            self._flg_target = _Target(None, 2)
        self._flg_store: SqliteSaverStore | None = None
        self._flg_pid = 0

    @property
    def accelerated(self) -> bool:
        """Whether calls run on the Rust store (False for ``:memory:`` and temporary
        databases, which no other connection can see)."""
        return self._flg_target.path is not None

    def _flg(self) -> SqliteSaverStore | None:
        """The store for this process, opened on first use; None to use stock code."""
        target = self._flg_target
        if target.path is None:
            return None
        try:
            # The user's connection must still be usable, as it must for stock code; if it is
            # closed (or bound to another thread), stock code raises the error stock raises.
            self.conn.total_changes  # noqa: B018
        except sqlite3.ProgrammingError:
            return None
        store = self._flg_store
        pid = os.getpid()
        if store is not None and self._flg_pid == pid:
            return store
        # First use, or first use in a forked child: the parent's connections are let go of
        # without closing them, and the child opens its own.
        try:
            store = _open_store(target.path, target.synchronous, self.serde)
        except Unshareable:
            self._flg_target = _Target(None, target.synchronous)
            return None
        self._flg_store, self._flg_pid = store, pid
        return store

    # The shared sync methods (_SyncStoreMethods) ask for the store through this name.
    _sync_flg = _flg


# -- AsyncSqliteSaver -------------------------------------------------------------------------


def _async_class() -> type | None:
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver, _ensure_connected
    except ImportError:
        return None

    _LOOP_ERROR = (
        "Synchronous calls to AsyncSqliteSaver are only allowed from a different thread. From the "
        "main thread, use the async interface. For example, use `await checkpointer.aget_tuple(...)` "
        "or `await graph.ainvoke(...)`."
    )

    class AcceleratedAsyncSqliteSaver(_SyncStoreMethods, AsyncSqliteSaver):
        """``AsyncSqliteSaver`` with its reads and writes on the Rust store, on the same file.

        The ``a*`` methods run the store's calls on a worker thread; the sync methods, called
        from another thread as stock requires, call the store directly.
        """

        def __init__(self, conn: Any, *, serde: Any = None) -> None:
            super().__init__(conn, serde=serde)
            self._flg_target: _Target | None = None  # read from the connection on first use
            self._flg_store: SqliteSaverStore | None = None
            self._flg_pid = 0

        @property
        def accelerated(self) -> bool:
            """Whether calls run on the Rust store; known after the first call (False for
            ``:memory:`` and temporary databases)."""
            return self._flg_target is not None and self._flg_target.path is not None

        async def _aflg(self) -> SqliteSaverStore | None:
            store = self._flg_store
            if store is not None and self._flg_pid == os.getpid():
                return store
            if self._flg_target is None:
                await _ensure_connected(self.conn)
                async with self.conn.execute("PRAGMA database_list") as cur:
                    rows = list(await cur.fetchall())
                async with self.conn.execute("PRAGMA synchronous") as cur:
                    row = await cur.fetchone()
                self._flg_target = _target_from_rows(rows, row[0] if row else 2)
            target = self._flg_target
            if target.path is None:
                return None
            store = await asyncio.to_thread(
                _open_store, target.path, target.synchronous, self.serde
            )
            self._flg_store, self._flg_pid = store, os.getpid()
            return store

        def _sync_flg(self) -> SqliteSaverStore | None:
            store = self._flg_store
            if store is not None and self._flg_pid == os.getpid():
                return store
            try:
                if asyncio.get_running_loop() is self.loop:
                    raise asyncio.InvalidStateError(_LOOP_ERROR)
            except RuntimeError:
                pass
            return asyncio.run_coroutine_threadsafe(self._aflg(), self.loop).result()

        async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
            store = await self._aflg()
            if store is None:
                return await super().aget_tuple(config)
            return await asyncio.to_thread(_get_tuple, self, store, config)

        async def alist(
            self,
            config: RunnableConfig | None,
            *,
            filter: dict[str, Any] | None = None,
            before: RunnableConfig | None = None,
            limit: int | None = None,
        ) -> AsyncIterator[CheckpointTuple]:
            store = await self._aflg()
            if store is None:
                async for item in super().alist(config, filter=filter, before=before, limit=limit):
                    yield item
                return
            rows = await asyncio.to_thread(_list_rows, store, config, filter, before, limit)
            for row in rows:
                yield _listed_tuple(self, row)

        async def aput(
            self,
            config: RunnableConfig,
            checkpoint: Checkpoint,
            metadata: CheckpointMetadata,
            new_versions: ChannelVersions,
        ) -> RunnableConfig:
            store = await self._aflg()
            if store is None:
                return await super().aput(config, checkpoint, metadata, new_versions)
            args = _checkpoint_args(self, config, checkpoint, metadata)
            await asyncio.to_thread(lambda: store.put(**args))
            return _saved_config(config, checkpoint)

        async def aput_writes(
            self,
            config: RunnableConfig,
            writes: Sequence[tuple[str, Any]],
            task_id: str,
            task_path: str = "",
        ) -> None:
            store = await self._aflg()
            if store is None:
                return await super().aput_writes(config, writes, task_id, task_path)
            args = _writes_args(self, config, writes, task_id, task_path)
            await asyncio.to_thread(lambda: store.put_writes(**args))
            return None

        async def adelete_thread(self, thread_id: str) -> None:
            store = await self._aflg()
            if store is None:
                return await super().adelete_thread(thread_id)
            await asyncio.to_thread(store.delete_thread, str(thread_id))
            return None

    AcceleratedAsyncSqliteSaver.__module__ = __name__
    return AcceleratedAsyncSqliteSaver


AcceleratedAsyncSqliteSaver = _async_class()


# -- the sibling files of earlier releases ----------------------------------------------------


def _merge_sibling(store: SqliteSaverStore, path: str, serde: Any) -> None:
    """Merge ``<path>.flg`` (written by earlier releases of the shim) into the user's file:
    every checkpoint it holds that the file lacks, and every pending write it holds that the
    file lacks (a turn resumed there adds writes to a checkpoint both files hold). Then rename it
    ``<path>.flg.merged`` so it is not read again, and log what was merged once."""
    sibling = path + SIBLING_SUFFIX
    if not os.path.isfile(sibling):
        return
    # Another process may be merging the same sibling: hold an exclusive flock on it (flock,
    # which does not touch SQLite's fcntl locks) and go on only if the file is still there, so
    # that no process opens (and so creates) a sibling another one has just renamed.
    try:
        fd = os.open(sibling, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not on POSIX
            pass
        try:
            if os.stat(sibling).st_ino != os.fstat(fd).st_ino:
                return
        except FileNotFoundError:
            return
        _merge_locked_sibling(store, path, sibling, serde)
    finally:
        # Closed last: the sibling's SQLite connections are closed by then.
        os.close(fd)


def _merge_locked_sibling(store: SqliteSaverStore, path: str, sibling: str, serde: Any) -> None:
    from fast_langgraph.checkpoint import RustSQLiteCheckpointer

    old = RustSQLiteCheckpointer(sibling, serde=serde)
    try:
        checkpoints: list[tuple] = []
        keys: set[tuple[str, str, str]] = set()
        fallback_writes: dict[tuple[str, str, str], list[tuple]] = {}
        for t in old.list(None):
            c = t.config["configurable"]
            key = (str(c["thread_id"]), c.get("checkpoint_ns", ""), c["checkpoint_id"])
            # Writes are merged for every checkpoint: a turn resumed under the old swap added
            # writes to a checkpoint both files hold.
            keys.add(key)
            fallback_writes[key] = [
                (task_id, "", WRITES_IDX_MAP.get(channel, i), channel, *serde.dumps_typed(value))
                for i, (task_id, channel, value) in enumerate(t.pending_writes or [])
            ]
            if store.has_checkpoint(*key):
                continue
            type_, data = serde.dumps_typed(t.checkpoint)
            parent = (t.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            md = json.dumps(t.metadata, ensure_ascii=False).encode("utf-8", "ignore")
            checkpoints.append((*key, parent, type_, data, md))
    finally:
        old.close()
    writes = _sibling_writes(sibling, keys, fallback_writes)
    added, added_writes = store.merge(checkpoints, writes)
    merged = path + MERGED_SUFFIX
    n = 1
    while os.path.exists(merged):  # never replace an earlier merged file
        n += 1
        merged = f"{path}{MERGED_SUFFIX}-{n}"
    for suffix in ("", "-wal", "-shm"):
        try:
            os.replace(sibling + suffix, merged + suffix)
        except FileNotFoundError:
            pass
    _log.warning(
        "fast_langgraph: merged %d checkpoint(s) and %d pending write(s) from %s into %s, "
        "which SqliteSaver and the shim now share; the old file is kept as %s",
        added,
        added_writes,
        sibling,
        path,
        merged,
    )


def _sibling_writes(
    sibling: str,
    keys: set[tuple[str, str, str]],
    fallback: dict[tuple[str, str, str], list[tuple]],
) -> list[tuple[str, str, str, list[tuple]]]:
    """The stored writes of the merged checkpoints, with their task paths and indexes, read
    from the sibling file as they are. If its layout is not the one expected, the writes are
    rebuilt from the listed tuples (without task paths)."""
    if not keys:
        return []
    by_key: dict[tuple[str, str, str], list[tuple]] = {}
    uri = f"{Path(os.path.abspath(sibling)).as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
        try:
            for thread_id, ns, cid, task_id, task_path, idx, channel, type_, value in conn.execute(
                "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, "
                "type, blob FROM flg_writes"
            ):
                key = (str(thread_id), ns, cid)
                if key in keys:
                    by_key.setdefault(key, []).append(
                        (task_id, task_path, idx, channel, type_, value)
                    )
        finally:
            conn.close()
    except sqlite3.Error:
        by_key = {k: v for k, v in fallback.items() if v}
    return [(*key, rows) for key, rows in by_key.items()]


# -- installing -------------------------------------------------------------------------------


def install() -> tuple[dict[type, dict[str, Any]], list[str]]:
    """Patch the classes; returns (saved originals per class, targets)."""
    saved: dict[type, dict[str, Any]] = {}
    targets: list[str] = []
    _patch_class(SqliteSaver, AcceleratedSqliteSaver, saved)
    targets.append("langgraph.checkpoint.sqlite.SqliteSaver")
    if AcceleratedAsyncSqliteSaver is not None:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        _patch_class(AsyncSqliteSaver, AcceleratedAsyncSqliteSaver, saved)
        targets.append("langgraph.checkpoint.sqlite.aio.AsyncSqliteSaver")
    return saved, targets


def stock_instances() -> list[Any]:
    """Live ``SqliteSaver``/``AsyncSqliteSaver`` objects that run stock code: built before the
    patch (a graph compiled then keeps its saver), or of a user's own subclass."""
    import gc

    bases: tuple[type, ...] = (SqliteSaver,)
    if AcceleratedAsyncSqliteSaver is not None:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        bases = (SqliteSaver, AsyncSqliteSaver)
    ours = tuple(c for c in (AcceleratedSqliteSaver, AcceleratedAsyncSqliteSaver) if c is not None)
    return [o for o in gc.get_objects() if isinstance(o, bases) and not isinstance(o, ours)]


def describe(saver: Any) -> str:
    """``SqliteSaver('app.db')``: the class and the file, for reports."""
    path = "?"
    conn = getattr(saver, "conn", None)
    if isinstance(conn, sqlite3.Connection):
        try:
            rows = conn.execute("PRAGMA database_list").fetchall()
            path = _target_from_rows(rows, 2).path or ":memory:"
        except sqlite3.Error:
            path = "closed connection"
    return f"{type(saver).__name__}({path!r})"


def _patch_class(base: type, accelerated: type, saved: dict[type, dict[str, Any]]) -> None:
    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        # Python then calls accelerated.__init__, since the result is an instance of `base`.
        # A user's own subclass of `base` keeps its stock code.
        return object.__new__(accelerated if cls is base else cls)

    saved[base] = {
        "__new__": base.__dict__.get("__new__", _MISSING),
        "_flg_swap": base.__dict__.get("_flg_swap", _MISSING),
    }
    base.__new__ = staticmethod(__new__)  # type: ignore[assignment]
    base._flg_swap = True  # type: ignore[attr-defined]


def uninstall(saved: dict[type, dict[str, Any]]) -> None:
    """Put back what ``install`` replaced. Savers built meanwhile keep working on the same
    file: they are stock savers with faster methods."""
    for cls, attrs in saved.items():
        for attr, value in attrs.items():
            if value is _MISSING and attr == "__new__":
                # CPython cannot give a class back its C-level object.__new__ once replaced:
                # deleting ours leaves a slot that passes the constructor arguments to
                # object.__new__, which refuses them. Install the equivalent instead.
                cls.__new__ = staticmethod(_plain_new(cls))  # type: ignore[method-assign]
            elif value is _MISSING:
                if attr in cls.__dict__:
                    delattr(cls, attr)
            else:
                setattr(cls, attr, value)


def is_installed(cls: type) -> bool:
    return cls.__dict__.get("_flg_swap") is True and cls.__dict__.get("__new__") is not None


def _plain_new(owner: type) -> Any:
    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        parent_new = super(owner, cls).__new__  # type: ignore[arg-type]
        if parent_new is object.__new__:
            return object.__new__(cls)
        return parent_new(cls, *args, **kwargs)  # pragma: no cover - no such base in LangGraph

    return __new__
