"""`RustPostgresCheckpointer`: a LangGraph checkpointer on PostgreSQL, with its storage engine
in Rust (``fast_langgraph._native.PgCheckpointStore``).

The same Rust checkpoint engine as ``RustSQLiteCheckpointer``, with its PostgreSQL backend, on
a server many replicas share: the same named row and input types, channel values
stored once per version, append-only deltas for growing lists, ``list`` as one statement with
its pending writes, every put one atomic statement, the GIL released during all network I/O.
Python runs the saver's ``serde`` and builds ``CheckpointTuple`` (with the default serializer
the store builds a ``get_tuple``'s, as the SQLite store does); Rust does the SQL over its own
connection pool (rust-postgres, TLS through rustls).

Its tables are prefixed ``flg_``; ``langgraph-checkpoint-postgres``'s tables in the same
database are never read or written, except by ``import_postgres_saver``, which only reads them.
See docs/postgres.md.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, Literal, TypedDict, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    EXCLUDED_METADATA_KEYS,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    SerializerProtocol,
    get_checkpoint_id,
)
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from fast_langgraph._native import (
    ChannelValueRow,
    CheckpointKey,
    CheckpointRow,
    DeltaBaseMissingError,
    NewCheckpoint,
    NewWrite,
    NewWrites,
    PgCheckpointStore,
    SerializationError,
    placed_checkpoint,
    put_metadata_json,
    put_values,
)
from fast_langgraph.checkpoint._deltas import ListKey, ListVersions, Remembered, SeedCache
from fast_langgraph.checkpoint._engine_saver import (
    EngineSaver,
    checkpoint_payload,
    configurable,
    id_list,
    in_thread,
    stored_metadata,
    write_items,
)
from fast_langgraph.checkpoint._placement import (
    INLINE_MAX,
    Placed,
    Placements,
)
from fast_langgraph.serde import _ENCODER, RustSerializer

__all__ = ["PoolStats", "RustPostgresCheckpointer"]


class PoolStats(TypedDict):
    """``RustPostgresCheckpointer.pool_stats()``: the connection pool now, and what happened to
    it since the saver was made (in this process: a forked child counts from zero). The
    counters only grow; sample them twice and subtract for a rate. See docs/postgres.md."""

    open: int
    """Connections open now, busy or idle (at most ``pool_size``)."""
    idle: int
    """Connections open and free now."""
    waiting: int
    """Calls waiting for a connection now."""
    waits: int
    """Calls that found all ``pool_size`` connections busy and waited for one."""
    waits_timed_out: int
    """Waits that reached ``pool_timeout`` without being woken. Each is followed by the
    pool_timeout error (counted in ``timeouts``) unless a connection was freed at that moment;
    more of these than ``timeouts`` means a caller was not woken for a connection freed."""
    timeouts: int
    """Calls that raised ``CheckpointError`` because the pool stayed busy for ``pool_timeout``."""
    wait_seconds: float
    """Seconds calls spent waiting for a connection, all waits added up."""
    opened: int
    """Connections opened, the first one (at construction) included."""
    dropped: int
    """Connections closed because a call found its connection dead (server restart,
    ``pg_terminate_backend``, a pooler's idle timeout): the dead one and the idle ones
    dropped with it."""
    reconnects: int
    """Calls that found their connection dead; each ran once more on a new connection."""


_SCALARS = (str, int, float, bool, type(None))
# The values put() offers to be stored as append-only deltas.
_LIST_TYPES = (list,)
# Kept apart, as blobs, whatever their size: a DeltaChannel's history is read from blobs.
_KEPT_APART = (_DeltaSnapshot,)


class RustPostgresCheckpointer(EngineSaver, AbstractContextManager, AbstractAsyncContextManager):
    """A LangGraph checkpointer that stores checkpoints in PostgreSQL (13 or newer), through Rust.

    Use it wherever LangGraph takes a checkpointer::

        with RustPostgresCheckpointer.from_conn_string("postgresql://app@db/app") as saver:
            saver.setup()  # once per database (safe to run from every replica)
            graph = builder.compile(checkpointer=saver)

    It has the whole ``BaseCheckpointSaver`` interface, sync and async, like
    ``RustSQLiteCheckpointer``: ``get_tuple``, ``list``, ``put``, ``put_writes``,
    ``delete_thread``, ``delete_for_runs``, ``copy_thread``, ``prune``, ``prune_older_than``,
    ``get_delta_channel_history`` and every ``a*`` form. The async methods run the blocking
    work on a worker thread, so they never block the event loop.

    Args:
        conninfo: A libpq key/value string (``"host=db user=app dbname=app sslmode=require"``)
            or a ``postgresql://`` URL. ``sslmode`` is ``disable``, ``allow``/``prefer``
            (default), ``require``, ``verify-ca`` or ``verify-full`` (the last two need
            ``sslrootcert``).
        serde: The serializer. Defaults to ``fast_langgraph.RustSerializer``, which writes
            the same bytes as LangGraph's ``JsonPlusSerializer`` (so either reads what the
            other wrote, and PostgresSaver's tables import as they are) and decodes them
            faster; ``EncryptedSerializer`` works too.
        pool_size: The most connections this saver opens at once (per process).
        connect_timeout: Seconds opening a connection may take (a ``connect_timeout`` in
            ``conninfo`` wins).
        statement_timeout: Seconds any statement may run (PostgreSQL's
            ``statement_timeout``); ``None`` keeps the server's setting.
        pool_timeout: Seconds a call waits for a free connection when all are busy.
        guard: The single-writer guard: a run that continues a thread which another run
            extended meanwhile is refused with ``CheckpointConflictError`` instead of forking
            the thread's history. See docs/postgres.md, "The single-writer guard".
        delta: Store a growing list channel (a chat history) as the items appended since its
            previous version. ``False`` always stores full values.
        snapshot_every: With ``delta``, a full value after this many deltas in a row.

    Raises:
        CheckpointError: The server cannot be reached, or refused the credentials; the
            message says which, and where.
        ValueError: ``conninfo`` is malformed.
        TypeError: An argument has the wrong type.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        serde: SerializerProtocol | None = None,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        statement_timeout: float | None = None,
        pool_timeout: float = 30.0,
        guard: bool = False,
        delta: bool = True,
        snapshot_every: int = 64,
    ) -> None:
        if not isinstance(conninfo, str):
            raise TypeError(
                f"RustPostgresCheckpointer: conninfo must be a str, got {type(conninfo).__name__}"
            )
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(
                f"RustPostgresCheckpointer: pool_size must be an int >= 1, got {pool_size!r}"
            )
        if not isinstance(guard, bool):
            raise TypeError(
                f"RustPostgresCheckpointer: guard must be a bool, got {type(guard).__name__}"
            )
        if (
            not isinstance(snapshot_every, int)
            or isinstance(snapshot_every, bool)
            or snapshot_every < 1
        ):
            raise ValueError(
                f"RustPostgresCheckpointer: snapshot_every must be an int >= 1, got {snapshot_every!r}"
            )
        for name, value in (("connect_timeout", connect_timeout), ("pool_timeout", pool_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"RustPostgresCheckpointer: {name} must be a number of seconds")
        BaseCheckpointSaver.__init__(self, serde=serde or RustSerializer())
        self.guard = guard
        self.delta = bool(delta)
        self.snapshot_every = snapshot_every
        self._lists = ListVersions()
        self._seeds = SeedCache()
        self._placed = Placements()
        self._heads = _Heads()
        self._store = PgCheckpointStore(
            conninfo,
            pool_size=pool_size,
            connect_timeout=float(connect_timeout),
            statement_timeout=None if statement_timeout is None else float(statement_timeout),
            pool_timeout=float(pool_timeout),
            guard=guard,
        )
        self._track_fork()

    def _after_fork_in_child(self) -> None:
        """In a forked child the pool opens the child's own connections by itself; the
        in-process caches, whose locks a thread of the parent may have held, are renewed."""
        self._lists = ListVersions()
        self._seeds = SeedCache()
        self._placed = Placements()
        self._heads = _Heads()

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def from_conn_string(cls, conn_string: str, **kwargs: Any) -> _Opener:
        """Open a checkpointer on ``conn_string``, closing it on exit. Works as a sync and as
        an async context manager, like ``PostgresSaver.from_conn_string`` and
        ``AsyncPostgresSaver.from_conn_string``::

            with RustPostgresCheckpointer.from_conn_string(url) as saver: ...
            async with RustPostgresCheckpointer.from_conn_string(url) as saver: ...
        """
        return _Opener(cls, conn_string, kwargs)

    def setup(self) -> None:
        """Create the tables, or bring them to this version's schema (the migrations not yet
        applied, in order, in one transaction). Safe to call from several replicas at once."""
        self._store.setup()

    async def asetup(self) -> None:
        await in_thread(self.setup)

    def close(self) -> None:
        """Close every connection. Later calls raise ``CheckpointClosedError``. Idempotent."""
        self._store.close()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._store.closed

    def storage_stats(self) -> dict[str, int]:
        """Row counts and sizes: ``checkpoints``, ``blobs``, ``delta_blobs``, ``writes``,
        ``payload_bytes``, ``table_bytes`` (the tables and their indexes on disk)."""
        return self._store.storage_stats()

    def writer_stats(self) -> dict[str, int]:
        """``{"calls": n, "commits": m}``: write calls since open, and the transactions that
        carried them (concurrent writes of this process share one). ``calls / commits`` is
        the mean group-commit size."""
        return self._store.writer_stats()

    def pool_stats(self) -> PoolStats:
        """The connection pool now (``open``, ``idle``, ``waiting``) and its counters since
        the saver was made: ``waits``, ``waits_timed_out``, ``timeouts``, ``wait_seconds``,
        ``opened``, ``dropped``, ``reconnects`` (see ``PoolStats``). Cheap (no statement, no
        wait for a connection): poll it to size ``pool_size``."""
        return self._store.pool_stats()

    def __enter__(self) -> RustPostgresCheckpointer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self) -> RustPostgresCheckpointer:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await in_thread(self.close)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"RustPostgresCheckpointer(guard={self.guard}, {state})"

    # -- reads -----------------------------------------------------------------------------

    @staticmethod
    def _delta_items(value: Any) -> builtins.list[Any] | None:
        # A plain list: the only value this saver's put stores as deltas.
        return value if type(value) is list else None

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (or the thread's latest), with its pending
        writes, or ``None``."""
        conf = config.get("configurable") if type(config) is dict else None
        if type(conf) is not dict or "thread_id" not in conf:
            conf = configurable(config)  # checks it, or raises naming what is wrong
        # get_checkpoint_id(config), without the call.
        checkpoint_id = conf.get("checkpoint_id")
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        # DeltaChannel snapshots this process decoded already are not read again.
        cached = self._seeds.versions(thread_id, ns) if self.delta and self._seeds else []
        key = (thread_id, ns)
        # The checkpoint whose placement is held: if the read finds that one, the values it
        # keeps inside need not be gathered again (see Placements).
        held = self._placed.held_id(key)
        got = self._read(
            thread_id, ns, checkpoint_id, cached, config if checkpoint_id else None, held
        )
        if self.guard:
            # What the caller read as the thread's latest is what its next put continues;
            # a checkpoint read by id is a deliberate fork point (time travel, update_state).
            if checkpoint_id:
                self._heads.forget((thread_id, ns, checkpoint_id))
            else:
                # (Read without checkpoint_id: the tuple's config is the row's own.)
                read = got[0].config["configurable"]["checkpoint_id"] if got else None
                self._heads.remember((thread_id, ns, read))
        return self._after_read(got, thread_id, ns, checkpoint_id, cached, config, key)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first, each with its pending writes, from one SQL statement.

        ``filter`` matches metadata keys by containment (``metadata @> filter``, as
        PostgresSaver does); keys and values are bound as parameters, never spliced into SQL.
        """
        kwargs: dict[str, Any] = {}
        if config is not None:
            conf = configurable(config)
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

    def _to_tuple(self, row: CheckpointRow, config: RunnableConfig | None) -> CheckpointTuple:
        thread_id, ns, checkpoint_id = row.thread_id, row.checkpoint_ns, row.checkpoint_id
        parent_id = row.parent_checkpoint_id
        loads = self.serde.loads_typed
        checkpoint = loads((row.type_tag, row.checkpoint))
        # The store puts msgpack channel values inside the checkpoint (one decode for all of
        # them) and leaves their segments empty; the others are decoded here.
        values = checkpoint.setdefault("channel_values", {})
        for stored in row.values:
            if stored.segments:
                values[stored.channel] = self._load_value(stored)
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
            metadata=json.loads(row.metadata_json),
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
            pending_writes=[
                (w.task_id, w.channel, loads((w.type_tag, w.data))) for w in row.writes
            ],
        )

    def _load_value(self, stored: ChannelValueRow) -> Any:
        loads = self.serde.loads_typed
        segments = stored.segments
        value = loads(segments[0])
        if len(segments) > 1:
            if type(value) is not list:
                raise SerializationError(
                    f"channel {stored.channel!r}: stored as an append-only delta over a value of type "
                    f"{type(value).__name__}, not a list; the database is damaged"
                )
            for segment in segments[1:]:
                value.extend(loads(segment))
        return value

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """For each channel, the writes to it from the ancestors of the checkpoint named by
        ``config`` (following parent pointers, oldest first) up to the nearest ancestor that
        holds a value of it, returned as ``seed`` (LangGraph's ``DeltaChannelHistory``).
        Native: a few bounded statements, not a ``get_tuple`` per ancestor."""
        if not channels:
            return {}
        channels = [str(c) for c in channels]
        conf = configurable(config)
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config) or None
        # With deltas on, decoded seeds are kept: the store skips reading the ones this
        # process holds.
        cached = self._seeds.versions(thread_id, ns, channels) if self.delta and self._seeds else []
        loads = self.serde.loads_typed
        result: dict[str, Any] = {}
        for history in self._store.delta_history(thread_id, ns, checkpoint_id, channels, cached):
            entry: dict[str, Any] = {
                "writes": [
                    (w.task_id, w.channel, loads((w.type_tag, w.data))) for w in history.writes
                ]
            }
            seed = history.seed
            if seed is not None:
                key = (thread_id, ns, history.channel, history.seed_version or "")
                value = self._seeds.get(key) if not seed.segments else None
                if value is None:
                    if not seed.segments:
                        # Dropped from the cache since the call: read again, uncached.
                        self._seeds.clear()
                        return self.get_delta_channel_history(config=config, channels=channels)
                    value = self._load_value(seed)
                    if self.delta and history.seed_version is not None:
                        # (A seed with no version is a value kept inside a checkpoint.)
                        value = self._seeds.put(key, value)
                entry["seed"] = value
            result[history.channel] = entry
        return result

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
            CheckpointConflictError: with ``guard=True``, another run extended this thread
                since this run read it. Nothing is written.
            CheckpointError: the database refused the write or could not be reached; the
                message names the thread and checkpoint. Nothing is written.
        """
        conf = config.get("configurable") if type(config) is dict else None
        if type(conf) is not dict or "thread_id" not in conf:
            conf = configurable(config)  # checks it, or raises naming what is wrong
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        parent_id = conf.get("checkpoint_id")
        continue_head = self.guard and self._heads.continues((thread_id, ns, parent_id))
        remembered: list[tuple[ListKey, Remembered]] = []
        args, placement = self._checkpoint_args(
            thread_id,
            ns,
            parent_id,
            checkpoint,
            metadata,
            new_versions,
            config,
            remembered if self.delta else None,
            self._placed,
        )
        try:
            self._store.put(args, continue_head)
        except DeltaBaseMissingError:
            # A delta base or a blob this checkpoint refers to was pruned or deleted since we
            # saw it: store full values, the unchanged ones included.
            self._lists.forget_thread(thread_id)
            self._placed.forget_thread(thread_id)
            remembered.clear()
            args, placement = self._checkpoint_args(
                thread_id,
                ns,
                parent_id,
                checkpoint,
                metadata,
                new_versions,
                config,
                remembered,
                self._placed,
                use_deltas=False,
                store_unplaced=True,
            )
            self._store.put(args, continue_head)
        self._placed.set((thread_id, ns), checkpoint["id"], placement)
        if remembered:
            self._lists.remember_many(remembered)
        if self._seeds:
            # A version stored again may hold another value.
            self._seeds.discard([(thread_id, ns, ch, str(v)) for ch, v in new_versions.items()])
        if self.guard:
            # This run's next put continues this checkpoint.
            self._heads.remember((thread_id, ns, checkpoint["id"]))
        return {
            "configurable": {
                "thread_id": conf["thread_id"],
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
        remembered: builtins.list[tuple[ListKey, Remembered]] | None = None,
        placements: Placements | None = None,
        *,
        use_deltas: bool = True,
        store_unplaced: bool = False,
    ) -> tuple[NewCheckpoint, Placed]:
        """Serialize a checkpoint into the ``NewCheckpoint`` that ``PgCheckpointStore.put``
        takes, and give its placement (see ``Placements``). With the default serializer, small
        values travel inside the checkpoint (see ``put_values``); ``placements`` says where the
        values the checkpoint does not change were stored (see ``Placements``). An unchanged
        value kept apart by type (``_KEPT_APART``) that ``placements`` does not know is referred
        to, its blob checked by the put, unless ``store_unplaced``: then it is stored again
        (a blob already stored under its version is left as it is), so that the put refers to
        no blob it does not write."""
        c: dict[str, Any] = dict(checkpoint)
        serde = self.serde
        dumps = serde.dumps_typed
        codec = _ENCODER if type(serde) is RustSerializer else None
        plan = None
        if remembered is not None:
            lists = self._lists
            snapshot_every = self.snapshot_every

            def plan(channel: str, version: str, value: list) -> tuple[Any, str | None]:
                key = (thread_id, ns, channel)
                # Short chains: at most one delta per 8 items, never more than snapshot_every
                # in a row, so a list of fewer than 8 items is always stored whole (see
                # ListVersions.plan).
                if use_deltas and len(value) >= 8:
                    got = lists.plan(key, value, snapshot_every)
                    to_dump, base, chain = got.items, got.base, got.chain
                else:
                    to_dump, base, chain = value, None, 0
                remembered.append((key, Remembered(version, tuple(value), chain)))
                return to_dump, base

        # Small values travel inside the checkpoint: a blob row and its key for a counter or a
        # short history would cost the server more than the value. Scalars and None with any
        # serializer, as PostgresSaver keeps them; other values with the default one, up to
        # INLINE_MAX bytes. The other values of new_versions are serialized in the same call.
        # By position (keywords cost a lookup each in the native call), in put_values' order.
        inline, blobs, refs = put_values(
            c.pop("channel_values", None),  # values
            new_versions if type(new_versions) is dict else dict(new_versions),
            True,  # none_inline
            _LIST_TYPES,  # list_types
            plan,
            codec,
            dumps,
            thread_id,
            checkpoint["id"],  # checkpoint_id
            INLINE_MAX,  # inline_max
            c.get("channel_versions"),  # versions
            placements.get((thread_id, ns)) if placements is not None else None,  # placed
            _KEPT_APART,  # keep_apart
            store_unplaced,
        )
        if inline:
            c["channel_values"] = inline
            if remembered:
                # A value kept inside the checkpoint has no blob: no delta can extend it.
                remembered[:] = [r for r in remembered if r[0][2] not in inline]

        def dump() -> tuple[str, bytes, bool]:
            return checkpoint_payload(c, inline, codec, dumps, checkpoint["id"], thread_id)

        # The row's versions column holds the versions of the values stored apart, whose blobs
        # a read looks up; the inline values' versions stay in the payload. A msgpack payload
        # leaves the column's versions out and reading puts them back. Versions that are not
        # strings (the column holds their str()), or a payload that is not msgpack, keep them
        # all inside.
        channel_versions = c["channel_versions"]
        for v in channel_versions.values():
            if type(v) is not str:
                type_, data, as_packed = dump()
                break
        else:
            if inline:
                c["channel_versions"] = {
                    ch: v for ch, v in channel_versions.items() if ch in inline
                }
            else:
                del c["channel_versions"]
            type_, data, as_packed = dump()
            if type_ != "msgpack":
                c["channel_versions"] = channel_versions
                type_, data, as_packed = dump()
        # The metadata as JSON text in one native call, in the common case (see
        # stored_metadata, which also covers the others).
        got = put_metadata_json(config, metadata, EXCLUDED_METADATA_KEYS)
        metadata_json, run_id = (
            got if got is not None else stored_metadata(config, metadata, checkpoint["id"])
        )
        # PostgreSQL's jsonb cannot hold U+0000; PostgresSaver drops it the same way.
        if "\\u0000" in metadata_json:
            metadata_json = metadata_json.replace("\\u0000", "")
        # The NewCheckpoint, with the versions of the values stored apart, and the
        # checkpoint's placement, in one native call.
        return placed_checkpoint(
            thread_id,
            ns,
            checkpoint["id"],
            parent_id,  # parent_checkpoint_id
            type_,  # type_tag
            data,  # checkpoint
            metadata_json,
            run_id,
            channel_versions if type(channel_versions) is dict else dict(channel_versions),
            inline,
            as_packed,  # packed
            blobs,
            refs,
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
        conf = configurable(config)
        thread_id = str(conf["thread_id"])
        items = write_items(self.serde, writes, task_id)
        key = CheckpointKey(thread_id, conf.get("checkpoint_ns", ""), conf["checkpoint_id"])
        self._store.put_writes(NewWrites(key, task_id, task_path, items))

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of a thread."""
        self._lists.forget_thread(str(thread_id))
        self._seeds.forget_thread(str(thread_id))
        self._placed.forget_thread(str(thread_id))
        self._store.delete_thread(str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) whose metadata ``run_id`` is in
        ``run_ids``, except those another checkpoint still needs: an ancestor from which a
        later checkpoint rebuilds a LangGraph ``DeltaChannel`` stays, with its writes."""
        run_ids = [str(r) for r in id_list(run_ids, "run_ids")]
        self._lists.clear()
        self._seeds.clear()
        self._placed.clear()
        self._store.delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, channel value and write of one thread to another."""
        self._placed.forget_thread(str(target_thread_id))
        self._store.copy_thread(str(source_thread_id), str(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Prune threads: ``"keep_latest"`` keeps the newest checkpoint of each namespace
        (with its writes and the channel values it needs, delta chains included), and the
        ancestors (with their writes) from which it rebuilds a LangGraph ``DeltaChannel``,
        back to the nearest one holding a snapshot of it; ``"delete"`` removes all."""
        thread_ids = [str(t) for t in id_list(thread_ids, "thread_ids")]
        for thread_id in thread_ids:
            self._lists.forget_thread(thread_id)
            self._seeds.forget_thread(thread_id)
            self._placed.forget_thread(thread_id)
        # The store checks the strategy and names it in its ValueError.
        self._store.prune(thread_ids, cast(Literal["keep_latest", "delete"], strategy))

    def prune_older_than(
        self,
        max_idle: timedelta,
        *,
        strategy: Literal["delete", "keep_latest"] = "delete",
        now: datetime | None = None,
    ) -> int:
        """Prune every thread idle for longer than ``max_idle``: whose newest checkpoint was
        made before ``now - max_idle``. ``"delete"`` (default) deletes those threads;
        ``"keep_latest"`` prunes them as ``prune`` does, with the same ``DeltaChannel``
        safety. The threads are chosen and pruned in one transaction.

        A checkpoint's time is the one in its id (LangGraph's checkpoint ids are UUIDv6,
        which carry the time they were made), or the time it was stored.

        Args:
            max_idle: How long a thread may go without a new checkpoint.
            strategy: ``"delete"`` or ``"keep_latest"``.
            now: The current time, a timezone-aware ``datetime`` (a naive one raises
                ``ValueError``: local or UTC would be a guess); defaults to the clock.

        Returns:
            The number of threads pruned.
        """
        if not isinstance(max_idle, timedelta):
            raise TypeError(
                f"prune_older_than(): max_idle must be a datetime.timedelta, got {type(max_idle).__name__}"
            )
        if max_idle < timedelta(0):
            raise ValueError(f"prune_older_than(): max_idle must not be negative, got {max_idle}")
        if now is None:
            now = datetime.now(timezone.utc)
        elif not isinstance(now, datetime):
            raise TypeError(f"prune_older_than(): now must be a datetime, got {type(now).__name__}")
        elif now.tzinfo is None:
            raise ValueError(
                "prune_older_than(): now must be timezone-aware (e.g. datetime.now(timezone.utc)), "
                f"got the naive {now.isoformat()}"
            )
        if strategy not in ("delete", "keep_latest"):
            raise ValueError(
                f"prune_older_than(): strategy must be 'delete' or 'keep_latest', got {strategy!r}"
            )
        cutoff_ms = int((now - max_idle).timestamp() * 1000)
        self._lists.clear()
        self._seeds.clear()
        self._placed.clear()
        return self._store.prune_idle(cutoff_ms, strategy)

    # -- moving in from PostgresSaver --------------------------------------------------------

    def import_postgres_saver(self, source: Any, *, batch_size: int = 200) -> int:
        """Copy every thread, checkpoint and pending write that ``langgraph-checkpoint-postgres``
        (``PostgresSaver``/``AsyncPostgresSaver``) stored into this checkpointer's tables.

        ``source`` is a ``PostgresSaver`` or a connection string for one (needs
        ``langgraph-checkpoint-postgres`` and ``psycopg``, which a PostgresSaver user has). Its
        tables are only read. Checkpoint ids, parents, metadata and writes (with their task
        paths and indexes) are kept, so ``get_state_history`` and time travel work as before.
        The source must use the same serializer as this checkpointer.

        Returns:
            The number of checkpoints imported.
        """
        from langgraph.checkpoint.postgres import PostgresSaver

        if isinstance(source, str):
            with PostgresSaver.from_conn_string(source) as saver:
                return self._import_from(saver, batch_size)
        if not isinstance(source, PostgresSaver):
            raise TypeError(
                "import_postgres_saver: source must be a PostgresSaver or its connection string, "
                f"got {type(source).__name__}"
            )
        return self._import_from(source, batch_size)

    def _import_from(self, saver: Any, batch_size: int) -> int:
        writes_by_cp: dict[tuple[str, str, str], list[tuple]] = {}
        with saver._cursor() as cur:
            cur.execute(
                "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, "
                "type, blob FROM checkpoint_writes"
            )
            for r in cur.fetchall():
                writes_by_cp.setdefault(
                    (r["thread_id"], r["checkpoint_ns"], r["checkpoint_id"]), []
                ).append(
                    (
                        r["task_id"],
                        r["task_path"],
                        r["idx"],
                        r["channel"],
                        r["type"],
                        bytes(r["blob"]) if r["blob"] is not None else b"",
                    )
                )
        seen_blobs: set[tuple[str, str, str, str]] = set()
        checkpoints: list[NewCheckpoint] = []
        write_args: list[NewWrites] = []
        count = 0
        for tup in saver.list(None):
            conf = tup.config["configurable"]
            thread_id, ns, cid = (
                str(conf["thread_id"]),
                conf.get("checkpoint_ns", ""),
                conf["checkpoint_id"],
            )
            checkpoint = tup.checkpoint
            values = checkpoint.get("channel_values", {})
            new_versions = {}
            for ch, ver in checkpoint["channel_versions"].items():
                key = (thread_id, ns, ch, str(ver))
                if ch in values and key not in seen_blobs:
                    seen_blobs.add(key)
                    new_versions[ch] = ver
            parent_id = (
                tup.parent_config["configurable"]["checkpoint_id"] if tup.parent_config else None
            )
            # Without placements: a value the checkpoint does not change is carried if small
            # and stored apart (a stored one left as it is) if not, whatever a checkpoint
            # already in the database did with it; so is a DeltaChannel's snapshot, stored
            # apart: an import refers to no blob it does not write (a batch stores its
            # checkpoints without the check that such a blob is still there).
            args, _ = self._checkpoint_args(
                thread_id,
                ns,
                parent_id,
                checkpoint,
                tup.metadata,
                new_versions,
                None,
                store_unplaced=True,
            )
            checkpoints.append(args)
            by_task: dict[tuple[str, str], list[NewWrite]] = {}
            for task_id, path, idx, channel, wtype, value in writes_by_cp.get(
                (thread_id, ns, cid), []
            ):
                by_task.setdefault((task_id, path), []).append(NewWrite(idx, channel, wtype, value))
            cp_key = CheckpointKey(thread_id, ns, cid)
            for (task_id, path), items in by_task.items():
                write_args.append(NewWrites(cp_key, task_id, path, items))
            count += 1
            if len(checkpoints) >= batch_size:
                self._store.put_many(checkpoints, write_args)
                checkpoints, write_args = [], []
        if checkpoints or write_args:
            self._store.put_many(checkpoints, write_args)
        return count


class _Opener(AbstractContextManager, AbstractAsyncContextManager):
    """``from_conn_string``'s result: a sync and an async context manager."""

    def __init__(self, cls: type[RustPostgresCheckpointer], conninfo: str, kwargs: dict) -> None:
        self._make = partial(cls, conninfo, **kwargs)
        self._saver: RustPostgresCheckpointer | None = None

    def __enter__(self) -> RustPostgresCheckpointer:
        self._saver = self._make()
        return self._saver

    def __exit__(self, *exc_info: Any) -> None:
        if self._saver is not None:
            self._saver.close()

    async def __aenter__(self) -> RustPostgresCheckpointer:
        # Connecting is network I/O: off the event loop.
        self._saver = await in_thread(self._make)
        return self._saver

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._saver is not None:
            await in_thread(self._saver.close)


class _Heads:
    """For the single-writer guard: the checkpoints this process read as a thread's latest or
    just stored, keyed (thread, namespace, checkpoint id; None for "the thread had none").
    A put whose parent is one of them continues the thread's head; any other put is a
    deliberate fork. Bounded: the least recently used are dropped (their continuations are
    then treated as forks, which are never refused)."""

    MAX_ENTRIES = 65536

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: OrderedDict[tuple[str, str, str | None], None] = OrderedDict()

    def remember(self, key: tuple[str, str, str | None]) -> None:
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self.MAX_ENTRIES:
                self._keys.popitem(last=False)

    def forget(self, key: tuple[str, str, str | None]) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def continues(self, key: tuple[str, str, str | None]) -> bool:
        with self._lock:
            return key in self._keys


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
