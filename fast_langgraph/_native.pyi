"""Typed stubs for the Rust extension. Users import from `fast_langgraph`, not from here."""

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__version__: str

class FastLangGraphError(Exception):
    """Base class of fast-langgraph's errors."""

class CheckpointError(FastLangGraphError):
    """A checkpoint store failed."""

class CheckpointClosedError(CheckpointError):
    """The checkpointer was used after close()."""

class ForeignDatabaseError(FastLangGraphError):
    """The file is not SQLite, or holds tables that are not fast-langgraph's. It is left untouched."""

class DatabaseLockedError(FastLangGraphError):
    """Another connection held the database lock for longer than the busy timeout."""

class DeltaBaseMissingError(CheckpointError):
    """A delta named a base version that is no longer stored. RustSQLiteCheckpointer then
    stores the full value; users do not normally see it."""

class SerializationError(CheckpointError):
    """A value could not be serialized; the message names the channel or key."""

class CheckpointConflictError(CheckpointError):
    """Another run wrote the same thread meanwhile; with the single-writer guard on, this
    write was refused (nothing was stored) instead of forking the thread's history."""

_Row = tuple[
    str,  # thread_id
    str,  # checkpoint_ns
    str,  # checkpoint_id
    str | None,  # parent_checkpoint_id
    str,  # type tag of the checkpoint
    bytes,  # the checkpoint; for msgpack, with its msgpack channel values as "channel_values"
    str,  # metadata, JSON
    # (channel, [(type, data), ...] oldest first, deltas in the stored chain); segments that
    # are all msgpack arrays come joined into one, and no segments means the value is inside
    # the checkpoint
    list[tuple[str, list[tuple[str, bytes]], int]],
    list[tuple[str, str, str, bytes]],  # (task_id, channel, type, data), in writes_sort_key order
]

class CheckpointStore:
    """The SQL side of `RustSQLiteCheckpointer`: one SQLite file, a group commit that
    commits concurrent write calls together, and a pool of read connections. Every method releases
    the GIL while it talks to SQLite and is safe to call from many threads.

    Args:
        path: The database file, or ":memory:".
        synchronous: "normal" (commits survive a killed process) or "full" (they also
            survive a power loss).
        busy_timeout: Seconds to wait for another process's lock.
        max_batch: The most calls one commit may carry.

    Raises:
        ForeignDatabaseError: the file is not SQLite or holds other tables (left untouched).
        ValueError: a bad option.
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "normal",
        busy_timeout: float = 30.0,
        max_batch: int = 256,
    ) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def put(
        self,
        checkpoint: tuple[
            str,  # thread_id
            str,  # checkpoint_ns
            str,  # checkpoint_id
            str | None,  # parent_checkpoint_id
            str,  # type tag
            bytes,  # the checkpoint, without channel values
            str,  # metadata, JSON
            str | None,  # run_id
            Sequence[tuple[str, str]],  # every (channel, version)
            Sequence[tuple[str, str, str, bytes, str | None]],  # new blobs
        ],
    ) -> None:
        """Store a checkpoint and the blobs of its new channel versions, each as
        (channel, version, type, data, delta_base). A blob with a delta_base holds only the
        items appended to that version's list; it is refused with DeltaBaseMissingError if
        that version is not stored. Returns once committed."""
    def put_writes(
        self,
        writes: tuple[str, str, str, str, str, Sequence[tuple[int, str, str, bytes]]],
    ) -> None:
        """Store a task's writes, given as (thread_id, checkpoint_ns, checkpoint_id, task_id,
        task_path, [(idx, channel, type, data), ...]); returns once committed."""
    def put_many(
        self, checkpoints: Sequence[tuple[Any, ...]], writes: Sequence[tuple[Any, ...]]
    ) -> None:
        """Store the argument tuples of many `put` and `put_writes` calls in one transaction."""
    def list(
        self,
        *,
        thread_id: str | None = None,
        checkpoint_ns: str | None = None,
        checkpoint_id: str | None = None,
        before: str | None = None,
        filter: Sequence[tuple[str, None | bool | int | float | str]] = (),
        limit: int | None = None,
    ) -> list[_Row]:
        """Checkpoints newest first, with blobs and pending writes, from one SQL query."""
    def writer_stats(self) -> dict[str, int]:
        """{"calls": n, "commits": m}: write calls and the transactions that carried them."""
    def storage_stats(self) -> dict[str, int]:
        """Row counts and payload bytes: checkpoints, blobs, delta_blobs, writes, payload_bytes."""
    def check(self) -> list[str]:
        """Problems found by SQLite's quick_check and a walk of every delta chain; [] if sound."""
    def thread_ids(self) -> list[str]:
        """Every thread id in the database."""
    def delete_thread(self, thread_id: str) -> None: ...
    def delete_for_runs(self, run_ids: Sequence[str]) -> None: ...
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None: ...
    def prune(self, thread_ids: Sequence[str], strategy: str = "keep_latest") -> None:
        """strategy: "keep_latest" or "delete"."""
    def close(self) -> None:
        """Commit what is queued and stop the writer; later calls raise CheckpointClosedError."""

