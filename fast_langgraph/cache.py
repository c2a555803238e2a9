"""Caching for LLM calls and LangGraph nodes, on a Rust LRU cache with per-entry TTL.

- ``RustLLMCache``: the cache itself (Rust), holding Python objects, optionally persisted to
  SQLite (``path=``), safe to share between threads.
- ``cached``: a decorator for sync and ``async def`` functions and methods, with exact keys
  (unhashable arguments welcome) and single flight (concurrent misses on one key run the
  function once).
- ``FastLLMCache``: a ``langchain_core.caches.BaseCache`` for ``set_llm_cache`` or a chat
  model's ``cache=``.
- ``FastNodeCache``: a ``langgraph.cache.base.BaseCache`` for ``graph.compile(cache=...)``.

Keys are exact: arguments are encoded into bytes naming each part's type and content, and
entries are found by comparing those bytes in full, never by a hash alone. Objects the encoder
does not know natively (pydantic models such as LangChain messages, dataclasses, ...) are
encoded with LangGraph's serializer by ``_key_fallback``; objects whose equality is identity
are keyed by identity and kept alive by the entry, as ``functools.lru_cache`` does.
"""

from __future__ import annotations

import _thread
import asyncio
import copy
import dataclasses
import functools
import hashlib
import inspect
import threading
import typing
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from typing import Any, TypeVar, overload

from langchain_core.caches import RETURN_VAL_TYPE
from langchain_core.caches import BaseCache as LangChainBaseCache
from langgraph.cache.base import BaseCache as LangGraphBaseCache
from langgraph.cache.base import FullKey, Namespace
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fast_langgraph import _native
from fast_langgraph._native import CacheCorruptError, CachedFunction, CacheError

__all__ = [
    "CacheCorruptError",
    "CacheError",
    "CacheInfo",
    "CachedFunction",
    "FastLLMCache",
    "FastNodeCache",
    "RustLLMCache",
    "cached",
]

F = TypeVar("F", bound=Callable[..., Any])

CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])
"""What ``cache_info()`` returns, as ``functools.lru_cache`` does."""

_KEY_SERDE = JsonPlusSerializer(pickle_fallback=False)


def _key_fallback(obj: Any) -> bytes | None:
    """Encodes a key part the Rust encoder does not know natively.

    Returns ``None`` when ``obj`` compares by identity (its class keeps ``object.__eq__``): it
    is then keyed by identity. Otherwise returns LangGraph's serialization of ``obj``, which
    covers pydantic models (LangChain messages), dataclasses, enums, dates, UUIDs, ...
    """
    if type(obj).__eq__ is object.__eq__ and not isinstance(obj, Enum):
        return None
    try:
        tag, data = _KEY_SERDE.dumps_typed(obj)
    except Exception as e:
        raise TypeError(
            f"cannot build a cache key from an argument of type {type(obj).__qualname__} ({e}); "
            "pass key= to build the key yourself"
        ) from e
    return tag.encode() + b"\0" + data


# ---- values in a file or on a server ----


class _tuple:
    """A tuple on its way through LangGraph's serializer, which would turn it into a list.

    The serializer stores it as (this class, its items); reading it back calls this class
    with the items, and ``__new__`` returns the tuple itself.
    """

    __slots__ = ("items",)
    items: list[Any]

    def __new__(cls, items: Iterable[Any] = ()) -> Any:
        return tuple(items)

    def _asdict(self) -> dict[str, Any]:
        return {"items": self.items}


def _box(items: list[Any]) -> _tuple:
    box = object.__new__(_tuple)
    box.items = items
    return box


_CONTAINERS = (list, tuple, dict, set, frozenset)

# Types a cache value may hold that LangGraph's serializer does not allow by itself: what
# LangChain's LLM caches store, and the tuple box above.
_BASE_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        (_tuple.__module__, "_tuple"),
        ("langchain_core.outputs.generation", "Generation"),
        ("langchain_core.outputs.generation", "GenerationChunk"),
        ("langchain_core.outputs.chat_generation", "ChatGeneration"),
        ("langchain_core.outputs.chat_generation", "ChatGenerationChunk"),
        ("langchain_core.messages.tool", "ToolCall"),
    }
)

# Classes this process has stored in a cache: reading them back is allowed, as is reading the
# types a cached function's return annotation names. Anything else stored by someone else is
# not reconstructed (LangGraph's serializer gives back plain data), which the type signature
# check turns into a miss.
_SEEN: set[tuple[str, str]] = set()
_SEEN_LOCK = threading.Lock()


def _type_name(t: type) -> tuple[str, str]:
    return (t.__module__, t.__qualname__)


