"""`RustSQLiteCheckpointer`: a LangGraph checkpointer on SQLite, with its storage engine in Rust.

Python does what LangGraph's interface needs: it runs the saver's ``serde`` (``RustSerializer`` by
default: LangGraph's ``JsonPlusSerializer`` format, byte for byte, encoded in Rust) and turns rows back into ``CheckpointTuple``. The Rust core
(``fast_langgraph._native.CheckpointStore``) does all the SQL, with the GIL released:

- channel values are stored once per channel version, so a step that changes one channel
  serializes and writes one value, not the whole state;
- ``list`` reads its rows, pending writes included, in batches on a thread of the store (one
  read transaction) while the caller decodes the batch before; ``get_tuple`` a few key lookups
  in one read transaction;
- concurrent writes are committed together (group commit): the first caller to find no commit
  in progress commits every queued call in one transaction, with the GIL released, and every
  ``put``/``put_writes`` returns only once its transaction has committed.
"""

from __future__ import annotations

import builtins
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, Literal, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    EXCLUDED_METADATA_KEYS,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    SerializerProtocol,
    get_checkpoint_id,
)
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from fast_langgraph._native import (
    ChannelValueRow,
    CheckpointKey,
    CheckpointRow,
    CheckpointStore,
    DeltaBaseMissingError,
    NewCheckpoint,
    NewWrites,
    SerializationError,
    list_readers_pause,
    list_readers_resume,
    placed_checkpoint,
    put_metadata_json,
    put_values,
)
from fast_langgraph.checkpoint._deltas import (
    ListKey,
    ListVersions,
    Remembered,
    SeedCache,
    list_items,
)
from fast_langgraph.checkpoint._engine_saver import (
    EngineSaver,
    _load_metadata,
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
from fast_langgraph.checkpoint.sqlite_saver import export_sqlite_saver, import_sqlite_saver
from fast_langgraph.serde import _ENCODER, RustSerializer

__all__ = ["RustSQLiteCheckpointer"]


_SCALARS = (str, int, float, bool, type(None))

# The values put() offers to be stored as append-only deltas (see list_items).
_LIST_TYPES = (list, _DeltaSnapshot)
# Kept apart, as blobs, whatever their size: a DeltaChannel snapshot is stored as a delta over
# the snapshot before, and kept by version in the SeedCache.
_KEPT_APART = (_DeltaSnapshot,)


# list() reads its rows on threads of the store. A fork must not land while one of them is
# inside SQLite: the child would inherit SQLite's process-wide mutexes held, and its first
# connection would wait forever. The store keeps them out of SQLite around every fork.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=list_readers_pause,
        after_in_parent=lambda: list_readers_resume(False),
        after_in_child=lambda: list_readers_resume(True),
    )


