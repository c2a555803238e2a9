"""The child process of ``compare()``: loads the graph stock or accelerated and runs rounds.

Run as ``python -m fast_langgraph.profiler._runner MODE SPEC`` where MODE is ``stock`` or
``accelerated`` and SPEC a pickle of ``{"target", "inputs", "config", "workdir"}``. It reads
commands from stdin, one per line (``round K``, ``profile``, ``quit``), and answers each with
one line of JSON on its original stdout. Anything the app prints goes to stderr.
"""

from __future__ import annotations

import datetime
import enum
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import pickle
import re
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
ADDR_RE = re.compile(r"0x[0-9a-fA-F]{6,}")
TIME_KEYS = {"created_at", "updated_at", "timestamp"}


def normalize(x: Any) -> Any:
    """A JSON-able form of a graph output in which run-specific values are replaced:
    uuids (anywhere in a string: message ids such as ``lc_run--<uuid>``) by ``<uuid>``,
    ISO-8601 timestamps and datetimes by ``<timestamp>``, the values of keys named
    ``created_at``, ``updated_at`` and ``timestamp`` by ``<timestamp>``, and memory
    addresses in reprs by ``<addr>``. Everything else is kept."""
    from pydantic import BaseModel

    if x is None or isinstance(x, (bool, int, float)):
        return x
    if isinstance(x, str):
        return TS_RE.sub("<timestamp>", UUID_RE.sub("<uuid>", x))
    if isinstance(x, uuid.UUID):
        return "<uuid>"
    if isinstance(x, (datetime.datetime, datetime.date, datetime.time)):
        return "<timestamp>"
    if isinstance(x, enum.Enum):
        return f"{type(x).__name__}.{x.name}"
    if isinstance(x, dict):
        return {
            str(k): "<timestamp>" if k in TIME_KEYS and v is not None else normalize(v)
            for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))
        }
    if isinstance(x, (list, tuple)):
        return [normalize(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted((normalize(v) for v in x), key=repr)
    if isinstance(x, BaseModel):
        return {"__type__": type(x).__name__, **normalize(x.model_dump())}
    if hasattr(x, "__dataclass_fields__"):
        import dataclasses

        return {
            "__type__": type(x).__name__,
            **normalize({f.name: getattr(x, f.name) for f in dataclasses.fields(x)}),
        }
    return ADDR_RE.sub("<addr>", normalize(repr(x)))


def _stock_cached(func: Any = None, /, **_: Any) -> Any:
    """Stands in for ``fast_langgraph.cached`` in the stock run: the function runs every time
    (stock LangGraph has no cache for functions of message lists)."""

    def decorate(f: Any) -> Any:
        if inspect.iscoroutinefunction(f):

            @functools.wraps(f)
            async def wrapper(*a: Any, **k: Any) -> Any:
                return await f(*a, **k)
        else:

            @functools.wraps(f)
            def wrapper(*a: Any, **k: Any) -> Any:
                return f(*a, **k)

        wrapper.cache_clear = lambda: None  # type: ignore[attr-defined]
        wrapper.__flg_stock_cached__ = True  # type: ignore[attr-defined]
        return wrapper

    return decorate(func) if func is not None else decorate


def _copy_sqlite_saver_file(saver: Any, target: Path) -> bool:
    """Copy the database of a SqliteSaver to ``target`` with SQLite's backup API, reading it
    through a read-only connection; False if there is no file to copy."""
    import sqlite3

    conn = getattr(saver, "conn", None)
    if not isinstance(conn, sqlite3.Connection):
        return False
    try:
        rows = conn.execute("PRAGMA database_list").fetchall()
    except sqlite3.Error:
        return False
    path = next((file for _seq, name, file in rows if name == "main"), "")
    if not path or not os.path.isfile(path):
        return False
    src = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return True


class Runner:
    def __init__(self, mode: str, spec: dict[str, Any]) -> None:
        self.mode = mode
        self.spec = spec
        self.workdir = Path(spec["workdir"])
        self.setup: list[str] = []
        self.cached_functions: list[Any] = []

    # -- setting the graph up ------------------------------------------------------------------

    def load(self) -> None:
        import fast_langgraph
        import fast_langgraph.cache
        from fast_langgraph.profiler._load import resolve

        if self.mode == "stock":
            fast_langgraph.cached = _stock_cached
            fast_langgraph.cache.cached = _stock_cached
            shim = sys.modules.get("fast_langgraph.shim")
            if shim is not None and any(
                v.get("active")
                for k, v in shim.status().items()
                if isinstance(v, dict) and "active" in v
            ):
                raise RuntimeError(
                    "the stock process is patched (is FAST_LANGGRAPH_AUTO_PATCH set?)"
                )
            self.setup.append("fast_langgraph.shim: not patched")
        else:
            # The shim's own table of what it accelerates: every patch it applied is listed.
            shim = importlib.import_module("fast_langgraph.shim")
            report = shim.patch_langgraph()
            self.setup.append("fast_langgraph.shim.patch_langgraph()")
            for name in report.applied:
                self.setup.append(f"shim: {name}")

        self.module, self.graph = resolve(self.spec["target"])
        self._swap_checkpointer()
        self._swap_caches()
        for name, obj in sorted(vars(self.module).items()):
            if getattr(obj, "__flg_stock_cached__", False):
                self.setup.append(f"@cached {name}: disabled, runs on every call (stock)")
                self.cached_functions.append(obj)
            elif (
                callable(getattr(obj, "cache_info", None))
                and callable(getattr(obj, "cache_clear", None))
                and type(obj).__module__.startswith("fast_langgraph")
            ):
                self.setup.append(f"@cached {name}: fast-langgraph cache, cleared every round")
                self.cached_functions.append(obj)

    def _swap_checkpointer(self) -> None:
        """Both sides run on copies in the work directory, never on the app's own database:
        a SqliteSaver file is copied (SQLite's backup, from a read-only connection); a
        RustSQLiteCheckpointer gets a new file. The stock side gets stock SqliteSaver, the
        accelerated side what the shim makes of SqliteSaver (or RustSQLiteCheckpointer when the
        app chose it)."""
        from langgraph.checkpoint.sqlite import SqliteSaver

        from fast_langgraph import RustSQLiteCheckpointer

        saver = self.graph.checkpointer
        if not isinstance(saver, (SqliteSaver, RustSQLiteCheckpointer)):
            if saver is not None and saver is not False:
                self.setup.append(f"checkpointer: {type(saver).__name__}, as the app built it")
            return
        built = (
            "RustSQLiteCheckpointer" if isinstance(saver, RustSQLiteCheckpointer) else "SqliteSaver"
        )
        target = self.workdir / f"{self.mode}.db"
        copied = _copy_sqlite_saver_file(saver, target)
        where = "a copy of the app's database" if copied else "a new file"
        if self.mode == "accelerated" and isinstance(saver, RustSQLiteCheckpointer):
            self.graph.checkpointer = RustSQLiteCheckpointer(target, serde=saver.serde)
            self.setup.append(f"checkpointer: RustSQLiteCheckpointer on {where}")
            return
        import sqlite3

        conn = sqlite3.connect(str(target), check_same_thread=False)
        # In the accelerated process the shim is patched: this is its in-place SqliteSaver.
        self.graph.checkpointer = SqliteSaver(conn, serde=saver.serde)
        kind = type(self.graph.checkpointer).__name__
        self.setup.append(f"checkpointer: {kind} on {where} (the app built {built})")

    def _swap_caches(self) -> None:
        from langchain_core.caches import InMemoryCache as LCInMemoryCache
        from langchain_core.globals import get_llm_cache, set_llm_cache
        from langgraph.cache.memory import InMemoryCache

        from fast_langgraph import FastLLMCache, FastNodeCache

        cache = getattr(self.graph, "cache", None)
        if self.mode == "stock" and isinstance(cache, FastNodeCache):
            self.graph.cache = InMemoryCache()
            self.setup.append("node cache: LangGraph's InMemoryCache (the app built FastNodeCache)")
        elif self.mode == "accelerated" and isinstance(cache, InMemoryCache):
            self.graph.cache = FastNodeCache()
            self.setup.append("node cache: FastNodeCache (the app built InMemoryCache)")
        elif cache is not None:
            self.setup.append(f"node cache: {type(cache).__name__}, as the app built it")
        llm_cache = get_llm_cache()
        if self.mode == "stock" and isinstance(llm_cache, FastLLMCache):
            set_llm_cache(LCInMemoryCache())
            self.setup.append("LLM cache: LangChain's InMemoryCache (the app set FastLLMCache)")
        elif self.mode == "accelerated" and isinstance(llm_cache, LCInMemoryCache):
            set_llm_cache(FastLLMCache())
            self.setup.append("LLM cache: FastLLMCache (the app set InMemoryCache)")

    # -- running -------------------------------------------------------------------------------

    def _clear_caches(self) -> None:
        from langchain_core.globals import get_llm_cache

        for f in self.cached_functions:
            f.cache_clear()
        if getattr(self.graph, "cache", None) is not None:
            self.graph.cache.clear()
        llm_cache = get_llm_cache()
        if llm_cache is not None:
            llm_cache.clear()

    def run_round(self, k: int, *, want_outputs: bool) -> dict[str, Any]:
        inputs = pickle.loads(self.spec["inputs"])  # fresh objects: add_messages sets ids on them
        self._clear_caches()
        config = dict(self.spec.get("config") or {})
        if self.graph.checkpointer is not None:
            configurable = dict(config.get("configurable") or {})
            configurable["thread_id"] = f"compare-{self.mode}-{k}"
            config["configurable"] = configurable
        times, outputs = [], []
        for inp in inputs:
            t0 = time.perf_counter()
            out = self.graph.invoke(inp, config)
            times.append(time.perf_counter() - t0)
            outputs.append(normalize(out))
        blob = json.dumps(outputs, sort_keys=True)
        reply: dict[str, Any] = {
            "times": times,
            "digest": hashlib.sha256(blob.encode()).hexdigest(),
        }
        if want_outputs:
            reply["outputs"] = outputs
        return reply

    def profile(self, k: int) -> dict[str, Any]:
        from fast_langgraph.profiler import GraphProfiler

        watch = [f for f in self.cached_functions if not getattr(f, "__flg_stock_cached__", False)]
        profiler = GraphProfiler(self.graph, watch=watch)
        with profiler.profile_run():
            self.run_round(k, want_outputs=False)
        return {"report": profiler.report().to_dict()}


def main() -> None:
    mode, spec_path = sys.argv[1], sys.argv[2]
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the app's prints go to stderr, the protocol keeps stdout
    sys.stdout = sys.stderr

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        spec = pickle.loads(Path(spec_path).read_bytes())
        runner = Runner(mode, spec)
        runner.load()
        send({"ready": True, "setup": runner.setup})
        for line in sys.stdin:
            cmd = line.split()
            if not cmd or cmd[0] == "quit":
                break
            if cmd[0] == "round":
                k = int(cmd[1])
                send(runner.run_round(k, want_outputs=k == 0))
            elif cmd[0] == "profile":
                send(runner.profile(int(cmd[1])))
    except BaseException as e:  # report anything, including the app's own errors
        from fast_langgraph.profiler._load import TargetError

        msg = str(e) if isinstance(e, TargetError) else traceback.format_exc()
        send({"error": msg, "kind": type(e).__name__})
        sys.exit(1)


if __name__ == "__main__":
    main()
