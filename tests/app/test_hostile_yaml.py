"""Hostile app.yaml files get one clear error (exit 2, the file named), in bounded time and
memory: nested aliases (billion laughs), a recursive alias, deep nesting, huge files and
values, values PyYAML cannot construct, keys rich would read as markup."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.app.loader import load_app
from planner.app.yaml_lines import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from planner.cli.main import app as cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "smart-camera" / "app.yaml"
BASE = EXAMPLE.read_text()


def validate(path: Path, *options: str):
    return CliRunner().invoke(cli, ["validate", str(path), *options])


def assert_input_error(result, where: Path | str, *fragments: str) -> str:
    """Exit 2 and one line that starts with `where`: the file, or the --set at fault."""
    out = result.output
    assert result.exit_code == 2, out[:2000]
    assert "Traceback" not in out and "internal error" not in out, out[:2000]
    assert len(out.strip().splitlines()) == 1 and out.startswith(f"error: {where}"), out[:2000]
    for fragment in fragments:
        assert fragment in out, out[:2000]
    return out


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def laughs(levels: int) -> str:
    """Each level ten aliases of the one before: 10**levels strings once expanded."""
    lines = ["lol:", '  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return BASE + "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_in_bounded_memory(tmp_path):
    path = write(tmp_path, laughs(9))
    tracemalloc.start()
    try:
        result = validate(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_input_error(result, path, f"aliases expand the file to more than {MAX_NODES:,} values")
    assert peak < 100 << 20, f"{peak >> 20} MiB"  # the line map of MAX_NODES keys is ~30 MiB


def test_aliases_within_the_bound_work_and_set_changes_one_place(tmp_path):
    # an anchor shared by two sites: both read it; a --set on one must not change the other
    text = BASE.replace("  mec:    {tier: base-station, target: xeon-d, cost_per_hour: 0.40, memory_mb: 32768, "
                        "max_replicas: 4}",
                        "  mec:    &server {tier: base-station, target: xeon-d, cost_per_hour: 0.40, "
                        "memory_mb: 32768, max_replicas: 4}")
    text = text.replace("  cloud:  {tier: cloud, target: g4dn-xlarge, cost_per_hour: 0.526, memory_mb: 16384, "
                        "max_replicas: 16}", "  cloud:  *server")
    assert "*server" in text and "&server" in text
    path = write(tmp_path, text)
    assert validate(path).exit_code == 0
    app = load_app(path, ["sites.mec.max_replicas=2"]).app
    assert (app.sites["mec"].max_replicas, app.sites["cloud"].max_replicas) == (2, 4)
    assert app.sites["cloud"].tier == "base-station"


def test_recursive_alias_names_file_and_line(tmp_path):
    path = write(tmp_path, BASE + "extra: &r [*r]\n")
    line = len(BASE.splitlines()) + 1
    assert_input_error(validate(path), path, f"{path}:{line}: extra[0]", "recursive alias")


@pytest.mark.parametrize("style", ["flow", "block"])
def test_deep_nesting_is_refused_before_python_recursion(tmp_path, style):
    depth = 5000
    if style == "flow":
        text = BASE + "extra: " + "[" * depth + "]" * depth + "\n"
    else:
        text = BASE + "extra:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(depth // 25))
    path = write(tmp_path, text)
    assert_input_error(validate(path), path, f"nested deeper than {MAX_DEPTH} levels")


def test_alias_nesting_past_the_depth_is_refused(tmp_path):
    # each alias adds 40 levels: within the bound as written, beyond it once expanded
    nest = "[" * 40 + "]" * 40
    text = BASE + f"extra:\n  a: &a {nest}\n  b: &b [{'[' * 39}*a{']' * 39}]\n  c: [{'[' * 39}*b{']' * 39}]\n"
    path = write(tmp_path, text)
    assert_input_error(validate(path), path, f"aliases nest the file deeper than {MAX_DEPTH} levels")


def test_huge_file_is_refused_without_reading_it_all(tmp_path):
    path = write(tmp_path, BASE.replace("name: smart-camera", 'name: "' + "a" * 50_000_000 + '"'))
    out = assert_input_error(validate(path), path, f"larger than {MAX_FILE_BYTES >> 20} MiB")
    assert len(out) < 300


def test_endless_device_is_refused(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    assert_input_error(validate(Path("/dev/zero")), Path("/dev/zero"), "larger than")


@pytest.mark.parametrize("where", ["name", "key", "target", "tvm-kind", "set"])
def test_a_huge_value_is_not_echoed_whole(tmp_path, where):
    big = "a" * 1_500_000
    options: tuple[str, ...] = ()
    text = {
        "name": BASE.replace("name: smart-camera", f'name: "{big}"'),
        "key": BASE + f"? {big}\n: 1\n",
        "target": BASE.replace("target: xeon-d", f"target: {big}"),
        "tvm-kind": BASE.replace("target: xeon-d", "target: {tvm_target: {kind: " + big + "}, memory_mb: 100, "
                                 "peak_gflops: 10, mem_bandwidth_gbs: 5}"),
        "set": BASE,
    }[where]
    if where == "set":
        options = ("--set", f"name={big}")
    path = write(tmp_path, text)
    out = assert_input_error(validate(path, *options), path)
    assert "aaaaaaaaaa" in out and len(out) < 500, len(out)


def test_key_with_markup_is_printed_as_is(tmp_path):
    # rich reads "[/x]" as a closing tag: printed unescaped it raised MarkupError, a traceback
    path = write(tmp_path, BASE + '"[/x]": 1\n')
    assert_input_error(validate(path), path, "unknown key '[/x]'")


@pytest.mark.parametrize("value, fragment", [
    ("2001-02-30", "cannot read '2001-02-30' as timestamp"),  # a date PyYAML cannot construct
    ("1" * 5000, "as int"),  # past Python's 4,300-digit int limit
    ('!!binary "a"', "failed to decode base64"),
])
def test_unconstructible_value_is_an_input_error_at_its_line(tmp_path, value, fragment):
    path = write(tmp_path, BASE + f"extra: {value}\n")
    line = len(BASE.splitlines()) + 1
    assert_input_error(validate(path), path, f"{path}:{line}:", "YAML value error", fragment)


def test_mapping_as_key_is_an_input_error(tmp_path):
    path = write(tmp_path, BASE + "? [a, b]\n: 1\n")
    assert_input_error(validate(path), path, "a key must be a plain name")


def test_control_character_names_its_line(tmp_path):
    path = write(tmp_path, BASE + "extra: a\x01b\n")
    line = len(BASE.splitlines()) + 1
    assert_input_error(validate(path), path, f"{path}:{line}:", "special characters are not allowed")


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000, "&r [*r]"])
def test_set_value_is_parsed_with_the_same_bounds(tmp_path, value):
    path = write(tmp_path, BASE)
    result = validate(path, "--set", f"models.fusion.sites={value}")
    assert_input_error(result, "--set models.fusion.sites: cannot parse")


@pytest.mark.parametrize("onnx", ["a" * 300 + ".onnx", '"a\\0b.onnx"'])
def test_unusable_paths_are_input_errors(tmp_path, onnx):
    # a name longer than the file system allows, or with a NUL byte: no OS call accepts either
    path = write(tmp_path, BASE.replace("  detector:                  # YOLO-class, 640x640\n",
                                        f"  detector:\n    onnx: {onnx}\n"))
    assert_input_error(validate(path), path, "models.detector.onnx")