class MessageMerger:
    """The `add_messages` reducer over Python messages. `fast_langgraph.merge` builds the one
    instance; use `fast_langgraph.add_messages`.

    Args:
        base_message: LangChain's `BaseMessage`.
        chunk: `BaseMessageChunk`; chunks are converted to messages.
        remove_message: `RemoveMessage`.
        coerce: Converts a list holding anything but plain messages (dicts, tuples, strings,
            chunks) into a list of messages; called only for such lists.
        new_id: Returns a new unique value whose `str()` becomes a missing id (`uuid.uuid4`).
        finish: `(merged, format)` -> the result, for a `format` that is not None.
        fallback: `(left, right, format)` -> the result, used when some id is not a `str`.
    """

    def __init__(
        self,
        base_message: type,
        chunk: type,
        remove_message: type,
        coerce: Callable[[list[Any]], list[Any]],
        new_id: Callable[[], object],
        finish: Callable[[list[Any], Any], list[Any]],
        fallback: Callable[[list[Any], list[Any], Any], list[Any]],
    ) -> None: ...
    def merge(self, left: Any, right: Any, format: Any = None) -> list[Any]:
        """Merge `right` into `left` exactly as LangGraph's `add_messages(left, right, format=...)`:
        missing ids are assigned in place, a message whose id is present replaces it, removals drop
        it, `REMOVE_ALL_MESSAGES` keeps only what follows it.

        Raises:
            ValueError: removing an id that does not exist, or an unknown `format`.
        """

def langgraph_state_update(
    state: dict[Any, Any],
    update: dict[Any, Any],
    append_keys: Iterable[Any] = (),
    reducers: Mapping[Any, Callable[[Any, Any], Any]] | None = None,
) -> dict[Any, Any]:
    """Apply a node's update to a state, into a new dict; neither input is mutated.

    Each key of `update` replaces the state's value, except:

    - a key in `append_keys`: the result is `state[key] + update[key]` (a new list), or, when the
      state lacks the key, a copy of `update[key]` if it is a list;
    - a key in `reducers`: the result is `reducers[key](state[key], update[key])`, or
      `update[key]` when the state lacks the key (as a LangGraph channel does on first write).

    Other values are shared with the inputs, exactly as in `{**state, **update}`: the result dict
    is new, the values in it are not copied.

    Raises:
        ValueError: a key in both `append_keys` and `reducers`.
        TypeError: an append key whose values cannot be added (e.g. list + tuple).
    """

def merge_dicts(a: dict[Any, Any], b: dict[Any, Any]) -> dict[Any, Any]:
    """Deep merge: `b` over `a`, into a new dict; neither input is mutated.

    Where both have a key and both values are dicts, they are merged the same way; otherwise
    `b`'s value wins. Every `dict` and `list` in the result is new (copied recursively, exact
    types only), so mutating the result never reaches the inputs; other values (including
    tuples, subclasses of dict and list, messages) are shared.

    Raises:
        ValueError: nesting deeper than 256 levels (taken for a cycle).
    """

class CacheError(FastLangGraphError):
    """A cache failed."""

class CacheCorruptError(CacheError):
    """A cache file holds an entry that fails its integrity check; it was not returned. Delete
    the file, or call clear(), to rebuild it."""

