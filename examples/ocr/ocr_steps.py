"""The glue of the OCR example: the python steps between its three ONNX models.

    image -> preprocess -> det -> find_text -> cls -> rotate -> rec -> decode -> screen
                                  find_text --crops, crop_w--> rotate
                                  find_text --count--> decode
                                  find_text --boxes--> screen

Modelled on what `rapidocr_onnxruntime` 1.4.4 does around the same models (its
`ch_ppocr_det`, `ch_ppocr_cls`, `ch_ppocr_rec` pre/post-processing, same thresholds and
normalization), cut into steps whose inputs and outputs have static shapes: the number of
text lines varies, so every per-line tensor is padded to `K` rows and `count` says how many
are real. Each step is called with keyword arguments (numpy arrays of the shapes declared in
app.yaml) and returns a dict of arrays whose shapes and dtypes never change.

Where this differs from rapidocr (mostly because shapes are static):
- the detector runs at a fixed 640x640 (`DET_HW`); rapidocr scales the image so that its
  short side is 736 (limit_type min). An image of another size is resized to 640x640, and
  the boxes are mapped back to the image's own pixels.
- at most `K` lines are kept (the first `K` in reading order).
- the recognizer input is a fixed 3x48x320: a line longer than 320/48 = 6.67 (width/height)
  is squeezed horizontally into 320 pixels, where rapidocr widens the whole batch instead.
- a crop the classifier calls upside down is turned after it was scaled to height 48
  (rapidocr turns it before; a 180-degree turn and the scaling commute up to rounding).

The source image is RGB; the models were trained on OpenCV's BGR order, so the steps
convert, as rapidocr's image loader does.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pyclipper

HERE = Path(__file__).resolve().parent
DICT_PATH = HERE / "models" / "ppocr_keys_v1.txt"

IMAGE_SHAPE = (640, 640, 3)  # the source image: uint8 RGB, height x width x 3
DET_HW = (640, 640)  # detector input height, width (multiples of 32)
K = 8  # most text lines per image (rows past `count` are zero); rec costs ~30 ms per row on 2 x86 cores

# DB post-processing (rapidocr config.yaml, Det)
DB_THRESH = 0.3
BOX_THRESH = 0.5
UNCLIP_RATIO = 1.6
MAX_CANDIDATES = 1000
MIN_SIZE = 3
DILATION_KERNEL = np.ones((2, 2), np.uint8)

CLS_SHAPE = (3, 48, 192)  # direction classifier input C, H, W
CLS_THRESH = 0.9  # rotate a crop when the classifier says 180 degrees with more than this
REC_SHAPE = (3, 48, 320)  # recognizer input C, H, W
TEXT_SCORE = 0.5  # lines whose mean character confidence is below this are dropped (rapidocr Global.text_score)


# ---------------------------------------------------------------- preprocess


def preprocess(image: np.ndarray) -> dict[str, np.ndarray]:
    """uint8[H, W, 3] RGB -> `x` float32[1, 3, 640, 640], the detector's input.

    BGR order, scaled to [-1, 1] ((v / 255 - 0.5) / 0.5), CHW. An image of another size than
    640x640 is resized (not letterboxed) like rapidocr's DetPreProcess does."""
    img = _bgr(image)
    if img.shape[:2] != DET_HW:
        img = cv2.resize(img, (DET_HW[1], DET_HW[0]))
    x = _normalize(img)[np.newaxis]
    return {"x": np.ascontiguousarray(x, dtype=np.float32)}


# ---------------------------------------------------------------- find_text


def find_text(prob: np.ndarray, image: np.ndarray) -> dict[str, np.ndarray]:
    """Text boxes from the detector's probability map, and the crops under them.

    prob: float32[1, 1, 640, 640] (det output); image: uint8[H, W, 3] RGB (the source image).
    Returns, with rows past `count` zero:
      cls_x  float32[K, 3, 48, 192]  classifier input
      crops  uint8[K, 48, 320, 3]    BGR crops scaled to height 48, left-aligned
      crop_w int32[K]                valid width of each crop in `crops`
      boxes  float32[K, 4, 2]        corners (x, y) in image pixels: tl, tr, br, bl
      count  int32[1]                number of lines found (<= K)
    """
    img = _bgr(image)
    h, w = img.shape[:2]
    found = _db_boxes(np.asarray(prob, dtype=np.float32)[0, 0], h, w)
    found = _sorted_boxes(found)[:K]

    cls_x = np.zeros((K, *CLS_SHAPE), np.float32)
    crops = np.zeros((K, REC_SHAPE[1], REC_SHAPE[2], 3), np.uint8)
    crop_w = np.zeros((K,), np.int32)
    boxes = np.zeros((K, 4, 2), np.float32)
    for i, box in enumerate(found):
        crop = _rotate_crop(img, box)
        boxes[i] = box
        cls_x[i] = _resize_norm(crop, CLS_SHAPE)
        resized = _resize_to_height(crop, REC_SHAPE[1], REC_SHAPE[2])
        crops[i, :, : resized.shape[1]] = resized
        crop_w[i] = resized.shape[1]
    return {
        "cls_x": cls_x,
        "crops": crops,
        "crop_w": crop_w,
        "boxes": boxes,
        "count": np.array([len(found)], np.int32),
    }


