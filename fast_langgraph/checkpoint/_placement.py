"""Where each channel value of a thread's latest checkpoint lives: inside the checkpoint's own
row, or apart, as a blob under its version.

A checkpoint keeps its small values inside its row (one row written, where a blob costs a row
and a key of its own). A later checkpoint that does not change such a value must carry it
inside too, since no blob holds it; one that refers to a blob must find it stored. This is
what ``put`` passes to ``put_values`` as ``placed``, with the bytes a value kept inside was
written with, so that it is carried as it was stored rather than serialized again. Without it
(the saver neither wrote nor read the thread's last checkpoint: another process wrote it, or
the entry was dropped) ``put_values`` still writes a checkpoint that reads back whole: it
serializes the values the checkpoint does not change, and carries or stores each, except a
value kept apart by type (a ``DeltaChannel``'s snapshot), which every put stores apart: it
refers to that one's blob, which the put checks is still stored.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

# (thread_id, checkpoint_ns)
ThreadKey = tuple[str, str]
# channel -> (version as text, kept inside the checkpoint, its msgpack if known)
Placed = dict[str, tuple[str, bool, bytes | None]]

INLINE_MAX = 2048
"""Most bytes of serialized channel values (beyond the small scalars) a checkpoint keeps
inside its own row: half a 4 KB page, so that the row, with the checkpoint's other columns,
stays on its page instead of spilling onto overflow pages."""


class Placements:
    """For each (thread, namespace), the placement of the values of the checkpoint this
    process last wrote or read there. Bounded: the least recently used threads are dropped.
    Safe to use from many threads."""

    MAX_ENTRIES = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key -> (checkpoint id, placement)
        self._entries: OrderedDict[ThreadKey, tuple[str, Placed]] = OrderedDict()

    def get(self, key: ThreadKey) -> Placed | None:
        """The placement held for ``key``. One lookup, atomic under the GIL, so without the
        lock (as ``holds`` and ``held_id``)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def held_id(self, key: ThreadKey) -> str | None:
        """The id of the checkpoint whose placement is held for ``key``, or ``None``."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def holds(self, key: ThreadKey, checkpoint_id: str) -> bool:
        """Whether the placement held for ``key`` is that of checkpoint ``checkpoint_id``
        (a checkpoint's placement does not change: ``get_tuple`` need not record it again)."""
        entry = self._entries.get(key)
        return entry is not None and entry[0] == checkpoint_id

    def set(self, key: ThreadKey, checkpoint_id: str, placed: Placed) -> None:
        """Records the placement of checkpoint ``checkpoint_id`` (see ``placed``). ``placed``
        is kept as it is: the caller hands it over."""
        with self._lock:
            held = self._entries
            held[key] = (checkpoint_id, placed)
            held.move_to_end(key)
            if len(held) > self.MAX_ENTRIES:
                held.popitem(last=False)

    def forget_thread(self, thread_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == thread_id]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def placed(versions: Mapping[str, Any], inside: Mapping[str, bytes | None]) -> Placed:
    """The placement of a checkpoint whose channels are those of ``versions``: ``(version as
    text, True, msgpack or None)`` for the ones in ``inside`` (kept inside it, with the bytes
    they were stored as when known), ``(version as text, False, None)`` for the others (stored
    apart)."""
    return {
        ch: (v if type(v) is str else str(v), True, inside[ch])
        if ch in inside
        else (v if type(v) is str else str(v), False, None)
        for ch, v in versions.items()
    }


def kept_inside(tup: Any, row: Any) -> dict[str, bytes | None]:
    """The values that ``tup``, the tuple built from the stored ``row``, keeps inside its
    checkpoint: those it holds but the ones read from blob rows (``row.values``), before a
    seed cache adds those the store left out. Their bytes are not known (``None``): a put
    that carries them serializes them again."""
    apart = {stored.channel for stored in row.values}
    return {ch: None for ch in tup.checkpoint["channel_values"] if ch not in apart}
