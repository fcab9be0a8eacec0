"""report.md: the report blocks as GitHub-flavored Markdown (tables, Mermaid, SVG images)."""

from __future__ import annotations

from planner.plan.schema import Plan
from planner.report import sections
from planner.report.svg import endpoint_sites, graph_edges, graph_nodes, num, site_colors


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _inline(parts: list[sections.Inline]) -> str:
    out = []
    for p in parts:
        if isinstance(p, sections.Code):
            out.append(f"`{p.text}`")
        elif isinstance(p, sections.Bold):
            out.append(f"**{p.text}**")
        elif isinstance(p, sections.Link):
            out.append(f"[{p.text}]({p.href})")
        else:
            out.append(p)
    return "".join(out)


def _table(t: sections.Table) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in t.headers) + " |",
             "|" + "|".join("---:" if i in t.right else "---" for i in range(len(t.headers))) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def mermaid(plan: Plan) -> str:
    """The ensemble as a Mermaid flowchart, one classDef per site."""
    sources, models, sinks = graph_nodes(plan)
    colors = site_colors(plan)
    ends = endpoint_sites(plan)
    ids = {n: f"n{i}" for i, n in enumerate([*sources, *models, *sinks])}
    cls = {s: f"site_{i}" for i, s in enumerate(colors)}
    lines = ["```mermaid", "flowchart LR"]
    for n in sources:
        lines.append(f'  {ids[n]}(["{_label(n)}<br/>source on {ends.get(n, "?")}"])')
    for n in models:
        m = plan.models.get(n)
        label = f"{n}<br/>{m.site} · {num(m.latency_ms, 3)} ms" if m else f"{n}<br/>{plan.placement.get(n, '?')}"
        lines.append(f'  {ids[n]}["{_label(label)}"]')
    for n in sinks:
        lines.append(f'  {ids[n]}(["{_label(n)}<br/>sink on {ends.get(n, "?")}"])')
    ms = {}
    for p in plan.paths:
        for t in p.terms:
            if t.kind == "transfer" and t.ms > 0:
                ms[t.name] = t.ms
    for a, b in graph_edges(plan):
        if a in ids and b in ids:
            t = ms.get(f"{a}->{b}")
            lines.append(f"  {ids[a]} -->|{num(t, 3)} ms| {ids[b]}" if t else f"  {ids[a]} -.-> {ids[b]}")
    for s, c in colors.items():
        lines.append(f"  classDef {cls[s]} fill:{c},stroke:#333,color:#fff")
        lines.append(f"  classDef {cls[s]}_end fill:#fff,stroke:{c},stroke-width:3px,color:#222")
    for n in models:
        site = plan.models[n].site if n in plan.models else plan.placement.get(n)
        if site in cls:
            lines.append(f"  class {ids[n]} {cls[site]}")
    for n in [*sources, *sinks]:
        if ends.get(n) in cls:
            lines.append(f"  class {ids[n]} {cls[ends[n]]}_end")
    lines.append("```")
    legend = ", ".join(f"{s} = {c}" for s, c in colors.items())
    return "\n".join(lines) + f"\n\nSite colors: {legend}."


def render(plan: Plan, blocks: list[sections.Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, sections.Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, sections.Para):
            out.append(_inline(b.parts))
        elif isinstance(b, sections.Bullets):
            out.append("\n".join("- " + _inline(i) for i in b.items))
        elif isinstance(b, sections.Table):
            out.append(_table(b))
        elif isinstance(b, sections.Graph):
            out.append(mermaid(plan))
        elif isinstance(b, sections.Figure):
            out.append(f"![{b.alt}]({b.name})")
        elif isinstance(b, sections.FileLinks):
            if b.inline_svg:
                out.append(f"![Pareto front]({b.inline_svg})")
            out.append(" · ".join(f"[{f}]({f})" for f in b.files))
    return "\n\n".join(out) + "\n"
