"""report.html: the same blocks as one self-contained page (inline CSS and SVG, no scripts,
no external fonts or files), so it opens offline and can be mailed as one attachment."""

from __future__ import annotations

from html import escape

from planner.plan.schema import Plan
from planner.report import sections

CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1f2328}
main{max-width:1180px;margin:0 auto;padding:24px 32px 60px;background:#fff;min-height:100vh}
h1{font-size:26px;border-bottom:2px solid #e1e4e8;padding-bottom:8px}
h2{font-size:20px;margin-top:34px;border-bottom:1px solid #e1e4e8;padding-bottom:4px}
h3{font-size:15px;margin-top:22px}
table{border-collapse:collapse;margin:10px 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}
th{background:#f0f3f6;text-align:left}
td.r{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafbfc}
code{background:#eff1f3;padding:1px 4px;border-radius:3px;font-size:90%}
.fig{overflow-x:auto;margin:10px 0}
.fig svg{max-width:100%;height:auto}
nav{font-size:13px;margin:6px 0 16px}
nav a{margin-right:12px}
"""


def _inline(parts: list[sections.Inline]) -> str:
    out = []
    for p in parts:
        if isinstance(p, sections.Code):
            out.append(f"<code>{escape(p.text)}</code>")
        elif isinstance(p, sections.Bold):
            out.append(f"<strong>{escape(p.text)}</strong>")
        elif isinstance(p, sections.Link):
            out.append(f"<a href='{escape(p.href, quote=True)}'>{escape(p.text)}</a>")
        else:
            out.append(escape(p))
    return "".join(out)


def _table(t: sections.Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.headers)
    rows = []
    for row in t.rows:
        rows.append("<tr>" + "".join(f"<td{' class=r' if i in t.right else ''}>{escape(str(c))}</td>"
                                     for i, c in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render(plan: Plan, blocks: list[sections.Block], svgs: dict[str, str]) -> str:
    """`svgs`: file name -> SVG text, for the graph ('graph.svg') and every figure."""
    body: list[str] = []
    toc = [b for b in blocks if isinstance(b, sections.Heading) and b.level == 2]
    for b in blocks:
        if isinstance(b, sections.Heading):
            body.append(f"<h{b.level} id='{b.anchor}'>{escape(b.text)}</h{b.level}>")
            if b.level == 1 and toc:
                body.append("<nav>" + "".join(f"<a href='#{h.anchor}'>{escape(h.text)}</a>" for h in toc) + "</nav>")
        elif isinstance(b, sections.Para):
            body.append(f"<p>{_inline(b.parts)}</p>")
        elif isinstance(b, sections.Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, sections.Table):
            body.append(_table(b))
        elif isinstance(b, sections.Graph):
            body.append(f"<div class='fig'>{svgs.get('graph.svg', '')}</div>")
        elif isinstance(b, sections.Figure):
            body.append(f"<div class='fig'>{svgs.get(b.name, '')}</div>")
        elif isinstance(b, sections.FileLinks):
            if b.inline_svg and b.inline_svg in svgs:
                body.append(f"<div class='fig'>{_strip_xml_header(svgs[b.inline_svg])}</div>")
            body.append("<p>" + " · ".join(f"<a href='{escape(f, quote=True)}'>{escape(f)}</a>" for f in b.files)
                        + "</p>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Plan review: {escape(plan.app)}</title><style>{CSS}</style></head>\n"
            f"<body><main>\n{chr(10).join(body)}\n</main></body></html>\n")


def _strip_xml_header(svg: str) -> str:
    """matplotlib's SVG starts with an XML declaration and a DOCTYPE: not allowed inline."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