def _prepare(value: Any, types: set[tuple[str, str]], depth: int = 0) -> Any:
    """A copy of ``value`` with its tuples boxed; collects the types it holds into ``types``."""
    t = type(value)
    if value is None or t in (str, int, float, bool, bytes):
        return value
    types.add(_type_name(t))
    if depth > 64:
        return value
    if t is tuple:
        return _box([_prepare(v, types, depth + 1) for v in value])
    if t is list:
        return [_prepare(v, types, depth + 1) for v in value]
    if t is dict:
        return {k: _prepare(v, types, depth + 1) for k, v in value.items()}
    if t in (set, frozenset):
        for v in value:
            _collect(v, types, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A shallow copy whose fields hold boxed tuples (set without running __init__).
        fields = dataclasses.fields(value)
        if fields:
            value = copy.copy(value)
            for f in fields:
                object.__setattr__(
                    value, f.name, _prepare(getattr(value, f.name), types, depth + 1)
                )
    return value


def _collect(value: Any, types: set[tuple[str, str]], depth: int = 0) -> None:
    """Collects the types ``value`` holds, as ``_prepare`` does."""
    t = type(value)
    if value is None or t in (str, int, float, bool, bytes):
        return
    types.add(_type_name(t))
    if depth > 64:
        return
    if t in (list, tuple, set, frozenset):
        for v in value:
            _collect(v, types, depth + 1)
    elif t is dict:
        for v in value.values():
            _collect(v, types, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _collect(getattr(value, f.name, None), types, depth + 1)


def _signature(types: set[tuple[str, str]]) -> str:
    text = "\n".join(sorted(f"{m}.{q}" for m, q in types))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _annotated_types(func: Any) -> set[tuple[str, str]]:
    """The classes a function's return annotation names (``-> list[Answer]``: Answer)."""
    try:
        hint = typing.get_type_hints(func).get("return")
    except Exception:
        return set()
    out: set[tuple[str, str]] = set()

    def walk(h: Any, depth: int) -> None:
        if depth > 8 or h is None:
            return
        if isinstance(h, type) and h.__module__ != "builtins":
            out.add((h.__module__, h.__name__))
        for a in typing.get_args(h):
            walk(a, depth + 1)

    walk(hint, 0)
    return out


class _ValueCodec:
    """Turns cache values into ``(tag, bytes)`` for a file or a server, and back, with the
    types they had.

    Values go through ``serde`` (LangGraph's ``JsonPlusSerializer`` without pickle by
    default; any ``SerializerProtocol``, such as an encrypting one, may be injected). Tuples
    are boxed on the way so they come back as tuples, and the tag carries a signature of the
    set of types the value held: a value that reads back with other types (a model the
    serializer was not allowed to rebuild comes back as a dict) does not decode, and the cache
    treats it as a miss. Reading is allowed for LangGraph's safe types, what LangChain's LLM
    caches store, the classes this process has stored, and ``allowed`` (classes or
    ``(module, name)`` pairs).
    """

    def __init__(
        self, serde: SerializerProtocol | None = None, allowed: Iterable[Any] = ()
    ) -> None:
        self.allowed: set[tuple[str, str]] = set(_BASE_ALLOWED)
        for a in allowed:
            self.allowed.add((a.__module__, a.__name__) if isinstance(a, type) else tuple(a))
        self.serde = (
            serde
            if serde is not None
            else JsonPlusSerializer(
                pickle_fallback=False, allowed_msgpack_modules=sorted(self.allowed)
            )
        )
        self._reader: Any = None
        self._reader_size = -1

    def allow(self, types: Iterable[tuple[str, str]]) -> None:
        self.allowed.update(types)

    def dumps(self, value: Any) -> tuple[str, bytes]:
        types: set[tuple[str, str]] = set()
        prepared = _prepare(value, types)
        tag, data = self.serde.dumps_typed(prepared)
        new = types - _SEEN
        if new:
            with _SEEN_LOCK:
                _SEEN.update(new)
        return f"flg1|{tag}|{_signature(types)}", data

    def _read_serde(self) -> Any:
        size = len(self.allowed) + len(_SEEN)
        if self._reader is None or self._reader_size != size:
            extend = getattr(self.serde, "with_msgpack_allowlist", None)
            self._reader = extend(sorted(self.allowed | _SEEN)) if extend else self.serde
            self._reader_size = size
        return self._reader

    def loads(self, tag: str, data: bytes) -> Any:
        parts = tag.split("|")
        if len(parts) != 3 or parts[0] != "flg1":
            raise ValueError(f"not a value this cache stored (tag {tag!r})")
        value = self._read_serde().loads_typed((parts[1], data))
        types: set[tuple[str, str]] = set()
        _collect(value, types)
        if _signature(types) != parts[2]:
            raise ValueError("the value read back holds other types than the one stored")
        return value


class RustLLMCache(_native.RustLLMCache):
    """An LRU cache with a time to live per entry, holding Python objects; safe to share
    between threads. With ``path=`` entries are also kept in an SQLite file, with
    ``redis_url=`` on a Redis server shared by every process and replica.

    Args:
        max_size: The most entries kept in memory and, with ``path=``, in the file;
            ``None`` for no bound. A Redis server bounds itself (``maxmemory``).
        ttl: Seconds an entry stays valid; ``None`` for ever. On Redis, the key's expiry.
        path: An SQLite file to keep entries in across restarts.
        redis_url: ``redis://[user:password@]host[:port][/db]`` or ``unix:///path``.
        namespace: Groups this application's keys on the server (the keys' hash tag).
        local_max_size: With ``redis_url=``, keep up to this many entries in this process's
            memory too (faster hits, but they do not see another process's delete or clear
            until they expire or are evicted); ``None``: every read asks the server. With
            ``near_cache=True``, the bound of the near cache (default 1024).
        near_cache: With ``redis_url=``, keep entries read from the server in this process's
            memory as a near cache that the server keeps coherent (Redis client-side caching:
            every change, delete or expiry of a key by any client invalidates it here; see
            docs/cache.md for how stale a hit can be).
        strict: With ``redis_url=``, raise ``CacheError`` when the server fails instead of
            counting an error and serving a miss.
        serde: The serializer of values in a file or on a server (default: LangGraph's
            ``JsonPlusSerializer`` without pickle).
        allowed_types: Classes (or ``(module, name)`` pairs) values may be rebuilt as when read
            back from a file or server, beyond LangGraph's safe types and the classes this
            process has stored.
        clock: A callable returning seconds since the epoch, in place of the system clock.
        lock_timeout: Seconds a cross-process single-flight lock lasts, and the longest
            other processes wait for its holder's value before running the function themselves.
        connect_timeout: Seconds to wait for a connection to the Redis server.
        io_timeout: Seconds to wait for each reply of the Redis server.
    """

    def __new__(
        cls,
        max_size: int | None = 1024,
        ttl: float | None = None,
        *,
        path: str | None = None,
        redis_url: str | None = None,
        namespace: str = "default",
        local_max_size: int | None = None,
        near_cache: bool = False,
        strict: bool = False,
        serde: SerializerProtocol | None = None,
        allowed_types: Iterable[Any] = (),
        clock: Callable[[], float] | None = None,
        lock_timeout: float = 30.0,
        connect_timeout: float = 1.0,
        io_timeout: float = 2.0,
        _space: str = "",
        _space_prefix: bool = False,
        _raw_values: bool = False,
    ) -> RustLLMCache:
        if redis_url is not None and not isinstance(redis_url, str):
            raise TypeError(f"redis_url must be a str, got {type(redis_url).__name__}")
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, got {type(namespace).__name__}")
        persistent = path is not None or redis_url is not None
        codec = _ValueCodec(serde, allowed_types) if persistent and not _raw_values else None
        self = super().__new__(
            cls,
            max_size,
            ttl,
            path=path,
            redis_url=redis_url,
            namespace=namespace,
            local_max_size=local_max_size,
            strict=strict,
            codec=codec,
            key_fallback=_key_fallback,
            clock=clock,
            space=_space,
            space_prefix=_space_prefix,
            lock_timeout=lock_timeout,
            connect_timeout=connect_timeout,
            io_timeout=io_timeout,
            raw_values=_raw_values,
            near_cache=near_cache,
        )
        self._codec = codec  # type: ignore[attr-defined]
        self._lock_timeout = lock_timeout  # type: ignore[attr-defined]
        return self

    def __enter__(self) -> RustLLMCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Call:
    """One running computation that concurrent callers of the same key wait for. The leader
    holds ``done`` until the result is in; waiters block on it with the GIL released."""

    __slots__ = ("done", "error", "owner", "value")

    def __init__(self) -> None:
        # A bare lock costs far less to make than an Event, and a miss makes one.
        self.done = _thread.allocate_lock()
        self.done.acquire()
        self.owner = threading.get_ident()
        self.value: Any = None
        self.error: BaseException | None = None


class _SyncFlights:
    """The miss path of a sync ``@cached`` function: runs ``func`` once per key at a time in
    this process and, on a Redis cache, once across processes (a short lock key on the server;
    the others wait for the value, up to ``lock_timeout``, then run it themselves). Callers
    served by another caller's run count as hits."""

    def __init__(self, func: Callable[..., Any], cache: RustLLMCache) -> None:
        self.func = func
        self.cache = cache
        self.lock = threading.Lock()
        self.calls: dict[bytes, _Call] = {}
        self.remote = cache.remote
        self.lock_timeout = getattr(cache, "_lock_timeout", 30.0)

    def __call__(self, key: bytes, pins: list[Any], args: tuple, kwargs: dict | None) -> Any:
        cache = self.cache
        with self.lock:
            call = self.calls.get(key)
            if call is None:
                if not self.remote:
                    # Another caller may have stored the result since our lookup.
                    found, value = cache._get_key(key, False)
                    if found:
                        cache._miss_was_hit()
                        return value
                call = self.calls[key] = _Call()
                leader = True
            else:
                leader = False
        if not leader:
            if call.owner == threading.get_ident():
                # The function calls itself with the same arguments: waiting would deadlock.
                return self._run(args, kwargs)
            call.done.acquire()
            call.done.release()
            if call.error is not None:
                raise call.error
            cache._miss_was_hit()
            return call.value
        token = None
        try:
            if self.remote:
                found, value, token = self._remote_flight(key)
                if found:
                    cache._miss_was_hit()
                    call.value = value
                    return value
            value = self._run(args, kwargs)
            cache._put_key(key, value, pins)
            call.value = value
            return value
        except BaseException as e:
            # Exceptions are not cached; the callers waiting now get this one.
            call.error = e
            raise
        finally:
            if token is not None:
                cache._unlock(key, token)
            with self.lock:
                del self.calls[key]
            call.done.release()

    def _remote_flight(self, key: bytes) -> tuple[bool, Any, str | None]:
        """Takes the server's lock on ``key``, or waits for its holder's value."""
        cache = self.cache
        token = cache._lock(key)
        if token is None:
            found, value = cache._wait(key, self.lock_timeout)
            if found:
                return True, value, None
            token = cache._lock(key)  # the holder failed or is slow: run it ourselves
        # Another process may have stored the value between our lookup and the lock.
        found, value = cache._get_key(key, False)
        return found, value, token

    def _run(self, args: tuple, kwargs: dict | None) -> Any:
        value = self.func(*args, **kwargs) if kwargs else self.func(*args)
        if hasattr(value, "__await__") and inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            raise TypeError(
                f"{_name(self.func)} returned an awaitable; @cached caches results, not awaitables: "
                "declare it with `async def` so the awaited result is cached"
            )
        return value


def _resolve(fut: asyncio.Future, ok: bool, value: Any) -> None:
    if not fut.done():
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _answer_to(loop: asyncio.AbstractEventLoop, fut: asyncio.Future) -> tuple[Any, Any, Any]:
    """Where an I/O thread answers: it calls ``loop.call_soon_threadsafe(_resolve, fut, ok,
    value)``, so ``fut`` is resolved on its own loop."""
    return (loop.call_soon_threadsafe, _resolve, fut)


async def _aget_key(
    cache: Any, key: bytes, count: bool = True, space: str | None = None
) -> tuple[bool, Any]:
    """A lookup that never blocks the event loop: a memory hit is answered at once; a Redis
    read is written on this loop's own connection to the server and its reply wakes the
    awaiting task (no thread in between); a file read runs on the cache's I/O threads, which
    wake the loop with the result."""
    loop = asyncio.get_running_loop()
    if cache.remote:
        r = cache._loop_get(loop, key, count, space)
        return r if type(r) is tuple else await r
    fut = loop.create_future()
    now = cache._submit_get(key, count, space, _answer_to(loop, fut))
    if now is not None:
        return now
    return await fut


async def _aput_key(
    cache: Any,
    key: bytes,
    value: Any,
    pins: Sequence[Any] = (),
    ttl: float | None = None,
    space: str | None = None,
) -> None:
    """A store that never blocks the event loop (a Redis write on this loop's connection, a
    file write on the cache's I/O threads)."""
    loop = asyncio.get_running_loop()
    if cache.remote:
        r = cache._loop_put(loop, key, value, list(pins), ttl, space)
        if r is not None:
            await r
        return
    fut = loop.create_future()
    if not cache._submit_put(
        key,
        value,
        list(pins),
        ttl,
        space,
        _answer_to(loop, fut),
    ):
        await fut


async def _aget_keys(
    cache: Any, keys: Sequence[tuple[bytes, str | None]], count: bool = True
) -> list[tuple[bool, Any]]:
    """Several lookups that never block the event loop: memory hits at once, the rest in one
    batch read (one MGET on this loop's Redis connection, or one SQL statement on one of the
    cache's I/O threads)."""
    loop = asyncio.get_running_loop()
    if cache.remote:
        r = cache._loop_get_keys(loop, keys, count)
        return r if type(r) is list else await r
    fut = loop.create_future()
    now = cache._submit_get_keys(keys, count, _answer_to(loop, fut))
    if now is not None:
        return now
    return await fut


async def _aput_keys(cache: Any, entries: Sequence[tuple[bytes, Any, Any, str | None]]) -> None:
    """Several stores that never block the event loop: one batch write (one MULTI/EXEC
    transaction on this loop's Redis connection, or one SQL transaction on one of the cache's
    I/O threads)."""
    loop = asyncio.get_running_loop()
    if cache.remote:
        r = cache._loop_put_keys(loop, entries)
        if r is not None:
            await r
        return
    fut = loop.create_future()
    if not cache._submit_put_keys(entries, _answer_to(loop, fut)):
        await fut


def _cancelling() -> bool:
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling and cancelling())


def _async_wrapper(func: Callable[..., Any], cf: CachedFunction) -> Callable[..., Any]:
    """The wrapper of an ``async def`` function: caches the awaited result, with single flight
    among the tasks of one event loop and, on Redis, across processes. File and server I/O
    runs in worker threads, never on the event loop."""
    cache = cf.cache
    calls: dict[tuple[int, bytes], asyncio.Future] = {}
    persistent = cache.persistent
    remote = cache.remote
    lock_timeout = getattr(cache, "_lock_timeout", 30.0)

    async def get(key: bytes, count: bool = True) -> tuple[bool, Any]:
        if not persistent:
            return cache._get_key(key, count)
        if remote:
            r = cache._loop_get(asyncio.get_running_loop(), key, count, None)
            return r if type(r) is tuple else await r
        return await _aget_key(cache, key, count)

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        made = cf._make_key(args, kwargs)
        if made is None:  # the arguments do not fit: let the function raise
            return await func(*args, **kwargs)
        key, pins = made
        found, value = await get(key)
        if found:
            return value
        loop = asyncio.get_running_loop()
        flight = (id(loop), key)
        while True:
            fut = calls.get(flight)
            if fut is None:
                if not remote:
                    found, value = await get(key, False)
                    if found:
                        cache._miss_was_hit()
                        return value
                if calls.get(flight) is None:  # nobody started the call while we looked
                    break
                continue
            try:
                value = await asyncio.shield(fut)
            except asyncio.CancelledError:
                if fut.cancelled() and not _cancelling():
                    continue  # the task running the call was cancelled, not us: run it ourselves
                raise
            cache._miss_was_hit()
            return value
        fut = loop.create_future()
        calls[flight] = fut
        token = None
        try:
            if remote:
                token = await asyncio.to_thread(cache._lock, key)
                if token is None:
                    found, value = await asyncio.to_thread(cache._wait, key, lock_timeout)
                    if not found:
                        token = await asyncio.to_thread(cache._lock, key)
                else:
                    found, value = await _aget_key(cache, key, False)
                if found:
                    cache._miss_was_hit()
                    fut.set_result(value)
                    return value
            value = await func(*args, **kwargs)
            if persistent:
                await _aput_key(cache, key, value, pins)
            else:
                cache._put_key(key, value, pins)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: no "never retrieved" log when nobody waits
            raise
        else:
            fut.set_result(value)
            return value
        finally:
            if token is not None:
                await asyncio.to_thread(cache._unlock, key, token)
            del calls[flight]

    wrapper.cache = cache  # type: ignore[attr-defined]
    wrapper.cache_info = cf.cache_info  # type: ignore[attr-defined]
    wrapper.cache_stats = cf.cache_stats  # type: ignore[attr-defined]
    wrapper.cache_clear = cf.cache_clear  # type: ignore[attr-defined]
    wrapper.cache_close = cf.cache_close  # type: ignore[attr-defined]
    return wrapper


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: 0,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: 1,
    inspect.Parameter.VAR_POSITIONAL: 2,
    inspect.Parameter.KEYWORD_ONLY: 3,
    inspect.Parameter.VAR_KEYWORD: 4,
}