class RustLLMCache:
    """An LRU cache with a time to live per entry, holding Python objects. Safe to use from
    many threads at once. Keys may be any mix of str, bytes, int, float, bool, None, tuples,
    lists, dicts and sets, pydantic models (LangChain messages), dataclasses and other values
    LangGraph's serializer knows; two keys share an entry only if they are equal and of the
    same types. Objects that compare by identity are keyed by identity and kept alive by
    their entry (memory caches only).

    Args:
        max_size: The most entries kept (least recently used go first); None for no bound.
        ttl: Default seconds an entry stays valid; None for ever.
        path: An SQLite file to keep entries in across restarts. Values go through `serde`.
        serde: The serializer for `path` (default: LangGraph's JsonPlusSerializer, no pickle).
        clock: A callable returning seconds since the epoch, in place of the system clock.

    Raises:
        ValueError: max_size below 1, or a negative ttl.
        ForeignDatabaseError: `path` is not SQLite, or holds tables that are not a cache's.
    """

    def __init__(
        self,
        max_size: int | None = 1024,
        ttl: float | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        serde: Any = None,
        clock: Callable[[], float] | None = None,
    ) -> None: ...
    @property
    def max_size(self) -> int | None: ...
    @property
    def ttl(self) -> float | None: ...
    @property
    def path(self) -> str | None: ...
    def get(self, key: Any, default: Any = None) -> Any:
        """The live value under `key`, or `default`. Counts a hit or a miss.

        Raises:
            CacheCorruptError: the entry on disk fails its integrity check.
        """
    def put(self, key: Any, value: Any, ttl: float | None = None) -> None:
        """Store `value` for `ttl` seconds (None: the cache's default).

        Raises:
            TypeError: with `path`, the value cannot be serialized.
        """
    def __contains__(self, key: Any) -> bool:
        """Whether a live entry is stored under `key` (not counted)."""
    def delete(self, key: Any) -> bool:
        """Remove the entry under `key`; returns whether there was one."""
    def clear(self) -> None: ...
    def __len__(self) -> int:
        """The number of live entries."""
    def stats(self) -> dict[str, Any]:
        """hits, misses, evictions, expirations, size, max_size, ttl."""
    def _key(self, key: Any) -> tuple[bytes, list[Any]]: ...
    def _get_key(self, key: bytes, count: bool = True) -> tuple[bool, Any]: ...
    def _put_key(
        self, key: bytes, value: Any, pins: Sequence[Any] = (), ttl: float | None = None
    ) -> None: ...
    def _delete_key(self, key: bytes) -> bool: ...
    def _delete_prefix(self, prefix: bytes) -> int: ...

class CachedFunction:
    """What `@cached` returns for a sync function: call it as the function. Use `cached`."""

    def __init__(
        self,
        func: Callable[..., Any],
        cache: RustLLMCache,
        on_miss: Callable[..., Any],
        prefix: bytes,
        key: Callable[..., Any] | None = None,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, obj: Any, owner: Any = None) -> Any: ...
    @property
    def cache(self) -> RustLLMCache: ...
    def _make_key(
        self, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
    ) -> tuple[bytes, list[Any]]: ...
    def cache_info(self) -> Any:
        """CacheInfo(hits, misses, maxsize, currsize), as functools.lru_cache reports it."""
    def cache_stats(self) -> dict[str, Any]:
        """hits, misses, evictions, expirations, size, max_size, ttl."""
    def cache_clear(self) -> None:
        """Remove every cached result of this function."""

class WorkerPool:
    """A persistent pool of Rust worker threads that run Python callables. Threads start on
    demand (a job that finds no idle worker gets a new thread, up to `max_threads`) and stay;
    those beyond `min_threads` exit after `keep_alive` idle seconds. Used through
    `fast_langgraph.executor`.

    Raises:
        ValueError: `max_threads` is 0, `min_threads > max_threads`, or a bad `keep_alive`.
    """

    def __init__(
        self, max_threads: int, *, min_threads: int = 0, keep_alive: float = 60.0
    ) -> None: ...
    @property
    def max_threads(self) -> int: ...
    def group(self, max_concurrency: int | None = None) -> TaskGroup:
        """A task group on this pool: at most `max_concurrency` of its tasks run at once.

        Raises:
            ValueError: `max_concurrency` is 0.
        """
    def on_worker(self) -> bool:
        """Whether the calling thread is one of this pool's workers."""
    def stats(self) -> dict[str, int]:
        """{"threads", "idle", "queued", "spawned", "inline_runs"}."""
    def retire(self) -> None:
        """Keep running jobs, but let every idle worker exit (for a replaced pool)."""
    def shutdown(self, wait: bool = False, timeout: float = 5.0) -> bool:
        """Stop taking jobs. With `wait`, block (GIL released) until queued jobs have run and
        the workers have exited, or `timeout` seconds pass; returns whether they did."""