def _db_boxes(pred: np.ndarray, dest_h: int, dest_w: int) -> list[np.ndarray]:
    """DB post-processing (rapidocr DBPostProcess + TextDetector.filter_tag_det_res)."""
    height, width = pred.shape
    mask = cv2.dilate((pred > DB_THRESH).astype(np.uint8), DILATION_KERNEL)
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    for contour in contours[:MAX_CANDIDATES]:
        points, sside = _mini_box(contour)
        if sside < MIN_SIZE:
            continue
        if _box_score_fast(pred, points) < BOX_THRESH:
            continue
        expanded = _unclip(points)
        if expanded is None:
            continue
        box, sside = _mini_box(expanded)
        if sside < MIN_SIZE + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / width * dest_w), 0, dest_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * dest_h), 0, dest_h)
        box = _order_clockwise(box.astype(np.int32).astype(np.float32))
        box[:, 0] = np.clip(box[:, 0], 0, dest_w - 1).astype(np.int32)
        box[:, 1] = np.clip(box[:, 1], 0, dest_h - 1).astype(np.int32)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        boxes.append(box)
    return boxes


def _mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """The minimum-area rectangle's corners (tl, tr, br, bl) and its shorter side."""
    rect = cv2.minAreaRect(contour)
    pts = sorted(list(cv2.boxPoints(rect)), key=lambda p: p[0])
    i1, i4 = (0, 1) if pts[1][1] > pts[0][1] else (1, 0)
    i2, i3 = (2, 3) if pts[3][1] > pts[2][1] else (3, 2)
    return np.array([pts[i1], pts[i2], pts[i3], pts[i4]]), min(rect[1])


