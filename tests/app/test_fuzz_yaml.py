"""Fuzz `planner validate` (in-process, through the CLI) with mutated versions of the examples'
app.yaml: keys deleted, values swapped for other types or extreme numbers, subtrees nested,
shared (YAML aliases), made recursive or expanded as a "billion laughs", unknown keys, the
text cut or garbled, and --set overrides of extreme values.

Every run must end in exit 0 or 2 (validate solves nothing, so never 3) with exactly one
line of output, no traceback and no internal error, a message of bounded length, and a peak
memory at most MEMORY_BOUND above the memory before it (the process's peak resident set, reset
before each run through /proc/self/clear_refs; tracemalloc's peak where that is not
available, which is slower). Derandomized: the same examples run every time, in seconds."""

from __future__ import annotations

import copy
import re
import shutil
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from planner.cli.main import app as cli

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*/app.yaml"))
DOCS = [yaml.safe_load(p.read_text()) for p in EXAMPLES]
MEMORY_BOUND = 64 << 20  # a validate of a few-KB file; a billion laughs expanded would take GBs
MESSAGE_CHARS = 1500  # a message quotes values cut to ~80 characters, a list of valid names at most

EXTREMES = [
    0, -1, 1e308, -1e308, 1e-300, 5e-324, 1e16, 2**63, 10**30, float("inf"), float("nan"), True, None,
    "", "1e308", "x" * 20_000, "[/x]", "a\x00b", "2001-02-30", "phone", [], {}, [1e5, 1e5], [[[]]],
    {"shape": [2**20, 2**20]}, {"latency_ms": 1e308}, "../../../../etc/passwd",
]
TEXT_NOISE = [":", "-", "[", "]", "{", "}", "&a", "*a", "!!float", "!!python/object:os.system", "%", "\t", "'",
              '"', "\n", "\x01", "? ", "<<: ", "\ufeff"]


def _mirror(src: Path, dst: Path) -> None:
    """The example's folder without its app.yaml: small files copied (a `files:` entry must lie
    inside the app's folder), large ones (the ONNX models) linked."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name == "app.yaml":
            continue
        if entry.is_dir():
            _mirror(entry, dst / entry.name)
        elif entry.stat().st_size < 1 << 20:
            shutil.copy(entry, dst / entry.name)
        else:
            (dst / entry.name).symlink_to(entry.resolve())


@pytest.fixture(scope="module")
def app_dirs(tmp_path_factory) -> list[Path]:
    out = []
    for example in EXAMPLES:
        dst = tmp_path_factory.mktemp(example.parent.name)
        _mirror(example.parent, dst)
        out.append(dst)
        # once before measuring: the first run imports modules and detects the host target
        # (a numpy copy of 256 MB that measures its memory bandwidth, cached for the process)
        CliRunner().invoke(cli, ["validate", str(example)])
    return out


def _nodes(doc, path=(), seen=None):
    """(path, value) of every node, each object once (the doc may share or contain itself)."""
    seen = set() if seen is None else seen
    yield path, doc
    if isinstance(doc, (dict, list)):
        if id(doc) in seen:
            return
        seen.add(id(doc))
        items = doc.items() if isinstance(doc, dict) else enumerate(doc)
        for key, value in list(items):
            yield from _nodes(value, path + (key,), seen)


def _rss_kb(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1))


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak RSS starts again from now
        return True
    except OSError:
        return False


@contextmanager
def peak_growth():
    """Yields a list that receives the block's peak memory growth, in bytes."""
    growth: list[int] = []
    if _reset_peak_rss():
        before = _rss_kb("VmRSS")
        yield growth
        growth.append((_rss_kb("VmHWM") - before) * 1024)
        return
    tracemalloc.start()
    try:
        yield growth
        growth.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def _parent(doc, path):
    for key in path[:-1]:
        doc = doc[key]
    return doc


def _laughs(levels: int, width: int):
    value: object = ["lol"] * width
    for _ in range(levels):
        value = [value] * width  # one object many times: YAML aliases when dumped
    return value


@st.composite
def mutated_app(draw) -> tuple[int, str, list[str]]:
    which = draw(st.integers(0, len(EXAMPLES) - 1))
    doc = copy.deepcopy(DOCS[which])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p, _ in _nodes(doc) if p]
        path = draw(st.sampled_from(paths))
        parent, key = _parent(doc, path), path[-1]
        op = draw(st.sampled_from(["delete", "extreme", "wrap", "nest", "share", "recurse", "laughs", "unknown"]))
        if op == "delete":
            del parent[key]
        elif op == "extreme":
            parent[key] = draw(st.sampled_from(EXTREMES))
        elif op == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"x": parent[key]}, str(parent[key])]))
        elif op == "nest":
            value = parent[key]
            for _ in range(draw(st.integers(1, 100))):
                value = [value]
            parent[key] = value
        elif op == "share":
            parent[key] = _parent(doc, draw(st.sampled_from(paths)) + ("",))
        elif op == "recurse" and isinstance(parent, (dict, list)):
            parent[key] = parent
        elif op == "laughs":
            parent[key] = _laughs(draw(st.integers(1, 12)), draw(st.integers(2, 10)))
        elif op == "unknown" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["bogus", "x" * 5000, "[/red]", 17, "<<"]))] = draw(st.sampled_from(EXTREMES))
    text = yaml.safe_dump(doc, default_flow_style=draw(st.booleans()), width=10**9, sort_keys=False)
    if draw(st.booleans()):  # garble the text itself
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(TEXT_NOISE + [""])) + text[at + draw(st.integers(0, 3)):]
    overrides = []
    if draw(st.booleans()):
        scalars = [p for p, v in _nodes(DOCS[which]) if p and not isinstance(v, (dict, list))]
        path = draw(st.sampled_from(scalars))
        value = yaml.safe_dump([draw(st.sampled_from(EXTREMES))], default_flow_style=True, width=10**9)[1:-2]
        overrides = ["--set", ".".join(map(str, path)) + "=" + value]
    return which, text, overrides


@settings(max_examples=120, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(case=mutated_app())
def test_mutated_examples_get_one_clear_answer(app_dirs, case):
    which, text, overrides = case
    path = app_dirs[which] / "app.yaml"
    path.write_text(text, encoding="utf-8")
    with peak_growth() as growth:
        result = CliRunner().invoke(cli, ["validate", str(path), *overrides])
    out = result.output
    assert result.exit_code in (0, 2), out
    assert "Traceback" not in out and "internal error" not in out, out
    assert len(out.strip().splitlines()) == 1, out
    assert out.startswith("error: ") if result.exit_code == 2 else ": valid: " in out, out
    assert len(out) < MESSAGE_CHARS, out[:3000]
    assert growth[0] < MEMORY_BOUND, f"{growth[0] / 2**20:.0f} MiB more at the peak for {out}"
