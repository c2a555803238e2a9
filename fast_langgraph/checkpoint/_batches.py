"""Decoding the rows of a ``list()`` in batches, with Python's cyclic garbage collector paused.

Decoding a checkpoint builds many new container objects (a few LangChain messages make some
fifty), and CPython runs a collection of its youngest objects every 700 new ones, one of the
middle generation every tenth of those, and, as the survivors pile up, collections of the
whole heap. None of those collections can free anything here: the objects just decoded are
alive (the caller is about to receive them), and a tree decoded from bytes holds no cycles (a
cycle that an ext hook makes is collected later, as usual). ``list()`` of 1,000
checkpoints spent over a third of its CPU time in them (docs/benchmarks.md).

So the rows are decoded in batches, each with the collector paused:

- The batches grow from 1 row, doubling, to at most ``MOST`` rows: a caller that reads only the
  first few checkpoints has no more than twice the rows it took decoded (``list()`` stays
  lazy), and no batch holds more than ``MOST`` rows' objects.
- The collector is off only while a batch decodes, never while the caller holds the
  generator: a generator abandoned early (``break``, ``limit``) leaves nothing paused.
- Pauses nest and overlap across threads: a counter under a lock, so the last one out restores
  exactly the state the first one in found. If the collector was off, it stays off.
- An error decoding a row is raised where that row would have been yielded, after the rows
  before it, as a per-row decode raises it.
- A child forked while a batch was decoding (in any thread) starts with the collector as it
  was before the batch, and its own counter at zero.

The collector's state is process-wide: while a batch decodes (milliseconds), the process's
other threads run without automatic collections too, and a ``gc.disable()`` called by another
thread during that window is undone when the batch ends.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import TypeVar

R = TypeVar("R")
T = TypeVar("T")

# The largest batch, in rows. 1,000 rows decode in 11 batches (1, 2, ..., 128, 256, 256, 233).
MOST = 256

_lock = threading.Lock()
_depth = 0  # pauses in progress, in every thread
_restore = False  # whether the last pause out turns the collector back on
_epoch = 0  # changes in a forked child: the pauses of the parent end there, uncounted


def _after_fork_in_child() -> None:
    global _lock, _depth, _restore, _epoch
    # The thread that paused does not exist here (or will find the epoch changed): restore
    # the state the first pause found, and start counting afresh.
    _lock = threading.Lock()
    if _depth and _restore:
        gc.enable()
    _depth = 0
    _restore = False
    _epoch += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic garbage collection inside the block (``gc.collect()`` still works).
    Nests, and overlaps with other threads' pauses; the last to leave restores what the
    first found."""
    global _depth, _restore
    with _lock:
        epoch = _epoch
        if _depth == 0:
            _restore = gc.isenabled()
            if _restore:
                gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            if epoch == _epoch:
                _depth -= 1
                if _depth == 0 and _restore:
                    _restore = False
                    gc.enable()


def decoded(rows: Iterable[R], decode: Callable[[R], T]) -> Iterator[T]:
    """``decode(row)`` for each row, in order, decoded in batches with the collector paused.
    After the caller has taken ``n`` values, at most ``min(2 * n + 1, n + MOST)`` rows are
    decoded."""
    it = iter(rows)
    size = 1
    while True:
        batch: list[T] = []
        error: Exception | None = None
        with collector_paused():
            for row in islice(it, size):
                try:
                    batch.append(decode(row))
                except Exception as e:
                    error = e
                    break
        yield from batch
        if error is not None:
            raise error
        if len(batch) < size:
            return
        del batch
        size = min(size * 2, MOST)


def decoded_batches(batches: Iterator[Sequence[R]], decode: Callable[[R], T]) -> Iterator[T]:
    """``decode(row)`` for each row of each batch, in order; each batch taken and decoded with
    the collector paused, when the caller asks for its first value. For batches that come sized
    already (the store's ``list_batches`` reads them ahead as 1, 2, 4, ... up to 256 rows),
    with the same guarantees as ``decoded``. If ``batches`` has a ``wait()`` (blocking until
    the next batch is there), it is called first, so that the collector is never paused while
    this thread waits."""

    def build() -> tuple[list[T], BaseException | None] | None:
        # The rows are new objects too: taken (built) with the collector paused.
        rows = next(batches, None)
        if rows is None:
            return None
        batch: list[T] = []
        for row in rows:
            try:
                batch.append(decode(row))
            except Exception as e:
                return batch, e
        return batch, None

    return built_batches(batches, build)


def built_batches(
    batches: object, build: Callable[[], tuple[list[T], BaseException | None] | None]
) -> Iterator[T]:
    """The values of batches that ``build()`` takes and decodes whole (``None`` when there are
    no more; with the values of the rows before a row that failed and its error otherwise),
    each built with the collector paused, when the caller asks for its first value; with the
    guarantees of ``decoded_batches``, whose ``wait()`` it calls on ``batches`` likewise."""
    wait = getattr(batches, "wait", None)
    while True:
        if wait is not None:
            wait()
        with collector_paused():
            built = build()
        if built is None:
            return
        batch, error = built
        del built
        yield from batch
        if error is not None:
            raise error
        del batch
