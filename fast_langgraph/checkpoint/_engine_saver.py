"""What the savers on the Rust checkpoint engine share, whatever their backend
(``RustSQLiteCheckpointer``, ``RustPostgresCheckpointer``): the async forms of LangGraph's
interface, each its sync method on a worker thread so that the event loop never waits on
storage; ``list``'s decoding of the rows its store returns; the channel version scheme; what a
forked child does with a saver it inherits; and the checks of a call's arguments."""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import random
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    EXCLUDED_METADATA_KEYS,
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    SerializerProtocol,
    get_checkpoint_metadata,
)

from fast_langgraph._native import (
    CheckpointRow,
    NewWrite,
    PackedValue,
    SerializationError,
    TupleParts,
    metadata_json,
    next_version,
    put_metadata_json,
    write_values,
)
from fast_langgraph.checkpoint._batches import built_batches, decoded, decoded_batches
from fast_langgraph.checkpoint._deltas import ListVersions, Remembered, SeedCache
from fast_langgraph.checkpoint._placement import Placements, kept_inside, placed
from fast_langgraph.serde import _ENCODER, RustSerializer

T = TypeVar("T")
# Built once: ``json.dumps(..., ensure_ascii=False)`` builds a new encoder on every call.
_METADATA_ENCODER = json.JSONEncoder(ensure_ascii=False)
# The random digits of a channel version (see ``get_next_version``).
_random_bits = random.getrandbits
_METADATA_DECODER = json.JSONDecoder()
# What JSONDecoder.raw_decode calls: (value, end), or StopIteration.
_METADATA_SCAN = cast(Any, _METADATA_DECODER).scan_once


def checkpoint_payload(
    c: dict[str, Any],
    inline: dict[str, Any] | None,
    codec: object | None,
    dumps: Callable[[Any], tuple[str, bytes]],
    checkpoint_id: str,
    thread_id: str,
) -> tuple[str, bytes, bool]:
    """The stored type and bytes of the checkpoint ``c`` (its ``channel_values`` the values
    kept ``inline``), and whether they hold the ``PackedValue``s' bytes as they are. With the
    default serializer (``codec``), its codec writes the dict itself, as its dumps_typed would;
    what it cannot write goes to ``dumps``, with the values themselves.

    Raises:
        SerializationError: naming the checkpoint and the thread.
    """
    if codec is not None:
        data = _ENCODER.encode(c)
        if data is not None:
            return "msgpack", data, True
    if inline:
        c["channel_values"] = {
            ch: v.value if type(v) is PackedValue else v for ch, v in inline.items()
        }
    try:
        type_, data = dumps(c)
    except Exception as e:
        what = f"checkpoint {checkpoint_id!r} in thread {thread_id!r}"
        raise _serialization_error(what, c, e) from e
    return type_, data, False


def _serialization_error(what: str, value: Any, e: Exception) -> SerializationError:
    return SerializationError(
        f"cannot serialize {what}: a value of type {type(value).__name__}: {e}"
    )


