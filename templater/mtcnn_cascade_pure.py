"""MTCNN's three-stage face cascade in pure Python (math only): templater/mtcnn_cascade.py, step
for step, on nested lists of Python floats.

This module is self-contained on purpose: the pure-Python MTCNN program embeds its source text
verbatim, so it imports nothing but math and raises only ValueError / TypeError.

It is the numpy cascade (templater/mtcnn_cascade.py; read its docstring for the pipeline and its
deliberate differences from the `mtcnn` packages) with every float operation kept in the same
order, so that with nets computing the same numbers it gives the same boxes, scores and
landmarks bit for bit:
- `resize`: the same taps (`resize_taps`), rows first then columns, each output 0.0 plus its
  taps in ascending source order, in float64 (taps of weight 0 are skipped: adding +0.0 to a
  sum that started at +0.0 changes nothing).
- `normalise` rounds (x - 127.5) * 0.0078125 to the nearest float32 (ties to even), as the
  numpy cascade's `.astype(np.float32)` does, so the nets see the same inputs.
- NMS visits boxes by descending score, ties in the order produced (Python's sort is stable).
- np.fix is `_fix` (truncation keeping the sign of zero), astype(int64) is int().

Images inside are three planes [channel][row][column] of floats (channel R, G, B).

Input images (`as_rgb`): nested sequences (lists or tuples), rows x cols (gray, replicated to
three channels), rows x cols x 1, rows x cols x 3 (RGB) or rows x cols x 4 (RGBA, alpha
dropped), of real numbers (int or float, not bool) in [0, 255]. Objects with `tolist()` (numpy
arrays) are read through it; a numpy uint16 array is scaled by 255/65535 first, like the numpy
cascade, and a bool array is refused (TypeError). Smaller than min_face: empty results, no
error. Photos over MAX_PIXELS, and a min_face that makes the first level over
MAX_LEVEL_PIXELS, are refused (ValueError).

`nets` is any object with:
- pnet(level): [3][rows][cols] floats -> (prob [rows'][cols'], reg [4][rows'][cols'])
- rnet(crops): list of [3][24][24] -> (prob list (N,), reg list of N 4-lists)
- onet(crops): list of [3][48][48] -> (prob (N,), reg (N x 4), landmarks (N x 10))
with images in natural orientation (row = y), every value a float32-representable float.
"""

import math

PNET_STRIDE = 2
PNET_CELL = 12
MIN_FACE = 6  # the first pyramid level is then twice the image's size
MAX_PIXELS = 40_000_000
MAX_LEVEL_PIXELS = 40_000_000