class TaskGroup:
    """The tasks of one executor handle on a `WorkerPool`."""

    @property
    def outstanding(self) -> int:
        """Tasks submitted and not finished."""
    @property
    def max_concurrency(self) -> int | None: ...
    def submit(self, func: Any, *args: Any) -> None:
        """Run `func(*args)` on a worker. An exception `func` raises is reported as
        unraisable: wrap the work to capture it. When queueing could deadlock (the pool is full
        and the caller is a worker, or the caller runs a task of this full group), the call
        runs inline before `submit` returns.

        Raises:
            RuntimeError: the pool is shut down.
        """
    def wait(self, timeout: float | None = None) -> bool:
        """Block (GIL released) until every task submitted so far has finished, or `timeout`
        seconds pass; returns whether they all finished. Ctrl-C interrupts the wait."""

def _mark_finalizing() -> None:
    """Tell workers the interpreter is shutting down: they stop calling into Python."""

# --- PostgreSQL checkpoint store (RustPostgresCheckpointer) --------------------------------

# `list` is a method of the class below: its annotations use this alias of the builtin.
_PgList = list

class PgCheckpointStore:
    """The SQL side of `fast_langgraph.RustPostgresCheckpointer`: checkpoints on PostgreSQL
    over a connection pool of its own. Takes `CheckpointStore`'s argument tuples and returns
    its rows. Every method releases the GIL during network I/O.

    Args:
        conninfo: A libpq key/value string or a `postgresql://` URL (`sslmode` and
            `sslrootcert` included).
        pool_size: The most connections open at once.
        connect_timeout: Seconds opening a connection may take.
        statement_timeout: Seconds a statement may run, or None for the server's setting.
        pool_timeout: Seconds a call waits for a free connection.
        guard: The single-writer guard (see `put`).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        statement_timeout: float | None = None,
        pool_timeout: float = 30.0,
        guard: bool = False,
    ) -> None: ...
    @property
    def closed(self) -> bool: ...
    def setup(self) -> int:
        """Applies the migrations not yet applied; returns the schema version."""
    def schema_version(self) -> int | None:
        """The schema version, or None when the tables do not exist."""
    def table_exists(self, name: str) -> bool: ...
    def put(
        self,
        checkpoint: tuple[
            str,
            str,
            str,
            str | None,
            str,
            bytes,
            str,
            str | None,
            _PgList[tuple[str, str]],
            _PgList[tuple[str, str, str, bytes, str | None]],
        ],
        *,
        continue_head: bool = False,
    ) -> None:
        """Stores a checkpoint in one statement. With the guard on and `continue_head`, raises
        `CheckpointConflictError` unless its parent is still its thread's latest checkpoint."""
    def put_writes(
        self, writes: tuple[str, str, str, str, str, _PgList[tuple[int, str, str, bytes]]]
    ) -> None: ...
    def put_many(
        self, checkpoints: _PgList[tuple[Any, ...]], writes: _PgList[tuple[Any, ...]]
    ) -> None: ...
    def list(
        self,
        *,
        thread_id: str | None = None,
        checkpoint_ns: str | None = None,
        checkpoint_id: str | None = None,
        before: str | None = None,
        filter: Sequence[tuple[str, Any]] = ...,
        limit: int | None = None,
    ) -> _PgList[_Row]: ...
    def delta_history(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str, channels: _PgList[str]
    ) -> _PgList[tuple[str, _PgList[tuple[str, str, str, bytes]], _PgList[tuple[str, bytes]] | None]]:
        """Per channel: (channel, writes oldest first, the seed value's segments or None)."""
    def storage_stats(self) -> dict[str, int]: ...
    def pool_stats(self) -> dict[str, int]: ...
    def writer_stats(self) -> dict[str, int]:
        """`{"calls": n, "commits": m}`: write calls and the transactions that carried them."""
    def delete_thread(self, thread_id: str) -> None: ...
    def delete_for_runs(self, run_ids: Sequence[str]) -> None: ...
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None: ...
    def prune(self, thread_ids: Sequence[str], strategy: str) -> None: ...
    def close(self) -> None: ...