class EngineSaver(BaseCheckpointSaver[str]):
    """The part of a ``BaseCheckpointSaver`` that is the same for every backend of the engine."""

    # The backend's store (``CheckpointStore``, ``PgCheckpointStore``): the same calls.
    _store: Any
    # Whether lists are stored as append-only deltas; the DeltaChannel snapshots decoded, the
    # placements held and the list versions remembered (each backend's __init__ sets them).
    delta: bool
    _seeds: SeedCache
    _placed: Placements
    _lists: ListVersions

    def _track_fork(self) -> None:
        """Registers the saver for ``_after_fork_in_child`` in a process forked from this one
        (gunicorn ``--preload``, a multiprocessing pool with the fork start method)."""
        _LIVE_SAVERS.add(self)

    def _after_fork_in_child(self) -> None:
        """Runs in a forked child, before anything else there can use the saver: the saver's
        in-process state that a thread of the parent may have held a lock on is renewed."""

    def prune_older_than(
        self,
        max_idle: timedelta,
        *,
        strategy: Literal["delete", "keep_latest"] = "delete",
        now: datetime | None = None,
    ) -> int:
        raise NotImplementedError

    # -- list: the rows of one statement, decoded as the caller takes them ------------------

    def _to_tuple(self, row: CheckpointRow, config: RunnableConfig | None) -> CheckpointTuple:
        """The ``CheckpointTuple`` of a stored row (each backend decodes its own)."""
        raise NotImplementedError

    def _load_value(self, stored: Any) -> Any:
        """A channel value its store returned apart from the checkpoint (each backend's)."""
        raise NotImplementedError

    def _tuple_parts(self, serde: RustSerializer) -> TupleParts:
        """What the store builds ``CheckpointTuple``s with, for ``get_tuple`` and each batch
        of ``list``: the default serializer's codec and decoder, the metadata decoders, the
        value loader and the tuple class."""
        return TupleParts(
            serde._codec(),
            serde.loads_typed,
            _METADATA_SCAN,
            _load_metadata,
            self._load_value,
            CheckpointTuple,
        )

    def _read(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str | None,
        cached: builtins.list[tuple[str, str]],
        config: RunnableConfig | None,
        held: str | None = None,
    ) -> (
        tuple[CheckpointTuple, builtins.list[tuple[str, int]], dict[str, bytes | None] | None]
        | None
    ):
        """The tuple of one checkpoint (see ``get_tuple``), ``(channel, deltas)`` for each
        value read from a blob of its own, and the values the checkpoint keeps inside, with
        their msgpack when the default serializer wrote them (so that a put after this read
        carries them as they are); ``None`` for these when the checkpoint read is ``held``,
        the one whose placement the saver holds already. With a placement held, the thread's
        latest is most likely that checkpoint, and the store may try a read cheaper for it
        first (``direct``: PostgreSQL's statement without the walk along delta bases)."""
        serde = self.serde
        direct = held is not None
        if type(serde) is RustSerializer:
            # The default serializer: the store builds the tuple itself, as list() does.
            return self._store.get_tuple(
                thread_id,
                ns,
                checkpoint_id,
                cached,
                config,
                self._tuple_parts(serde),
                held,
                direct,
            )
        row = self._store.get(thread_id, ns, checkpoint_id, cached, direct)
        if row is None:
            return None
        tup = self._to_tuple(row, config)
        stored = [(v.channel, v.deltas) for v in row.values]
        if held is not None and row.checkpoint_id == held:
            return tup, stored, None
        return tup, stored, kept_inside(tup, row)

    def _after_read(
        self,
        got: tuple[CheckpointTuple, builtins.list[tuple[str, int]], dict[str, bytes | None] | None]
        | None,
        thread_id: str,
        ns: str,
        checkpoint_id: str | None,
        cached: builtins.list[tuple[str, str]],
        config: RunnableConfig,
        key: tuple[str, str],
    ) -> CheckpointTuple | None:
        """The end of ``get_tuple``, once its store read ``got`` (see ``_read``): the
        DeltaChannel snapshots filled in, the placement of the checkpoint read held, and the
        lists it read remembered for the next put's delta."""
        if got is None:
            return None
        tup, stored, inside = got
        # Snapshots come from blob rows (they are kept apart): with none read and none cached
        # there is nothing to fill in or keep.
        if (
            self.delta
            and (cached or stored)
            and not self._seeds.fill(tup.checkpoint, thread_id, ns, cached)
        ):
            # A seed left the cache meanwhile: read the checkpoint whole.
            got = self._read(thread_id, ns, checkpoint_id, [], config if checkpoint_id else None)
            if got is None:
                return None
            tup, stored, inside = got
            self._seeds.fill(tup.checkpoint, thread_id, ns, [])
        # A put on this checkpoint carries what it keeps inside (see Placements); recorded
        # already when this process last wrote or read this very checkpoint.
        if inside is not None:
            read_id = tup.checkpoint["id"]
            if not self._placed.holds(key, read_id):
                self._placed.set(key, read_id, placed(tup.checkpoint["channel_versions"], inside))
        if self.delta and stored:
            # The graph builds its next state from these very objects: remember them, so the
            # next put can store only what is appended to them.
            checkpoint = tup.checkpoint
            versions = checkpoint["channel_versions"]
            values = checkpoint["channel_values"]
            delta_items = self._delta_items
            read = []
            for channel, deltas in stored:
                items = delta_items(values.get(channel))
                if items is not None and channel in versions:
                    read.append(
                        (
                            (thread_id, ns, channel),
                            Remembered(str(versions[channel]), tuple(items), deltas),
                        )
                    )
            self._lists.remember_many(read, "read")
        return tup

    @staticmethod
    def _delta_items(value: Any) -> builtins.list[Any] | None:
        """The list a value read is remembered as, for the next put's delta, or ``None``: the
        kinds of value the backend's ``put`` stores as deltas."""
        raise NotImplementedError

    def _iter_tuples(
        self, rows: list[CheckpointRow], py_filter: dict[str, Any], limit: int | None
    ) -> Iterator[CheckpointTuple]:
        """The tuples of ``rows`` whose metadata matches ``py_filter`` (the part of a filter
        the store could not apply), at most ``limit`` of them."""
        # Decoded in batches with the garbage collector paused (see _batches): the objects are
        # new and acyclic, so its collections meanwhile would only scan them.
        return _selected(decoded(rows, self._listed), py_filter, limit)

    def _iter_batches(
        self,
        batches: Iterator[Sequence[CheckpointRow]],
        py_filter: dict[str, Any],
        limit: int | None,
    ) -> Iterator[CheckpointTuple]:
        """As ``_iter_tuples``, for rows that come in batches (a store's ``list_batches``,
        which reads the next batch on a thread of its own while this one decodes)."""
        return _selected(decoded_batches(batches, self._listed), py_filter, limit)

    def _iter_built(
        self,
        batches: object,
        build: Callable[[], tuple[list[CheckpointTuple], BaseException | None] | None],
        py_filter: dict[str, Any],
        limit: int | None,
    ) -> Iterator[CheckpointTuple]:
        """As ``_iter_batches``, for batches the store builds the tuples of itself
        (``build()`` takes the next one, see ``_batches.built_batches``)."""
        return _selected(built_batches(batches, build), py_filter, limit)

    def _listed(self, row: CheckpointRow) -> CheckpointTuple:
        return self._to_tuple(row, None)

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """The next channel version: a 32-digit counter, a dot and 16 random digits. Versions
        order by their counter, as SqliteSaver's and PostgresSaver's do (theirs end in a
        random float; digits of random bits are as random and cost a third of formatting a
        float, for every channel a step writes). The native ``next_version`` parses and
        formats the usual versions; any other string goes through ``int()`` here."""
        if current is None or type(current) is str:
            version = next_version(current, _random_bits(53))
            if version is not None:
                return version
        if type(current) is str:
            current_v = int(current.split(".", 1)[0])
        elif current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(str(current).split(".", 1)[0])
        # %-formatting: a third faster than the f-string's two format specs (timeit).
        return "%032d.%016d" % (current_v + 1, _random_bits(53))  # noqa: UP031

    # -- async: the same work on a worker thread --------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await in_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        items = await in_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in items:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await in_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await in_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await in_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await in_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await in_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await in_thread(partial(self.prune, strategy=strategy), thread_ids)

    async def aprune_older_than(
        self,
        max_idle: timedelta,
        *,
        strategy: Literal["delete", "keep_latest"] = "delete",
        now: datetime | None = None,
    ) -> int:
        return await in_thread(partial(self.prune_older_than, strategy=strategy, now=now), max_idle)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await in_thread(
            partial(self.get_delta_channel_history, config=config, channels=channels)
        )