class RustSQLiteCheckpointer(EngineSaver, AbstractContextManager, AbstractAsyncContextManager):
    """A LangGraph checkpointer that stores checkpoints in an SQLite file, through Rust.

    Use it wherever LangGraph takes a checkpointer::

        checkpointer = RustSQLiteCheckpointer("state.db")
        graph = builder.compile(checkpointer=checkpointer)

    It implements the whole ``BaseCheckpointSaver`` interface, sync and async: ``get_tuple``,
    ``list``, ``put``, ``put_writes``, ``delete_thread``, ``delete_for_runs``, ``copy_thread``,
    ``prune``, ``get_delta_channel_history`` (LangGraph's ``DeltaChannel``) and every ``a*``
    form, plus ``prune_older_than`` (time-based retention). Retention keeps what a kept
    checkpoint needs to read back, ``DeltaChannel`` ancestors included. The async methods run the blocking work on a worker
    thread, so they never block the event loop.

    Args:
        path: The database file, created if missing, or ``":memory:"`` for a private
            in-memory database.
        serde: The serializer for checkpoints, channel values and writes. Defaults to
            ``fast_langgraph.RustSerializer``, which writes the same bytes as LangGraph's
            ``JsonPlusSerializer`` (so either reads the other's files);
            ``EncryptedSerializer`` works too.
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
        ForeignDatabaseError: The file is not SQLite, holds anything that is not ours (a
            SqliteSaver database is one: see ``import_sqlite_saver``), or is an empty file
            another program claimed (``user_version`` or ``application_id`` set). The file is
            not modified.
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
        self.busy_timeout = float(busy_timeout)
        self._lists = ListVersions()
        self._seeds = SeedCache()
        self._placed = Placements()
        self._store: CheckpointStore | _StoreInChild = self._open_store()
        self._track_fork()

    def _open_store(self) -> CheckpointStore:
        return CheckpointStore(
            self.path,
            synchronous="full" if self.durable else "normal",
            busy_timeout=self.busy_timeout,
        )

    def _after_fork_in_child(self) -> None:
        """In a forked child the parent's connections are not used: the file is opened anew
        on the child's first call (an in-memory database cannot be, and keeps refusing)."""
        self._lists = ListVersions()
        self._seeds = SeedCache()
        self._placed = Placements()
        store = self._store
        inherited = store.inherited if isinstance(store, _StoreInChild) else store
        if self.path != ":memory:" and not inherited.closed:
            self._store = _StoreInChild(self, inherited)

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
        await in_thread(self.close)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"RustSQLiteCheckpointer({self.path!r}, durable={self.durable}, {state})"

    def _check_open(self) -> None:
        self._store.ensure_open()

    # -- reads -----------------------------------------------------------------------------

    # What a read list is remembered as: a list, or a DeltaChannel snapshot's (see put).
    _delta_items = staticmethod(list_items)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (or the thread's latest), with its pending
        writes, or ``None``. A ``checkpoint_ns`` of ``None`` names no namespace, so the result
        is ``None``, as with SqliteSaver."""
        conf = config.get("configurable") if type(config) is dict else None
        if type(conf) is not dict or "thread_id" not in conf:
            conf = configurable(config)  # checks it, or raises naming what is wrong
        ns = conf.get("checkpoint_ns", "")
        if ns is None:
            return None
        # get_checkpoint_id(config), without the call.
        checkpoint_id = conf.get("checkpoint_id")
        thread_id = str(conf["thread_id"])
        if type(ns) is not str:
            ns = _text(ns, "checkpoint_ns")
        # DeltaChannel snapshots this process decoded already are not read again.
        cached = self._seeds.versions(thread_id, ns) if self.delta and self._seeds else []
        key = (thread_id, ns)
        # The checkpoint whose placement is held: if the read finds that one, the values it
        # keeps inside need not be gathered again (see Placements).
        held = self._placed.held_id(key)
        got = self._read(
            thread_id, ns, checkpoint_id, cached, config if checkpoint_id else None, held
        )
        return self._after_read(got, thread_id, ns, checkpoint_id, cached, config, key)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first, each with its pending writes.

        The rows are read in batches (1, 2, 4, ... up to 256 checkpoints) by a thread of the
        store, in one read transaction (one snapshot), at most four batches ahead of the
        caller (three waiting, one being read), while this thread decodes the batch before.
        Leaving the loop early, or letting the iterator go, stops that thread and ends its
        transaction. After ``close()``, a listing begun before raises
        ``CheckpointClosedError`` at its next batch.

        ``filter`` matches metadata keys by Python equality (``True == 1 == 1.0``; ``None``
        also matches a missing key; dicts and lists compare as Python compares them). Scalars
        are matched in SQL; dicts and lists are matched by the store on each row's metadata
        before any checkpoint is read, so ``limit`` stops the scan and memory does not grow
        with the database. Keys and values are bound as SQL parameters, never spliced into
        the query.

        Raises:
            TypeError: ``config``, ``filter``, ``before`` or ``limit`` is not of the right
                type; the message names the argument.
            CheckpointClosedError: while iterating, the saver was closed.
            CheckpointError: while iterating, in a process forked from the one that began the
                listing.
        """
        kwargs: dict[str, Any] = {}
        if config is not None:
            conf = configurable(config)
            kwargs["thread_id"] = str(conf["thread_id"])
            if conf.get("checkpoint_ns") is not None:
                kwargs["checkpoint_ns"] = _text(conf["checkpoint_ns"], "checkpoint_ns")
            if checkpoint_id := get_checkpoint_id(config):
                kwargs["checkpoint_id"] = str(checkpoint_id)
        if before is not None:
            if not isinstance(before, dict) or not isinstance(before.get("configurable"), dict):
                raise TypeError(
                    "list(): before must be a config dict (a RunnableConfig) naming a checkpoint "
                    "in before['configurable']['checkpoint_id'], got "
                    f"{type(before).__name__} {before!r}"
                )
            if before_id := get_checkpoint_id(before):
                kwargs["before"] = str(before_id)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"list(): limit must be an int or None, got {type(limit).__name__}")
        sql_filter, json_filter, py_filter = _split_filter(filter)
        kwargs["filter"] = sql_filter
        kwargs["json_filter"] = json_filter
        if limit is not None and not py_filter:
            kwargs["limit"] = limit
        # The store reads the rows in batches on a thread of its own, in one read transaction,
        # while this thread decodes the batch before.
        batches = self._store.list_batches(**kwargs)
        serde = self.serde
        if type(serde) is not RustSerializer:
            return self._iter_batches(batches, py_filter, limit)
        # The default serializer: the store builds each batch's CheckpointTuples itself,
        # decoding through the serializer's codec (the same values _to_tuple gives).
        build = partial(batches.next_tuples, self._tuple_parts(serde))
        return self._iter_built(batches, build, py_filter, limit)

    def _to_tuple(self, row: CheckpointRow, config: RunnableConfig | None) -> CheckpointTuple:
        loads = self.serde.loads_typed
        checkpoint = loads((row.type_tag, row.checkpoint))
        # The store puts msgpack channel values inside the checkpoint (one decode for all of
        # them) and leaves their segments empty; the others are decoded here.
        values = checkpoint.setdefault("channel_values", {})
        for stored in row.values:
            if stored.segments:
                values[stored.channel] = self._load_value(stored)
        thread_id, ns = row.thread_id, row.checkpoint_ns
        parent_id = row.parent_checkpoint_id
        writes = row.writes
        return CheckpointTuple(
            config
            or {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": row.checkpoint_id,
                }
            },
            checkpoint,
            _load_metadata(row.metadata_json),
            (
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
            [(w.task_id, w.channel, loads((w.type_tag, w.data))) for w in writes] if writes else [],
        )

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """For each of ``channels``, the pending writes that LangGraph's ``DeltaChannel``
        replays to rebuild its value at the checkpoint named by ``config`` (or the thread's
        latest), and the stored value they start from.

        Walks the checkpoint's ancestors along their parent pointers, in one read transaction
        and a fixed number of SQL statements however long the chain. Per channel, the walk
        stops at the nearest ancestor holding a stored value of the channel (a
        ``_DeltaSnapshot``, or a plain value written before the channel became a
        ``DeltaChannel``), returned as ``seed``; the writes of that ancestor and of every
        ancestor after it are returned oldest first, each checkpoint's in ``writes_sort_key``
        order. The target's own writes are left out. A chain that loops back on itself ends
        where it meets itself. No ``seed`` means the walk reached the root without a value.
        """
        if not channels:
            return {}
        channels = [str(c) for c in channels]
        conf = configurable(config)
        ns = conf.get("checkpoint_ns", "")
        if ns is None:
            # As get_tuple: a checkpoint_ns of None names no checkpoint.
            return {ch: {"writes": []} for ch in channels}
        thread_id, ns = str(conf["thread_id"]), _text(ns, "checkpoint_ns")
        # With deltas on, decoded seeds are kept (see SeedCache): the store skips reading the
        # ones this process holds.
        cached = self._seeds.versions(thread_id, ns, channels) if self.delta and self._seeds else []
        histories = self._store.delta_history(
            thread_id, ns, get_checkpoint_id(config), channels, cached
        )
        loads = self.serde.loads_typed
        result: dict[str, DeltaChannelHistory] = {}
        for history in histories:
            entry: DeltaChannelHistory = {
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
                        # Dropped from the cache since the call: read it again, uncached.
                        return self._uncached_history(config, channels)
                    value = self._load_value(seed)
                    if self.delta and history.seed_version is not None:
                        # (A seed with no version is a value kept inside a checkpoint.)
                        value = self._seeds.put(key, value)
                        # The next snapshot of this channel extends these very items.
                        items = list_items(value)
                        if items is not None and history.seed_version is not None:
                            self._lists.remember(
                                (thread_id, ns, history.channel),
                                Remembered(history.seed_version, tuple(items), seed.deltas),
                                "read",
                            )
                entry["seed"] = value
            result[history.channel] = entry
        return result

    def _uncached_history(
        self, config: RunnableConfig, channels: builtins.list[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        self._seeds.clear()
        return self.get_delta_channel_history(config=config, channels=channels)

    def _load_value(self, stored: ChannelValueRow) -> Any:
        loads = self.serde.loads_typed
        segments = stored.segments
        value = loads(segments[0])
        if len(segments) > 1:
            items = list_items(value)
            if items is None:
                raise SerializationError(
                    f"channel {stored.channel!r}: stored as an append-only delta over a value of "
                    f"type {type(value).__name__}, not a list; the database is damaged"
                )
            for segment in segments[1:]:
                items.extend(loads(segment))
        return value

    # -- writes ----------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint. The channels in ``new_versions`` are serialized and written;
        the others keep their stored versions, but for the small values the checkpoint keeps
        inside (see docs/checkpointer.md, "Storage"), which it carries again. Returns once
        committed.

        Raises:
            SerializationError: a channel value or metadata value cannot be serialized; the
                message names the channel or key. Nothing is written.
        """
        conf = config.get("configurable") if type(config) is dict else None
        if type(conf) is not dict or "thread_id" not in conf:
            conf = configurable(config)  # checks it, or raises naming what is wrong
        thread_id = conf["thread_id"]
        tid = str(thread_id)
        ns = conf.get("checkpoint_ns", "")
        if type(ns) is not str:
            ns = _text(ns, "checkpoint_ns")
        parent_id = conf.get("checkpoint_id")
        remembered: builtins.list[tuple[ListKey, Remembered]] = []
        new, placement = self._new_checkpoint(
            tid,
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
            self._store.put(new)
        except DeltaBaseMissingError:
            # A delta base or a blob this checkpoint refers to was pruned or deleted since we
            # saw it (by any saver on the file): store full values, the unchanged ones included.
            self._lists.forget_thread(tid)
            self._placed.forget_thread(tid)
            remembered.clear()
            new, placement = self._new_checkpoint(
                tid,
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
            self._store.put(new)
        self._placed.set((tid, ns), checkpoint["id"], placement)
        if remembered:
            self._lists.remember_many(remembered)
        if self._seeds:
            # A version stored again may hold another value.
            self._seeds.discard([(tid, ns, ch, str(v)) for ch, v in new_versions.items()])
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def _new_checkpoint(
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
        """Serialize a checkpoint into the ``NewCheckpoint`` that ``CheckpointStore.put`` takes,
        and give its placement (see ``Placements``): which values it keeps inside, with their
        msgpack (``None`` for a scalar, or inside a checkpoint the codec could not write).

        With ``remembered`` (a list), list channels may be stored as deltas over the version
        this process last stored or read, and what to remember after a successful put is
        appended to it. With the default serializer, small values travel inside the
        checkpoint (see ``put_values``); ``placements`` says where the values the checkpoint
        does not change were stored. A value it does not change that is stored apart is
        referred to, its blob checked by the put (which is refused with
        ``DeltaBaseMissingError`` if it is gone), unless ``store_unplaced``: then an unchanged
        value ``placements`` does not know is stored again (a blob already stored under its
        version is left as it is), so that the put refers to no blob it does not write.
        """
        if type(ns) is not str:
            ns = _text(ns, "checkpoint_ns")
        c: dict[str, Any] = dict(checkpoint)
        serde = self.serde
        dumps = serde.dumps_typed
        codec = _ENCODER if type(serde) is RustSerializer else None
        plan = None
        # (key, version, items, chain) of each list planned: what to remember after the put,
        # for those that get a blob.
        planned: builtins.list[tuple[ListKey, str, tuple[Any, ...], int]] = []
        if remembered is not None:
            lists = self._lists
            snapshot_every = self.snapshot_every

            def plan(channel: str, version: str, value: Any) -> tuple[Any, str | None]:
                # A list, or a DeltaChannel snapshot of one: each snapshot holds the whole
                # list, so a delta stores only what it appended since the previous one.
                items = list_items(value)
                if items is None:
                    return value, None
                key = (thread_id, ns, channel)
                to_dump, base, chain = value, None, 0
                # A list of fewer than 8 items is always stored whole (see ListVersions.plan).
                if use_deltas and len(items) >= 8:
                    got = lists.plan(key, items, snapshot_every)
                    if got.base is not None:
                        base, chain, to_dump = got.base, got.chain, got.items
                # The items as serialized now: the list may grow in place before the commit
                # returns, and the next delta must start after what was stored.
                planned.append((key, version, tuple(items), chain))
                return to_dump, base

        # Small values travel inside the checkpoint: a blob row and its key for a counter or
        # a short history would cost more than the value. Scalars with any serializer, as
        # PostgresSaver keeps them; other values with the default one, up to INLINE_MAX bytes.
        # The other values of new_versions are serialized in the same native call.
        # By position (keywords cost a lookup each in the native call), in put_values' order.
        inline, blobs, refs = put_values(
            c.pop("channel_values", None),  # values
            new_versions if type(new_versions) is dict else dict(new_versions),
            False,  # none_inline
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
        if planned and remembered is not None:
            # A value kept inside the checkpoint has no blob: no delta can extend it.
            # (A loop rather than a generator: no function object per put.)
            for key, version, items, chain in planned:
                if key[2] not in inline:
                    remembered.append((key, Remembered(version, items, chain)))
        if inline:
            c["channel_values"] = inline
        # packed: whether the values kept inside are stored as their PackedValue bytes.
        type_, data, packed = checkpoint_payload(
            c, inline, codec, dumps, checkpoint["id"], thread_id
        )
        # The metadata as JSON text in one native call, in the common case (see
        # stored_metadata, which also covers the others).
        got = put_metadata_json(config, metadata, EXCLUDED_METADATA_KEYS)
        metadata_json, run_id = (
            got if got is not None else stored_metadata(config, metadata, checkpoint["id"])
        )
        versions = c["channel_versions"]
        # The NewCheckpoint, with the versions of the values stored apart (whose blobs a read
        # looks up) and the blobs it refers to (which the put checks are still stored), and the
        # checkpoint's placement, in one native call.
        new, placement = placed_checkpoint(
            thread_id,
            ns,
            checkpoint["id"],
            parent_id,  # parent_checkpoint_id
            type_,  # type_tag
            data,  # checkpoint
            metadata_json,
            run_id,
            versions if type(versions) is dict else dict(versions),
            inline,
            packed,
            blobs,
            refs,
        )
        return new, placement

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes against a checkpoint. Returns once committed.

        Raises:
            ValueError: ``config`` names no checkpoint (no ``checkpoint_id``).
            SerializationError: a value cannot be serialized; the message names the channel.
                Nothing is written.
        """
        conf = configurable(config)
        thread_id = str(conf["thread_id"])
        checkpoint_id = conf.get("checkpoint_id")
        if not checkpoint_id:
            raise ValueError(
                "put_writes(): config must name the checkpoint the writes belong to, in "
                f"config['configurable']['checkpoint_id']; got configurable={conf!r}"
            )
        items = write_items(self.serde, writes, task_id)
        ns = conf.get("checkpoint_ns", "")
        if type(ns) is not str:
            ns = _text(ns, "checkpoint_ns")
        key = CheckpointKey(thread_id, ns, str(checkpoint_id))
        self._store.put_writes(NewWrites(key, task_id, task_path or "", items))

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of a thread."""
        self._lists.forget_thread(str(thread_id))
        self._seeds.forget_thread(str(thread_id))
        self._placed.forget_thread(str(thread_id))
        self._store.delete_thread(str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) whose metadata ``run_id`` is in
        ``run_ids``, except those that a checkpoint kept needs to rebuild a ``DeltaChannel``
        (see docs/checkpointer.md, "Retention")."""
        run_ids = [str(r) for r in id_list(run_ids, "run_ids")]
        self._lists.clear()
        self._placed.clear()
        self._seeds.clear()
        self._store.delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, channel value and write of one thread to another: its whole
        history, so ``DeltaChannel`` values rebuild in the copy as in the source."""
        self._store.copy_thread(str(source_thread_id), str(target_thread_id))

    def prune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
    ) -> None:
        """Prune threads. ``"keep_latest"`` keeps the newest checkpoint of each namespace with
        its writes and the channel values it needs (delta chains included), and every ancestor
        (with its writes) that it needs to rebuild a ``DeltaChannel``: back to the nearest one
        holding a snapshot of each such channel. ``"delete"`` removes the threads.

        Raises:
            ValueError: an unknown ``strategy``.
        """
        thread_ids = [str(t) for t in id_list(thread_ids, "thread_ids")]
        for thread_id in thread_ids:
            self._lists.forget_thread(thread_id)
            self._placed.forget_thread(thread_id)
            self._seeds.forget_thread(thread_id)
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
        safety. The threads are chosen and pruned in one transaction, so a thread that gets a
        new checkpoint meanwhile is not touched. Safe to run from a cron job or a periodic
        task while graphs use the database.

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
            # A naive datetime is local time to Python and UTC to others: guessing wrong would
            # delete threads hours early, so ask for the zone.
            raise ValueError(
                "prune_older_than(): now must be timezone-aware (e.g. datetime.now(timezone.utc)), "
                f"got the naive {now.isoformat()}"
            )
        cutoff_ms = int((now - max_idle).timestamp() * 1000)
        self._lists.clear()
        self._placed.clear()
        self._seeds.clear()
        return self._store.prune_idle(cutoff_ms, strategy)

    # -- moving in from SqliteSaver, and back -----------------------------------------------

    def import_sqlite_saver(self, source: str | os.PathLike[str], *, batch_size: int = 200) -> int:
        """Copy every thread, checkpoint and pending write of a database written by
        ``langgraph-checkpoint-sqlite`` (``SqliteSaver`` or ``AsyncSqliteSaver``) into this
        one. The source file is opened read-only and not modified. Checkpoint ids, parents,
        metadata and writes are kept, so ``get_state_history`` and time travel work as before.
        A checkpoint this saver already holds (same thread, namespace and id) is left as it
        is, with its writes: importing the same file twice copies nothing the second time.

        The source must have been written with the same serializer as this checkpointer's
        ``serde`` (the default ``RustSerializer`` reads what ``JsonPlusSerializer`` wrote).

        Returns:
            The number of checkpoints copied.
        """
        return import_sqlite_saver(self, source, batch_size)

    def export_sqlite_saver(self, target: str | os.PathLike[str], *, batch_size: int = 200) -> int:
        """Write every thread, checkpoint and pending write of this checkpointer into
        ``target``, a file in ``langgraph-checkpoint-sqlite``'s own schema, which stock
        ``SqliteSaver`` and ``AsyncSqliteSaver`` (and the shim) read as their own: the way back
        from this layout. Checkpoint ids, parents, metadata and writes are kept, so
        ``get_state`` and ``get_state_history`` on the file give what they give here. Each
        checkpoint is serialized with this checkpointer's ``serde``, values included, as stock
        ``put`` does; open the file with the same serializer. This database is only read.

        ``target`` must be a new file, an empty one, or an earlier export of this checkpointer:
        exporting again copies only the checkpoints (and pending writes) the file lacks, and
        never replaces a row, so a repeated or interrupted export can simply be run again.
        Anything else is refused with ``ValueError`` naming the file, before a byte is written:
        a file that is not SQLite, other tables, or a checkpoint this checkpointer does not
        hold (another database, or a thread deleted here since the earlier export).

        Returns:
            The number of checkpoints copied (0 when ``target`` already held them all).
        """
        return export_sqlite_saver(self, target, batch_size)


def _split_filter(
    filter: Any,
) -> tuple[list[tuple[str, Any]], list[tuple[str, str]], dict[str, Any]]:
    """Scalar conditions go to SQL; dicts and lists of JSON values go to the store as JSON text,
    compared there with Python's ``==``; anything else (a tuple, an object) is compared in
    Python after reading."""
    if not filter:
        return [], [], {}
    if not isinstance(filter, dict):
        raise TypeError(f"list(): filter must be a dict, got {type(filter).__name__}")
    sql: list[tuple[str, Any]] = []
    as_json: list[tuple[str, str]] = []
    py: dict[str, Any] = {}
    for key, value in filter.items():
        if not isinstance(key, str):
            raise TypeError(f"list(): filter keys must be str, got {key!r}")
        if isinstance(value, _SCALARS):
            sql.append((key, value))
        elif isinstance(value, (dict, list)) and _plain_json(value):
            as_json.append((key, json.dumps(value)))
        else:
            py[key] = value
    return sql, as_json, py


def _plain_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is made of dicts with str keys, lists, str, int, finite float, bool
    and None only, so that its JSON text compares as the value does."""
    if depth > 64:
        return False
    if value is None or type(value) in (str, int, bool):
        return True
    if type(value) is float:
        return value == value and value not in (float("inf"), float("-inf"))
    if type(value) is list:
        return all(_plain_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain_json(v, depth + 1) for k, v in value.items())
    return False


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(
            f"config['configurable'][{name!r}] must be a str, got {type(value).__name__}"
        )
    return value


class _StoreInChild:
    """The store of a saver in a process forked from the one that opened it, until the
    child's first call: then the file is opened anew, in this process, and replaces this.
    The inherited store is only let go of (its connections belong to the parent)."""

    __slots__ = ("_lock", "_saver", "inherited")

    def __init__(self, saver: RustSQLiteCheckpointer, inherited: CheckpointStore) -> None:
        self._saver = saver
        self.inherited = inherited
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return False

    def close(self) -> None:
        with self._lock:
            if self._saver._store is self:
                self._saver._store = self.inherited
        self._saver._store.close()

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            if self._saver._store is self:
                self._saver._store = self._saver._open_store()
            store = self._saver._store
        return getattr(store, name)
