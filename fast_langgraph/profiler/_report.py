"""Turns what GraphProfiler recorded into a ProfileReport: tables, supersteps, a timeline."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

# Runs LangGraph makes for its own bookkeeping rather than for a user's node.
_FRAMEWORK_NODES = {"__start__", "__end__"}


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (as numpy's default)."""
    if not values:
        return 0.0
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _length(intervals: list[tuple[float, float]]) -> float:
    return sum(b - a for a, b in intervals)


def _minus(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Length of the union `a` outside the union `b`."""
    inter = 0.0
    for x0, x1 in a:
        for y0, y1 in b:
            lo, hi = max(x0, y0), min(x1, y1)
            if hi > lo:
                inter += hi - lo
    return _length(a) - inter


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


@dataclasses.dataclass
class NodeStats:
    name: str
    count: int
    total_s: float
    mean_s: float
    p50_s: float
    p95_s: float
    llm_calls: int
    errors: int


@dataclasses.dataclass
class StepStats:
    invoke: int
    step: int
    start_s: float  # from the start of its invoke
    duration_s: float  # first task start to last task end
    tasks: int
    parallel: int  # the most tasks running at the same moment
    nodes: list[str]


@dataclasses.dataclass
class ProfileReport:
    """What a profiled run recorded. Times in seconds; ``to_dict()`` gives plain JSON types.

    ``overhead_s`` is the framework overhead: wall time of the invokes minus the time during
    which at least one node was running (``in_nodes_s``). ``checkpoint_outside_nodes_s`` is
    the part of it spent in checkpoint calls; ``other_overhead_s`` the rest (LangGraph's
    loop, channel updates, reducers, callbacks).
    """

    graph: str
    invokes: int
    total_s: float
    in_nodes_s: float
    overhead_s: float
    checkpoint_outside_nodes_s: float
    other_overhead_s: float
    node_time_sum_s: float
    nodes: list[NodeStats]
    steps: list[StepStats]
    checkpoint: dict[str, dict[str, float]]
    checkpoint_bytes: int
    caches: dict[str, dict[str, int]]
    llm: dict[str, Any]
    tools: dict[str, Any]
    timeline: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileReport:
        d = dict(d)
        d["nodes"] = [NodeStats(**n) for n in d["nodes"]]
        d["steps"] = [StepStats(**s) for s in d["steps"]]
        return cls(**d)

    def per_invoke(self) -> dict[str, float]:
        """Seconds per invoke in each phase: total, nodes, checkpointing, other."""
        n = max(self.invokes, 1)
        return {
            "total": self.total_s / n,
            "nodes": self.in_nodes_s / n,
            "checkpointing": self.checkpoint_outside_nodes_s / n,
            "other": self.other_overhead_s / n,
        }

    def format(self) -> str:
        return format_report(self)

    def export(self, path: Any) -> None:
        """JSON for a ``.json`` path, else a self-contained HTML page."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=2))
        else:
            path.write_text(html_renderer(self))


def _no_renderer(report: Any) -> str:  # pragma: no cover - _html registers itself on import
    raise RuntimeError("import fast_langgraph.profiler to render HTML reports")


# The HTML renderer, registered by ``_html`` (which imports this module, not the reverse): the
# report model does not depend on its renderer. ``fast_langgraph.profiler`` imports both.
html_renderer: Any = _no_renderer
compare_html_renderer: Any = _no_renderer


def build_report(
    *,
    graph_name: str,
    runs: dict[Any, dict[str, Any]],
    roots: list[Any],
    checkpoint_calls: list[tuple[str, float, float]],
    bytes_written: int,
    caches: dict[str, tuple[int, int]],
    has_node_cache: bool,
) -> ProfileReport:
    children: dict[Any, list[Any]] = {}
    for rid, r in runs.items():
        children.setdefault(r["parent"], []).append(rid)

    def is_node(rid: Any) -> bool:
        r = runs[rid]
        return r["kind"] == "chain" and r["node"] is not None and r["node"] == r["name"]

    invokes = [
        rid
        for rid in roots
        if runs[rid]["end"] is not None
        and (runs[rid]["name"] == graph_name or any(is_node(c) for c in children.get(rid, [])))
    ]
    root_of_node: dict[Any, Any] = {}
    node_durations: dict[str, list[float]] = {}
    node_errors: dict[str, int] = {}
    node_llm: dict[str, int] = {}
    steps: list[StepStats] = []
    timeline: list[dict[str, Any]] = []
    total = in_nodes = ck_outside = node_sum = 0.0

    for i, root in enumerate(invokes):
        r0 = runs[root]
        start, end = r0["start"], r0["end"]
        spans = []
        for c in children.get(root, []):
            if not is_node(c) or runs[c]["end"] is None or runs[c]["name"] in _FRAMEWORK_NODES:
                continue
            r = runs[c]
            root_of_node[c] = root
            d = r["end"] - r["start"]
            node_durations.setdefault(r["name"], []).append(d)
            if r["error"]:
                node_errors[r["name"]] = node_errors.get(r["name"], 0) + 1
            spans.append(
                {
                    "node": r["name"],
                    "step": r["step"] if r["step"] is not None else -1,
                    "start": r["start"],
                    "end": r["end"],
                    "error": r["error"],
                    "run": c,
                }
            )
        node_union = _union([(s["start"], s["end"]) for s in spans])
        ck = [(op, a, b) for op, a, b in checkpoint_calls if a >= start and b <= end]
        ck_union = _union([(a, b) for _, a, b in ck])
        total += end - start
        in_nodes += _length(node_union)
        ck_outside += _minus(ck_union, node_union)
        node_sum += sum(s["end"] - s["start"] for s in spans)

        by_step: dict[int, list[dict[str, Any]]] = {}
        for s in spans:
            by_step.setdefault(s["step"], []).append(s)
        lanes = []
        for step in sorted(by_step):
            ss = sorted(by_step[step], key=lambda s: s["start"])
            ivs = [(s["start"], s["end"]) for s in ss]
            slot_ends: list[float] = []
            for s in ss:  # greedy packing: overlapping tasks get their own row in the lane
                for k, e in enumerate(slot_ends):
                    if s["start"] >= e:
                        slot_ends[k] = s["end"]
                        s["slot"] = k
                        break
                else:
                    s["slot"] = len(slot_ends)
                    slot_ends.append(s["end"])
            lo = min(a for a, _ in ivs)
            hi = max(b for _, b in ivs)
            steps.append(
                StepStats(
                    invoke=i,
                    step=step,
                    start_s=lo - start,
                    duration_s=hi - lo,
                    tasks=len(ss),
                    parallel=_max_overlap(ivs),
                    nodes=[s["node"] for s in ss],
                )
            )
            lanes.append(
                {
                    "step": step,
                    "rows": len(slot_ends),
                    "bars": [
                        {
                            "node": s["node"],
                            "start": s["start"] - start,
                            "end": s["end"] - start,
                            "slot": s["slot"],
                            "error": s["error"],
                        }
                        for s in ss
                    ],
                }
            )
        timeline.append(
            {
                "invoke": i,
                "duration": end - start,
                "lanes": lanes,
                "checkpoint": [{"op": op, "start": a - start, "end": b - start} for op, a, b in ck],
            }
        )

    # LLM and tool calls, attributed to the node they ran in.
    llm_calls = llm_time = 0.0
    tok_in = tok_out = 0
    reported = 0
    tool_calls = 0
    tool_time = 0.0
    for rid, r in runs.items():
        if r["end"] is None or r["kind"] not in ("llm", "tool"):
            continue
        if r["kind"] == "tool":
            tool_calls += 1
            tool_time += r["end"] - r["start"]
            continue
        llm_calls += 1
        llm_time += r["end"] - r["start"]
        if r["tokens"]:
            reported += 1
            tok_in += r["tokens"][0]
            tok_out += r["tokens"][1]
        p = rid
        while p is not None and p not in root_of_node:
            p = runs[p]["parent"] if p in runs else None
        if p is not None:
            name = runs[p]["name"]
            node_llm[name] = node_llm.get(name, 0) + 1

    nodes = [
        NodeStats(
            name=name,
            count=len(ds),
            total_s=sum(ds),
            mean_s=sum(ds) / len(ds),
            p50_s=percentile(ds, 0.5),
            p95_s=percentile(ds, 0.95),
            llm_calls=node_llm.get(name, 0),
            errors=node_errors.get(name, 0),
        )
        for name, ds in node_durations.items()
    ]
    nodes.sort(key=lambda n: n.total_s, reverse=True)

    checkpoint: dict[str, dict[str, float]] = {}
    for op in ("put", "put_writes", "get_tuple"):
        ds = [b - a for o, a, b in checkpoint_calls if o == op]
        checkpoint[op] = {
            "count": len(ds),
            "total_s": sum(ds),
            "mean_s": sum(ds) / len(ds) if ds else 0.0,
        }
    cache_out = {
        name: {"hits": h, "misses": m}
        for name, (h, m) in caches.items()
        if name != "node cache" or has_node_cache
    }
    overhead = total - in_nodes
    return ProfileReport(
        graph=graph_name,
        invokes=len(invokes),
        total_s=total,
        in_nodes_s=in_nodes,
        overhead_s=overhead,
        checkpoint_outside_nodes_s=ck_outside,
        other_overhead_s=overhead - ck_outside,
        node_time_sum_s=node_sum,
        nodes=nodes,
        steps=steps,
        checkpoint=checkpoint,
        checkpoint_bytes=bytes_written,
        caches=cache_out,
        llm={
            "calls": int(llm_calls),
            "total_s": llm_time,
            "input_tokens": tok_in,
            "output_tokens": tok_out,
            "calls_with_usage": reported,
        },
        tools={"calls": tool_calls, "total_s": tool_time},
        timeline=timeline,
    )


def ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


def format_report(r: ProfileReport) -> str:
    n = max(r.invokes, 1)
    lines = [
        f"graph {r.graph!r}: {r.invokes} invoke(s), {ms(r.total_s / n)} ms per invoke",
        f"  in nodes {ms(r.in_nodes_s / n)} ms, framework overhead {ms(r.overhead_s / n)} ms "
        f"(checkpointing {ms(r.checkpoint_outside_nodes_s / n)} ms, "
        f"other {ms(r.other_overhead_s / n)} ms)",
        "",
        f"  {'node':<24} {'count':>6} {'total ms':>10} {'mean ms':>9} {'p50 ms':>9} "
        f"{'p95 ms':>9} {'llm':>5}",
    ]
    for nd in r.nodes:
        lines.append(
            f"  {nd.name[:24]:<24} {nd.count:>6} {ms(nd.total_s):>10} {ms(nd.mean_s):>9} "
            f"{ms(nd.p50_s):>9} {ms(nd.p95_s):>9} {nd.llm_calls:>5}"
        )
    if r.steps:
        per_inv: dict[int, int] = {}
        for s in r.steps:
            per_inv[s.invoke] = per_inv.get(s.invoke, 0) + 1
        widest = max(r.steps, key=lambda s: s.parallel)
        lines += [
            "",
            f"  supersteps: {len(r.steps)} ({len(r.steps) / n:.1f} per invoke); widest: "
            f"{widest.parallel} tasks at once (step {widest.step}: "
            f"{', '.join(sorted(set(widest.nodes)))})",
        ]
    ck = r.checkpoint
    if any(v["count"] for v in ck.values()):
        lines += ["", f"  {'checkpoint':<24} {'count':>6} {'total ms':>10} {'mean ms':>9}"]
        for op, v in ck.items():
            lines.append(
                f"  {op:<24} {int(v['count']):>6} {ms(v['total_s']):>10} {ms(v['mean_s']):>9}"
            )
        lines.append(f"  bytes serialized for checkpoints: {r.checkpoint_bytes:,}")
    if r.caches:
        lines.append("")
        for name, c in r.caches.items():
            lines.append(f"  cache {name}: {c['hits']} hits, {c['misses']} misses")
    if r.llm["calls"]:
        tok = (
            f", {r.llm['input_tokens']:,} input / {r.llm['output_tokens']:,} output tokens"
            if r.llm["calls_with_usage"]
            else ", no token counts reported"
        )
        lines += ["", f"  LLM calls: {r.llm['calls']} ({ms(r.llm['total_s'])} ms){tok}"]
    if r.tools["calls"]:
        lines.append(f"  tool calls: {r.tools['calls']} ({ms(r.tools['total_s'])} ms)")
    return "\n".join(lines)
