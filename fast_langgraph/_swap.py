"""The checkpointer half of the shim: ``SqliteSaver`` and ``AsyncSqliteSaver`` give a
``RustSQLiteCheckpointer`` that is still an instance of the class the user asked for.

Where the data lives: a SqliteSaver database file holds SqliteSaver's tables, which the Rust
store does not share a file with. The stand-in keeps its data in a sibling file, the user's
path plus ``.flg`` (``state.db`` -> ``state.db.flg``). The first time that sibling is made, every
thread, checkpoint and pending write already in the SqliteSaver file is imported into it, so
an app that switches on the shim resumes its threads. The user's file is opened read-only and
never modified. ``:memory:`` stays in memory.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from fast_langgraph.checkpoint import RustSQLiteCheckpointer, is_sqlite_saver_file

SIBLING_SUFFIX = ".flg"
_MISSING = object()


def store_path_for(path: str) -> str:
    """The file the stand-in uses for the SqliteSaver database at ``path``."""
    if path in ("", ":memory:"):
        return ":memory:"
    return path + SIBLING_SUFFIX


def _sqlite_conn_path(conn: Any) -> str:
    if not isinstance(conn, sqlite3.Connection):
        raise TypeError(f"SqliteSaver expects a sqlite3.Connection, got {type(conn).__name__}")
    for _seq, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return file or ":memory:"
    return ":memory:"  # pragma: no cover


def _aiosqlite_conn_path(conn: Any) -> str:
    # aiosqlite.connect(database) keeps `database` in the closure of its connector.
    connector = getattr(conn, "_connector", None)
    code = getattr(connector, "__code__", None)
    if code is not None and "database" in code.co_freevars and connector.__closure__:
        database = connector.__closure__[code.co_freevars.index("database")].cell_contents
        if isinstance(database, bytes):
            database = database.decode()
        database = os.fspath(database) if isinstance(database, os.PathLike) else str(database)
        if database.startswith("file:"):
            raise ValueError(
                f"AsyncSqliteSaver stand-in: URI connections are not supported ({database!r})"
            )
        return database
    raise TypeError(
        "AsyncSqliteSaver stand-in: cannot tell which file this aiosqlite connection opens; "
        "use AsyncSqliteSaver.from_conn_string(path) or RustSQLiteCheckpointer(path)"
    )


def _init_store(saver: RustSQLiteCheckpointer, path: str, serde: Any) -> None:
    target = store_path_for(path)
    if target != ":memory:" and not os.path.exists(target) and os.path.exists(path):
        if is_sqlite_saver_file(path):
            _import_whole(path, target, serde)
    RustSQLiteCheckpointer.__init__(saver, target, serde=serde)
    saver.source_path = path  # type: ignore[attr-defined]


def _import_whole(path: str, target: str, serde: Any) -> None:
    """Import the SqliteSaver file into a staging file and move it into place only when the
    import is complete: a crash or an error midway leaves no half-imported `target` behind,
    and the next start imports again."""
    staging = f"{target}.importing-{os.getpid()}"
    files = (staging, staging + "-wal", staging + "-shm")

    def remove_staging() -> None:
        for name in files:
            if os.path.exists(name):
                os.remove(name)

    remove_staging()
    saver = RustSQLiteCheckpointer(staging, serde=serde)
    try:
        saver.import_sqlite_saver(path)
    except BaseException:
        saver.close()
        remove_staging()
        raise
    saver.close()  # closes its connections, which folds the WAL into the file
    os.replace(staging, target)


def _unavailable(name: str) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__}.{name}() is SqliteSaver's own API, which the fast-langgraph "
            "stand-in does not have; use patch_langgraph(checkpointer=False) to keep SqliteSaver"
        )

    method.__name__ = name
    return method


def _stand_in(base: type, init: Any, extra: dict[str, Any]) -> type:
    ns: dict[str, Any] = {"__init__": init, "__module__": __name__, **extra}
    # SqliteSaver methods that RustSQLiteCheckpointer does not define would come next in the
    # MRO and talk to SqliteSaver's tables: use the generic base version, or refuse.
    for name in base.__dict__:
        if name.startswith("__") or name in ns or name in RustSQLiteCheckpointer.__dict__:
            continue
        if not callable(base.__dict__[name]) and not isinstance(
            base.__dict__[name], (classmethod, staticmethod)
        ):
            continue
        generic = getattr(BaseCheckpointSaver, name, _MISSING)
        ns[name] = generic if generic is not _MISSING else _unavailable(name)
    return type(f"Rust{base.__name__}", (RustSQLiteCheckpointer, base), ns)


def install() -> tuple[dict[type, dict[str, Any]], list[str], str]:
    """Patch the classes; returns (saved originals per class, targets, reason if none)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    saved: dict[type, dict[str, Any]] = {}
    targets: list[str] = []

    def sync_init(self: Any, conn: sqlite3.Connection, *, serde: Any = None) -> None:
        _init_store(self, _sqlite_conn_path(conn), serde)
        self.conn = conn

    sync_cls = _stand_in(SqliteSaver, sync_init, {})

    @contextmanager
    def sync_from_conn_string(cls: type, conn_string: str) -> Iterator[Any]:
        saver = object.__new__(sync_cls)
        _init_store(saver, conn_string, None)
        try:
            yield saver
        finally:
            saver.close()

    _patch_class(SqliteSaver, sync_cls, classmethod(sync_from_conn_string), saved)
    targets.append("langgraph.checkpoint.sqlite.SqliteSaver")

    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    except ImportError:
        return saved, targets, ""

    def async_init(self: Any, conn: Any, *, serde: Any = None) -> None:
        _init_store(self, _aiosqlite_conn_path(conn), serde)
        self.conn = conn

    async_cls = _stand_in(AsyncSqliteSaver, async_init, {})

    @asynccontextmanager
    async def async_from_conn_string(cls: type, conn_string: str) -> AsyncIterator[Any]:
        saver = object.__new__(async_cls)
        _init_store(saver, conn_string, None)
        try:
            yield saver
        finally:
            saver.close()

    _patch_class(AsyncSqliteSaver, async_cls, classmethod(async_from_conn_string), saved)
    targets.append("langgraph.checkpoint.sqlite.aio.AsyncSqliteSaver")
    return saved, targets, ""


