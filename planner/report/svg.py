"""Hand-written SVG for the report: the ensemble colored by site, and bar charts.

Plain SVG 1.1 with no scripts, external fonts or stylesheets, so the same text embeds inline
in report.html and stands alone as a file beside report.md (GitHub renders both).
"""

from __future__ import annotations

import math
from html import escape

from planner.plan.schema import Plan

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f", "#ff9da7",
           "#bab0ac"]
TRANSFER = "#9aa0a6"
QUEUE = "#d4a72c"  # a request waiting for a model's instance
FONT = "font-family='Helvetica, Arial, sans-serif'"
TIER_ORDER = {"edge": 0, "base-station": 1, "cloud": 2}


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def num(x: float | None, digits: int = 6) -> str:
    """A number as the report prints it: no trailing zeros, at most `digits` decimals."""
    if x is None:
        return "-"
    s = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


# -- what the plan says about sites and the graph --------------------------------------------

def endpoint_sites(plan: Plan) -> dict[str, str]:
    """Sites of sources and sinks, inferred from the path terms (plan.json has no field for them)."""
    out: dict[str, str] = {}
    for p in plan.paths:
        models = [t for t in p.terms if t.kind == "model"]
        transfers = [t for t in p.terms if t.kind == "transfer"]
        if transfers:
            first, last = transfers[0], transfers[-1]
            if first.route:
                out.setdefault(p.source, first.route[0])
            elif models and models[0].site:
                out.setdefault(p.source, models[0].site)
            if last.route:
                out.setdefault(p.sink, last.route[-1])
            elif models and models[-1].site:
                out.setdefault(p.sink, models[-1].site)
    return out


def site_tiers(plan: Plan) -> dict[str, str]:
    tiers = {name: s.tier for name, s in plan.sites.items()}
    for m in plan.models.values():
        tiers.setdefault(m.site, m.tier)
    return tiers


def all_sites(plan: Plan) -> list[str]:
    """Every site the plan mentions, in app.yaml order as far as the profiles show it (so a
    site keeps its color across plans of one app, whatever each plan uses)."""
    names = [p.site for p in plan.profiles]
    names += [s for b in plan.baselines for s in b.placement.values()]
    tiers = site_tiers(plan)
    names += sorted(set(plan.sites) | {m.site for m in plan.models.values()} | set(endpoint_sites(plan).values()),
                    key=lambda s: (TIER_ORDER.get(tiers.get(s, ""), 3), s))
    return list(dict.fromkeys(names))


def site_colors(plan: Plan) -> dict[str, str]:
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(all_sites(plan))}


def graph_edges(plan: Plan) -> list[tuple[str, str]]:
    edges: dict[tuple[str, str], None] = {}
    for p in plan.paths:
        for a, b in zip(p.nodes, p.nodes[1:]):
            edges[a, b] = None
    return list(edges)


def transfer_ms(plan: Plan) -> dict[tuple[str, str], float]:
    out = {}
    for p in plan.paths:
        for t in p.terms:
            if t.kind == "transfer" and "->" in t.name:
                a, b = t.name.split("->", 1)
                out[a, b] = t.ms
    return out


def graph_nodes(plan: Plan) -> tuple[list[str], list[str], list[str]]:
    sources = list(dict.fromkeys(p.source for p in plan.paths))
    sinks = list(dict.fromkeys(p.sink for p in plan.paths))
    models = list(plan.models) or list(plan.placement)
    return sources, models, sinks


def _layers(plan: Plan) -> dict[str, int]:
    sources, models, sinks = graph_nodes(plan)
    edges = graph_edges(plan)
    layer = {n: 0 for n in sources}
    for _ in range(len(models) + 2):  # longest-path layering (the graph is a DAG)
        for a, b in edges:
            layer[b] = max(layer.get(b, 0), layer.get(a, 0) + 1)
    for m in models:
        layer.setdefault(m, 1)
    last = max([layer.get(n, 0) for n in models] + [0]) + 1
    for k in sinks:
        layer[k] = max(layer.get(k, last), last)
    return layer


# -- the ensemble graph -----------------------------------------------------------------------

