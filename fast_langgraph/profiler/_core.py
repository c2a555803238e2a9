"""GraphProfiler: records where a compiled LangGraph graph spends its time.

It needs no change to the graph's nodes:

- a LangChain callback handler, added to every callback manager created while
  ``profile_run()`` is active (through a context variable and LangChain's configure hook),
  sees the graph run, each node task (with its superstep from LangGraph's run metadata),
  LLM calls with their token usage, and tool calls;
- the graph's checkpointer gets timed ``put``/``put_writes``/``get_tuple`` (and their async
  twins), and its serializer counts the bytes it produces;
- the graph's node cache gets counted ``get``/``aget`` (hits and misses).

The wrappers are instance attributes set on entering ``profile_run()`` and removed on leaving
it; outside a profiled run they only pass calls through.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook

from fast_langgraph.profiler._report import ProfileReport, build_report

_ACTIVE: ContextVar[Any] = ContextVar("fast_langgraph_profiler", default=None)
register_configure_hook(_ACTIVE, inheritable=True)

_CHECKPOINT_OPS = ("put", "put_writes", "get_tuple")


class _Recorder(BaseCallbackHandler):
    """The callback half of the profiler. Thread-safe; called inline (no executor hop)."""

    run_inline = True
    raise_error = False

    def __init__(self, profiler: GraphProfiler) -> None:
        self._p = profiler

    # -- chains (the graph run and its node tasks) -------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        now = time.perf_counter()
        if name is None and serialized:
            name = serialized.get("name")
        self._p._start(run_id, parent_run_id, "chain", name, metadata, now)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._p._end(run_id, time.perf_counter(), None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._p._end(run_id, time.perf_counter(), type(error).__name__)

    # -- models and tools ---------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._p._start(run_id, parent_run_id, "llm", name, metadata, time.perf_counter())

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._p._start(run_id, parent_run_id, "llm", name, metadata, time.perf_counter())

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        now = time.perf_counter()
        self._p._end(run_id, now, None, tokens=_token_usage(response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._p._end(run_id, time.perf_counter(), type(error).__name__)

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if name is None and serialized:
            name = serialized.get("name")
        self._p._start(run_id, parent_run_id, "tool", name, metadata, time.perf_counter())

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._p._end(run_id, time.perf_counter(), None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._p._end(run_id, time.perf_counter(), type(error).__name__)


def _token_usage(response: Any) -> tuple[int, int] | None:
    """(input, output) tokens from an LLMResult, where the model reported them."""
    found = False
    inp = out = 0
    for gens in getattr(response, "generations", None) or []:
        for gen in gens:
            usage = getattr(getattr(gen, "message", None), "usage_metadata", None)
            if usage:
                found = True
                inp += int(usage.get("input_tokens", 0) or 0)
                out += int(usage.get("output_tokens", 0) or 0)
    if found:
        return inp, out
    usage = (getattr(response, "llm_output", None) or {}).get("token_usage") or {}
    if usage:
        return int(usage.get("prompt_tokens", 0) or 0), int(usage.get("completion_tokens", 0) or 0)
    return None


class _CountingSerde:
    """Wraps a checkpointer's serializer and counts the bytes ``dumps_typed`` returns."""

    def __init__(self, inner: Any, profiler: GraphProfiler) -> None:
        self._inner = inner
        self._p = profiler

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        type_, data = self._inner.dumps_typed(obj)
        self._p._add_bytes(len(data))
        return type_, data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class GraphProfiler:
    """Profiles runs of one compiled LangGraph graph (sync or async).

    ``with profiler.profile_run(): graph.invoke(...)`` records every invoke inside the block;
    ``report()`` returns a :class:`ProfileReport`, ``print_report()`` prints it, and
    ``export(path)`` writes JSON (``.json``) or a self-contained HTML page (``.html``).

    ``watch`` takes extra caches to count hits and misses of during a run: ``@cached``
    functions, ``FastLLMCache``, ``RustLLMCache`` or anything with ``cache_info()`` or
    ``stats()``. The global LangChain LLM cache is watched when it reports statistics.
    """

    def __init__(self, graph: Any, *, watch: Any = ()) -> None:
        from langgraph.pregel import Pregel

        if not isinstance(graph, Pregel):
            raise TypeError(
                f"GraphProfiler needs a compiled LangGraph graph, got {type(graph).__name__}"
                + (" (call .compile() on the StateGraph)" if hasattr(graph, "compile") else "")
            )
        self.graph = graph
        self.watch = list(watch)
        self._lock = threading.Lock()
        self._depth = 0
        self._patched: list[tuple[Any, str, Any, bool]] = []
        self.reset()

    # -- recording ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forgets everything recorded so far."""
        with self._lock:
            self._runs: dict[UUID, dict[str, Any]] = {}
            self._roots: list[UUID] = []
            self._ckpt: list[tuple[str, float, float]] = []
            self._bytes = 0
            self._node_cache = [0, 0]  # hits, misses
            self._watched: dict[str, list[int]] = {}
            self._wall = 0.0
            self._t0: float | None = None
            self._async_ops: dict[str, int] = {}

    def _start(
        self,
        run_id: UUID,
        parent: UUID | None,
        kind: str,
        name: str | None,
        metadata: dict[str, Any] | None,
        now: float,
    ) -> None:
        meta = metadata or {}
        rec = {
            "kind": kind,
            "name": name or "?",
            "parent": parent,
            "start": now,
            "end": None,
            "step": meta.get("langgraph_step"),
            "node": meta.get("langgraph_node"),
            "thread": threading.get_ident(),
            "error": None,
            "tokens": None,
        }
        with self._lock:
            self._runs[run_id] = rec
            if parent is None and kind == "chain":
                self._roots.append(run_id)

    def _end(self, run_id: UUID, now: float, error: str | None, tokens: Any = None) -> None:
        with self._lock:
            rec = self._runs.get(run_id)
            if rec is not None:
                rec["end"] = now
                rec["error"] = error
                rec["tokens"] = tokens

    def _add_bytes(self, n: int) -> None:
        with self._lock:
            self._bytes += n

    def _record_ckpt(self, op: str, start: float, end: float) -> None:
        with self._lock:
            self._ckpt.append((op, start, end))

    # -- wrappers -----------------------------------------------------------------------------

    def _set(self, obj: Any, attr: str, value: Any) -> None:
        had = attr in getattr(obj, "__dict__", {})
        self._patched.append((obj, attr, obj.__dict__.get(attr), had))
        setattr(obj, attr, value)

    def _wrap_sync(self, op: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # A sync call made while the async twin of the same op runs is that twin's
            # own work on a thread: it is timed once, by the async wrapper.
            if self._async_ops.get(op):
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._record_ckpt(op, t0, time.perf_counter())

        return wrapper

    def _wrap_async(self, op: str, fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self._async_ops[op] = self._async_ops.get(op, 0) + 1
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self._record_ckpt(op, t0, time.perf_counter())
                with self._lock:
                    self._async_ops[op] -= 1

        return wrapper

    def _attach(self) -> None:
        from langgraph.checkpoint.base import BaseCheckpointSaver

        saver = self.graph.checkpointer
        if isinstance(saver, BaseCheckpointSaver):
            for op in _CHECKPOINT_OPS:
                self._set(saver, op, self._wrap_sync(op, getattr(saver, op)))
                self._set(saver, "a" + op, self._wrap_async(op, getattr(saver, "a" + op)))
            if getattr(saver, "serde", None) is not None:
                self._set(saver, "serde", _CountingSerde(saver.serde, self))
        cache = getattr(self.graph, "cache", None)
        if cache is not None and hasattr(cache, "get"):
            counts = self._node_cache

            def count(keys: Any, found: dict) -> dict:
                with self._lock:
                    counts[0] += len(found)
                    counts[1] += len(keys) - len(found)
                return found

            get, aget = cache.get, cache.aget
            self._set(cache, "get", lambda keys: count(keys, get(keys)))

            async def counted_aget(keys: Any) -> dict:
                return count(keys, await aget(keys))

            self._set(cache, "aget", counted_aget)

    def _detach(self) -> None:
        while self._patched:
            obj, attr, old, had = self._patched.pop()
            if had:
                setattr(obj, attr, old)
            else:
                with contextlib.suppress(AttributeError):
                    delattr(obj, attr)

    def _watched_objects(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for obj in self.watch:
            name = getattr(obj, "__qualname__", None) or type(obj).__name__
            out[name] = obj
        try:
            from langchain_core.globals import get_llm_cache

            llm_cache = get_llm_cache()
        except Exception:  # pragma: no cover - langchain without globals
            llm_cache = None
        if llm_cache is not None and _hits_misses(llm_cache) is not None:
            out.setdefault(f"LLM cache ({type(llm_cache).__name__})", llm_cache)
        return out

    @contextlib.contextmanager
    def profile_run(self) -> Iterator[GraphProfiler]:
        """Records every run of the graph (and every LLM call) made inside the block."""
        with self._lock:
            self._depth += 1
            first = self._depth == 1
        before: dict[str, tuple[int, int]] = {}
        if first:
            self._attach()
            for name, obj in self._watched_objects().items():
                hm = _hits_misses(obj)
                if hm is not None:
                    before[name] = hm
        token = _ACTIVE.set(_Recorder(self))
        t0 = time.perf_counter()
        if self._t0 is None:
            self._t0 = t0
        try:
            yield self
        finally:
            _ACTIVE.reset(token)
            with self._lock:
                self._wall += time.perf_counter() - t0
                self._depth -= 1
                last = self._depth == 0
            if last:
                self._detach()
                for name, obj in self._watched_objects().items():
                    hm = _hits_misses(obj)
                    if hm is not None and name in before:
                        acc = self._watched.setdefault(name, [0, 0])
                        acc[0] += hm[0] - before[name][0]
                        acc[1] += hm[1] - before[name][1]

    # -- results ------------------------------------------------------------------------------

    def report(self) -> ProfileReport:
        """The structured result of everything recorded since creation or ``reset()``."""
        with self._lock:
            runs = {k: dict(v) for k, v in self._runs.items()}
            roots = list(self._roots)
            ckpt = list(self._ckpt)
            caches: dict[str, tuple[int, int]] = {
                "node cache": (self._node_cache[0], self._node_cache[1]),
                **{k: (v[0], v[1]) for k, v in self._watched.items()},
            }
            nbytes = self._bytes
        return build_report(
            graph_name=self.graph.get_name(),
            runs=runs,
            roots=roots,
            checkpoint_calls=ckpt,
            bytes_written=nbytes,
            caches=caches,
            has_node_cache=getattr(self.graph, "cache", None) is not None,
        )

    def print_report(self, file: Any = None) -> None:
        """Prints the report as tables, slowest nodes first."""
        print(self.report().format(), file=file)

    def export(self, path: Any) -> None:
        """Writes the report: JSON for a ``.json`` path, else a self-contained HTML page."""
        self.report().export(path)


def _hits_misses(obj: Any) -> tuple[int, int] | None:
    info = getattr(obj, "cache_info", None)
    if callable(info):
        with contextlib.suppress(Exception):
            ci = info()
            return int(ci.hits), int(ci.misses)
    stats = getattr(obj, "stats", None)
    if callable(stats):
        with contextlib.suppress(Exception):
            st = stats()
            if isinstance(st, dict) and "hits" in st and "misses" in st:
                return int(st["hits"]), int(st["misses"])
    return None
