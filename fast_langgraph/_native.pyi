"""Typed stubs for the Rust extension. Users import from `fast_langgraph`, not from here."""

import builtins
import os
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Any, Literal, TypedDict, final

from typing_extensions import Self, disjoint_base

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
    """A delta named a base version that is no longer stored, or a blob a checkpoint refers
    to is gone (deleted by retention since). The savers then store the full values; users do
    not normally see it."""

class SerializationError(CheckpointError):
    """A value could not be serialized; the message names the channel or key."""

class CheckpointConflictError(CheckpointError):
    """Another run wrote the same thread meanwhile; with the single-writer guard on, this
    write was refused (nothing was stored) instead of forking the thread's history."""

_Synchronous = Literal["normal", "full"]
"""`PRAGMA synchronous`: "normal" (commits survive a killed process) or "full" (they also
survive a power loss)."""

_PruneStrategy = Literal["keep_latest", "delete"]
"""What `prune` keeps: the newest checkpoint of each namespace (with what it needs), or
nothing."""

class _PoolStats(TypedDict):
    """`PgCheckpointStore.pool_stats()`; see `fast_langgraph.postgres.PoolStats`."""

    open: int
    idle: int
    waiting: int
    waits: int
    waits_timed_out: int
    timeouts: int
    wait_seconds: float
    opened: int
    dropped: int
    reconnects: int

_TypedValue = tuple[str, bytes]
"""A serialized value as LangGraph's serializers make it: (type tag, data)."""