def graph_svg(plan: Plan) -> str:
    sources, models, sinks = graph_nodes(plan)
    colors = site_colors(plan)
    ends = endpoint_sites(plan)
    layer = _layers(plan)
    nodes = [*sources, *models, *sinks]
    cols: dict[int, list[str]] = {}
    for n in nodes:
        cols.setdefault(layer[n], []).append(n)
    w_box, h_box, gap_x, gap_y, pad = 150, 54, 70, 26, 20
    rows = max((len(v) for v in cols.values()), default=1)
    legend_h = 34
    width = pad * 2 + len(cols) * w_box + max(0, len(cols) - 1) * gap_x
    height = pad * 2 + rows * h_box + (rows - 1) * gap_y + legend_h
    pos: dict[str, tuple[float, float]] = {}
    for c, col in sorted(cols.items()):
        total = len(col) * h_box + (len(col) - 1) * gap_y
        top = pad + legend_h + ((rows * h_box + (rows - 1) * gap_y) - total) / 2
        for i, n in enumerate(col):
            pos[n] = (pad + c * (w_box + gap_x), top + i * (h_box + gap_y))
    ms = transfer_ms(plan)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' role='img' aria-label='ensemble graph of {_e(plan.app)}' "
             f"width='{width}' height='{height}' viewBox='0 0 {width} {height}' {FONT} font-size='12'>",
             "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' markerHeight='7' "
             "orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='#555'/></marker></defs>",
             f"<rect width='{width}' height='{height}' fill='#ffffff'/>"]
    # legend: one swatch per site
    x = pad
    for s, color in colors.items():
        parts.append(f"<rect x='{x}' y='{pad - 6}' width='14' height='14' rx='3' fill='{color}'/>"
                     f"<text x='{x + 19}' y='{pad + 5}' fill='#222'>{_e(s)}</text>")
        x += 30 + 7.5 * len(s)
    for a, b in graph_edges(plan):
        if a not in pos or b not in pos:
            continue
        (x1, y1), (x2, y2) = pos[a], pos[b]
        sx, sy, tx, ty = x1 + w_box, y1 + h_box / 2, x2, y2 + h_box / 2
        mx = (sx + tx) / 2
        t = ms.get((a, b))
        cross = t is not None and t > 0
        dash = "" if cross else "stroke-dasharray='4 3' "
        parts.append(f"<path d='M{sx:.1f},{sy:.1f} C{mx:.1f},{sy:.1f} {mx:.1f},{ty:.1f} {tx - 2:.1f},{ty:.1f}' "
                     f"fill='none' stroke='{'#333' if cross else '#999'}' stroke-width='{1.8 if cross else 1.2}' "
                     f"{dash}marker-end='url(#arrow)'/>")
        if cross:
            parts.append(f"<text x='{mx:.1f}' y='{(sy + ty) / 2 - 5:.1f}' text-anchor='middle' fill='#333' "
                         f"font-size='11' paint-order='stroke' stroke='#fff' stroke-width='3'>{num(t, 1)} ms</text>")
    for n in nodes:
        x, y = pos[n]
        if n in plan.models:
            m = plan.models[n]
            color = colors.get(m.site, "#888")
            parts.append(f"<rect x='{x}' y='{y}' width='{w_box}' height='{h_box}' rx='6' fill='{color}'/>"
                         f"<text x='{x + w_box / 2}' y='{y + 21}' text-anchor='middle' fill='#fff' "
                         f"font-weight='bold'>{_e(n)}</text>"
                         f"<text x='{x + w_box / 2}' y='{y + 39}' text-anchor='middle' fill='#fff' font-size='11'>"
                         f"{_e(m.site)} · {num(m.latency_ms, 1)} ms</text>")
        else:
            site = ends.get(n) or plan.placement.get(n)
            color = colors.get(site or "", "#888")
            kind = "source" if n in sources else "sink"
            parts.append(f"<rect x='{x}' y='{y + 6}' width='{w_box}' height='{h_box - 12}' rx='{(h_box - 12) / 2}' "
                         f"fill='#fff' stroke='{color}' stroke-width='2.5'/>"
                         f"<text x='{x + w_box / 2}' y='{y + 25}' text-anchor='middle' fill='#222' "
                         f"font-weight='bold'>{_e(n)}</text>"
                         f"<text x='{x + w_box / 2}' y='{y + 39}' text-anchor='middle' fill='#555' font-size='10'>"
                         f"{kind}{' on ' + _e(site) if site else ''}</text>")
    parts.append("</svg>")
    return "\n".join(parts)