def _box_score_fast(pred: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside the box."""
    h, w = pred.shape
    box = box.copy()
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), np.uint8)
    box[:, 0] -= xmin
    box[:, 1] -= ymin
    cv2.fillPoly(mask, box.reshape(1, -1, 2).astype(np.int32), 1)
    return cv2.mean(pred[ymin : ymax + 1, xmin : xmax + 1], mask)[0]


def _unclip(box: np.ndarray) -> np.ndarray | None:
    """Grow the box by area * UNCLIP_RATIO / perimeter (Vatti offset, round joins)."""
    x, y = box[:, 0].astype(np.float64), box[:, 1].astype(np.float64)
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    length = float(np.sum(np.hypot(x - np.roll(x, -1), y - np.roll(y, -1))))
    if length == 0:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(area * UNCLIP_RATIO / length)
    if len(paths) != 1:
        return None
    return np.array(paths[0], np.int32).reshape(-1, 1, 2)


def _order_clockwise(pts: np.ndarray) -> np.ndarray:
    """tl, tr, br, bl (rapidocr TextDetector.order_points_clockwise)."""
    xs = pts[np.argsort(pts[:, 0]), :]
    left, right = xs[:2], xs[2:]
    tl, bl = left[np.argsort(left[:, 1]), :]
    tr, br = right[np.argsort(right[:, 1]), :]
    return np.array([tl, tr, br, bl], np.float32)


def _sorted_boxes(boxes: list[np.ndarray]) -> list[np.ndarray]:
    """Reading order: top to bottom, then left to right within 10 pixels of height."""
    out = sorted(boxes, key=lambda b: (b[0][1], b[0][0]))
    for i in range(len(out) - 1):
        for j in range(i, -1, -1):
            if abs(out[j + 1][0][1] - out[j][0][1]) < 10 and out[j + 1][0][0] < out[j][0][0]:
                out[j], out[j + 1] = out[j + 1], out[j]
            else:
                break
    return out


def _rotate_crop(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box's content warped upright; tall crops (h/w >= 1.5) turned 90 degrees."""
    crop_w = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    crop_h = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    dst = np.array([[0, 0], [crop_w, 0], [crop_w, crop_h], [0, crop_h]], np.float32)
    m = cv2.getPerspectiveTransform(box.astype(np.float32), dst)
    crop = cv2.warpPerspective(img, m, (crop_w, crop_h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if crop.shape[0] / crop.shape[1] >= 1.5:
        crop = np.rot90(crop)
    return crop


def _resize_to_height(img: np.ndarray, height: int, max_width: int) -> np.ndarray:
    """Scale to `height`, keeping the aspect ratio up to `max_width` (then squeezed)."""
    h, w = img.shape[:2]
    resized_w = min(max_width, int(math.ceil(height * w / float(h))))
    return cv2.resize(img, (resized_w, height))


def _resize_norm(img: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """rapidocr resize_norm_img: scale to the height, normalize, zero-pad on the right."""
    c, h, w = shape
    resized = _resize_to_height(img, h, w)
    out = np.zeros(shape, np.float32)
    out[:, :, : resized.shape[1]] = _normalize(resized)
    return out


# ---------------------------------------------------------------- rotate


def rotate(cls_out: np.ndarray, crops: np.ndarray, crop_w: np.ndarray) -> dict[str, np.ndarray]:
    """Turn upside-down crops and build the recognizer's input.

    cls_out: float32[K, 2] (classifier softmax over labels 0 and 180 degrees);
    crops: uint8[K, 48, 320, 3]; crop_w: int32[K]. A crop is rotated by 180 degrees when
    the classifier says 180 with a score above 0.9.
    Returns `rec_x` float32[K, 3, 48, 320] (rows with crop_w 0 are zero)."""
    rec_x = np.zeros((K, *REC_SHAPE), np.float32)
    for i in range(K):
        w = int(crop_w[i])
        if w <= 0:
            continue
        crop = crops[i, :, :w]
        label = int(np.argmax(cls_out[i]))
        if label == 1 and float(cls_out[i, label]) > CLS_THRESH:
            crop = cv2.rotate(crop, cv2.ROTATE_180)
        rec_x[i, :, :, :w] = _normalize(crop)
    return {"rec_x": rec_x}


# ---------------------------------------------------------------- decode


def decode(rec_out: np.ndarray, count: np.ndarray) -> dict[str, np.ndarray]:
    """CTC greedy decoding of the recognizer's output.

    rec_out: float32[K, 40, 6625] (softmax over blank, the 6623 dictionary characters and
    space, per time step); count: int32[1].
    Returns `text` object[K] of UTF-8 `bytes` (b"" past `count` and for lines whose mean
    character confidence is below 0.5, which rapidocr drops) and `score` float32[K]."""
    chars = _characters()
    n = int(count[0])
    text = np.empty((K,), dtype=object)
    text[:] = [b""] * K
    score = np.zeros((K,), np.float32)
    idx = rec_out.argmax(axis=2)
    prob = rec_out.max(axis=2)
    for i in range(min(n, K)):
        keep = np.ones(idx.shape[1], bool)
        keep[1:] = idx[i, 1:] != idx[i, :-1]
        keep &= idx[i] != 0  # CTC blank
        s = float(np.mean(prob[i][keep])) if keep.any() else 0.0
        score[i] = s
        if s >= TEXT_SCORE:
            text[i] = "".join(chars[j] for j in idx[i][keep]).encode("utf-8")
    return {"text": text, "score": score}


@lru_cache(maxsize=1)
def _characters() -> tuple[str, ...]:
    """blank, the dictionary's characters, space: the recognizer's output classes."""
    if not DICT_PATH.is_file():
        raise FileNotFoundError(f"{DICT_PATH} is missing: run `python {HERE / 'fetch_models.py'}`")
    return ("", *DICT_PATH.read_text(encoding="utf-8").split("\n"), " ")


# ---------------------------------------------------------------- shared


def _bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [H, W, 3] RGB image, got {image.dtype}{list(image.shape)}")
    return np.ascontiguousarray(image[:, :, ::-1])


def _normalize(img: np.ndarray) -> np.ndarray:
    """uint8 HWC -> float32 CHW in [-1, 1]."""
    return (img.astype(np.float32).transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
