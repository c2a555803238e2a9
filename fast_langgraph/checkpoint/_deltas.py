"""Append-only deltas: the bookkeeping that lets ``put`` store only what a list channel (a chat
history) appended since the version this process last stored or read.

A list is stored as a delta over a remembered version when it starts with the very objects of
that version (``is``, in order); the store then keeps the tail with a reference to its base.
See docs/checkpointer.md, "Append-only deltas".
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from typing import Any, NamedTuple

from langgraph.checkpoint.base import Checkpoint
from langgraph.checkpoint.serde.types import _DeltaSnapshot

# (thread_id, checkpoint_ns, channel)
ListKey = tuple[str, str, str]


def list_items(value: Any) -> list[Any] | None:
    """The list a value stores as deltas: a ``list`` itself, or the list inside a
    ``DeltaChannel`` snapshot (``_DeltaSnapshot``); ``None`` for anything else."""
    if type(value) is list:
        return value
    if type(value) is _DeltaSnapshot and type(value.value) is list:
        return value.value
    return None


class Remembered(NamedTuple):
    """A list version this process stored or read."""

    version: str
    """The channel version, as text."""
    items: tuple[Any, ...]
    """The list's items (references, not copies)."""
    chain: int
    """How many deltas in a row the stored chain has after its last full value."""


class DeltaPlan(NamedTuple):
    """How ``put`` stores one list value."""

    base: str | None
    """The version the delta extends, or ``None`` for a full value."""
    items: list[Any]
    """What to serialize: the appended items, or the whole list."""
    chain: int
    """The length of the stored chain after this value."""


