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
import functools
import inspect
import threading
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any, TypeVar, overload

from langchain_core.caches import RETURN_VAL_TYPE
from langchain_core.caches import BaseCache as LangChainBaseCache
from langgraph.cache.base import BaseCache as LangGraphBaseCache
from langgraph.cache.base import FullKey, Namespace
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fast_langgraph._native import CacheCorruptError, CachedFunction, CacheError, RustLLMCache

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
    """The miss path of a sync ``@cached`` function: runs ``func`` once per key at a time."""

    def __init__(self, func: Callable[..., Any], cache: RustLLMCache) -> None:
        self.func = func
        self.cache = cache
        self.lock = threading.Lock()
        self.calls: dict[bytes, _Call] = {}

    def __call__(self, key: bytes, pins: list[Any], args: tuple, kwargs: dict | None) -> Any:
        with self.lock:
            call = self.calls.get(key)
            if call is None:
                # Another caller may have stored the result since our lookup.
                found, value = self.cache._get_key(key, False)
                if found:
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
            return call.value
        try:
            value = self._run(args, kwargs)
            self.cache._put_key(key, value, pins)
            call.value = value
            return value
        except BaseException as e:
            # Exceptions are not cached; the callers waiting now get this one.
            call.error = e
            raise
        finally:
            with self.lock:
                del self.calls[key]
            call.done.release()

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


def _cancelling() -> bool:
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling and cancelling())