def _patch_class(
    base: type, stand_in: type, from_conn_string: Any, saved: dict[type, dict[str, Any]]
) -> None:
    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        # Python then calls stand_in.__init__, since the result is an instance of `base`.
        return object.__new__(stand_in if cls is base else cls)

    saved[base] = {
        "__new__": base.__dict__.get("__new__", _MISSING),
        "from_conn_string": base.__dict__["from_conn_string"],
        "_flg_swap": base.__dict__.get("_flg_swap", _MISSING),
        "_flg_stand_in": base.__dict__.get("_flg_stand_in", _MISSING),
    }
    base.__new__ = staticmethod(__new__)  # type: ignore[assignment]
    base.from_conn_string = from_conn_string  # type: ignore[attr-defined]
    base._flg_swap = True  # type: ignore[attr-defined]
    base._flg_stand_in = stand_in  # type: ignore[attr-defined]


def uninstall(saved: dict[type, dict[str, Any]]) -> None:
    """Put back what ``install`` replaced."""
    for cls, attrs in saved.items():
        for attr, value in attrs.items():
            if value is _MISSING and attr == "__new__":
                # CPython cannot give a class back its C-level object.__new__ once replaced:
                # deleting ours leaves a slot that passes the constructor arguments to
                # object.__new__, which refuses them. Install the equivalent instead.
                cls.__new__ = staticmethod(_plain_new(cls))  # type: ignore[assignment]
            elif value is _MISSING:
                if attr in cls.__dict__:
                    delattr(cls, attr)
            else:
                setattr(cls, attr, value)


def _plain_new(owner: type) -> Any:
    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        parent_new = super(owner, cls).__new__
        if parent_new is object.__new__:
            return object.__new__(cls)
        return parent_new(cls, *args, **kwargs)  # pragma: no cover - no such base in LangGraph

    return __new__
