"""`--set KEY=VALUE`: change any app.yaml value for one run (what-if questions).

Keys are dotted paths into app.yaml: `constraints.latency_ms=300`,
`sites.mec.max_replicas=8`, `models.det.sites=[phone,mec]`, and links by the sites they join
(either order) or by index: `links.phone-mec.bandwidth_mbps=10`, `links.0.rtt_ms=5`.
Values are YAML scalars or flow collections. `planner sweep` takes one key with several
values, `KEY=V1,V2,...` (parse_sweep).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from planner.app.yaml_lines import load_text
from planner.errors import InputError, clipped, shown


def _link_index(links: list, key: str) -> int | None:
    if key.isdigit():
        return int(key) if int(key) < len(links) else None
    for i, link in enumerate(links):
        pair = link.get("between") if isinstance(link, dict) else None
        if isinstance(pair, list) and len(pair) == 2 and key in (f"{pair[0]}-{pair[1]}", f"{pair[1]}-{pair[0]}"):
            return i
    return None


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set expects KEY=VALUE, got {shown(text)}")
    key = key.strip()
    try:  # bounded as app.yaml is
        value = load_text(raw, f"--set {clipped(key)}")[0] if raw.strip() else ""
    except InputError as exc:
        raise InputError(f"--set {clipped(key)}: cannot parse value {shown(raw)}: {exc.message}") from None
    return key.split("."), value


def apply_override(data: dict, text: str) -> tuple[str | int, ...]:
    """Set one value in the raw app dict; returns the key path it set."""
    parts, value = parse_override(text)
    node: Any = data
    path: list[str | int] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            index = _link_index(node, part) if path == ["links"] else (int(part) if part.isdigit() else None)
            if index is None or index >= len(node):
                raise InputError(f"--set {'.'.join(parts)}: no item '{part}' in {'.'.join(map(str, path))}")
            part = index
        elif isinstance(node, dict):
            if part not in node and not last:
                raise InputError(f"--set {'.'.join(parts)}: no key '{part}' in {'.'.join(map(str, path)) or 'app.yaml'}"
                                 + (f" (keys: {clipped(', '.join(map(str, node)), 300)})" if node else ""))
        else:
            raise InputError(f"--set {'.'.join(parts)}: {'.'.join(map(str, path))} is a value, not a mapping")
        path.append(part)
        if last:
            node[part] = value
        else:
            node = node[part]
    return tuple(path)


def split_values(raw: str) -> list[str]:
    """`10,50,[a,b]` -> ['10', '50', '[a,b]']: commas inside [] or {} belong to the value."""
    values, depth, cur = [], 0, ""
    for ch in raw:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            values.append(cur.strip())
            cur = ""
        else:
            cur += ch
    values.append(cur.strip())
    return values


def parse_sweep(sets: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """The one --set with several values is swept; the others are fixed for every run."""
    swept, fixed = [], []
    for s in sets:
        key, sep, raw = s.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE or KEY=V1,V2,..., got {shown(s)}")
        values = split_values(raw)
        (swept if len(values) > 1 else fixed).append((key.strip(), values, s))
    if len(swept) != 1:
        which = "none has" if not swept else f"{len(swept)} have ({', '.join(k for k, _, _ in swept)})"
        raise InputError(f"sweep needs exactly one --set KEY=V1,V2,... with several values; {which}")
    key, values, _ = swept[0]
    if any(v == "" for v in values):
        raise InputError(f"--set {clipped(key)}: empty value in {shown(','.join(values))}")
    return key, values, [raw for _, _, raw in fixed]
