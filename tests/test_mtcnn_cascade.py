"""The MTCNN cascade: its pieces on hand-made inputs, input kinds, and the runners agreeing."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from templater import mtcnn, mtcnn_cascade
from templater.mtcnn_cascade import as_rgb, nms, pyramid_scales, resize, resize_taps


def test_module_imports_only_numpy_and_math():
    tree = ast.parse(Path(mtcnn_cascade.__file__).read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
    assert names == {"math", "numpy"}


def test_pyramid_scales():
    scales = pyramid_scales(100, 200, min_face=20, factor=0.709)
    assert scales[0] == pytest.approx(0.6)
    assert all(100 * s >= 12 for s in scales)
    assert 100 * scales[-1] * 0.709 < 12
    assert pyramid_scales(10, 10, min_face=20) == []


@pytest.mark.parametrize("n_in,n_out", [(10, 6), (7, 3), (5, 5), (3, 8), (100, 24)])
def test_resize_taps_are_a_partition_of_unity(n_in, n_out):
    index, weight = resize_taps(n_in, n_out)
    assert index.min() >= 0 and index.max() < n_in
    np.testing.assert_allclose(weight.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_resize_area_and_bilinear_by_hand():
    x = np.arange(4.0).reshape(1, 4, 1)  # columns 0, 1, 2, 3
    np.testing.assert_allclose(resize(x, 1, 2)[0, :, 0], [0.5, 2.5])  # halves: pair means
    np.testing.assert_allclose(resize(x, 1, 3)[0, :, 0], [0.25, 1.5, 2.75])  # 4/3 footprints
    y = np.array([0.0, 10.0]).reshape(1, 2, 1)
    # enlarging 2 -> 4: centres at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped)
    np.testing.assert_allclose(resize(y, 1, 4)[0, :, 0], [0.0, 2.5, 7.5, 10.0])


def test_nms_union_min_and_ties():
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [50, 50, 59, 59], [0, 0, 4, 4.0]])
    scores = np.array([0.9, 0.95, 0.5, 0.9])
    # box 1 (best) overlaps box 0 by 81/119 = 0.68; box 3 lies inside box 0.
    assert nms(boxes, scores, 0.5, "union").tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.7, "union").tolist() == [1, 0, 3, 2]
    # 'min': box 0 vs 1 is 81/100; box 3 vs 1 is 16/25
    assert nms(boxes, scores, 0.7, "min").tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.6, "min").tolist() == [1, 2]
    # equal scores: the earlier box wins
    same = np.array([[0, 0, 9, 9], [0, 0, 9, 9.0]])
    assert nms(same, [0.5, 0.5], 0.5).tolist() == [0]
    assert nms(np.empty((0, 4)), [], 0.5).tolist() == []


def test_input_kinds():
    gray = np.full((30, 40), 200, np.uint8)
    assert as_rgb(gray).shape == (30, 40, 3)
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 3] = 255
    assert as_rgb(rgba).max() == 0.0
    assert as_rgb(np.full((5, 5, 3), 65535, np.uint16)).max() == pytest.approx(255.0)
    with pytest.raises(TypeError):
        as_rgb(np.zeros((5, 5), bool))
    with pytest.raises(ValueError):
        as_rgb(np.zeros((5, 5, 2), np.uint8))
    with pytest.raises(ValueError):
        as_rgb(np.full((5, 5), 300.0))


class _NoNets:
    def pnet(self, level):
        raise AssertionError("a photo smaller than the smallest face must not reach the nets")


def test_huge_first_level_is_refused_before_any_work():
    image = np.zeros((5000, 5000), np.uint8)  # min_face 6 would make a 10000x10000 level
    with pytest.raises(ValueError, match="first pyramid level"):
        mtcnn_cascade.find_faces(image, _NoNets(), min_face=6)
    with pytest.raises(ValueError, match="min_face"):
        mtcnn_cascade.find_faces(image, _NoNets(), min_face=5)


def test_small_image_gives_no_boxes():
    boxes, scores, marks = mtcnn_cascade.find_faces(np.zeros((15, 200, 3), np.uint8), _NoNets())
    assert boxes.shape == (0, 4) and scores.shape == (0,) and marks.shape == (0, 5, 2)


def _photos():
    import matplotlib.cbook
    import matplotlib.image
    import skimage.data

    hopper = matplotlib.image.imread(
        matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    )
    return {"astronaut": skimage.data.astronaut(), "grace_hopper": hopper}


def _same_boxes(a, b):
    (ba, sa, _), (bb, sb, _) = a, b
    assert len(ba) == len(bb) and len(ba) > 0
    for box, score in zip(ba, sa, strict=True):
        ious = [_iou(box, other) for other in bb]
        j = int(np.argmax(ious))
        assert ious[j] >= 0.95
        assert abs(score - sb[j]) <= 1e-4


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.slow
def test_reference_and_onnxruntime_give_the_same_faces():
    ort, ref = mtcnn.OnnxRuntimeNets(), mtcnn.ReferenceNets()
    for image in _photos().values():
        _same_boxes(mtcnn.detect(image, ref), mtcnn.detect(image, ort))


class _ProgramLike:
    """A stand-in for a compiled program: forward(image) with maps (channels, rows, cols)."""

    def __init__(self, net, batch):
        self.net = net
        if batch:
            self.forward_batch = lambda images: net.forward(images, np.float32)

    def forward(self, image):
        return self.net.forward(image, np.float32)


@pytest.mark.parametrize("batch", [False, True])
def test_program_nets_match_the_reference(batch):
    image = _photos()["astronaut"][40:200, 160:300]
    ref = mtcnn.ReferenceNets()
    programs = mtcnn.ProgramNets(*(_ProgramLike(ref.nets[n], batch) for n in mtcnn.HEADS))
    expect, got = mtcnn.detect(image, ref), mtcnn.detect(image, programs)
    assert len(expect[0]) == 1
    for a, b in zip(expect, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_pyramid_level_in_bands_equals_resize_then_normalise():
    rng = np.random.default_rng(0)
    for shape in [(100, 130, 3), (37, 50, 3)]:
        image = rng.integers(0, 256, shape).astype(np.uint8)
        for rows, cols in [(60, 78), (37, 50), (80, 90), (130, 20)]:
            expect = mtcnn_cascade.normalise(resize(image.astype(np.float64), rows, cols))
            got = mtcnn_cascade.pyramid_level(image, rows, cols, band=7)
            np.testing.assert_array_equal(got, expect)
