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
    list[tuple[str, str, bytes]],  # (channel, type, data)
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
        blobs: Sequence[tuple[str, str, str, bytes]],
    ) -> None:
        """Store a checkpoint and the blobs of its new channel versions; returns once committed."""
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
    def thread_ids(self) -> list[str]:
        """Every thread id in the database."""
    def delete_thread(self, thread_id: str) -> None: ...
    def delete_for_runs(self, run_ids: Sequence[str]) -> None: ...
    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None: ...
    def prune(self, thread_ids: Sequence[str], strategy: str = "keep_latest") -> None:
        """strategy: "keep_latest" or "delete"."""
    def close(self) -> None:
        """Commit what is queued and stop the writer; later calls raise CheckpointClosedError."""

class WorkerPool:
    """A persistent pool of Rust worker threads that run Python callables. Threads start on
    demand (a job that finds no idle worker gets a new thread, up to `max_threads`) and stay;
    those beyond `min_threads` exit after `keep_alive` idle seconds. Used through
    `fast_langgraph.executor`.

    Raises:
        ValueError: `max_threads` is 0, `min_threads > max_threads`, or a bad `keep_alive`.
    """

    def __init__(self, max_threads: int, *, min_threads: int = 0, keep_alive: float = 60.0) -> None: ...
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