class ListVersions:
    """For each (thread, namespace, channel), the list value this process last stored and the
    one it last read. Safe to use from many threads.

    Bounded, because what it remembers keeps the items alive: at most ``MAX_ENTRIES`` keys and
    ``MAX_ITEMS`` items in all (a key's two versions counted apart). The least recently used
    keys are dropped first, never the one just remembered; a dropped key's next put is stored
    whole, unless a read remembered it again (every invocation of a graph starts with one)."""

    MAX_ENTRIES = 1024
    MAX_ITEMS = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key -> {"put": entry, "read": entry}
        self._entries: OrderedDict[ListKey, dict[str, Remembered]] = OrderedDict()
        self._items = 0

    def base_for(self, key: ListKey, value: list[Any]) -> Remembered | None:
        """The remembered version whose items are the first items of ``value``, the very
        objects in the same order (the longest such, so the delta is shortest); ``None`` if
        there is none."""
        with self._lock:
            slots = self._entries.get(key)
            if slots is None:
                return None
            self._entries.move_to_end(key)
            candidates = sorted(slots.values(), key=lambda e: len(e.items), reverse=True)
        for entry in candidates:
            items = entry.items
            # `all` stops at the first object that differs, so a miss costs little.
            if len(value) >= len(items) and all(map(operator.is_, items, value)):
                return entry
        return None

    def plan(self, key: ListKey, value: list[Any], snapshot_every: int) -> DeltaPlan:
        """Whether to store ``value`` whole or as a delta, and what to serialize.

        A chain of k deltas makes every read of this value walk k more blobs (and, for
        serializers other than msgpack, decode k more segments). Short lists are cheap to
        store whole, so their chains are kept short: at most one delta per 8 items, and never
        more than ``snapshot_every``."""
        prev = self.base_for(key, value)
        if prev is not None and prev.chain < min(snapshot_every, len(value) // 8):
            return DeltaPlan(prev.version, value[len(prev.items) :], prev.chain + 1)
        return DeltaPlan(None, value, 0)

    def remember(self, key: ListKey, entry: Remembered, slot: str = "put") -> None:
        self.remember_many([(key, entry)], slot)

    def remember_many(self, entries: list[tuple[ListKey, Remembered]], slot: str = "put") -> None:
        """``remember`` for each of ``entries``, under one acquisition of the lock."""
        if not entries:
            return
        with self._lock:
            held = self._entries
            for key, entry in entries:
                slots = held.get(key)
                if slots is None:
                    held[key] = {slot: entry}
                else:
                    old = slots.get(slot)
                    if old is not None:
                        self._items -= len(old.items)
                    slots[slot] = entry
                    held.move_to_end(key)
                self._items += len(entry.items)
            # The newest key stays even if it alone is over the bound: dropping it would
            # store every next version of a very long list whole.
            while len(held) > self.MAX_ENTRIES or (self._items > self.MAX_ITEMS and len(held) > 1):
                _, slots = held.popitem(last=False)
                self._items -= sum(len(e.items) for e in slots.values())

    def forget_thread(self, thread_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == thread_id]:
                self._items -= sum(len(e.items) for e in self._entries.pop(key).values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._items = 0


# (thread_id, checkpoint_ns, channel, version)
SeedKey = tuple[str, str, str, str]


class SeedCache:
    """Decoded ``DeltaChannel`` seeds (the stored value a history starts from, usually a
    ``_DeltaSnapshot``), by thread, namespace, channel and version, so that loading a thread
    again does not decode the same snapshot again: a snapshot is written every
    ``snapshot_frequency`` updates, and every read in between starts from it.

    A version's stored value does not change (a ``put`` that stores the same version again
    drops the entry). What is handed out is a new container holding the same items, the
    assumption append-only deltas already make: the items are not changed in place.
    Bounded: at most ``MAX_ENTRIES`` seeds and ``MAX_ITEMS`` items in all; the least recently
    used go first. Safe to use from many threads."""

    MAX_ENTRIES = 64
    MAX_ITEMS = 200_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[SeedKey, tuple[Any, int]] = OrderedDict()
        self._items = 0

    def __len__(self) -> int:
        return len(self._entries)

    def versions(
        self, thread_id: str, ns: str, channels: list[str] | None = None
    ) -> list[tuple[str, str]]:
        """The (channel, version) pairs held for the thread's namespace (for ``channels``
        only, if given)."""
        wanted = None if channels is None else set(channels)
        with self._lock:
            return [
                (k[2], k[3])
                for k in self._entries
                if k[0] == thread_id and k[1] == ns and (wanted is None or k[2] in wanted)
            ]

    def get(self, key: SeedKey) -> Any | None:
        """A fresh copy of the seed under ``key``, or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
        return _fresh(entry[0])

    def put(self, key: SeedKey, value: Any) -> Any:
        """Keep ``value`` (if it is a container this cache can copy); returns what the caller
        may hand out: a fresh copy, so that the cached one is never handed out itself."""
        size = _size(value)
        if size is None or size > self.MAX_ITEMS:
            return value
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._items -= old[1]
            self._entries[key] = (value, size)
            self._items += size
            while len(self._entries) > self.MAX_ENTRIES or self._items > self.MAX_ITEMS:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._items -= dropped
        return _fresh(value)

    def fill(
        self,
        checkpoint: Checkpoint,
        thread_id: str,
        ns: str,
        cached: list[tuple[str, str]],
    ) -> bool:
        """Puts the kept seeds a store left out of ``checkpoint`` (the ``cached`` pairs it was
        given) into its channel values, and keeps the snapshots it read; ``False`` if a kept
        one is gone meanwhile (then read the checkpoint whole)."""
        versions = checkpoint["channel_versions"]
        values = checkpoint["channel_values"]
        left_out = set()
        for channel, version in cached:
            if channel in versions and str(versions[channel]) == version:
                value = self.get((thread_id, ns, channel, version))
                if value is None:
                    return False
                values[channel] = value
                left_out.add(channel)
        for channel, value in values.items():
            if type(value) is _DeltaSnapshot and channel not in left_out and channel in versions:
                key = (thread_id, ns, channel, str(versions[channel]))
                values[channel] = self.put(key, value)
        return True

    def discard(self, keys: list[SeedKey]) -> None:
        with self._lock:
            for key in keys:
                old = self._entries.pop(key, None)
                if old is not None:
                    self._items -= old[1]

    def forget_thread(self, thread_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == thread_id]:
                self._items -= self._entries.pop(key)[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._items = 0


def _size(value: Any) -> int | None:
    """How many items a cacheable seed holds; ``None`` if it is not one."""
    inner = value.value if isinstance(value, _DeltaSnapshot) else value
    if type(inner) in (list, dict, set):
        return len(inner) + 1
    return None


def _fresh(value: Any) -> Any:
    """A new container (of the same type) holding the same items."""
    if isinstance(value, _DeltaSnapshot):
        return _DeltaSnapshot(_fresh(value.value))
    return type(value)(value)
