"""Self-contained HTML for profile reports and comparisons: inline CSS and SVG, no scripts,
no network access."""

from __future__ import annotations

import html
import zlib
from typing import Any

from fast_langgraph.profiler import _report
from fast_langgraph.profiler._report import ProfileReport, ms

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1b1f24;
background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px}h3{font-size:14px;margin:14px 0 4px}
.sub{color:#57606a;margin:0 0 14px}
table{border-collapse:collapse;margin:6px 0 10px}
th,td{padding:3px 10px;border-bottom:1px solid #d0d7de;text-align:right;font-variant-numeric:tabular-nums}
th:first-child,td:first-child{text-align:left}th{background:#f6f8fa;font-weight:600}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:18px}.card span{color:#57606a;font-size:12px}
svg text{font:11px system-ui,sans-serif}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
.speed{font-size:22px;font-weight:700;color:#1a7f37}
.bad{color:#cf222e;font-weight:600}
"""


_PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)


def _color(name: str) -> str:
    """A distinct colour per node name: common agent node names get fixed palette slots in
    order of first use, so the same node has the same colour in every table and timeline."""
    if name not in _COLORS:
        if len(_COLORS) < len(_PALETTE):
            _COLORS[name] = _PALETTE[len(_COLORS)]
        else:
            _COLORS[name] = f"hsl({zlib.crc32(name.encode()) % 360},55%,50%)"
    return _COLORS[name]


_COLORS: dict[str, str] = {}


def _pack(spans: list[dict[str, Any]]) -> int:
    """Gives each span a row ("slot") so that overlapping spans do not hide each other."""
    ends: list[float] = []
    for sp in sorted(spans, key=lambda x: x["start"]):
        for k, e in enumerate(ends):
            if sp["start"] >= e:
                ends[k] = sp["end"]
                sp["slot"] = k
                break
        else:
            sp["slot"] = len(ends)
            ends.append(sp["end"])
    return len(ends)


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _timeline_svg(inv: dict[str, Any], width: int = 1100, span: float | None = None) -> str:
    label_w, row_h, gap, axis_h = 80, 16, 6, 22
    dur = max(span or inv["duration"], 1e-9)
    scale = (width - label_w - 10) / dur
    lanes = inv["lanes"]
    y = axis_h
    parts: list[str] = []
    # Axis with ticks in ms.
    step_ms = _nice_step(dur * 1e3 / 8)
    t = 0.0
    while t <= dur * 1e3 + 1e-9:
        x = label_w + t / 1e3 * scale
        parts.append(f'<line x1="{x:.1f}" y1="14" x2="{x:.1f}" y2="100%" stroke="#eaeef2"/>')
        parts.append(
            f'<text x="{x:.1f}" y="11" text-anchor="middle" fill="#57606a">{t:g} ms</text>'
        )
        t += step_ms
    for lane in lanes:
        h = lane["rows"] * row_h
        parts.append(f'<rect x="0" y="{y - 2}" width="{width}" height="{h + 4}" fill="#f6f8fa"/>')
        parts.append(
            f'<text x="4" y="{y + h / 2 + 4:.1f}" fill="#24292f">step {lane["step"]}</text>'
        )
        for b in lane["bars"]:
            x = label_w + b["start"] * scale
            w = max((b["end"] - b["start"]) * scale, 1.5)
            by = y + b["slot"] * row_h
            stroke = ' stroke="#cf222e" stroke-width="2"' if b["error"] else ""
            title = f"{b['node']}: {ms(b['end'] - b['start'])} ms (step {lane['step']})"
            parts.append(
                f'<g><title>{_esc(title)}</title><rect x="{x:.1f}" y="{by + 1}" width="{w:.1f}" '
                f'height="{row_h - 3}" rx="2" fill="{_color(b["node"])}"{stroke}/>'
            )
            if w > 40:
                parts.append(
                    f'<text x="{x + 3:.1f}" y="{by + row_h - 5}" fill="#fff">'
                    f"{_esc(b['node'])[: int(w / 6.5)]}</text>"
                )
            parts.append("</g>")
        y += h + gap
    if inv["checkpoint"]:
        spans = [dict(c) for c in inv["checkpoint"]]
        rows = _pack(spans)
        parts.append(f'<text x="4" y="{y + 10}" fill="#24292f">checkpoint</text>')
        for c in spans:
            x = label_w + c["start"] * scale
            w = max((c["end"] - c["start"]) * scale, 1.0)
            fill = {"put": "#6e40c9", "put_writes": "#bf8700", "get_tuple": "#0969da"}[c["op"]]
            parts.append(
                f'<rect x="{x:.1f}" y="{y + c["slot"] * 12}" width="{w:.1f}" '
                f'height="10" fill="{fill}">'
                f"<title>{c['op']}: {ms(c['end'] - c['start'])} ms</title></rect>"
            )
        y += rows * 12 + gap
    return (
        f'<svg width="{width}" height="{y + 4}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(parts)
        + "</svg>"
    )


def _nice_step(x: float) -> float:
    for m in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        if m >= x:
            return float(m)
    return 20000.0


_LEGEND = (
    '<p class="legend"><span><i style="background:#6e40c9"></i>put</span>'
    '<span><i style="background:#bf8700"></i>put_writes</span>'
    '<span><i style="background:#0969da"></i>get_tuple</span>'
    "<span>Each bar is a node task, on its superstep's lane; tasks that ran at the same time "
    "are stacked. Hover a bar for its time.</span></p>"
)


def widest_invoke(r: ProfileReport) -> int:
    """The invoke with the most tasks in one superstep (the first such), for the timeline."""
    if not r.steps:
        return 0
    best = max(r.steps, key=lambda st: (st.parallel, st.tasks, -st.invoke))
    return best.invoke


def profile_body(
    r: ProfileReport,
    *,
    max_timelines: int = 4,
    pick: int | None = None,
    span: float | None = None,
) -> str:
    per = r.per_invoke()
    out = ['<div class="cards">']
    for label, v in (
        ("per invoke", per["total"]),
        ("in nodes", per["nodes"]),
        ("checkpointing", per["checkpointing"]),
        ("other framework", per["other"]),
    ):
        out.append(f'<div class="card"><b>{ms(v)} ms</b><span>{label}</span></div>')
    out.append(f'<div class="card"><b>{r.invokes}</b><span>invokes</span></div>')
    out.append(f'<div class="card"><b>{r.llm["calls"]}</b><span>LLM calls</span></div>')
    out.append("</div>")

    if pick is not None and pick < len(r.timeline):
        shown = [r.timeline[pick]]
        title = f"Timeline of invoke {pick + 1} of {r.invokes} (the widest fan-out)"
    else:
        shown = r.timeline[:max_timelines]
        title = f"Timeline (first {len(shown)} of {r.invokes} invokes)"
    out.append(f"<h2>{title}</h2>{_LEGEND}")
    for inv in shown:
        out.append(f"<h3>invoke {inv['invoke'] + 1}: {ms(inv['duration'])} ms</h3>")
        out.append(_timeline_svg(inv, span=span))
    out.append(
        "<h2>Nodes (slowest first)</h2><table><tr><th>node</th><th>count</th>"
        "<th>total ms</th><th>mean ms</th><th>p50 ms</th><th>p95 ms</th>"
        "<th>LLM calls</th></tr>"
    )
    for nd in r.nodes:
        out.append(
            f'<tr><td><i style="display:inline-block;width:10px;height:10px;background:'
            f'{_color(nd.name)};margin-right:6px"></i>{_esc(nd.name)}</td><td>{nd.count}</td>'
            f"<td>{ms(nd.total_s)}</td><td>{ms(nd.mean_s)}</td><td>{ms(nd.p50_s)}</td>"
            f"<td>{ms(nd.p95_s)}</td><td>{nd.llm_calls}</td></tr>"
        )
    out.append("</table>")

    out.append(
        "<h2>Checkpointer, caches, LLM</h2><table><tr><th>checkpoint call</th>"
        "<th>count</th><th>total ms</th><th>mean ms</th></tr>"
    )
    for op, call in r.checkpoint.items():
        out.append(
            f"<tr><td>{op}</td><td>{int(call['count'])}</td><td>{ms(call['total_s'])}</td>"
            f"<td>{ms(call['mean_s'])}</td></tr>"
        )
    out.append(f"<tr><td>bytes serialized</td><td colspan=3>{r.checkpoint_bytes:,}</td></tr>")
    out.append("</table>")
    if r.caches:
        out.append("<table><tr><th>cache</th><th>hits</th><th>misses</th></tr>")
        for name, c in r.caches.items():
            out.append(f"<tr><td>{_esc(name)}</td><td>{c['hits']}</td><td>{c['misses']}</td></tr>")
        out.append("</table>")
    llm = r.llm
    tokens = (
        f"{llm['input_tokens']:,} input / {llm['output_tokens']:,} output tokens"
        if llm["calls_with_usage"]
        else "no token counts reported"
    )
    out.append(
        f"<p>LLM calls: {llm['calls']} ({ms(llm['total_s'])} ms), {tokens}. "
        f"Tool calls: {r.tools['calls']} ({ms(r.tools['total_s'])} ms).</p>"
    )

    return "".join(out)


def _page(title: str, sub: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1><p class='sub'>{sub}</p>{body}</body></html>"
    )


def _assign_colors(*reports: ProfileReport) -> None:
    _COLORS.clear()
    for r in reports:
        for nd in r.nodes:
            _color(nd.name)


def render_profile(r: ProfileReport) -> str:
    _assign_colors(r)
    return _page(
        f"fast-langgraph profile: {r.graph}",
        f"{r.invokes} invoke(s); times are wall-clock.",
        profile_body(r),
    )


def render_compare(c: Any) -> str:
    _assign_colors(c.profiles["accelerated"], c.profiles["stock"])
    # Both timelines on one time scale, so the difference shows.
    pick = widest_invoke(c.profiles["accelerated"])
    span = max(
        (p.timeline[pick]["duration"] for p in c.profiles.values() if len(p.timeline) > pick),
        default=None,
    )
    rows = []
    for phase in ("total", "nodes", "checkpointing", "other"):
        s, a = c.phases["stock"][phase], c.phases["accelerated"][phase]
        label = {
            "total": "per invoke (profiled round)",
            "nodes": "nodes",
            "checkpointing": "checkpointing",
            "other": "other framework",
        }[phase]
        rows.append(
            f"<tr><td>{label}</td><td>{ms(s)}</td><td>{ms(a)}</td><td>{ms(s - a)}</td></tr>"
        )
    body = [
        f'<p class="speed">{c.speedup:.2f}x faster '
        f'<span style="font-size:14px;color:#57606a">(min {c.speedup_min:.2f}x, max '
        f"{c.speedup_max:.2f}x over {c.rounds} rounds)</span></p>",
        "<table><tr><th></th><th>stock ms</th><th>accelerated ms</th><th>saved ms</th></tr>",
        f"<tr><td><b>per invoke (median)</b></td><td>{ms(c.stock_median_s)}</td>"
        f"<td>{ms(c.accelerated_median_s)}</td>"
        f"<td>{ms(c.stock_median_s - c.accelerated_median_s)}</td></tr>",
        *rows,
        "</table>",
        "<p>Outputs identical in every round (message ids and timestamps normalized). "
        "Phases come from one profiled round per process.</p>",
        "<h2>Accelerated</h2>",
        profile_body(c.profiles["accelerated"], pick=pick, span=span),
        "<h2>Stock</h2>",
        profile_body(c.profiles["stock"], pick=pick, span=span),
        "<h2>What each run used</h2><h3>Accelerated</h3><ul>",
        *[f"<li>{_esc(x)}</li>" for x in c.applied],
        "</ul>",
        "<h3>Stock</h3><ul>",
        *[f"<li>{_esc(x)}</li>" for x in c.stock_setup],
        "</ul>",
    ]
    return _page(
        f"fast-langgraph: stock vs accelerated — {c.target}",
        f"{c.invokes_per_round} invokes per round, {c.rounds} interleaved rounds, "
        "separate processes.",
        "".join(body),
    )


# The report model calls these for HTML exports (it does not import this module).
_report.html_renderer = render_profile
_report.compare_html_renderer = render_compare