@final
class CheckpointKey:
    """A checkpoint's key: thread, namespace and id. Frozen, hashable."""

    def __new__(cls, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> Self: ...
    @property
    def thread_id(self) -> str: ...
    @property
    def checkpoint_ns(self) -> str: ...
    @property
    def checkpoint_id(self) -> str: ...

@final
class NewBlob:
    """A channel value to store under its channel version. With `delta_base`, `data` holds
    only the items appended to the list stored under that version of the same channel. With
    `keep_existing`, a value already stored under the same version stays as it is (both
    stores); otherwise it is replaced."""

    def __new__(
        cls,
        channel: str,
        version: str,
        type_tag: str,
        data: bytes,
        delta_base: str | None = None,
        keep_existing: bool = False,
    ) -> Self: ...
    @property
    def channel(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def type_tag(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def delta_base(self) -> str | None: ...
    @property
    def keep_existing(self) -> bool: ...

@final
class PackedValue:
    """A channel value with its msgpack bytes, which `MsgpackCodec.encode` writes as they are
    wherever it meets it: how `put_values` puts a small value inside its checkpoint."""

    @property
    def value(self) -> Any: ...
    @property
    def data(self) -> bytes: ...

@final
class NewCheckpoint:
    """A checkpoint to store: the checkpoint without its channel values (serialized), its
    metadata as JSON, every channel's version, and the values of the channels whose version is
    new in it."""

    def __new__(
        cls,
        key: CheckpointKey,
        *,
        parent_checkpoint_id: str | None,
        type_tag: str,
        checkpoint: bytes,
        metadata_json: str,
        run_id: str | None,
        channel_versions: Sequence[tuple[str, str]],
        blobs: Sequence[NewBlob],
        refs: Sequence[tuple[str, str]] = ...,
    ) -> Self: ...
    @property
    def key(self) -> CheckpointKey: ...
    @property
    def parent_checkpoint_id(self) -> str | None: ...
    @property
    def type_tag(self) -> str: ...
    @property
    def checkpoint(self) -> bytes: ...
    @property
    def metadata_json(self) -> str: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def channel_versions(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def refs(self) -> tuple[tuple[str, str], ...]:
        """The values stored apart it refers to without writing them: `(channel,
        version)`. A put checks each is still stored, and is refused with
        DeltaBaseMissingError if one is not (see `put_values`)."""
    @property
    def blobs(self) -> tuple[NewBlob, ...]: ...

@final
class NewWrite:
    """One pending write: its index in the task's list (or LangGraph's negative index for a
    special channel), channel and serialized value."""

    def __new__(cls, idx: int, channel: str, type_tag: str, data: bytes) -> Self: ...
    @property
    def idx(self) -> int: ...
    @property
    def channel(self) -> str: ...
    @property
    def type_tag(self) -> str: ...
    @property
    def data(self) -> bytes: ...

@final
class NewWrites:
    """The pending writes of one task against one checkpoint."""

    def __new__(
        cls, key: CheckpointKey, task_id: str, task_path: str, writes: Sequence[NewWrite]
    ) -> Self: ...
    @property
    def key(self) -> CheckpointKey: ...
    @property
    def task_id(self) -> str: ...
    @property
    def task_path(self) -> str: ...
    @property
    def writes(self) -> tuple[NewWrite, ...]: ...

def list_readers_pause() -> bool:
    """Just before `fork()`: keeps `list()`'s reading threads out of SQLite until
    `list_readers_resume`, waiting (at most a few seconds) for those inside to leave it.

    Returns:
        Whether no reading thread was left inside SQLite.
    """

def list_readers_resume(child: bool) -> None:
    """Just after `fork()`, in the parent (`child=False`) and in the child."""

def next_version(current: str | None, random: int, /) -> str | None:
    """The channel version after `current`: `"%032d.%016d" % (counter + 1, random)`, `counter`
    being the integer before `current`'s first dot (0 for `None`).

    Returns:
        The version, or `None` when that part of `current` is not 1 to 38 ASCII digits: the
        caller then parses it with `int()` itself.
    """

def metadata_json(metadata: object) -> str | None:
    """`json.dumps(metadata, ensure_ascii=False)`, the same text, when `metadata` is made of
    values of exactly the types `dict` (with `str` keys), `list`, `tuple`, `str`, `int`,
    `float`, `bool` and `None`.

    Returns:
        The JSON text, or `None` for anything else (a subclass of one of these types, another
        key type, a string holding a lone surrogate, nesting deeper than 64), which the caller
        encodes with Python's `json`.
    """

def put_metadata_json(
    config: Mapping[str, Any] | None, metadata: Mapping[str, Any], excluded: Container[str]
) -> tuple[str, str | None] | None:
    """What a checkpointer's `put` stores of its metadata: LangGraph's
    `get_checkpoint_metadata(config, metadata)` (`metadata` as it is when `config` is `None`)
    as the text `json.dumps(..., ensure_ascii=False)` gives, and its `run_id` as `str(run_id)`.
    `excluded` is LangGraph's `EXCLUDED_METADATA_KEYS`.

    Returns:
        `(text, run_id)`, or `None` when a value is one `metadata_json` leaves to Python, or
        `config`, `metadata` or a dict inside `config` is not a plain `dict` with `str` keys:
        the caller then uses LangGraph's function and Python's encoder (the same text, or
        their errors).
    """

def put_values(
    values: Mapping[str, Any] | None,
    new_versions: dict[str, Any],
    none_inline: bool,
    list_types: tuple[type, ...],
    plan: Callable[[str, str, Any], tuple[Any, str | None]] | None,
    codec: MsgpackCodec | None,
    dumps: Callable[[Any], tuple[str, bytes]],
    thread_id: object,
    checkpoint_id: object,
    inline_max: int = 0,
    versions: dict[str, Any] | None = None,
    placed: dict[str, tuple[str, bool, bytes | None]] | None = None,
    keep_apart: tuple[type, ...] | None = None,
    store_unplaced: bool = False,
) -> tuple[dict[str, Any], list[NewBlob], list[tuple[str, str]]]:
    """A put's channel values, split: those that travel inside the checkpoint, a
    `NewBlob` for every other channel of `new_versions` (`"empty"` for a channel without a
    value), and the `(channel, version)` of the unchanged values it refers to (whose blob
    `placed` says is stored) without writing them. With `codec` a value is encoded as
    `RustSerializer.dumps_typed` does, through `dumps` when the codec cannot say; without
    it, by `dumps`. A value whose exact type is in `list_types` is first given to
    `plan(channel, version, value)`, which returns what to serialize and the delta base.

    Inside travel the small scalars (`bool`, `int` in msgpack's range, `float`, `str` of at
    most 256 characters, exact types, and `None` with `none_inline`) and, with `inline_max`
    and `codec`, other values as `PackedValue`s while they total at most `inline_max` bytes:
    - a changed value (in `new_versions`) stored whole, not of a `keep_apart` type;
    - an unchanged value (its version in `versions`) that `placed[channel] == (version, True,
      data)` says was kept inside, carried as `data` (serialized again when `None`).

    With `(version, False, None)` the checkpoint refers to its blob. Any other unchanged value
    not of a `keep_apart` type (unknown to `placed`, too large for what is left, or without a
    codec) is serialized: inside if it fits, else a `keep_existing` blob. An unchanged value
    of a `keep_apart` type unknown to `placed` is referred to too (every put stores such a
    value apart), or, with `store_unplaced`, serialized into a `keep_existing` blob (a put
    that must not depend on what is stored: one stored again after it was refused for a
    missing blob, an import). With `inline_max` 0 unchanged values are referred to.

    Raises:
        SerializationError: a value cannot be serialized; the message names the channel, the
            checkpoint and the thread.
    """

def placed_checkpoint(
    thread_id: str,
    checkpoint_ns: str,
    checkpoint_id: str,
    parent_checkpoint_id: str | None,
    type_tag: str,
    checkpoint: bytes,
    metadata_json: str,
    run_id: str | None,
    versions: dict[str, Any],
    inline: dict[str, Any],
    packed: bool,
    blobs: Sequence[NewBlob],
    refs: Sequence[tuple[str, str]] = ...,
) -> tuple[NewCheckpoint, dict[str, tuple[str, bool, bytes | None]]]:
    """A put's `NewCheckpoint` and its placement, in one call. For each channel of `versions`
    (the version as text: the `str` itself, else `str(version)`): `(version, True, msgpack)`
    when `inline` holds its value (the `PackedValue`'s bytes when `packed`, else `None`),
    else `(version, False, None)`, and `(channel, version)` among the checkpoint's
    `channel_versions`, the values stored apart. `refs` (from `put_values`) become the
    checkpoint's `refs`."""

def write_values(
    writes: object,
    task_id: object,
    *,
    idx_map: Mapping[str, int],
    codec: MsgpackCodec | None,
    dumps: Callable[[Any], tuple[str, bytes]],
) -> list[NewWrite] | None:
    """The `NewWrite`s of a task's `put_writes`: each `(channel, value)` serialized as
    `put_values` serializes a value, at `idx_map[channel]` (LangGraph's `WRITES_IDX_MAP`) or its
    position.

    Returns:
        The writes, or `None` (nothing serialized) unless `writes` is a list or tuple of
        2-tuples.

    Raises:
        SerializationError: a value cannot be serialized; the message names the channel and
            the task.
    """
@final
class ChannelValueRow:
    """A channel value as read back."""

    @property
    def channel(self) -> str: ...
    @property
    def segments(self) -> tuple[_TypedValue, ...]:
        """The serialized pieces whose concatenation is the value, oldest first: a full
        value, then the items each later version appended (pieces that are all msgpack arrays
        come joined into one). Empty when the value was put inside its msgpack checkpoint, as
        the checkpoint's "channel_values"."""
    @property
    def deltas(self) -> int:
        """How many deltas the stored chain has after its full value."""

@final
class WriteRow:
    """A pending write as read back."""

    @property
    def task_id(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def type_tag(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def task_path(self) -> str: ...
    @property
    def idx(self) -> int: ...

@final
class TupleParts:
    """What the stores build `CheckpointTuple`s with (`get_tuple`, and each batch of `list()`
    through `CheckpointBatches.next_tuples`): checkpoints and writes in msgpack that `codec`
    reads exactly are decoded by it, everything else by `loads` (the serializer's
    `loads_typed`); stored channel values by `load_value(ChannelValueRow)`; metadata by
    `scan_metadata(text, 0)` (a JSON scanner's `scan_once`) when that reads the whole text, by
    `load_metadata(text)` otherwise; each tuple is `tuple.__new__(tuple_cls, (config,
    checkpoint, metadata, parent_config, writes))`, as a named tuple's `__new__` builds it."""

    def __new__(
        cls,
        codec: MsgpackCodec,
        loads: Callable[[tuple[str, bytes]], Any],
        scan_metadata: Callable[[str, int], tuple[Any, int]],
        load_metadata: Callable[[str], Any],
        load_value: Callable[[ChannelValueRow], Any],
        tuple_cls: type[tuple[Any, ...]],
    ) -> TupleParts: ...

@final
class CheckpointBatches:
    """The batches of one `CheckpointStore.list_batches`. Iterating waits for the next batch
    without holding the GIL. Letting go of the iterator (`break`, an exception, garbage
    collection) stops the thread that reads them, which ends its read transaction.

    Raises (while iterating):
        CheckpointClosedError: the store was closed before the listing was over.
        CheckpointError: the listing was begun in the process this one was forked from.
    """

    @property
    def given_back(self) -> int:
        """How many batches this listing has handed back to be freed by the thread that read
        them (`ListStream::give_back`; once that thread has ended, a batch is freed at once):
        one per batch taken, by `__next__` or `next_tuples`."""
    def wait(self) -> None:
        """Wait, without the GIL, until the next batch is read or the listing is over: the
        next `__next__` then only builds the batch's rows."""
    def next_tuples(
        self, parts: TupleParts
    ) -> tuple[builtins.list[Any], BaseException | None] | None:
        """The next batch as `CheckpointTuple`s (`None` when the listing is over), built here
        with `parts` rather than as rows (see `TupleParts`).

        Returns `(tuples, error)`: when a row fails to decode, the tuples of the rows before
        it and the exception, which the caller raises after them; `error` is None otherwise."""
    def __iter__(self) -> CheckpointBatches: ...
    def __next__(self) -> builtins.list[CheckpointRow]: ...

@final
class CheckpointRow:
    """A checkpoint as read back, with its channel values and pending writes."""

    @property
    def key(self) -> CheckpointKey: ...
    @property
    def thread_id(self) -> str: ...
    @property
    def checkpoint_ns(self) -> str: ...
    @property
    def checkpoint_id(self) -> str: ...
    @property
    def parent_checkpoint_id(self) -> str | None: ...
    @property
    def type_tag(self) -> str:
        """The serializer's type tag of `checkpoint`."""
    @property
    def checkpoint(self) -> bytes:
        """The serialized checkpoint; for msgpack, with its msgpack channel values inside, as
        "channel_values"."""
    @property
    def metadata_json(self) -> str: ...
    @property
    def values(self) -> tuple[ChannelValueRow, ...]:
        """Every channel with a stored, non-empty value, sorted by channel."""
    @property
    def writes(self) -> tuple[WriteRow, ...]:
        """Pending writes in LangGraph's writes_sort_key order (task_path, task_id, idx)."""

@final
class ChannelHistory:
    """What one channel contributed along a checkpoint's ancestors (for `DeltaChannel`)."""

    @property
    def channel(self) -> str: ...
    @property
    def writes(self) -> tuple[WriteRow, ...]:
        """The channel's writes from the nearest ancestor holding a value of it to the
        target's parent, oldest first (writes_sort_key order within a checkpoint); the
        target's own writes are not among them."""
    @property
    def seed(self) -> ChannelValueRow | None:
        """The value stored at that ancestor; None when the walk reached the root first. Its
        segments are empty when its version was among `cached`."""
    @property
    def seed_version(self) -> str | None:
        """The channel version of `seed`."""

@final
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
        ForeignDatabaseError: the file is not SQLite or holds anything that is not ours (left
            untouched).
        ValueError: a bad option.
    """

    def __new__(
        cls,
        path: str,
        *,
        synchronous: _Synchronous = "normal",
        busy_timeout: float = 30.0,
        max_batch: int = 256,
    ) -> Self: ...
    @property
    def path(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def ensure_open(self) -> None:
        """Raise CheckpointClosedError once close() was called (CheckpointError in a process
        forked from the one that opened the store)."""
    def put(self, checkpoint: NewCheckpoint) -> None:
        """Store a checkpoint and the blobs of its new channel versions. A blob with a
        delta_base is refused with DeltaBaseMissingError if that version is not stored, and
        so is a checkpoint one of whose `refs` is no longer stored; a refused put stores
        nothing. Returns once committed."""
    def put_writes(self, writes: NewWrites) -> None:
        """Store a task's writes; returns once committed. A regular write (idx >= 0) already
        stored is kept; a special one (idx < 0) replaces it."""
    def put_many(self, checkpoints: Sequence[NewCheckpoint], writes: Sequence[NewWrites]) -> None:
        """Store many checkpoints and writes in one transaction."""
    def import_many(self, checkpoints: Sequence[NewCheckpoint], writes: Sequence[NewWrites]) -> int:
        """Store checkpoints and writes copied from another database in one transaction; a
        checkpoint already stored is left as it is, with its writes. Returns the number of
        checkpoints copied."""
    def get(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str | None = None,
        cached: Sequence[tuple[str, str]] = ...,
        direct: bool = False,
    ) -> CheckpointRow | None:
        """The checkpoint with `checkpoint_id`, or the newest of the thread's namespace, with
        its values and pending writes; None if there is none. The values of the (channel,
        version) pairs in `cached`, which the caller holds, are left out. `direct` changes
        nothing here."""
    def get_tuple(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str | None,
        cached: Sequence[tuple[str, str]],
        config: Any,
        parts: TupleParts,
        placed_id: str | None = None,
        direct: bool = False,
    ) -> tuple[Any, builtins.list[tuple[str, int]], dict[str, bytes | None] | None] | None:
        """`get`, with the `CheckpointTuple` built here, as `CheckpointBatches.next_tuples`
        builds those of `list()`, or None. The tuple's config is `config` when given, the
        checkpoint's own otherwise. Also returns `(channel, deltas)` for each value read
        from its own row: the channel, and how many deltas were applied to its last full
        value; and the msgpack of each value the checkpoint keeps inside, by channel, or
        None when the checkpoint read is `placed_id` (one whose placement the caller holds).
        `direct` changes nothing here."""
    def list(
        self,
        *,
        thread_id: str | None = None,
        checkpoint_ns: str | None = None,
        checkpoint_id: str | None = None,
        before: str | None = None,
        filter: Sequence[tuple[str, None | bool | int | float | str]] = ...,
        json_filter: Sequence[tuple[str, str]] = ...,
        limit: int | None = None,
    ) -> builtins.list[CheckpointRow]:
        """Checkpoints newest first, with values and pending writes. `filter` holds scalar
        metadata conditions, matched in SQL with Python's `==` (an int beyond 64 bits too);
        `json_filter` holds (key, JSON text of a dict or list), matched on each row's metadata
        with Python's `==` before the checkpoint is read, so `limit` stops the scan."""
    def list_batches(
        self,
        *,
        thread_id: str | None = None,
        checkpoint_ns: str | None = None,
        checkpoint_id: str | None = None,
        before: str | None = None,
        filter: Sequence[tuple[str, None | bool | int | float | str]] = ...,
        json_filter: Sequence[tuple[str, str]] = ...,
        limit: int | None = None,
    ) -> CheckpointBatches:
        """The checkpoints of `list`, as batches of 1, 2, 4, ... up to 256 rows, read by a
        thread of the store, in one read transaction, at most four batches ahead of the caller
        (three waiting, one being read).
        An argument the store refuses raises here; a failure reading the rows is raised by
        the batch it hits. In memory, every row is read here, as one batch."""
    def delta_history(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str | None,
        channels: Sequence[str],
        cached: Sequence[tuple[str, str]] = ...,
    ) -> builtins.list[ChannelHistory]:
        """For each of `channels` (in order), its history behind the checkpoint with
        `checkpoint_id` (or the newest of the namespace), walking parent pointers in one read
        transaction and a fixed number of statements. A missing checkpoint gives empty
        histories. The values of the (channel, version) pairs in `cached`, which the caller
        holds, are not read."""
    def writer_stats(self) -> dict[str, int]:
        """{"calls": n, "commits": m}: write calls and the transactions that carried them."""
    def storage_stats(self) -> dict[str, int]:
        """Row counts and payload bytes: checkpoints, blobs, delta_blobs, writes, payload_bytes."""
    def check(self) -> builtins.list[str]:
        """Problems found by SQLite's integrity checks and a walk of every delta chain; [] if
        sound. Damage is reported, not raised."""
    def thread_ids(self) -> builtins.list[str]:
        """Every thread id in the database."""
    def delete_thread(self, thread_id: str) -> None: ...
    def delete_for_runs(self, run_ids: Sequence[str]) -> None: ...
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None: ...
    def prune(self, thread_ids: Sequence[str], strategy: _PruneStrategy = "keep_latest") -> None:
        """Prune the threads (see `RustSQLiteCheckpointer.prune`)."""
    def prune_idle(self, cutoff_ms: int, strategy: _PruneStrategy = "delete") -> int:
        """Prune, in one transaction, every thread whose newest checkpoint was made before
        `cutoff_ms` (milliseconds since the Unix epoch); returns how many threads."""
    def close(self) -> None:
        """Commit what is queued and stop the writer; later calls raise CheckpointClosedError."""

@final
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

    def __new__(
        cls,
        base_message: type,
        chunk: type,
        remove_message: type,
        coerce: Callable[[list[Any]], list[Any]],
        new_id: Callable[[], object],
        finish: Callable[[list[Any], Any], list[Any]],
        fallback: Callable[[list[Any], list[Any], Any], list[Any]],
    ) -> Self: ...
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

@disjoint_base
class RustLLMCache:
    """An LRU cache with a time to live per entry, holding Python objects. Safe to use from
    many threads at once. Keys may be any mix of str, bytes, int, float, bool, None, tuples,
    lists, dicts and sets, pydantic models (LangChain messages), dataclasses and other values
    LangGraph's serializer knows; two keys share an entry only if they are equal and of the
    same types. Objects that compare by identity are keyed by identity and kept alive by
    their entry (memory caches only).

    The native class takes the value codec and the key encoder's fallback as arguments; use
    `fast_langgraph.RustLLMCache`, which passes them (and documents `serde=`,
    `allowed_types=`).

    Args:
        max_size: The most entries kept in memory and, with `path`, per space in the file;
            None for no bound (default 1024).
        ttl: Default seconds an entry stays valid; None for ever.
        path: An SQLite file to keep entries in across restarts.
        redis_url: A Redis server (`redis://...`, `unix://...`) to share entries on.
        namespace: The hash tag of this application's keys on the server.
        local_max_size: With `redis_url`, the size of a memory tier in front of it (None: none);
            with `near_cache`, the near cache's bound (None: 1024).
        strict: With `redis_url`, raise CacheError when the server fails instead of missing.
        codec: An object with `dumps(value) -> (tag, bytes)` and `loads(tag, bytes) -> value`
            (raising when the bytes do not decode); needed with `path` or `redis_url`.
        key_fallback: A callable encoding key parts the encoder does not know natively
            (bytes), or returning None for objects that compare by identity.
        clock: A callable returning seconds since the epoch, in place of the system clock.
        space: The space of this cache's entries in the file or on the server.
        space_prefix: Whether `space` is the prefix of the spaces this cache's calls name.
        lock_timeout: Seconds a cross-process single-flight lock lasts (Redis).
        connect_timeout: Seconds to connect to Redis.
        io_timeout: Seconds to wait for each Redis reply.
        raw_values: Values are a serializer's `(tag, bytes)` pairs, stored as they are
            (no codec); a stored value of another kind reads back as a miss.
        near_cache: With `redis_url`, keep entries read from the server in memory as a near
            cache kept coherent by the server's invalidations (Redis client-side caching).

    Raises:
        ValueError: max_size below 1, a negative ttl, a malformed or unsupported Redis URL, a
            namespace with braces, both path and redis_url, or near_cache without redis_url.
        ForeignDatabaseError: `path` is not SQLite, or holds tables that are not a cache's.
    """

    def __new__(
        cls,
        max_size: int | None = ...,
        ttl: float | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        redis_url: str | None = None,
        namespace: str = "default",
        local_max_size: int | None = None,
        strict: bool = False,
        codec: Any = None,
        key_fallback: Callable[[Any], bytes | None] | None = None,
        clock: Callable[[], float] | None = None,
        space: str = "",
        space_prefix: bool = False,
        lock_timeout: float = 30.0,
        connect_timeout: float = 1.0,
        io_timeout: float = 2.0,
        raw_values: bool = False,
        near_cache: bool = False,
    ) -> Self: ...
    @property
    def max_size(self) -> int | None: ...
    @property
    def ttl(self) -> float | None: ...
    @property
    def path(self) -> str | None: ...
    @property
    def persistent(self) -> bool:
        """Whether entries are kept in a file or on a server."""
    @property
    def remote(self) -> bool:
        """Whether entries are kept on a Redis server."""
    @property
    def local(self) -> bool:
        """Whether entries are kept in this process's memory."""
    @property
    def near_cache(self) -> bool:
        """Whether entries read from the Redis server are kept in memory as a near cache
        that the server's invalidations keep coherent."""
    def _near_ready(self) -> bool:
        """Whether the near cache follows the server's invalidations now (hits can be
        served from it)."""
    def get(self, key: Any, default: Any = None) -> Any:
        """The live value under `key`, or `default`. Counts a hit or a miss. A stored value
        that does not decode (or decodes to other types) is a miss.

        Raises:
            CacheCorruptError: the entry on disk fails its integrity check.
            CacheError: strict=True and the Redis server failed; or the cache was closed.
        """
    def put(self, key: Any, value: Any, ttl: float | None = None) -> None:
        """Store `value` for `ttl` seconds (None: the cache's default).

        Raises:
            TypeError: with `path` or `redis_url`, the value cannot be serialized.
        """
    def __contains__(self, key: Any, /) -> bool:
        """Whether a live entry is stored under `key` (not counted)."""
    def delete(self, key: Any) -> bool:
        """Remove the entry under `key`; returns whether there was one."""
    def clear(self) -> None:
        """Remove every entry of this cache (in a file or on a server: of its space only;
        on Redis with SCAN and UNLINK)."""
    def close(self) -> None:
        """Close the file or the server connections; later calls needing them raise
        CacheError."""
    def __len__(self) -> int:
        """The number of live entries (of this cache's space in a file or on a server)."""
    def stats(self) -> dict[str, Any]:
        """hits, misses, evictions, expirations, errors, size, max_size, ttl; with the near
        cache also near_hits, near_invalidations, near_flushes, near_size."""
    def _key(self, key: Any) -> tuple[bytes, list[Any]]: ...
    def _get_key(
        self, key: bytes, count: bool = True, space: str | None = None
    ) -> tuple[bool, Any]: ...
    def _get_keys(
        self, keys: Sequence[tuple[bytes, str | None]], count: bool = True
    ) -> list[tuple[bool, Any]]:
        """Several lookups in one batch read of the file or server (one MGET, one SQL
        statement); (found, value) per key, in order."""
    def _get_local(self, key: bytes) -> tuple[bool, Any]: ...
    def _put_key(
        self,
        key: bytes,
        value: Any,
        pins: Sequence[Any] = ...,
        ttl: float | None = None,
        space: str | None = None,
    ) -> None: ...
    def _put_keys(self, entries: Sequence[tuple[bytes, Any, float | None, str | None]]) -> None:
        """Several stores, (key, value, ttl, space) each, in one batch write of the file or
        server (one transaction, one pipeline)."""
    def _delete_key(self, key: bytes, space: str | None = None) -> bool: ...
    def _delete_prefix(
        self, prefix: bytes, space: str | None = None, space_prefix: bool = False
    ) -> int: ...
    def _loop_get(self, event_loop: Any, key: bytes, count: bool, space: str | None) -> Any:
        """The async lookup on this event loop's Redis connection: (found, value) at once (a
        memory hit, or a server known to be down), else an awaitable of it."""
    def _loop_get_keys(
        self, event_loop: Any, keys: Sequence[tuple[bytes, str | None]], count: bool
    ) -> Any:
        """The async batch lookup (one MGET) on this event loop's Redis connection: the list
        of (found, value) at once, or an awaitable of it."""
    def _loop_put(
        self,
        event_loop: Any,
        key: bytes,
        value: Any,
        pins: Sequence[Any],
        ttl: float | None,
        space: str | None,
    ) -> Any | None:
        """The async store on this event loop's Redis connection: an awaitable of its reply,
        or None when there is nothing to wait for."""
    def _loop_put_keys(
        self, event_loop: Any, entries: Sequence[tuple[bytes, Any, float | None, str | None]]
    ) -> Any | None:
        """The async batch store (one SET or MULTI/EXEC) on this event loop's Redis
        connection: an awaitable of its replies, or None."""
    def _loop_connected(self, event_loop: Any) -> bool:
        """Whether this cache has a connected socket on `event_loop`."""
    def _miss_was_hit(self) -> None: ...
    def _lock(self, key: bytes) -> str | None: ...
    def _unlock(self, key: bytes, token: str) -> None: ...
    def _wait(self, key: bytes, timeout: float) -> tuple[bool, Any]: ...

@final
class CachedFunction:
    """What `@cached` returns for a sync function: call it as the function. Use `cached`."""

    def __new__(
        cls,
        func: Callable[..., Any],
        cache: RustLLMCache,
        on_miss: Callable[..., Any],
        cache_info_type: Callable[..., Any],
        key: Callable[..., Any] | None = None,
        signature: Sequence[tuple[str, int, bool, Any]] | None = None,
    ) -> Self: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, obj: Any, owner: Any = None, /) -> Any: ...
    @property
    def cache(self) -> RustLLMCache: ...
    def _make_key(
        self, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
    ) -> tuple[bytes, list[Any]] | None: ...
    def cache_info(self) -> Any:
        """CacheInfo(hits, misses, maxsize, currsize), as functools.lru_cache reports it;
        currsize counts this function's entries only."""
    def cache_stats(self) -> dict[str, Any]:
        """hits, misses, evictions, expirations, errors, size, max_size, ttl."""
    def cache_clear(self) -> None:
        """Remove every cached result of this function."""
    def cache_close(self) -> None:
        """Close the cache's file or server connections."""

@final
class WorkerPool:
    """A persistent pool of Rust worker threads that run Python callables. Threads start on
    demand (a job that finds no idle worker gets a new thread, up to `max_threads`) and stay;
    those beyond `min_threads` exit after `keep_alive` idle seconds. Used through
    `fast_langgraph.executor`.

    Raises:
        ValueError: `max_threads` is 0, `min_threads > max_threads`, or a bad `keep_alive`.
    """

    def __new__(
        cls, max_threads: int, *, min_threads: int = 0, keep_alive: float = 60.0
    ) -> Self: ...
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

@final
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

# --- serializer (fast_langgraph.serde.RustSerializer) ----------------------------------------

@final
class MsgpackCodec:
    """The msgpack walk behind ``RustSerializer``; built by ``fast_langgraph/serde.py``.

    Args:
        enc: LangGraph's ``_msgpack_enc`` (packs values the walk does not write itself).
        ext_hook: The serializer's ``_unpack_ext_hook``.
        native_ext: False when the serializer has a custom ext hook: every extension value
            then goes to it.
        fallback: The sentinel ``decode`` returns when only ``ormsgpack`` can decode the bytes.
        classes: ``(cls, fields, fast_decode, ai_rules)`` per LangChain message class, with
            ``fields`` as ``(name, kind, literal_values)``.
        natives: ``(type, kind)`` of the standard-library types written natively
            (``"uuid"``, ``"datetime"``, ``"date"``, ``"timedelta"``).
        safe: LangGraph's ``SAFE_MSGPACK_TYPES``.
        safe_methods: LangGraph's ``SAFE_MSGPACK_METHODS``.
    """

    def __new__(
        cls,
        enc: Callable[[Any], bytes],
        ext_hook: Callable[[int, bytes], Any],
        native_ext: bool,
        fallback: object,
        classes: Sequence[tuple[type, Sequence[tuple[str, str, Sequence[str | None]]], bool, bool]],
        natives: Sequence[tuple[type, str]],
        safe: Iterable[Sequence[str]],
        safe_methods: Iterable[Sequence[str]],
    ) -> Self: ...
    def encode(self, obj: Any) -> bytes | None:
        """The msgpack bytes ``JsonPlusSerializer`` writes for ``obj``, or None when only the
        stock serializer can say (it then raises, pickles or packs)."""
    def decode(self, data: Any) -> Any:
        """The value ``ormsgpack.unpackb`` with the ext hook returns for ``data``, or the
        ``fallback`` sentinel when only ``ormsgpack`` can say."""

# (task_id, task_path, idx, channel, type, value): one row of a put_writes call.
_SaverWriteArg = tuple[str, str, int, str, str | None, bytes | None]

@final
class SqliteSaverRow:
    """A row of `langgraph-checkpoint-sqlite`'s `checkpoints` table, with the pending writes of
    that checkpoint."""

    @property
    def thread_id(self) -> str: ...
    @property
    def checkpoint_ns(self) -> str: ...
    @property
    def checkpoint_id(self) -> str: ...
    @property
    def parent_checkpoint_id(self) -> str | None: ...
    @property
    def type_tag(self) -> str | None:
        """The `type` column: the serializer's type tag."""
    @property
    def checkpoint(self) -> bytes | None: ...
    @property
    def metadata(self) -> bytes | None:
        """The metadata JSON, as stored."""
    @property
    def writes(self) -> list[tuple[str, str, str | None, bytes | None, str, int]]:
        """`(task_id, channel, type, value, task_path, idx)` per pending write: the row shape of
        `langgraph.checkpoint.sqlite.utils.pending_writes_sql`, in stored order."""

@final
class SqliteSaverStore:
    """The SQL side of the shim's `SqliteSaver`: the user's own file, in
    `langgraph-checkpoint-sqlite`'s schema, with group commit, one-statement `list` and a pool
    of read connections. Every method releases the GIL while it talks to SQLite and is safe to
    call from many threads.

    Args:
        path: The database file (not ":memory:", which no other connection can see).
        sqlite_library: A `dlopen` handle of the SQLite library Python's `sqlite3` module
            uses (`ctypes.CDLL(_sqlite3.__file__)._handle`): the store calls that library, so
            that it and the user's own connection share SQLite's locks on the file.
        synchronous: `PRAGMA synchronous` for commits: 0 off, 1 normal, 2 full, 3 extra.
        busy_timeout: Seconds to wait for another connection's lock.
        max_batch: The most calls one commit may carry.
    """

    def __new__(
        cls,
        path: str,
        *,
        sqlite_library: int,
        synchronous: int = 2,
        busy_timeout: float = 30.0,
        max_batch: int = 256,
    ) -> Self: ...
    @property
    def path(self) -> str: ...
    @property
    def synchronous(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def forked(self) -> bool:
        """Whether this process is a fork of the one that opened the store."""
    def put(
        self,
        *,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        parent_checkpoint_id: str | None,
        type_tag: str | None,
        checkpoint: bytes | None,
        metadata: bytes | None,
    ) -> None:
        """Store one checkpoint row (`INSERT OR REPLACE`); returns once committed."""
    def put_writes(
        self,
        *,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        replace: bool,
        writes: Sequence[_SaverWriteArg],
    ) -> None:
        """Store one task's writes, `INSERT OR REPLACE` if `replace` else `INSERT OR IGNORE`."""
    def delete_thread(self, thread_id: str) -> None: ...
    def has_checkpoint(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> bool: ...
    def merge(
        self,
        checkpoints: Sequence[
            tuple[str, str, str, str | None, str | None, bytes | None, bytes | None]
        ],
        writes: Sequence[tuple[str, str, str, Sequence[_SaverWriteArg]]],
    ) -> tuple[int, int]:
        """Add the rows the file lacks, replacing none; returns (checkpoints, writes) added."""
    def list(
        self,
        *,
        thread_id: str | int | float | None = None,
        checkpoint_ns: str | None = None,
        checkpoint_id: str | None = None,
        filter: Sequence[tuple[str, Any]] = ...,
        before: Any = None,
        limit: int | None = None,
    ) -> list[SqliteSaverRow]:
        """The checkpoints stock `SqliteSaver.list` selects, newest first, with their pending
        writes, in one statement."""
    def writer_stats(self) -> dict[str, int]:
        """{"calls", "commits"}: write calls and the transactions that carried them."""
    def close(self) -> None:
        """Close the connections (in a forked child, let go of the parent's unclosed)."""

# --- PostgreSQL checkpoint store (RustPostgresCheckpointer) --------------------------------

@final
class PgCheckpointStore:
    """The SQL side of `fast_langgraph.RustPostgresCheckpointer`: checkpoints on PostgreSQL
    over a connection pool of its own, under the same engine as `CheckpointStore` (the same
    group commit, delta chains and retention rules). Takes and returns the same named types
    as `CheckpointStore`. Every method releases the GIL during network I/O and is safe to call
    from many threads.

    Args:
        conninfo: A libpq key/value string or a `postgresql://` URL (`sslmode` and
            `sslrootcert` included).
        pool_size: The most connections open at once.
        connect_timeout: Seconds opening a connection may take.
        statement_timeout: Seconds a statement may run, or None for the server's setting.
        pool_timeout: Seconds a call waits for a free connection.
        guard: The single-writer guard (see `put`).

    Raises:
        CheckpointError: the server cannot be reached, or refused the credentials.
        ValueError: a malformed `conninfo` or a bad option.
    """

    def __new__(
        cls,
        conninfo: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        statement_timeout: float | None = None,
        pool_timeout: float = 30.0,
        guard: bool = False,
    ) -> Self: ...
    @property
    def closed(self) -> bool: ...
    def setup(self) -> int:
        """Applies the migrations not yet applied; returns the schema version."""
    def schema_version(self) -> int | None:
        """The schema version, or None when the tables do not exist."""
    def table_exists(self, name: str) -> bool: ...
    def put(self, checkpoint: NewCheckpoint, continue_head: bool = False) -> None:
        """Store a checkpoint in one statement; returns once committed. A blob with a
        delta_base is refused with DeltaBaseMissingError if that version is not stored, and
        so is a checkpoint one of whose `refs` is no longer stored. With
        the guard on and `continue_head`, raises `CheckpointConflictError` unless its parent
        is still its thread's latest checkpoint."""
    def put_writes(self, writes: NewWrites) -> None:
        """Store a task's writes; returns once committed. A regular write (idx >= 0) already
        stored is kept; a special one (idx < 0) replaces it."""
    def put_many(self, checkpoints: Sequence[NewCheckpoint], writes: Sequence[NewWrites]) -> None:
        """Store many checkpoints and writes in one transaction."""
    def get(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str | None = None,
        cached: Sequence[tuple[str, str]] = ...,
        direct: bool = False,
    ) -> CheckpointRow | None:
        """The checkpoint with `checkpoint_id`, or the newest of the thread's namespace, with
        its values and pending writes; None if there is none. The values of the
        `(channel, version)` pairs in `cached` are not read (the caller holds them). With
        `direct` (the caller holds a checkpoint of the thread, most likely the one found), the
        read starts with a statement the server starts faster, which serves it unless a value
        it finds is stored as a delta; then the whole statement reads it, and that thread
        from then on."""
    def get_tuple(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str | None,
        cached: Sequence[tuple[str, str]],
        config: Any,
        parts: TupleParts,
        placed_id: str | None = None,
        direct: bool = False,
    ) -> tuple[Any, builtins.list[tuple[str, int]], dict[str, bytes | None] | None] | None:
        """`get`, with the `CheckpointTuple` built here, as `CheckpointStore.get_tuple` builds
        it, or None. The tuple's config is `config` when given, the checkpoint's own
        otherwise. Also returns `(channel, deltas)` for each value read from its blobs, and
        the values the checkpoint keeps inside, by channel, with their msgpack (None when not
        known), or None instead of these when the checkpoint read is `placed_id` (the one
        whose placement the caller holds). For `direct`, see `get`."""
    def list(
        self,
        *,
        thread_id: str | None = None,
        checkpoint_ns: str | None = None,
        checkpoint_id: str | None = None,
        before: str | None = None,
        filter: Sequence[tuple[str, None | bool | int | float | str]] = ...,
        limit: int | None = None,
    ) -> builtins.list[CheckpointRow]:
        """Checkpoints newest first, with values and pending writes, from one statement.
        `filter` holds scalar metadata conditions, matched by containment (`metadata @>`)."""
    def delta_history(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str | None,
        channels: Sequence[str],
        cached: Sequence[tuple[str, str]] = ...,
    ) -> builtins.list[ChannelHistory]:
        """For each of `channels` (in order), its history behind the checkpoint with
        `checkpoint_id` (or the newest of the namespace), walking parent pointers in bounded
        statements. A missing checkpoint gives empty histories. A seed whose
        `(channel, version)` is in `cached` is not read and comes back without segments."""
    def storage_stats(self) -> dict[str, int]:
        """Row counts and sizes: checkpoints, blobs, delta_blobs, writes, payload_bytes,
        table_bytes (the tables and their indexes on disk)."""
    def check(self) -> builtins.list[str]:
        """Delta chains whose base version is not stored; [] if sound."""
    def thread_ids(self) -> builtins.list[str]:
        """Every thread id in the database."""
    def pool_stats(self) -> _PoolStats:
        """The pool now (open, idle, waiting) and its counters since it was made (waits,
        waits_timed_out, timeouts, wait_seconds, opened, dropped, reconnects). Reads no
        connection: it never waits for one."""
    def writer_stats(self) -> dict[str, int]:
        """{"calls": n, "commits": m}: write calls and the transactions that carried them."""
    def delete_thread(self, thread_id: str) -> None: ...
    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the runs' checkpoints and writes, except the ancestors a remaining
        checkpoint needs to rebuild a DeltaChannel."""
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None: ...
    def prune(self, thread_ids: Sequence[str], strategy: _PruneStrategy = "keep_latest") -> None:
        """Prune the threads (see `RustPostgresCheckpointer.prune`)."""
    def prune_idle(self, cutoff_ms: int, strategy: _PruneStrategy = "delete") -> int:
        """Prune, in one transaction, every thread whose newest checkpoint was made before
        `cutoff_ms` (milliseconds since the Unix epoch); returns how many threads."""
    def close(self) -> None:
        """Commit what is queued and close every connection; later calls raise
        CheckpointClosedError."""