# -- bar charts -------------------------------------------------------------------------------

def _ticks(top: float) -> list[float]:
    if top <= 0:
        return [0.0]
    raw = top / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = min(f * mag for f in (1, 2, 2.5, 5, 10) if f * mag >= raw * 0.999)
    return [round(i * step, 12) for i in range(int(top / step) + 2) if i * step <= top * 1.0001]


def stacked_bars_svg(title: str, rows: list[tuple[str, list[tuple[str, float, str]]]], unit: str,
                     limit: float | None = None, limit_label: str = "", legend: dict[str, str] | None = None) -> str:
    """Horizontal stacked bars: rows of (label, [(segment label, value, color)])."""
    label_w, bar_h, gap, pad, width = 230, 26, 14, 16, 960
    legend_h = 26 if legend else 0
    plot_w = width - label_w - pad * 2 - 10
    top_total = max([sum(v for _, v, _ in segs) for _, segs in rows] + [limit or 0, 1e-9])
    scale_top = top_total * 1.08
    ticks = _ticks(scale_top)
    height = pad * 2 + 24 + legend_h + len(rows) * (bar_h + gap) + 26
    x0 = pad + label_w
    y0 = pad + 24 + legend_h

    def X(v: float) -> float:
        return x0 + v / scale_top * plot_w

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' role='img' aria-label='{_e(title)}' width='{width}' "
             f"height='{height}' viewBox='0 0 {width} {height}' {FONT} font-size='12'>",
             f"<rect width='{width}' height='{height}' fill='#ffffff'/>",
             f"<text x='{pad}' y='{pad + 10}' font-size='14' font-weight='bold' fill='#222'>{_e(title)}</text>"]
    if legend:
        x = pad
        for name, color in legend.items():
            parts.append(f"<rect x='{x}' y='{pad + 22}' width='12' height='12' rx='2' fill='{color}'/>"
                         f"<text x='{x + 17}' y='{pad + 32}' fill='#222'>{_e(name)}</text>")
            x += 30 + 7 * len(name)
    axis_y = y0 + len(rows) * (bar_h + gap)
    for t in ticks:
        parts.append(f"<line x1='{X(t):.1f}' y1='{y0 - 4}' x2='{X(t):.1f}' y2='{axis_y}' stroke='#e3e3e3'/>"
                     f"<text x='{X(t):.1f}' y='{axis_y + 15}' text-anchor='middle' fill='#555' font-size='11'>"
                     f"{num(t, 4)}</text>")
    parts.append(f"<text x='{x0 + plot_w + 6}' y='{axis_y + 15}' fill='#555' font-size='11'>{_e(unit)}</text>")
    for i, (label, segs) in enumerate(rows):
        y = y0 + i * (bar_h + gap)
        first, _, second = label.partition("\n")
        fit = lambda t: t if len(t) <= 36 else t[:33] + "..."  # noqa: E731
        if second:
            parts.append(f"<text x='{x0 - 8}' y='{y + 11}' text-anchor='end' fill='#222'>"
                         f"<title>{_e(label)}</title>{_e(fit(first))}</text>"
                         f"<text x='{x0 - 8}' y='{y + 24}' text-anchor='end' fill='#666' font-size='10'>"
                         f"{_e(fit(second))}</text>")
        else:
            parts.append(f"<text x='{x0 - 8}' y='{y + bar_h / 2 + 4}' text-anchor='end' fill='#222'>"
                         f"<title>{_e(label)}</title>{_e(fit(first))}</text>")
        acc = 0.0
        for seg_label, v, color in segs:
            if v <= 0:
                continue
            xa, xb = X(acc), X(acc + v)
            parts.append(f"<rect x='{xa:.2f}' y='{y}' width='{max(xb - xa, 0.5):.2f}' height='{bar_h}' "
                         f"fill='{color}' stroke='#fff' stroke-width='1'><title>{_e(seg_label)}: {num(v)} {_e(unit)}"
                         f"</title></rect>")
            if xb - xa > 7 * len(seg_label) + 6:
                parts.append(f"<text x='{(xa + xb) / 2:.1f}' y='{y + bar_h / 2 + 4}' text-anchor='middle' "
                             f"fill='#fff' font-size='11'>{_e(seg_label)}</text>")
            acc += v
        parts.append(f"<text x='{X(acc) + 5:.1f}' y='{y + bar_h / 2 + 4}' fill='#222' font-size='11'>"
                     f"{num(acc, 3 if unit == 'ms' else 6)} {_e(unit)}</text>")
    if limit is not None:
        parts.append(f"<line x1='{X(limit):.1f}' y1='{y0 - 8}' x2='{X(limit):.1f}' y2='{axis_y}' stroke='#d62728' "
                     f"stroke-width='2' stroke-dasharray='6 4'/>"
                     f"<text x='{X(limit) - 4:.1f}' y='{y0 - 10}' text-anchor='end' fill='#d62728' font-size='11'>"
                     f"{_e(limit_label)}</text>")
    parts.append(f"<line x1='{x0}' y1='{axis_y}' x2='{x0 + plot_w}' y2='{axis_y}' stroke='#888'/>")
    parts.append("</svg>")
    return "\n".join(p for p in parts if p)