def _signature_spec(f: Any) -> list[tuple[str, int, bool, Any]] | None:
    """The parameters of ``f`` for binding calls in Rust, or None when it has no signature."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return None
    return [
        (
            p.name,
            _KINDS[p.kind],
            p.default is not p.empty,
            None if p.default is p.empty else p.default,
        )
        for p in sig.parameters.values()
    ]


@overload
def cached(func: F, /) -> F: ...
@overload
def cached(
    func: None = None,
    /,
    *,
    max_size: int | None = 1024,
    ttl: float | None = None,
    key: Callable[..., Any] | None = None,
    path: str | None = None,
    redis_url: str | None = None,
    namespace: str = "default",
    local_max_size: int | None = None,
    near_cache: bool = False,
    strict: bool = False,
    serde: SerializerProtocol | None = None,
    allowed_types: Iterable[Any] = (),
    clock: Callable[[], float] | None = None,
    lock_timeout: float = 30.0,
) -> Callable[[F], F]: ...
def cached(
    func: Any = None,
    /,
    *,
    max_size: int | None = 1024,
    ttl: float | None = None,
    key: Callable[..., Any] | None = None,
    path: str | None = None,
    redis_url: str | None = None,
    namespace: str = "default",
    local_max_size: int | None = None,
    near_cache: bool = False,
    strict: bool = False,
    serde: SerializerProtocol | None = None,
    allowed_types: Iterable[Any] = (),
    clock: Callable[[], float] | None = None,
    lock_timeout: float = 30.0,
) -> Any:
    """Caches a function's results: ``@cached`` or ``@cached(max_size=..., ttl=..., ...)``.

    Works on sync functions, ``async def`` functions (the awaited result is cached, never the
    coroutine) and methods. Arguments may be unhashable (lists of messages, dicts, pydantic
    models); they are bound to the function's signature with its defaults applied, so
    ``ask(q)``, ``ask(q, "m")`` and ``ask(q, model="m")`` share an entry when ``model``
    defaults to ``"m"``. Two calls share an entry only if their arguments are equal and of the
    same types. ``None`` results are cached, exceptions are not. Concurrent calls that miss on
    the same key run the function once and all get its result (single flight; across
    processes too with ``redis_url=``).

    Args:
        max_size: The most results kept (least recently used go first); ``None`` for no bound.
        ttl: Seconds a result stays valid; ``None`` for ever.
        key: A function of the same arguments returning the key to use instead of them.
        path: An SQLite file to keep results in across restarts (each function has its own
            bounded space in it).
        redis_url: A Redis server to share results between processes and replicas.
        namespace: Groups an application's keys on the server.
        local_max_size: With ``redis_url=``, a memory tier of this size in front of Redis (the
            near cache's bound with ``near_cache=True``).
        near_cache: With ``redis_url=``, keep results read from the server in memory, kept
            coherent by the server's invalidations (see ``RustLLMCache``).
        strict: With ``redis_url=``, raise when the server fails instead of calling through.
        serde: The serializer of values in a file or on a server.
        allowed_types: Classes results may be rebuilt as when read back, beyond those the
            return annotation names and those this process has stored.
        clock: A callable returning seconds since the epoch, in place of the system clock.
        lock_timeout: Seconds other processes wait for a running call's result (Redis).

    The wrapper has ``cache_info()``, ``cache_stats()``, ``cache_clear()`` and
    ``cache_close()``.
    """
    if func is not None and not callable(func):
        raise TypeError(
            f"@cached expects a function, got {type(func).__name__}; "
            "pass options by keyword: @cached(max_size=..., ttl=...)"
        )
    if key is not None and not callable(key):
        raise TypeError(f"key must be a callable, got {type(key).__name__}")

    def decorate(f: Any) -> Any:
        if not callable(f):
            raise TypeError(f"@cached expects a function, got {type(f).__name__}")
        if inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f):
            raise TypeError(f"cannot cache the generator function {_name(f)}")
        space = f"{getattr(f, '__module__', '')}.{_name(f)}"
        cache = RustLLMCache(
            max_size,
            ttl,
            path=path,
            redis_url=redis_url,
            namespace=namespace,
            local_max_size=local_max_size,
            near_cache=near_cache,
            strict=strict,
            serde=serde,
            allowed_types=allowed_types,
            clock=clock,
            lock_timeout=lock_timeout,
            _space=space,
        )
        codec = getattr(cache, "_codec", None)
        if codec is not None:
            codec.allow(_annotated_types(f))
        flights = _SyncFlights(f, cache)
        sig = None if key is not None else _signature_spec(f)
        cf = CachedFunction(f, cache, flights, CacheInfo, key, sig)
        if inspect.iscoroutinefunction(f) or inspect.iscoroutinefunction(
            getattr(f, "__call__", None)  # noqa: B004
        ):
            return _async_wrapper(f, cf)
        functools.update_wrapper(cf, f)
        return cf

    return decorate if func is None else decorate(func)


async def _off_loop(cache: RustLLMCache, fn: Callable[..., Any], *args: Any) -> Any:
    """Runs a cache call in a worker thread when it may touch a file or a server."""
    if cache.persistent:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


class FastLLMCache(LangChainBaseCache):
    """A LangChain LLM cache on ``RustLLMCache``: ``set_llm_cache(FastLLMCache())`` or
    ``ChatModel(cache=FastLLMCache())``.

    Entries are keyed by the exact (prompt, llm_string) pair, so a change of model or of any
    model parameter is a different entry.

    Args:
        max_size: The most entries kept; ``None`` for no bound.
        ttl: Seconds an entry stays valid; ``None`` for ever.
        path: An SQLite file to keep entries in across restarts.
        redis_url: A Redis server to share entries between processes and replicas.
        namespace: Groups an application's keys on the server.
        local_max_size: With ``redis_url=``, a memory tier of this size in front of Redis (the
            near cache's bound with ``near_cache=True``).
        near_cache: With ``redis_url=``, keep entries read from the server in memory, kept
            coherent by the server's invalidations (see ``RustLLMCache``).
        strict: With ``redis_url=``, raise when the server fails instead of missing.
        serde: The serializer for ``path=`` / ``redis_url=``.
        clock: A callable returning seconds since the epoch, in place of the system clock.
    """

    def __init__(
        self,
        max_size: int | None = 1024,
        ttl: float | None = None,
        *,
        path: str | None = None,
        redis_url: str | None = None,
        namespace: str = "default",
        local_max_size: int | None = None,
        near_cache: bool = False,
        strict: bool = False,
        serde: SerializerProtocol | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.cache = RustLLMCache(
            max_size,
            ttl,
            path=path,
            redis_url=redis_url,
            namespace=namespace,
            local_max_size=local_max_size,
            near_cache=near_cache,
            strict=strict,
            serde=serde,
            clock=clock,
            _space="llm",
        )

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return self.cache.get((prompt, llm_string))

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self.cache.put((prompt, llm_string), return_val)

    def clear(self, **kwargs: Any) -> None:
        self.cache.clear()

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        if not self.cache.persistent:
            return self.lookup(prompt, llm_string)
        k, _ = self.cache._key((prompt, llm_string))
        _, value = await _aget_key(self.cache, k)
        return value

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        if not self.cache.persistent:
            return self.update(prompt, llm_string, return_val)
        k, pins = self.cache._key((prompt, llm_string))
        await _aput_key(self.cache, k, return_val, pins)

    async def aclear(self, **kwargs: Any) -> None:
        await _off_loop(self.cache, self.clear)

    def stats(self) -> dict[str, Any]:
        """hits, misses, evictions, expirations, errors, size, max_size, ttl."""
        return self.cache.stats()

    def close(self) -> None:
        """Closes the file or the server connections."""
        self.cache.close()


# The encodings of "" and of () (a tag and a zero length each).
_EMPTY_STR_LEN = 9
_EMPTY_TUPLE_LEN = 9
# Separates the parts of a node cache's space names: "node", the scope, the namespace.
_SEP = "\x1f"


class FastNodeCache(LangGraphBaseCache):
    """A LangGraph node cache on ``RustLLMCache``: ``graph.compile(cache=FastNodeCache())``,
    with ``CachePolicy(ttl=...)`` on the nodes.

    Entries are keyed by LangGraph's full key (the namespace tuple, which names the node and
    its function, and the hash of the node's input), compared in full. Values are stored
    serialized with ``serde``, as LangGraph's ``InMemoryCache`` does, so a hit never hands out
    an object a node could have changed.

    Args:
        max_size: The most entries kept in memory, and per node in a file; ``None`` for no
            bound.
        path: An SQLite file to keep entries in across restarts.
        redis_url: A Redis server to share entries between processes and replicas.
        namespace: Groups an application's keys on the server.
        local_max_size: With ``redis_url=``, a memory tier of this size in front of Redis (the
            near cache's bound with ``near_cache=True``).
        near_cache: With ``redis_url=``, keep entries read from the server in memory, kept
            coherent by the server's invalidations (see ``RustLLMCache``).
        strict: With ``redis_url=``, raise when the server fails instead of missing.
        serde: The serializer for values (default: LangGraph's, without pickle).
        clock: A callable returning seconds since the epoch, in place of the system clock.
    """

    def __init__(
        self,
        max_size: int | None = 4096,
        *,
        path: str | None = None,
        redis_url: str | None = None,
        namespace: str = "default",
        local_max_size: int | None = None,
        near_cache: bool = False,
        strict: bool = False,
        serde: SerializerProtocol | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.cache = RustLLMCache(
            max_size,
            None,
            path=path,
            redis_url=redis_url,
            namespace=namespace,
            local_max_size=local_max_size,
            near_cache=near_cache,
            strict=strict,
            clock=clock,
            _space="node" + _SEP,
            _space_prefix=True,
            # Values are serde's (tag, bytes): stored as they are, read back as they were.
            _raw_values=True,
        )
        self.scope: str | None = None
        self._spaces: dict[tuple[str, ...], str] = {}

    def scoped(self, scope: str) -> FastNodeCache:
        """A view of this cache whose entries are apart from those of every other scope.

        LangGraph names a node's entries after the node and its function's qualified name, so
        two graphs whose nodes share a name and come from one factory (closures with one
        ``__qualname__``) would share entries. Compile each with its own scope::

            shared = FastNodeCache()
            graph_a = builder_a.compile(cache=shared.scoped("a"))
            graph_b = builder_b.compile(cache=shared.scoped("b"))
        """
        if not isinstance(scope, str):
            raise TypeError(f"scope must be a str, got {type(scope).__name__}")
        view = object.__new__(FastNodeCache)
        view.serde = self.serde
        view.cache = self.cache
        view.scope = scope
        view._spaces = {}
        return view

    def _key(self, ns: Sequence[str], key: str) -> tuple:
        return (self.scope, tuple(ns), key)

    def _scope_space(self) -> str:
        # A scope's spaces: "node", then "s" and the scope's length and name (so no scope's
        # spaces start with another's), or "-" for the unscoped view.
        if self.scope is None:
            return "node" + _SEP + "-" + _SEP
        return f"node{_SEP}s{len(self.scope)}:{self.scope}{_SEP}"

    def _space(self, ns: Sequence[str]) -> str:
        # One space per node namespace, so clear(namespaces) is a delete of whole spaces.
        ns = tuple(ns)
        space = self._spaces.get(ns)
        if space is None:
            if len(self._spaces) > 4096:
                self._spaces.clear()
            digest = hashlib.blake2b(
                "\x00".join(ns).encode("utf-8", "surrogatepass"), digest_size=16
            ).hexdigest()
            space = self._spaces[ns] = self._scope_space() + digest
        return space

    def _batch(self, keys: Sequence[FullKey]) -> list[tuple[bytes, str]]:
        return [(self.cache._key(self._key(*full))[0], self._space(full[0])) for full in keys]

    def _entries(
        self, pairs: Mapping[FullKey, tuple[Any, int | None]]
    ) -> list[tuple[bytes, tuple[str, bytes], int | None, str]]:
        out = []
        for (ns, key), (value, ttl) in pairs.items():
            k, _ = self.cache._key(self._key(ns, key))
            tag, data = self.serde.dumps_typed(value)
            out.append((k, (tag, data), ttl, self._space(ns)))
        return out

    def _loaded(
        self, keys: Sequence[FullKey], found: Sequence[tuple[bool, Any]]
    ) -> dict[FullKey, Any]:
        out: dict[FullKey, Any] = {}
        for full, (hit, value) in zip(keys, found):
            if hit and value is not None:
                tag, data = value
                out[full] = self.serde.loads_typed((tag, data))
        return out

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        # One batch: memory hits, then one read of the file or server for the rest.
        keys = list(keys)
        if not keys:
            return {}
        return self._loaded(keys, self.cache._get_keys(self._batch(keys), True))

    def set(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        # One batch write (one transaction, one pipeline), then the memory tier.
        entries = self._entries(pairs)
        if entries:
            self.cache._put_keys(entries)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        # Memory keys are the encoding of (scope, ns, key); the encoding is self-delimiting, so
        # the encoding of (scope, ns, "") without its trailing "" is the prefix of exactly the
        # keys under (scope, ns), and without its trailing ((), "") that of the scope. In a
        # file or on a server, each namespace is a space of its own.
        if namespaces is None:
            if self.scope is None:
                self.cache.clear()
            else:
                full, _ = self.cache._key(self._key((), ""))
                self.cache._delete_prefix(
                    full[: -(_EMPTY_TUPLE_LEN + _EMPTY_STR_LEN)], self._scope_space(), True
                )
            return
        for ns in namespaces:
            full, _ = self.cache._key(self._key(ns, ""))
            self.cache._delete_prefix(full[:-_EMPTY_STR_LEN], self._space(ns), False)

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        cache = self.cache
        if not cache.persistent:
            return self.get(keys)
        keys = list(keys)
        if not keys:
            return {}
        if cache.remote:
            # _aget_keys inlined: the hit path of a node cache on Redis.
            r = cache._loop_get_keys(asyncio.get_running_loop(), self._batch(keys), True)
            return self._loaded(keys, r if type(r) is list else await r)
        return self._loaded(keys, await _aget_keys(cache, self._batch(keys)))

    async def aset(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        if not self.cache.persistent:
            return self.set(pairs)
        entries = self._entries(pairs)
        if entries:
            await _aput_keys(self.cache, entries)

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        await _off_loop(self.cache, self.clear, namespaces)

    def stats(self) -> dict[str, Any]:
        """hits, misses, evictions, expirations, errors, size, max_size, ttl."""
        return self.cache.stats()

    def close(self) -> None:
        """Closes the file or the server connections."""
        self.cache.close()
