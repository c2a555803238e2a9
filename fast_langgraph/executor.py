"""Executors on a persistent pool of Rust worker threads.

LangGraph asks ``langchain_core.runnables.config.get_executor_for_config`` for a fresh
``ThreadPoolExecutor`` on every ``invoke``, and starts its threads anew each time. Here every
executor is a light handle on one process-wide pool whose threads live on between calls:

- ``PoolExecutor`` is a ``concurrent.futures.Executor``. Like LangChain's
  ``ContextThreadPoolExecutor`` it runs each task in a copy of the submitter's ``contextvars``,
  so callbacks and tracing see the same context. ``max_workers`` bounds how many of *its* tasks
  run at once; ``shutdown()`` (and leaving ``with executor:``) waits for its tasks and leaves
  the pool running.
- ``get_executor_for_config`` is the drop-in replacement the shim installs.
- ``parallel_map`` and ``BatchExecutor`` fan a callable out over many inputs with bounded
  concurrency, e.g. many LLM calls or graph invocations.

A task that submits to the pool and waits never deadlocks: a worker that blocks is not counted
as free, so new work gets a new thread (up to ``workers``, default 64); past that, a worker
that submits runs the task itself. A forked child gets a fresh pool.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Executor, Future
from contextvars import copy_context
from typing import Any, TypeVar

from fast_langgraph import _settings
from fast_langgraph._native import TaskGroup, WorkerPool

__all__ = [
    "BatchExecutor",
    "PoolExecutor",
    "get_executor_for_config",
    "get_pool",
    "parallel_map",
    "pool_stats",
]

T = TypeVar("T")

_pool_lock = threading.Lock()
_pool: WorkerPool | None = None
_pool_pid = 0
# Pools from before a fork or a resize: their threads are gone or on their way out; keeping a
# reference means their Rust side is never dropped in a process where its mutexes may be stale.
_retired: list[WorkerPool] = []
# Pools replaced in this process (not inherited through fork): stopped at exit.
_retired_here: list[WorkerPool] = []
_at_exit_registered = False


def get_pool() -> WorkerPool:
    """The process-wide worker pool, made on first use (and anew in a forked child, or after
    ``configure(workers=...)`` changed its size)."""
    global _pool, _pool_pid
    pool = _pool
    workers = _settings.get_setting("workers")
    if pool is not None and _pool_pid == os.getpid() and pool.max_threads == workers:
        return pool
    with _pool_lock:
        pool = _pool
        if pool is not None and _pool_pid == os.getpid() and pool.max_threads == workers:
            return pool
        if pool is not None:
            if _pool_pid == os.getpid():
                pool.retire()
                _retired_here.append(pool)
            _retired.append(pool)
        _register_at_exit()
        pool = WorkerPool(workers, min_threads=min(workers, os.cpu_count() or 1), keep_alive=60.0)
        _pool, _pool_pid = pool, os.getpid()
        return pool


def pool_stats() -> dict[str, int]:
    """Counters of the shared pool: threads, idle, queued, spawned, inline_runs, max_threads."""
    pool = _pool
    if pool is None or _pool_pid != os.getpid():
        return {
            "threads": 0,
            "idle": 0,
            "queued": 0,
            "spawned": 0,
            "inline_runs": 0,
            "max_threads": 0,
        }
    stats = pool.stats()
    stats["max_threads"] = pool.max_threads
    return stats


def _after_fork_in_child() -> None:
    global _pool
    # The parent's worker threads do not exist here: start over on first use.
    if _pool is not None:
        _retired.append(_pool)
    _retired_here.clear()
    _pool = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _at_exit() -> None:
    if _pool_pid == os.getpid():
        # Like ThreadPoolExecutor at exit: let queued work finish, then stop the workers
        # (those of replaced pools too) before the interpreter is torn down.
        for pool in [*_retired_here, _pool]:
            if pool is not None:
                pool.shutdown(wait=True, timeout=30.0)
    from fast_langgraph._native import _mark_finalizing

    _mark_finalizing()


def _register_at_exit() -> None:
    global _at_exit_registered
    if _at_exit_registered:
        return
    _at_exit_registered = True
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        # Runs where concurrent.futures joins its workers: before atexit, while threads may
        # still take the GIL.
        register(_at_exit)
    else:  # pragma: no cover
        import atexit

        atexit.register(_at_exit)


def _work(
    handle: PoolExecutor,
    future: Future,
    ctx: Any,
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
) -> None:
    # What ThreadPoolExecutor's _WorkItem.run does, in the submitter's context.
    if handle._cancel_pending:
        future.cancel()
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = ctx.run(fn, *args, **kwargs)
    except BaseException as exc:
        future.set_exception(exc)
        # Break the cycle exception -> traceback -> frame -> exc.
        del exc
    else:
        future.set_result(result)


class PoolExecutor(Executor):
    """A ``concurrent.futures.Executor`` on the shared Rust worker pool.

    Args:
        max_workers: The most tasks of this executor that run at once (``None``: no limit but
            the pool's). Tasks beyond it wait their turn.

    Leaving ``with PoolExecutor() as ex:`` waits for its tasks, as ``ThreadPoolExecutor`` does,
    and leaves the pool's threads running for the next executor.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None:
            if isinstance(max_workers, bool) or not isinstance(max_workers, int):
                raise TypeError(
                    f"max_workers must be an int or None, got {type(max_workers).__name__}"
                )
            if max_workers <= 0:
                raise ValueError("max_workers must be greater than 0")
        self._group: TaskGroup = get_pool().group(max_workers)
        self._shutdown = False
        self._cancel_pending = False

    @property
    def max_workers(self) -> int | None:
        return self._group.max_concurrency

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on a worker in a copy of the current context."""
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[T] = Future()
        self._group.submit(_work, self, future, copy_context(), fn, args, kwargs)
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """Like ``Executor.map``: results in input order, each call in a copy of the context."""
        return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new tasks; with ``cancel_futures``, cancel those not started; with ``wait``,
        block until this executor's tasks are done. The shared pool keeps running."""
        self._shutdown = True
        if cancel_futures:
            self._cancel_pending = True
        if wait:
            self._group.wait()

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else "open"
        return f"PoolExecutor(max_workers={self.max_workers}, outstanding={self._group.outstanding}, {state})"


def get_executor_for_config(config: Any = None) -> PoolExecutor:
    """Drop-in for ``langchain_core.runnables.config.get_executor_for_config``: use it as
    ``with get_executor_for_config(config) as executor:``. ``config["max_concurrency"]`` bounds
    how many tasks of the executor run at once, as it bounds the thread count of LangChain's."""
    config = config or {}
    return PoolExecutor(max_workers=config.get("max_concurrency"))


def _check_concurrency(max_concurrency: int | None) -> None:
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ValueError(f"max_concurrency must be a positive int or None, got {max_concurrency!r}")


def _collect(futures: list[Future], return_exceptions: bool) -> list[Any]:
    results: list[Any] = []
    for i, f in enumerate(futures):
        try:
            results.append(f.result())
        except CancelledError as exc:
            if return_exceptions:
                results.append(exc)
                continue
            raise
        except BaseException as exc:
            if return_exceptions and isinstance(exc, Exception):
                results.append(exc)
                continue
            for rest in futures[i + 1 :]:
                rest.cancel()
            _note_index(exc, i, len(futures))
            raise
    return results


def _note_index(exc: BaseException, index: int, total: int) -> None:
    try:
        exc.item_index = index  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - exceptions with __slots__
        pass
    if hasattr(exc, "add_note"):
        exc.add_note(f"raised for item {index} of {total}")


def parallel_map(
    fn: Callable[[Any], T],
    items: Iterable[Any],
    *,
    max_concurrency: int | None = None,
    return_exceptions: bool = False,
) -> list[T]:
    """Call ``fn(item)`` for every item on the shared pool, at most ``max_concurrency`` at once,
    and return the results in input order.

    Each call runs in a copy of the caller's ``contextvars``. For I/O-bound work (HTTP, LLM
    calls, ``graph.invoke``) that releases the GIL while it waits, the calls overlap.

    Args:
        fn: A callable of one argument.
        items: The inputs.
        max_concurrency: The most calls at once; ``None``: as many as the pool allows.
        return_exceptions: Put an ``Exception`` raised by a call in its slot instead of raising.

    Raises:
        Exception: Without ``return_exceptions``, the error of the lowest-index failed item,
            with ``item_index`` set and a note naming the index. Items not started yet are
            cancelled.
        TypeError: ``fn`` is an ``async def`` function (its calls would only make coroutines
            that nobody awaits).
    """
    _check_concurrency(max_concurrency)
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    ):
        raise TypeError(
            f"parallel_map runs sync functions in threads; {getattr(fn, '__qualname__', fn)!r} is "
            "an async function: await asyncio.gather(*(fn(item) for item in items)) instead, "
            "with an asyncio.Semaphore to bound the concurrency"
        )
    with PoolExecutor(max_workers=max_concurrency) as ex:
        futures = [ex.submit(fn, item) for item in items]
        try:
            return _collect(futures, return_exceptions)
        except BaseException:
            ex.shutdown(wait=False, cancel_futures=True)
            raise


class BatchExecutor:
    """Run a callable over many inputs on the shared pool, with bounded concurrency::

        with BatchExecutor(max_concurrency=8) as batch:
            answers = batch.map(call_llm, prompts)

    Args:
        max_concurrency: The most calls of this executor at once (``None``: no limit but the
            pool's).
    """

    def __init__(self, max_concurrency: int | None = None) -> None:
        _check_concurrency(max_concurrency)
        self.max_concurrency = max_concurrency
        self._executor = PoolExecutor(max_workers=max_concurrency)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run one call; returns its ``Future``."""
        return self._executor.submit(fn, *args, **kwargs)

    def map(
        self, fn: Callable[[Any], T], items: Iterable[Any], *, return_exceptions: bool = False
    ) -> list[T]:
        """``fn(item)`` for each item, results in input order; raises like ``parallel_map``."""
        futures = [self._executor.submit(fn, item) for item in items]
        try:
            return _collect(futures, return_exceptions)
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def close(self, wait: bool = True) -> None:
        """Refuse new calls and (with ``wait``) wait for those running."""
        self._executor.shutdown(wait=wait)

    def __enter__(self) -> BatchExecutor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