def latency_svg(plan: Plan) -> str:
    """Each listed source->sink path: compute per model (site colors) and transfer per link (gray)."""
    colors = site_colors(plan)
    rows = []
    for i, p in enumerate(plan.paths, 1):
        segs = []
        for t in p.terms:
            if t.kind == "model":
                segs.append((t.name, t.ms, colors.get(t.site or "", "#888")))
            elif t.kind == "queue":
                segs.append((f"{t.name} wait", t.ms, QUEUE))
            elif t.ms > 0:
                segs.append((t.name, t.ms, TRANSFER))
        via = " > ".join(p.nodes[1:-1])
        rows.append((f"path {i}: {p.source} -> {p.sink}" + (f"\nvia {via}" if via else ""), segs))
    slo = plan.constraints.get("latency_ms")
    legend = {s: c for s, c in colors.items() if any(m.site == s for m in plan.models.values())}
    legend["transfer"] = TRANSFER
    if any(t.kind == "queue" for p in plan.paths for t in p.terms):
        legend[f"queue wait (p{num(plan.percentile)})"] = QUEUE
    return stacked_bars_svg("latency per source->sink path", rows, "ms", slo,
                            f"SLO {num(slo, 3)} ms" if slo is not None else "", legend)


def cost_svg(plan: Plan) -> str:
    """Cost per hour: compute per site (replicas x price) and egress per link."""
    colors = site_colors(plan)
    rows = []
    for name, s in plan.sites.items():
        rows.append((f"{name}: {s.replicas} x replica", [(name, s.cost_per_hour, colors.get(name, "#888"))]))
    if plan.cost is not None:
        by_link: dict[str, float] = {}
        for e in plan.cost.egress:
            key = f"egress {e.link[0]}-{e.link[1]}"
            by_link[key] = by_link.get(key, 0.0) + e.cost_per_hour
        for k, v in by_link.items():
            rows.append((k, [("egress", v, TRANSFER)]))
    cap = plan.constraints.get("cost_per_hour")
    return stacked_bars_svg("cost per hour", rows, "$/h", cap, f"cap ${num(cap)}/h" if cap is not None else "")


