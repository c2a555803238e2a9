"""`RustSQLiteCheckpointer`: a LangGraph checkpointer on SQLite, with its storage engine in Rust.

Python does what LangGraph's interface needs: it runs the saver's ``serde`` (LangGraph's
``JsonPlusSerializer`` by default) and turns rows back into ``CheckpointTuple``. The Rust core
(``fast_langgraph._native.CheckpointStore``) does all the SQL, with the GIL released:

- channel values are stored once per channel version, so a step that changes one channel
  serializes and writes one value, not the whole state;
- ``list`` is one query, pending writes included; ``get_tuple`` a few key lookups in one read
  transaction;
- concurrent writes are committed together (group commit): the first caller to find no commit
  in progress commits every queued call in one transaction, with the GIL released, and every
  ``put``/``put_writes`` returns only once its transaction has committed.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import random
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    SerializerProtocol,
    get_checkpoint_id,
    get_checkpoint_metadata,
)

from fast_langgraph._native import CheckpointStore, DeltaBaseMissingError, SerializationError
from fast_langgraph.serde import RustSerializer

__all__ = ["RustSQLiteCheckpointer"]

T = TypeVar("T")

_SCALARS = (str, int, float, bool, type(None))


class RustSQLiteCheckpointer(
    BaseCheckpointSaver[str], AbstractContextManager, AbstractAsyncContextManager
):
    """A LangGraph checkpointer that stores checkpoints in an SQLite file, through Rust.

    Use it wherever LangGraph takes a checkpointer::

        checkpointer = RustSQLiteCheckpointer("state.db")
        graph = builder.compile(checkpointer=checkpointer)

    It implements the whole ``BaseCheckpointSaver`` interface, sync and async: ``get_tuple``,
    ``list``, ``put``, ``put_writes``, ``delete_thread``, ``delete_for_runs``, ``copy_thread``,
    ``prune`` and every ``a*`` form. The async methods run the blocking work on a worker
    thread, so they never block the event loop.

    Args:
        path: The database file, created if missing, or ``":memory:"`` for a private
            in-memory database.
        serde: The serializer for checkpoints, channel values and writes. Defaults to
            LangGraph's ``JsonPlusSerializer``; ``EncryptedSerializer`` works too.
        durable: ``False`` (default): a committed checkpoint survives the process being
            killed at any moment, and a power loss or OS crash may lose the last commits
            (SQLite ``synchronous=NORMAL`` in WAL mode). ``True``: SQLite syncs every commit
            to disk, so commits also survive a power loss, as with SqliteSaver's default
            connection (``synchronous=FULL``).
        busy_timeout: Seconds a write waits for another process's lock before failing with
            ``DatabaseLockedError``.
        delta: Store a growing list channel (a chat history) as the items appended since its
            previous version, instead of the whole list, when the new list starts with the
            very objects of the previous one. See docs/checkpointer.md, "Append-only deltas".
            ``False`` always stores full values.
        snapshot_every: With ``delta``, store a full value after this many deltas in a row,
            so a read never joins more than this many segments. A list of n items gets at
            most n // 8 deltas in a row, so short lists are stored whole.

    Raises:
        ForeignDatabaseError: The file is not SQLite, or holds tables that are not ours
            (a SqliteSaver database is one: see ``import_sqlite_saver``). The file is not
            modified.
        TypeError: ``path`` is not a string or path.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        serde: SerializerProtocol | None = None,
        durable: bool = False,
        busy_timeout: float = 30.0,
        delta: bool = True,
        snapshot_every: int = 64,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"RustSQLiteCheckpointer: path must be a str or os.PathLike, got {type(path).__name__}"
            )
        if not isinstance(durable, bool):
            raise TypeError(
                f"RustSQLiteCheckpointer: durable must be a bool, got {type(durable).__name__}"
            )
        if (
            not isinstance(snapshot_every, int)
            or isinstance(snapshot_every, bool)
            or snapshot_every < 1
        ):
            raise ValueError(
                f"RustSQLiteCheckpointer: snapshot_every must be an int >= 1, got {snapshot_every!r}"
            )
        # Not super(): the shim's SqliteSaver stand-in puts SqliteSaver next in the MRO.
        BaseCheckpointSaver.__init__(self, serde=serde or RustSerializer())
        self.path = os.fspath(path)
        self.durable = durable
        self.delta = bool(delta)
        self.snapshot_every = snapshot_every
        self._lists = _ListVersions()
        self._store = CheckpointStore(
            self.path,
            synchronous="full" if durable else "normal",
            busy_timeout=float(busy_timeout),
        )

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    @contextmanager
    def from_conn_string(cls, conn_string: str, **kwargs: Any) -> Iterator[RustSQLiteCheckpointer]:
        """Open a checkpointer on ``conn_string`` (a path or ``":memory:"``), closing it on exit.

        Mirrors ``SqliteSaver.from_conn_string``::

            with RustSQLiteCheckpointer.from_conn_string("state.db") as saver:
                graph = builder.compile(checkpointer=saver)
        """
        saver = cls(conn_string, **kwargs)
        try:
            yield saver
        finally:
            saver.close()

    def setup(self) -> None:
        """Create the tables. The constructor already does this; kept for SqliteSaver parity."""
        self._check_open()

    def close(self) -> None:
        """Commit what is queued and close the database. Later calls raise
        ``CheckpointClosedError``. Idempotent."""
        self._store.close()

    def writer_stats(self) -> dict[str, int]:
        """``{"calls": n, "commits": m}``: write calls since open, and the transactions that
        carried them. ``calls / commits`` is the mean group-commit size."""
        return self._store.writer_stats()

    def storage_stats(self) -> dict[str, int]:
        """Row counts and payload bytes of the database: ``checkpoints``, ``blobs``,
        ``delta_blobs`` (blobs stored as append-only deltas), ``writes``, ``payload_bytes``."""
        return self._store.storage_stats()

    def check(self) -> list[str]:
        """Check the database: SQLite's ``quick_check`` and every delta chain. Returns the
        problems found, ``[]`` when it is sound."""
        return self._store.check()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._store.closed

    def __enter__(self) -> RustSQLiteCheckpointer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self) -> RustSQLiteCheckpointer:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await _in_thread(self.close)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"RustSQLiteCheckpointer({self.path!r}, durable={self.durable}, {state})"

    def _check_open(self) -> None:
        # Any store call raises CheckpointClosedError once closed; this one is cheap.
        self._store.list(thread_id="", limit=0)

    # -- reads -----------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (or the thread's latest), with its pending
        writes, or ``None``."""
        conf = _configurable(config)
        checkpoint_id = get_checkpoint_id(config)
        rows = self._store.list(
            thread_id=str(conf["thread_id"]),
            checkpoint_ns=conf.get("checkpoint_ns", ""),
            checkpoint_id=checkpoint_id,
            limit=1,
        )
        if not rows:
            return None
        tup = self._to_tuple(rows[0], config if checkpoint_id else None)
        if self.delta:
            # The graph builds its next state from these very objects: remember them, so the
            # next put can store only what is appended to them.
            versions = tup.checkpoint["channel_versions"]
            for channel, _segments, deltas in rows[0][7]:
                value = tup.checkpoint["channel_values"].get(channel)
                if type(value) is list and channel in versions:
                    self._lists.remember(
                        (rows[0][0], rows[0][1], channel),
                        str(versions[channel]),
                        tuple(value),
                        deltas,
                        "read",
                    )
        return tup

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first, each with its pending writes, from one SQL query.

        ``filter`` matches metadata keys by equality. Keys and values are bound as SQL
        parameters, never spliced into the query.
        """
        kwargs: dict[str, Any] = {}
        if config is not None:
            conf = _configurable(config)
            kwargs["thread_id"] = str(conf["thread_id"])
            if conf.get("checkpoint_ns") is not None:
                kwargs["checkpoint_ns"] = conf["checkpoint_ns"]
            if checkpoint_id := get_checkpoint_id(config):
                kwargs["checkpoint_id"] = checkpoint_id
        if before is not None:
            if before_id := get_checkpoint_id(before):
                kwargs["before"] = before_id
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"list(): limit must be an int or None, got {type(limit).__name__}")
        sql_filter, py_filter = _split_filter(filter)
        kwargs["filter"] = sql_filter
        if limit is not None and not py_filter:
            kwargs["limit"] = limit
        rows = self._store.list(**kwargs)
        return self._iter_tuples(rows, py_filter, limit)

    def _iter_tuples(
        self, rows: list[tuple], py_filter: dict[str, Any], limit: int | None
    ) -> Iterator[CheckpointTuple]:
        remaining = limit
        for row in rows:
            if remaining is not None and remaining <= 0:
                return
            tup = self._to_tuple(row, None)
            if py_filter and not all(tup.metadata.get(k) == v for k, v in py_filter.items()):
                continue
            if remaining is not None:
                remaining -= 1
            yield tup

    def _to_tuple(self, row: tuple, config: RunnableConfig | None) -> CheckpointTuple:
        thread_id, ns, checkpoint_id, parent_id, type_, data, metadata_json, blobs, writes = row
        loads = self.serde.loads_typed
        checkpoint = loads((type_, data))
        # The store puts msgpack channel values inside the checkpoint (one decode for all of
        # them) and leaves their segments empty; the others are decoded here.
        values = checkpoint.setdefault("channel_values", {})
        for ch, segs, _ in blobs:
            if segs:
                values[ch] = self._load_value(ch, segs)
        return CheckpointTuple(
            config=config
            or {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": checkpoint_id,
                }
            },
            checkpoint=checkpoint,
            metadata=json.loads(metadata_json),
            parent_config=(
                {
                    "configurable": {
                        "thread_id": thread_id,
                        "checkpoint_ns": ns,
                        "checkpoint_id": parent_id,
                    }
                }
                if parent_id
                else None
            ),
            pending_writes=[(task_id, ch, loads((t, b))) for task_id, ch, t, b in writes],
        )

    def _load_value(self, channel: str, segments: list[tuple[str, bytes]]) -> Any:
        loads = self.serde.loads_typed
        value = loads(segments[0])
        if len(segments) > 1:
            if type(value) is not list:
                raise SerializationError(
                    f"channel {channel!r}: stored as an append-only delta over a value of type "
                    f"{type(value).__name__}, not a list; the database is damaged"
                )
            for segment in segments[1:]:
                value.extend(loads(segment))
        return value

    # -- writes ----------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint. Only the channels in ``new_versions`` are serialized and
        written; the others keep their stored versions. Returns once committed.

        Raises:
            SerializationError: a channel value or metadata value cannot be serialized; the
                message names the channel or key. Nothing is written.
        """
        conf = _configurable(config)
        thread_id = conf["thread_id"]
        ns = conf.get("checkpoint_ns", "")
        remembered: list[tuple] = []
        args = self._checkpoint_args(
            str(thread_id),
            ns,
            conf.get("checkpoint_id"),
            checkpoint,
            metadata,
            new_versions,
            config,
            remembered if self.delta else None,
        )
        try:
            self._store.put(args)
        except DeltaBaseMissingError:
            # A base was pruned or deleted since we saw it: store full values.
            self._lists.forget_thread(str(thread_id))
            remembered.clear()
            args = self._checkpoint_args(
                str(thread_id),
                ns,
                conf.get("checkpoint_id"),
                checkpoint,
                metadata,
                new_versions,
                config,
                remembered,
                use_deltas=False,
            )
            self._store.put(args)
        for entry in remembered:
            self._lists.remember(*entry)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def _checkpoint_args(
        self,
        thread_id: str,
        ns: str,
        parent_id: str | None,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
        config: RunnableConfig | None,
        remembered: list[tuple] | None = None,
        *,
        use_deltas: bool = True,
    ) -> tuple:
        """Serialize a checkpoint into the argument tuple of ``CheckpointStore.put``.

        With ``remembered`` (a list), list channels may be stored as deltas over the version
        this process last stored or read, and what to remember after a successful put is
        appended to it.
        """
        c = dict(checkpoint)
        values = c.pop("channel_values", None) or {}
        blobs = []
        for channel, version in new_versions.items():
            base = None
            if channel in values:
                value = values[channel]
                what = f"channel {channel!r} of checkpoint {checkpoint['id']!r} in thread {thread_id!r}"
                if remembered is not None and type(value) is list:
                    key = (thread_id, ns, channel)
                    prev = self._lists.base_for(key, value) if use_deltas else None
                    # A chain of k deltas makes every read of this value walk k more blobs
                    # (and, for serializers other than msgpack, decode k more segments). Short
                    # lists are cheap to store whole, so their chains are kept short: at most
                    # one delta per 8 items, and never more than snapshot_every.
                    if prev is not None and prev[2] < min(self.snapshot_every, len(value) // 8):
                        base = prev[0]
                        type_, data = self._dumps(value[len(prev[1]) :], what)
                        chain = prev[2] + 1
                    else:
                        type_, data = self._dumps(value, what)
                        chain = 0
                    # The items as serialized now: the list may grow in place before the
                    # commit returns, and the next delta must start after what was stored.
                    remembered.append((key, str(version), tuple(value), chain))
                else:
                    type_, data = self._dumps(value, what)
            else:
                type_, data = "empty", b""
            blobs.append((channel, str(version), type_, data, base))
        type_, data = self._dumps(c, f"checkpoint {checkpoint['id']!r} in thread {thread_id!r}")
        md = get_checkpoint_metadata(config, metadata) if config is not None else dict(metadata)
        metadata_json = _metadata_json(md, checkpoint["id"])
        run_id = md.get("run_id")
        versions = [(ch, str(v)) for ch, v in c["channel_versions"].items()]
        return (
            thread_id,
            ns,
            checkpoint["id"],
            parent_id,
            type_,
            data,
            metadata_json,
            None if run_id is None else str(run_id),
            versions,
            blobs,
        )

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes against a checkpoint. Returns once committed.

        Raises:
            SerializationError: a value cannot be serialized; the message names the channel.
                Nothing is written.
        """
        conf = _configurable(config)
        thread_id = str(conf["thread_id"])
        rows = [
            (
                WRITES_IDX_MAP.get(channel, idx),
                channel,
                *self._dumps(value, f"write to channel {channel!r} by task {task_id!r}"),
            )
            for idx, (channel, value) in enumerate(writes)
        ]
        self._store.put_writes(
            (
                thread_id,
                conf.get("checkpoint_ns", ""),
                conf["checkpoint_id"],
                task_id,
                task_path,
                rows,
            )
        )

    def _dumps(self, value: Any, what: str) -> tuple[str, bytes]:
        try:
            return self.serde.dumps_typed(value)
        except Exception as e:
            raise SerializationError(
                f"cannot serialize {what}: a value of type {type(value).__name__}: {e}"
            ) from e

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of a thread."""
        self._lists.forget_thread(str(thread_id))
        self._store.delete_thread(str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) whose metadata ``run_id`` is in
        ``run_ids``."""
        run_ids = [str(r) for r in _sequence(run_ids, "run_ids")]
        self._lists.clear()
        self._store.delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, channel value and write of one thread to another."""
        self._store.copy_thread(str(source_thread_id), str(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: ``"keep_latest"`` keeps the newest checkpoint of each namespace
        (with its writes and the channel values it needs, delta chains included); ``"delete"``
        removes all. Do not prune threads of graphs that use LangGraph's beta ``DeltaChannel``,
        which rebuilds values from the writes of the ancestors this deletes."""
        thread_ids = [str(t) for t in _sequence(thread_ids, "thread_ids")]
        for thread_id in thread_ids:
            self._lists.forget_thread(thread_id)
        self._store.prune(thread_ids, strategy)

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """The next channel version: a zero-padded counter plus a random fraction, as
        SqliteSaver and PostgresSaver make them."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(str(current).split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # -- async: the same work on a worker thread --------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await _in_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        items = await _in_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in items:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await _in_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await _in_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await _in_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await _in_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await _in_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await _in_thread(partial(self.prune, strategy=strategy), thread_ids)

    # -- moving in from SqliteSaver -----------------------------------------------------------

    def import_sqlite_saver(self, source: str | os.PathLike[str], *, batch_size: int = 200) -> int:
        """Copy every thread, checkpoint and pending write of a database written by
        ``langgraph-checkpoint-sqlite`` (``SqliteSaver`` or ``AsyncSqliteSaver``) into this
        one. The source file is opened read-only and not modified. Checkpoint ids, parents,
        metadata and writes are kept, so ``get_state_history`` and time travel work as before.

        The source must have been written with the same serializer as this checkpointer's
        ``serde`` (the default ``JsonPlusSerializer`` unless you passed one).

        Returns:
            The number of checkpoints imported.
        """
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(
                f"import_sqlite_saver: source must be a path, got {type(source).__name__}"
            )
        src_path = os.fspath(source)
        if not os.path.exists(src_path):
            raise FileNotFoundError(f"import_sqlite_saver: no such file: {src_path!r}")
        src = _open_read_only(src_path)
        try:
            tables = _table_names(src)
        except sqlite3.DatabaseError as e:
            src.close()
            raise ValueError(
                f"import_sqlite_saver: {src_path!r} is not an SQLite database: {e}"
            ) from e
        try:
            if not _SQLITE_SAVER_TABLES <= tables:
                raise ValueError(
                    f"import_sqlite_saver: {src_path!r} is not a SqliteSaver database "
                    f"(tables: {sorted(tables)})"
                )
            return self._import_rows(src, batch_size)
        finally:
            src.close()

    def _import_rows(self, src: sqlite3.Connection, batch_size: int) -> int:
        cols = {r[1] for r in src.execute("PRAGMA table_info(writes)")}
        task_path = "task_path" if "task_path" in cols else "''"
        writes_by_cp: dict[tuple[str, str, str], list[tuple]] = {}
        for thread_id, ns, cid, task_id, path, idx, channel, type_, value in src.execute(
            f"SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, {task_path}, idx, channel, "
            "type, value FROM writes"
        ):
            writes_by_cp.setdefault((thread_id, ns, cid), []).append(
                (task_id, path, idx, channel, type_, value)
            )
        seen_blobs: set[tuple[str, str, str, str]] = set()
        checkpoints: list[tuple] = []
        write_args: list[tuple] = []
        count = 0
        rows = src.execute(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, "
            "metadata FROM checkpoints ORDER BY thread_id, checkpoint_ns, checkpoint_id"
        )
        for thread_id, ns, cid, parent_id, type_, data, metadata in rows:
            checkpoint = self.serde.loads_typed((type_, data))
            values = checkpoint.get("channel_values", {})
            new_versions = {}
            for ch, ver in checkpoint["channel_versions"].items():
                key = (str(thread_id), ns, ch, str(ver))
                if ch in values and key not in seen_blobs:
                    seen_blobs.add(key)
                    new_versions[ch] = ver
            md = json.loads(metadata) if metadata is not None else {}
            checkpoints.append(
                self._checkpoint_args(
                    str(thread_id), ns, parent_id, checkpoint, md, new_versions, None
                )
            )
            by_task: dict[tuple[str, str], list[tuple]] = {}
            for task_id, path, idx, channel, wtype, value in writes_by_cp.get(
                (thread_id, ns, cid), []
            ):
                by_task.setdefault((task_id, path), []).append((idx, channel, wtype, value))
            for (task_id, path), items in by_task.items():
                write_args.append((str(thread_id), ns, cid, task_id, path, items))
            count += 1
            if len(checkpoints) >= batch_size:
                self._store.put_many(checkpoints, write_args)
                checkpoints, write_args = [], []
        if checkpoints or write_args:
            self._store.put_many(checkpoints, write_args)
        return count


_SQLITE_SAVER_TABLES = {"checkpoints", "writes"}


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
        return _SQLITE_SAVER_TABLES <= _table_names(src)
    except sqlite3.DatabaseError:
        return False
    finally:
        src.close()


class _ListVersions:
    """For each (thread, namespace, channel), the list value this process last stored and the
    one it last read, each as a tuple of its items with its version and the number of deltas
    since its last full value. Bounded: the least recently used keys are dropped (their next
    put is full)."""

    MAX_ENTRIES = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key -> {"put": entry, "read": entry}
        self._entries: OrderedDict[tuple[str, str, str], dict[str, tuple[str, tuple, int]]] = (
            OrderedDict()
        )

    def base_for(self, key: tuple[str, str, str], value: list) -> tuple[str, tuple, int] | None:
        """The remembered version whose items are the first items of ``value``, the very
        objects in the same order (the longest such, so the delta is shortest); ``None`` if
        there is none."""
        with self._lock:
            slots = self._entries.get(key)
            if slots is None:
                return None
            self._entries.move_to_end(key)
            candidates = sorted(slots.values(), key=lambda e: len(e[1]), reverse=True)
        for entry in candidates:
            items = entry[1]
            # `all` stops at the first object that differs, so a miss costs little.
            if len(value) >= len(items) and all(map(operator.is_, items, value)):
                return entry
        return None

    def remember(
        self, key: tuple[str, str, str], version: str, items: tuple, chain: int, slot: str = "put"
    ) -> None:
        entry = (version, items, chain)
        with self._lock:
            self._entries.setdefault(key, {})[slot] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)

    def forget_thread(self, thread_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == thread_id]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _configurable(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (a RunnableConfig), got {type(config).__name__}")
    conf = config.get("configurable")
    if not isinstance(conf, dict) or "thread_id" not in conf:
        raise ValueError(
            f"config must have config['configurable']['thread_id'], got configurable={conf!r}"
        )
    return conf


def _sequence(value: Any, name: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(f"{name} must be a list of ids, got {type(value).__name__}")
    return list(value)


def _split_filter(filter: Any) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Scalar conditions go to SQL; others (lists, dicts) are checked in Python."""
    if not filter:
        return [], {}
    if not isinstance(filter, dict):
        raise TypeError(f"list(): filter must be a dict, got {type(filter).__name__}")
    sql: list[tuple[str, Any]] = []
    py: dict[str, Any] = {}
    for key, value in filter.items():
        if not isinstance(key, str):
            raise TypeError(f"list(): filter keys must be str, got {key!r}")
        if isinstance(value, _SCALARS):
            sql.append((key, value))
        else:
            py[key] = value
    return sql, py


def _metadata_json(metadata: dict[str, Any], checkpoint_id: str) -> str:
    try:
        return json.dumps(metadata, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        bad = next(
            (k for k, v in metadata.items() if not _json_ok(v)),
            "?",
        )
        raise SerializationError(
            f"cannot serialize metadata key {bad!r} of checkpoint {checkpoint_id!r} "
            f"(value of type {type(metadata.get(bad)).__name__}): {e}"
        ) from e


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    # Blocking SQLite and serializer work runs on the loop's default executor.
    return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args))