def _selected(
    tuples: Iterator[CheckpointTuple], py_filter: dict[str, Any], limit: int | None
) -> Iterator[CheckpointTuple]:
    """``tuples`` themselves when there is nothing to match or count (one generator less per
    checkpoint), else ``_matching``'s."""
    if not py_filter and limit is None:
        return tuples
    return _matching(tuples, py_filter, limit)


def _matching(
    tuples: Iterator[CheckpointTuple], py_filter: dict[str, Any], limit: int | None
) -> Iterator[CheckpointTuple]:
    """The tuples whose metadata matches ``py_filter``, at most ``limit`` of them."""
    if limit is not None and limit <= 0:
        return
    remaining = limit
    for tup in tuples:
        if py_filter and not all(tup.metadata.get(k) == v for k, v in py_filter.items()):
            continue
        yield tup
        if remaining is not None:
            remaining -= 1
            if remaining <= 0:
                return


_LIVE_SAVERS: weakref.WeakSet[EngineSaver] = weakref.WeakSet()


def _after_fork() -> None:
    for saver in list(_LIVE_SAVERS):
        try:
            saver._after_fork_in_child()
        except Exception:  # pragma: no cover - a fork must never fail because of a saver
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Runs blocking storage and serializer work on the loop's default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args))


def configurable(config: Any) -> dict[str, Any]:
    """``config["configurable"]``, checked to be a dict holding a ``thread_id``."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (a RunnableConfig), got {type(config).__name__}")
    conf = config.get("configurable")
    if not isinstance(conf, dict) or "thread_id" not in conf:
        raise ValueError(
            f"config must have config['configurable']['thread_id'], got configurable={conf!r}"
        )
    return conf


def id_list(value: Any, name: str) -> list[Any]:
    """``value`` as a list of ids; a lone string (a common slip) is refused, naming ``name``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(f"{name} must be a list of ids, got {type(value).__name__}")
    return list(value)


