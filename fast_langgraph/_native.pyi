"""Typed stubs for the Rust extension. Users import from `fast_langgraph`, not from here."""

from typing import Any, Sequence

__version__: str

class FastLangGraphError(Exception):
    """Base class of fast-langgraph's errors."""

class CheckpointError(FastLangGraphError):
    """A checkpoint store failed."""

class CheckpointClosedError(CheckpointError):
    """The checkpointer was used after close()."""

class ForeignDatabaseError(CheckpointError):
    """The file is not SQLite, or holds tables that are not fast-langgraph's. It is left untouched."""

class DatabaseLockedError(CheckpointError):
    """Another connection held the database lock for longer than the busy timeout."""

class DeltaBaseMissingError(CheckpointError):
    """A delta named a base version that is no longer stored. RustSQLiteCheckpointer then
    stores the full value; users do not normally see it."""

class SerializationError(CheckpointError):
    """A value could not be serialized; the message names the channel or key."""

_Row = tuple[
    str,  # thread_id
    str,  # checkpoint_ns
    str,  # checkpoint_id
    str | None,  # parent_checkpoint_id
    str,  # type tag of the checkpoint
    bytes,  # the checkpoint, without channel values
    str,  # metadata, JSON
    list[tuple[str, list[tuple[str, bytes]]]],  # (channel, [(type, data), ...] oldest first)
    list[tuple[str, str, str, bytes]],  # (task_id, channel, type, data), in writes_sort_key order
]

class CheckpointStore:
    """The SQL side of `RustSQLiteCheckpointer`: one SQLite file, a writer thread that
    commits concurrent calls together, and a pool of read connections. Every method releases
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
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        parent_checkpoint_id: str | None,
        type_tag: str,
        checkpoint: bytes,
        metadata_json: str,
        run_id: str | None,
        channel_versions: Sequence[tuple[str, str]],
        blobs: Sequence[tuple[str, str, str, bytes, str | None]],
    ) -> None:
        """Store a checkpoint and the blobs of its new channel versions, each as
        (channel, version, type, data, delta_base). A blob with a delta_base holds only the
        items appended to that version's list; it is refused with DeltaBaseMissingError if
        that version is not stored. Returns once committed."""
    def put_writes(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        task_id: str,
        task_path: str,
        writes: Sequence[tuple[int, str, str, bytes]],
    ) -> None:
        """Store a task's writes as (idx, channel, type, data); returns once committed."""
    def put_many(self, checkpoints: Sequence[tuple[Any, ...]], writes: Sequence[tuple[Any, ...]]) -> None:
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
