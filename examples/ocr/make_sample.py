"""Regenerate `sample.png` and `sample.txt`: a 640x640 RGB test image with a few lines of
clearly printed English text and digits (black DejaVu Sans on white).

    python examples/ocr/make_sample.py

The image has exactly the input size of the `preprocess` step (`ocr_steps.IMAGE_SHAPE`), so
the detector sees it unscaled. Each line is short enough that its crop fits the
recognizer's fixed 48x320 input without squeezing (width/height <= 320/48).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
SIZE = (640, 640)  # width, height
FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
]
FONT_SIZE = 36
# (x, y) of each line's top-left corner and its text
LINES = [
    ((40, 50), "EDGE CLOUD OCR"),
    ((40, 150), "Order 48213"),
    ((40, 250), "Phone to MEC"),
    ((40, 350), "Latency 1500 ms"),
    ((40, 450), "Total 97.25"),
    ((40, 550), "Gate B7 Seat 12C"),
]


def font() -> ImageFont.FreeTypeFont:
    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            return ImageFont.truetype(path, FONT_SIZE)
    return ImageFont.load_default(size=FONT_SIZE)  # Pillow >= 10.1 ships a scalable default


def render() -> Image.Image:
    img = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(img)
    f = font()
    for xy, text in LINES:
        draw.text(xy, text, fill="black", font=f)
    return img


def main() -> None:
    img = render()
    img.save(HERE / "sample.png", optimize=True)
    (HERE / "sample.txt").write_text("\n".join(text for _, text in LINES) + "\n", encoding="utf-8")
    print(f"wrote {HERE / 'sample.png'} {img.size[0]}x{img.size[1]} and {HERE / 'sample.txt'}")


if __name__ == "__main__":
    main()