def stored_metadata(
    config: RunnableConfig | None, metadata: CheckpointMetadata, checkpoint_id: str
) -> tuple[str, str | None]:
    """What a ``put`` stores of its metadata: LangGraph's ``get_checkpoint_metadata(config,
    metadata)`` (``metadata`` as it is when ``config`` is ``None``) as the text
    ``json.dumps(..., ensure_ascii=False)`` gives, and its ``run_id`` as text (or ``None``).

    Written in Rust in one call when every value is a plain JSON type; otherwise by LangGraph's
    function and Python's encoder, the same text.

    Raises:
        SerializationError: a value cannot be encoded as JSON; the message names its key and
            the checkpoint.
    """
    got = put_metadata_json(config, metadata, EXCLUDED_METADATA_KEYS)
    if got is not None:
        return got
    md: dict[str, Any] = dict(
        get_checkpoint_metadata(config, metadata) if config is not None else metadata
    )
    text = metadata_json(md)
    if text is None:
        try:
            text = _METADATA_ENCODER.encode(md)
        except (TypeError, ValueError) as e:
            bad = next((k for k, v in md.items() if not json_ok(v)), "?")
            raise SerializationError(
                f"cannot serialize metadata key {bad!r} of checkpoint {checkpoint_id!r} "
                f"(value of type {type(md.get(bad)).__name__}): {e}"
            ) from e
    run_id = md.get("run_id")
    return text, None if run_id is None else str(run_id)


def write_items(
    serde: SerializerProtocol, writes: Sequence[tuple[str, Any]], task_id: str
) -> list[NewWrite]:
    """A task's writes as stored: each one's index (``WRITES_IDX_MAP`` for the special
    channels) and serialized value, in one native call for a list or tuple of pairs (as
    LangGraph passes them), else one by one. A value that cannot be serialized raises
    ``SerializationError`` naming its channel and the task."""
    dumps = serde.dumps_typed
    items = write_values(
        writes,
        task_id,
        idx_map=WRITES_IDX_MAP,
        codec=_ENCODER if type(serde) is RustSerializer else None,
        dumps=dumps,
    )
    if items is not None:
        return items
    items = []
    for idx, (channel, value) in enumerate(writes):
        try:
            type_, data = dumps(value)
        except Exception as e:
            raise SerializationError(
                f"cannot serialize write to channel {channel!r} by task {task_id!r}: "
                f"a value of type {type(value).__name__}: {e}"
            ) from e
        items.append(NewWrite(WRITES_IDX_MAP.get(channel, idx), channel, type_, data))
    return items


def json_ok(value: Any) -> bool:
    """Whether ``json.dumps`` takes ``value``."""
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _load_metadata(text: str) -> Any:
    """``json.loads(text)``, without its two whitespace scans when the text is exactly one
    JSON value (as the metadata this saver writes always is)."""
    try:
        value, end = _METADATA_DECODER.raw_decode(text)
    except ValueError:
        return json.loads(text)  # raises as json.loads does, or skips leading whitespace
    if end != len(text):
        return json.loads(text)
    return value
