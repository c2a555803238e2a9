"""Command line: ``python -m fast_langgraph profile path/to/app.py:graph --input '{...}'``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit status 2, as every other error."""

    def error(self, message: str) -> Any:
        self.exit(2, f"error: {message} (see python -m fast_langgraph profile --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m fast_langgraph")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    prof = sub.add_parser(
        "profile",
        help="profile a compiled graph; with --compare, stock against accelerated",
        description="Runs a compiled LangGraph graph on the given inputs and reports where the "
        "time goes. TARGET is path/to/app.py:graph or package.module:graph; the attribute "
        "is a compiled graph or a function of no arguments returning one.",
    )
    prof.add_argument("target")
    prof.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="JSON",
        help="a graph input as JSON; repeat for a multi-turn conversation on one thread",
    )
    prof.add_argument(
        "--compare",
        action="store_true",
        help="also run it stock and accelerated in separate processes",
    )
    prof.add_argument("--runs", type=int, default=5, help="timed rounds for --compare (5)")
    prof.add_argument(
        "--config",
        metavar="JSON",
        help='the graph\'s config as JSON, e.g. \'{"configurable": {"user": "u1"}}\' '
        "(a thread id is added when the graph has a checkpointer)",
    )
    prof.add_argument(
        "--use-app-database",
        action="store_true",
        help="without --compare: checkpoint into the app's own database instead of a copy "
        "in a temporary directory",
    )
    prof.add_argument("--html", metavar="PATH", help="write the report as an HTML page")
    prof.add_argument("--json", metavar="PATH", help="write the report as JSON")
    return p


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except Exception as e:  # the app's own errors too: one line, status 2
        text = str(e).strip().splitlines()
        return _fail(f"{type(e).__name__}: {text[-1] if text else ''}".rstrip(": "))


def _main(args: argparse.Namespace) -> int:
    from fast_langgraph.profiler import CompareError, TargetError, compare
    from fast_langgraph.profiler._load import resolve, split_target

    inputs: list[Any] = []
    for i, text in enumerate(args.input, 1):
        try:
            inputs.append(json.loads(text))
        except json.JSONDecodeError as e:
            return _fail(
                f"--input #{i} is not valid JSON ({e.msg} at line {e.lineno} column "
                f"{e.colno}): {text[:80]!r}"
            )
    config: dict[str, Any] = {}
    if args.config is not None:
        try:
            config = json.loads(args.config)
        except json.JSONDecodeError as e:
            return _fail(f"--config is not valid JSON ({e.msg}): {args.config[:80]!r}")
        if not isinstance(config, dict):
            return _fail(f"--config must be a JSON object, got {args.config[:80]!r}")
    if args.runs < 1:
        return _fail("--runs must be at least 1")
    try:
        split_target(args.target)
        if args.compare:
            # Check the target here first, so a wrong path fails fast and plainly.
            resolve(args.target)
            result = compare(args.target, inputs, runs=args.runs, config=config or None)
            print(result.format())
            report: Any = result
        else:
            _, graph = resolve(args.target)
            report = _profile(graph, inputs, config, use_app_database=args.use_app_database)
            print(report.format())
    except TargetError as e:
        return _fail(str(e))
    except CompareError as e:
        lines = str(e).strip().splitlines()
        return _fail(lines[0] + (f" ... {lines[-1].strip()}" if len(lines) > 1 else ""))
    for path in (args.html, args.json):
        if path:
            report.export(path)
            print(f"wrote {path}")
    return 0


def _profile(
    graph: Any, inputs: list[Any], config: dict[str, Any], *, use_app_database: bool
) -> Any:
    """Profile in this process. Unless ``use_app_database``, the graph's SqliteSaver or
    RustSQLiteCheckpointer is replaced for the run by one on a copy in a temporary directory
    (removed after), so the app's database is never written."""
    import tempfile

    from fast_langgraph.profiler import GraphProfiler

    config = dict(config)
    if graph.checkpointer is not None:
        configurable = dict(config.get("configurable") or {})
        configurable.setdefault("thread_id", "fast-langgraph-profile")
        config["configurable"] = configurable
    original = graph.checkpointer
    with tempfile.TemporaryDirectory(prefix="flg-profile-") as tmp:
        copy = None if use_app_database else _checkpointer_copy(original, tmp)
        if copy is not None:
            graph.checkpointer = copy
        try:
            profiler = GraphProfiler(graph)
            with profiler.profile_run():
                for inp in inputs:
                    graph.invoke(inp, config)
            return profiler.report()
        finally:
            graph.checkpointer = original
            if copy is not None:
                _close(copy)


def _checkpointer_copy(saver: Any, directory: str) -> Any:
    import sqlite3
    from pathlib import Path

    from langgraph.checkpoint.sqlite import SqliteSaver

    from fast_langgraph import RustSQLiteCheckpointer
    from fast_langgraph.profiler._runner import _copy_sqlite_saver_file

    target = Path(directory) / "profile.db"
    if isinstance(saver, RustSQLiteCheckpointer):
        return RustSQLiteCheckpointer(target, serde=saver.serde)
    if isinstance(saver, SqliteSaver):
        _copy_sqlite_saver_file(saver, target)
        return type(saver)(sqlite3.connect(str(target), check_same_thread=False), serde=saver.serde)
    return None


def _close(saver: Any) -> None:
    close_store = getattr(saver, "close_store", None)
    if close_store is not None:
        close_store()
    conn = getattr(saver, "conn", None)
    if conn is not None:
        conn.close()
    elif hasattr(saver, "close"):
        saver.close()


if __name__ == "__main__":
    sys.exit(main())
