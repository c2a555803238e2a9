"""Command line: ``python -m fast_langgraph profile path/to/app.py:graph --input '{...}'``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fast_langgraph")
    sub = p.add_subparsers(dest="command", required=True)
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
    prof.add_argument("--html", metavar="PATH", help="write the report as an HTML page")
    prof.add_argument("--json", metavar="PATH", help="write the report as JSON")
    return p


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from fast_langgraph.profiler import CompareError, GraphProfiler, TargetError, compare
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
    if args.runs < 1:
        return _fail("--runs must be at least 1")
    try:
        split_target(args.target)
        if args.compare:
            # Check the target here first, so a wrong path fails fast and plainly.
            resolve(args.target)
            result = compare(args.target, inputs, runs=args.runs)
            print(result.format())
            report: Any = result
        else:
            _, graph = resolve(args.target)
            profiler = GraphProfiler(graph)
            config: dict[str, Any] = {}
            if graph.checkpointer is not None:
                config = {"configurable": {"thread_id": "fast-langgraph-profile"}}
            with profiler.profile_run():
                for inp in inputs:
                    graph.invoke(inp, config)
            report = profiler.report()
            print(report.format())
    except TargetError as e:
        return _fail(str(e))
    except CompareError as e:
        return _fail(str(e))
    for path in (args.html, args.json):
        if path:
            report.export(path)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