def _real(v):
    """v as a float, refusing bools and non-numbers."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        if hasattr(v, "item") and not isinstance(v.item(), (bool, complex)):
            return _real(v.item())
        raise TypeError(f"image values must be real numbers, got {type(v).__name__}")
    return float(v)


def _shape_error(detail):
    return ValueError(
        "expected nested lists rows x cols (gray), rows x cols x 3 (RGB) or rows x cols x 4 "
        f"(RGBA); {detail}"
    )


def as_rgb(image):
    """The image as three planes [channel][row][column] of floats in [0, 255] (R, G, B)."""
    scale = None
    dtype = getattr(image, "dtype", None)
    if dtype is not None:
        name = str(dtype)
        if name == "bool":
            raise TypeError(f"expected an image of numbers, got dtype {name}")
        if name == "uint16":
            scale = 255.0 / 65535.0
    if hasattr(image, "tolist"):
        image = image.tolist()
    try:
        rows = len(image)
        first = image[0]
        cols = len(first)
        cell = first[0]
    except (TypeError, IndexError, KeyError):
        raise _shape_error("got something else (or no rows)") from None
    if rows * cols > MAX_PIXELS:
        raise ValueError(f"image of {rows}x{cols} exceeds {MAX_PIXELS} pixels")
    gray = isinstance(cell, (int, float)) or not hasattr(cell, "__len__")
    channels = 1 if gray else len(cell)
    if channels not in (1, 3, 4):
        raise _shape_error(f"got {channels} values per pixel")
    used = 1 if channels == 1 else 3
    planes = [[] for _ in range(used)]
    for row in image:
        if not hasattr(row, "__len__") or len(row) != cols:
            raise _shape_error("the rows are not all the same length")
        if gray:
            values = [_real(v) for v in row]
            planes[0].append(values)
            continue
        out = [[] for _ in range(used)]
        for pixel in row:
            if not hasattr(pixel, "__len__") or len(pixel) != channels:
                raise _shape_error("the pixels do not all have the same number of values")
            for c in range(used):
                out[c].append(_real(pixel[c]))
        for c in range(used):
            planes[c].append(out[c])
    for plane in planes:
        for r, row in enumerate(plane):
            if scale is not None:
                row = plane[r] = [v * scale for v in row]
            for v in row:
                if not 0.0 <= v <= 255.0:  # also refuses NaN
                    raise ValueError("image values must be finite numbers in [0, 255]")
    if used == 1:
        planes = [planes[0], planes[0], planes[0]]
    return planes


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
    """Per output i, the taps [(source index, weight), ...] of weight != 0, ascending source."""
    scale = n_in / n_out
    out = []
    if scale > 1.0:  # shrink: average the covered source pixels (area)
        taps = math.ceil(scale) + 1
        for i in range(n_out):
            start = i * scale
            first = math.floor(start)
            row = []
            for k in range(taps):
                index = first + k
                lo = max(float(index), start)
                hi = min(index + 1.0, start + scale)
                weight = max(hi - lo, 0.0) / scale
                if index < n_in and weight != 0.0:
                    row.append((index, weight))
            out.append(row)
    else:  # enlarge: bilinear, half-pixel centres, clamped
        for i in range(n_out):
            src = min(max((i + 0.5) * scale - 0.5, 0.0), float(n_in - 1))
            first = min(math.floor(src), n_in - 1)
            frac = src - first
            row = []
            for index, weight in ((first, 1.0 - frac), (first + 1, frac)):
                if index < n_in and weight != 0.0:
                    row.append((index, weight))
            out.append(row)
    return out


def _resize_plane(plane, rows, cols):
    """One [r][c] plane -> [rows][cols]: rows first, then columns (see the top)."""
    width = len(plane[0])
    tall = []
    for taps in resize_taps(len(plane), rows):
        acc = [0.0] * width
        for index, weight in taps:
            acc = [a + weight * v for a, v in zip(acc, plane[index], strict=True)]
        tall.append(acc)
    col_taps = resize_taps(width, cols)
    out = []
    for row in tall:
        line = []
        for taps in col_taps:
            acc = 0.0
            for index, weight in taps:
                acc += weight * row[index]
            line.append(acc)
        out.append(line)
    return out


def resize(planes, rows, cols):
    """[ch][r][c] floats -> [ch][rows][cols] floats (float64 arithmetic, see the top)."""
    return [_resize_plane(plane, rows, cols) for plane in planes]


def to_float32(v):
    """The float32 nearest to v (ties to even), as a Python float: what numpy's
    astype(np.float32) gives."""
    if v == 0.0 or v != v or v in (math.inf, -math.inf):
        return v
    m, e = math.frexp(v)  # v = m * 2**e, 0.5 <= |m| < 1
    if e < -125:  # float32 subnormals: multiples of 2**-149
        return math.copysign(math.ldexp(round(math.ldexp(v, 149)), -149), v)
    r = math.ldexp(round(math.ldexp(m, 24)), e - 24)
    if abs(r) >= 2.0**128:
        return math.copysign(math.inf, v)
    return r


def normalise(planes):
    return [
        [[to_float32((v - 127.5) * 0.0078125) for v in row] for row in plane] for plane in planes
    ]


def _fix(v):
    """np.fix: truncation toward zero, keeping the sign (of zero too)."""
    return math.copysign(float(math.trunc(v)), v)


def pnet_boxes(prob, reg, scale, threshold):
    """Rows [x1, y1, x2, y2, score, dx1, dy1, dx2, dy2] for cells with prob >= threshold."""
    out = []
    for r, line in enumerate(prob):
        for c, p in enumerate(line):
            if p >= threshold:
                out.append([
                    _fix((PNET_STRIDE * c + 1) / scale),
                    _fix((PNET_STRIDE * r + 1) / scale),
                    _fix((PNET_STRIDE * c + PNET_CELL) / scale),
                    _fix((PNET_STRIDE * r + PNET_CELL) / scale),
                    float(p),
                    float(reg[0][r][c]),
                    float(reg[1][r][c]),
                    float(reg[2][r][c]),
                    float(reg[3][r][c]),
                ])
    return out


def _divide(a, b):
    """a / b with IEEE results for b == 0 (as numpy's division gives)."""
    if b == 0.0:
        if a == 0.0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def nms(boxes, scores, threshold, mode="union"):
    """Indices kept by greedy non-maximum suppression, best first (ties: lower index first).

    A box is suppressed when its overlap with a kept box exceeds `threshold`; overlap is
    intersection / union ('union') or intersection / smaller area ('min'), with the +1 pixel
    sides of inclusive coordinates."""
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    area = [(b[2] - b[0] + 1) * (b[3] - b[1] + 1) for b in boxes]
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    while order:
        i = order[0]
        keep.append(i)
        x1, y1, x2, y2 = boxes[i][:4]
        rest = []
        for j in order[1:]:
            b = boxes[j]
            w = max(0.0, min(x2, b[2]) - max(x1, b[0]) + 1)
            h = max(0.0, min(y2, b[3]) - max(y1, b[1]) + 1)
            inter = w * h
            if mode == "min":
                overlap = _divide(inter, min(area[i], area[j]))
            else:
                overlap = _divide(inter, area[i] + area[j] - inter)
            if overlap <= threshold:
                rest.append(j)
        order = rest
    return keep


def square(box):
    """The box [x1, y1, x2, y2] grown to a square of its longer side, about the same centre."""
    x1, y1, x2, y2 = box[:4]
    h = y2 - y1
    w = x2 - x1
    side = max(w, h)
    a = x1 + w * 0.5 - side * 0.5
    b = y1 + h * 0.5 - side * 0.5
    return [a, b, a + side, b + side]


def regress(box, reg, plus_one=True):
    """The box moved by the nets' offsets, each a fraction of the box's width or height."""
    extra = 1.0 if plus_one else 0.0
    x1, y1, x2, y2 = box[:4]
    w = x2 - x1 + extra
    h = y2 - y1 + extra
    return [x1 + reg[0] * w, y1 + reg[1] * h, x2 + reg[2] * w, y2 + reg[3] * h]


def crops(image, boxes, size):
    """Normalised [3][size][size] crops of integer boxes, zero outside the image, and the
    indices of boxes with a non-empty crop (the others are dropped)."""
    rows, cols = len(image[0]), len(image[0][0])
    out = []
    ok = []
    for n, box in enumerate(boxes):
        x1, y1, x2, y2 = (int(v) for v in box[:4])
        if not (x2 >= x1 and y2 >= y1):
            continue
        ok.append(n)
        height, width = y2 - y1 + 1, x2 - x1 + 1
        top, left = max(y1 - 1, 0), max(x1 - 1, 0)
        bottom, right = min(y2, rows), min(x2, cols)
        inside = bottom > top and right > left
        patch = []
        for plane in image:
            lines = []
            for py in range(height):
                y = y1 - 1 + py
                if inside and top <= y < bottom:
                    lines.append(
                        [0.0] * (left - (x1 - 1))
                        + plane[y][left:right]
                        + [0.0] * (width - (right - (x1 - 1)))
                    )
                else:
                    lines.append([0.0] * width)
            patch.append(lines)
        out.append(normalise(resize(patch, size, size)))
    return out, ok


def stage_pnet(image, nets, scales, threshold):
    """Candidate boxes [x1, y1, x2, y2, score] (integers, squared)."""
    rows, cols = len(image[0]), len(image[0][0])
    found = []
    for scale in scales:
        level = normalise(resize(image, math.ceil(rows * scale), math.ceil(cols * scale)))
        prob, reg = nets.pnet(level)
        boxes = pnet_boxes(prob, reg, scale, threshold)
        if boxes:
            keep = nms(boxes, [b[4] for b in boxes], 0.5, "union")
            found.extend(boxes[i] for i in keep)
    if not found:
        return []
    out = []
    for i in nms(found, [b[4] for b in found], 0.7, "union"):
        b = found[i]
        moved = square(regress(b[:4], b[5:9], plus_one=False))
        out.append([_fix(v) for v in moved] + [b[4]])
    return out


def stage_rnet(image, nets, boxes, threshold):
    """RNet's verdict on PNet's boxes: [x1, y1, x2, y2, score] regressed and squared."""
    batch, ok = crops(image, boxes, 24)
    boxes = [boxes[i] for i in ok]
    if not boxes:
        return []
    prob, reg = nets.rnet(batch)
    kept = [([*boxes[n][:4], float(p)], [float(v) for v in reg[n]])
            for n, p in enumerate(prob) if float(p) > threshold]
    pick = nms([b for b, _ in kept], [b[4] for b, _ in kept], 0.7, "union")
    return [[*square(regress(kept[i][0], kept[i][1])), kept[i][0][4]] for i in pick]


def stage_onet(image, nets, boxes, threshold):
    """ONet's verdict: final boxes [x1, y1, x2, y2, score] and landmarks [[x, y] * 5]."""
    boxes = [[_fix(v) for v in b[:4]] + [b[4]] for b in boxes]
    batch, ok = crops(image, boxes, 48)
    boxes = [boxes[i] for i in ok]
    if not boxes:
        return [], []
    prob, reg, marks = nets.onet(batch)
    final, points = [], []
    for n, p in enumerate(prob):
        p = float(p)
        if not p > threshold:
            continue
        x1, y1, x2, y2 = boxes[n][:4]
        m = [float(v) for v in marks[n]]
        w = x2 - x1 + 1
        h = y2 - y1 + 1
        points.append([[w * m[k] + x1 - 1, h * m[k + 5] + y1 - 1] for k in range(5)])
        final.append([*regress(boxes[n][:4], [float(v) for v in reg[n]]), p])
    pick = nms(final, [b[4] for b in final], 0.7, "min")
    return [final[i] for i in pick], [points[i] for i in pick]


def find_faces(image, nets, min_face=20, thresholds=(0.6, 0.7, 0.7), factor=0.709):
    """(boxes [[x0, y0, x1, y1], ...] as 0-based pixel edges, scores [...], landmarks
    [[[x, y] * 5], ...]), best score first. See the module docstring for the input."""
    if not min_face >= MIN_FACE or not 0.0 < factor < 1.0:
        raise ValueError(
            f"need min_face >= {MIN_FACE} and 0 < factor < 1, got {min_face}, {factor}"
        )
    rgb = as_rgb(image)
    rows, cols = len(rgb[0]), len(rgb[0][0])
    if min(rows, cols) < min_face:
        return [], [], []
    scales = pyramid_scales(rows, cols, min_face, factor)
    first = math.ceil(rows * scales[0]) * math.ceil(cols * scales[0])
    if first > MAX_LEVEL_PIXELS:
        raise ValueError(
            f"min_face {min_face} makes a first pyramid level of {first} pixels, more than "
            f"{MAX_LEVEL_PIXELS}; use a larger min_face"
        )
    boxes = stage_pnet(rgb, nets, scales, thresholds[0])
    if boxes:
        boxes = stage_rnet(rgb, nets, boxes, thresholds[1])
    if not boxes:
        return [], [], []
    boxes, points = stage_onet(rgb, nets, boxes, thresholds[2])
    if not boxes:
        return [], [], []
    return [[b[0] - 1.0, b[1] - 1.0, b[2], b[3]] for b in boxes], [b[4] for b in boxes], points