def _async_wrapper(func: Callable[..., Any], cf: CachedFunction) -> Callable[..., Any]:
    """The wrapper of an ``async def`` function: caches the awaited result, with single flight
    among the tasks of one event loop."""
    cache: RustLLMCache = cf.cache
    calls: dict[tuple[int, bytes], asyncio.Future] = {}
    # A cache kept in SQLite reads and writes the file: do that off the event loop.
    persistent = _persistent(cache)

    async def get(*args: Any) -> tuple[bool, Any]:
        return (
            await asyncio.to_thread(cache._get_key, *args) if persistent else cache._get_key(*args)
        )

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        key, pins = cf._make_key(args, kwargs)
        found, value = await get(key)
        if found:
            return value
        loop = asyncio.get_running_loop()
        flight = (id(loop), key)
        while True:
            fut = calls.get(flight)
            if fut is None:
                found, value = await get(key, False)
                if found:
                    return value
                if calls.get(flight) is None:  # nobody started the call while we looked
                    break
                continue
            try:
                return await asyncio.shield(fut)
            except asyncio.CancelledError:
                if fut.cancelled() and not _cancelling():
                    continue  # the task running the call was cancelled, not us: run it ourselves
                raise
        fut = loop.create_future()
        calls[flight] = fut
        try:
            value = await func(*args, **kwargs)
            if persistent:
                await asyncio.to_thread(cache._put_key, key, value, pins)
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
            del calls[flight]

    wrapper.cache = cache  # type: ignore[attr-defined]
    wrapper.cache_info = cf.cache_info  # type: ignore[attr-defined]
    wrapper.cache_stats = cf.cache_stats  # type: ignore[attr-defined]
    wrapper.cache_clear = cf.cache_clear  # type: ignore[attr-defined]
    return wrapper


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


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
    serde: SerializerProtocol | None = None,
    clock: Callable[[], float] | None = None,
) -> Callable[[F], F]: ...
def cached(
    func: Any = None,
    /,
    *,
    max_size: int | None = 1024,
    ttl: float | None = None,
    key: Callable[..., Any] | None = None,
    path: str | None = None,
    serde: SerializerProtocol | None = None,
    clock: Callable[[], float] | None = None,
) -> Any:
    """Caches a function's results: ``@cached`` or ``@cached(max_size=..., ttl=..., ...)``.

    Works on sync functions, ``async def`` functions (the awaited result is cached, never the
    coroutine) and methods. Arguments may be unhashable (lists of messages, dicts, pydantic
    models); two calls share an entry only if their arguments are equal and of the same types.
    ``None`` results are cached, exceptions are not. Concurrent calls that miss on the same key
    run the function once and all get its result (single flight).

    Args:
        max_size: The most results kept (least recently used go first); ``None`` for no bound.
        ttl: Seconds a result stays valid; ``None`` for ever.
        key: A function of the same arguments returning the key to use instead of them.
        path: An SQLite file to keep results in across restarts; values go through
            LangGraph's serializer.
        serde: The serializer for ``path=`` (default: ``JsonPlusSerializer`` without pickle).
        clock: A callable returning seconds since the epoch, in place of the system clock.

    The wrapper has ``cache_info()``, ``cache_stats()`` and ``cache_clear()``.
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
        cache = RustLLMCache(max_size, ttl, path=path, serde=serde, clock=clock)
        prefix = f"{getattr(f, '__module__', '')}.{_name(f)}".encode()
        flights = _SyncFlights(f, cache)
        cf = CachedFunction(f, cache, flights, prefix, key)
        if inspect.iscoroutinefunction(f) or inspect.iscoroutinefunction(
            getattr(f, "__call__", None)  # noqa: B004
        ):
            return _async_wrapper(f, cf)
        functools.update_wrapper(cf, f)
        return cf

    return decorate if func is None else decorate(func)


def _persistent(cache: RustLLMCache) -> bool:
    return cache.path is not None


class FastLLMCache(LangChainBaseCache):
    """A LangChain LLM cache on ``RustLLMCache``: ``set_llm_cache(FastLLMCache())`` or
    ``ChatModel(cache=FastLLMCache())``.

    Entries are keyed by the exact (prompt, llm_string) pair, so a change of model or of any
    model parameter is a different entry.

    Args:
        max_size: The most entries kept; ``None`` for no bound.
        ttl: Seconds an entry stays valid; ``None`` for ever.
        path: An SQLite file to keep entries in across restarts.
        serde: The serializer for ``path=``.
        clock: A callable returning seconds since the epoch, in place of the system clock.
    """

    def __init__(
        self,
        max_size: int | None = 1024,
        ttl: float | None = None,
        *,
        path: str | None = None,
        serde: SerializerProtocol | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.cache = RustLLMCache(max_size, ttl, path=path, serde=serde, clock=clock)

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return self.cache.get((prompt, llm_string))

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self.cache.put((prompt, llm_string), return_val)

    def clear(self, **kwargs: Any) -> None:
        self.cache.clear()

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        if _persistent(self.cache):
            return await asyncio.to_thread(self.lookup, prompt, llm_string)
        return self.lookup(prompt, llm_string)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        if _persistent(self.cache):
            return await asyncio.to_thread(self.update, prompt, llm_string, return_val)
        self.update(prompt, llm_string, return_val)

    async def aclear(self, **kwargs: Any) -> None:
        if _persistent(self.cache):
            return await asyncio.to_thread(self.clear)
        self.clear()

    def stats(self) -> dict[str, Any]:
        """hits, misses, evictions, expirations, size, max_size, ttl."""
        return self.cache.stats()


# The encodings of "" and of () (a tag and a zero length each).
_EMPTY_STR_LEN = 9
_EMPTY_TUPLE_LEN = 9


class FastNodeCache(LangGraphBaseCache):
    """A LangGraph node cache on ``RustLLMCache``: ``graph.compile(cache=FastNodeCache())``,
    with ``CachePolicy(ttl=...)`` on the nodes.

    Entries are keyed by LangGraph's full key (the namespace tuple, which names the node and
    its function, and the hash of the node's input), compared in full. Values are stored
    serialized with ``serde``, as LangGraph's ``InMemoryCache`` does, so a hit never hands out
    an object a node could have changed.

    Args:
        max_size: The most entries kept; ``None`` for no bound.
        path: An SQLite file to keep entries in across restarts.
        serde: The serializer for values (default: LangGraph's, without pickle).
        clock: A callable returning seconds since the epoch, in place of the system clock.
    """

    def __init__(
        self,
        max_size: int | None = 4096,
        *,
        path: str | None = None,
        serde: SerializerProtocol | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.cache = RustLLMCache(max_size, None, path=path, clock=clock)
        self.scope: str | None = None

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
        return view

    def _key(self, ns: Sequence[str], key: str) -> tuple:
        return (self.scope, tuple(ns), key)

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        out: dict[FullKey, Any] = {}
        for full in keys:
            found = self.cache.get(self._key(*full))
            if found is not None:
                tag, data = found
                out[full] = self.serde.loads_typed((tag, data))
        return out

    def set(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        for (ns, key), (value, ttl) in pairs.items():
            self.cache.put(self._key(ns, key), tuple(self.serde.dumps_typed(value)), ttl)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        # Keys are the encoding of (scope, ns, key); the encoding is self-delimiting, so the
        # encoding of (scope, ns, "") without its trailing "" is the prefix of exactly the
        # keys under (scope, ns), and without its trailing ((), "") that of the scope.
        if namespaces is None:
            if self.scope is None:
                self.cache.clear()
            else:
                full, _ = self.cache._key(self._key((), ""))
                self.cache._delete_prefix(full[: -(_EMPTY_TUPLE_LEN + _EMPTY_STR_LEN)])
            return
        for ns in namespaces:
            full, _ = self.cache._key(self._key(ns, ""))
            self.cache._delete_prefix(full[:-_EMPTY_STR_LEN])

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        if _persistent(self.cache):
            return await asyncio.to_thread(self.get, keys)
        return self.get(keys)

    async def aset(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        if _persistent(self.cache):
            return await asyncio.to_thread(self.set, pairs)
        self.set(pairs)

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        if _persistent(self.cache):
            return await asyncio.to_thread(self.clear, namespaces)
        self.clear(namespaces)

    def stats(self) -> dict[str, Any]:
        """hits, misses, evictions, expirations, size, max_size, ttl."""
        return self.cache.stats()