def load_svg(plan: Plan) -> str:
    """The plan's slowest path against its load (plan.load_curve): p50 and the plan's percentile
    per request rate, the SLO, and the knee (the last rate within 1.5x of a request alone)."""
    width, height, pad, left, bottom = 960, 360, 16, 70, 46
    points = [p for p in plan.load_curve if p.stable]
    title = f"latency against load: p50 and p{num(plan.percentile)} of the slowest path"
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' role='img' aria-label='{_e(title)}' width='{width}' "
             f"height='{height}' viewBox='0 0 {width} {height}' {FONT} font-size='12'>",
             f"<rect width='{width}' height='{height}' fill='#ffffff'/>",
             f"<text x='{pad}' y='{pad + 10}' font-size='14' font-weight='bold' fill='#222'>{_e(title)}</text>"]
    if not points:
        parts.append(f"<text x='{pad}' y='{pad + 40}' fill='#555'>no load the plan keeps up with</text></svg>")
        return "\n".join(parts)
    slo = plan.constraints.get("latency_ms")
    x_top = max(p.rate_rps for p in plan.load_curve) * 1.05 or 1.0
    y_top = max([p.tail_ms or 0.0 for p in points] + [slo or 0.0]) * 1.1 or 1.0
    x0, y0, plot_w, plot_h = left, pad + 30, width - left - pad - 20, height - pad - 30 - bottom

    def X(v: float) -> float:
        return x0 + v / x_top * plot_w

    def Y(v: float) -> float:
        return y0 + plot_h - v / y_top * plot_h

    for t in _ticks(y_top):
        parts.append(f"<line x1='{x0}' y1='{Y(t):.1f}' x2='{x0 + plot_w}' y2='{Y(t):.1f}' stroke='#e3e3e3'/>"
                     f"<text x='{x0 - 6}' y='{Y(t) + 4:.1f}' text-anchor='end' fill='#555' font-size='11'>"
                     f"{num(t, 4)}</text>")
    for t in _ticks(x_top):
        parts.append(f"<text x='{X(t):.1f}' y='{y0 + plot_h + 16}' text-anchor='middle' fill='#555' font-size='11'>"
                     f"{num(t, 4)}</text>")
    parts.append(f"<text x='{x0 + plot_w}' y='{y0 + plot_h + 34}' text-anchor='end' fill='#555' font-size='11'>"
                 "requests/s (the sources' rates summed)</text>"
                 f"<text x='{x0 - 6}' y='{y0 - 8}' text-anchor='end' fill='#555' font-size='11'>ms</text>")
    for key, color, label in (("p50_ms", PALETTE[0], "p50"), ("tail_ms", PALETTE[3], f"p{num(plan.percentile)}")):
        xy = " ".join(f"{X(p.rate_rps):.1f},{Y(getattr(p, key)):.1f}" for p in points)
        parts.append(f"<polyline points='{xy}' fill='none' stroke='{color}' stroke-width='2'/>")
        for p in points:
            parts.append(f"<circle cx='{X(p.rate_rps):.1f}' cy='{Y(getattr(p, key)):.1f}' r='3' fill='{color}'>"
                         f"<title>{label} {num(getattr(p, key), 3)} ms at {num(p.rate_rps)} rps</title></circle>")
        last = points[-1]
        parts.append(f"<text x='{X(last.rate_rps) + 6:.1f}' y='{Y(getattr(last, key)) + 4:.1f}' fill='{color}'>"
                     f"{label}</text>")
    planned = next((p for p in plan.load_curve if p.rate_scale == 1.0), None)
    if planned is not None:
        parts.append(f"<line x1='{X(planned.rate_rps):.1f}' y1='{y0}' x2='{X(planned.rate_rps):.1f}' "
                     f"y2='{y0 + plot_h}' stroke='#888' stroke-dasharray='3 3'/>"
                     f"<text x='{X(planned.rate_rps) + 4:.1f}' y='{y0 + 12}' fill='#555' font-size='11'>planned</text>")
    knee = [p for p in points if p.within_knee]
    if knee:
        k = knee[-1]
        parts.append(f"<circle cx='{X(k.rate_rps):.1f}' cy='{Y(k.tail_ms):.1f}' r='7' fill='none' stroke='#222'/>"
                     f"<text x='{X(k.rate_rps):.1f}' y='{Y(k.tail_ms) - 11:.1f}' text-anchor='middle' fill='#222' "
                     f"font-size='11'>knee</text>")
    if slo is not None:
        parts.append(f"<line x1='{x0}' y1='{Y(slo):.1f}' x2='{x0 + plot_w}' y2='{Y(slo):.1f}' stroke='#d62728' "
                     f"stroke-width='2' stroke-dasharray='6 4'/><text x='{x0 + 4}' y='{Y(slo) - 5:.1f}' "
                     f"fill='#d62728' font-size='11'>SLO {num(slo, 3)} ms</text>")
    parts.append(f"<line x1='{x0}' y1='{y0 + plot_h}' x2='{x0 + plot_w}' y2='{y0 + plot_h}' stroke='#888'/>")
    parts.append("</svg>")
    return "\n".join(parts)
