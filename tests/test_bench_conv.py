"""templater bench --conv: multiply-add counts and the detector's per-step clock."""

from __future__ import annotations

import numpy as np
import pytest

from templater.bench.conv import STAGES, multiply_adds, stage_seconds
from templater.convnet import Conv2D, ConvNetwork, Flatten
from templater.network import Dense


def test_multiply_adds_counts_every_conv_and_dense_term():
    rng = np.random.default_rng(0)
    conv = Conv2D(rng.normal(size=(2, 1, 3, 3)), np.zeros(2))  # 5x5 -> 3x3, 2 channels
    head = (Flatten("chw"), Dense(rng.normal(size=(18, 4)), np.zeros(4)))
    net = ConvNetwork(1, [conv], [("out", head)], size=(5, 5))
    assert multiply_adds(net, 5, 5) == 3 * 3 * 2 * 9 + 18 * 4


class _CountingNets:
    """MTCNN's reference nets (numpy), counting the calls the clock passes on."""

    def __init__(self) -> None:
        from templater import mtcnn

        self.inner = mtcnn.ReferenceNets()
        self.calls = {"pnet": 0, "rnet": 0, "onet": 0}

    def pnet(self, level):
        self.calls["pnet"] += 1
        return self.inner.pnet(level)

    def rnet(self, crops):
        self.calls["rnet"] += 1
        return self.inner.rnet(crops)

    def onet(self, crops):
        self.calls["onet"] += 1
        return self.inner.onet(crops)


def test_the_stage_clock_times_every_step_and_changes_no_result():
    pytest.importorskip("onnx")
    from skimage import data

    from templater import mtcnn, mtcnn_cascade
    from templater.bench.conv import _StageClock

    face = data.astronaut()[20:200, 130:310]  # the astronaut's face, enlarged by the pyramid
    nets = _CountingNets()
    seconds = stage_seconds(face, nets, min_face=40, repeats=2)
    assert set(seconds) == {*STAGES, "other"}
    assert all(seconds[stage] > 0 for stage in STAGES)  # the face reaches ONet
    assert nets.calls["pnet"] == 2 * len(mtcnn_cascade.pyramid_scales(180, 180, 40))
    clocked = mtcnn_cascade.find_faces(face, _StageClock(nets), min_face=40)
    plain = mtcnn.detect(face, nets, min_face=40)
    for got, expect in zip(clocked, plain, strict=True):
        assert np.array_equal(got, expect)


@pytest.mark.slow  # compiles the committed MTCNN program
def test_detector_rows_compare_the_program_with_onnxruntime_step_by_step():
    pytest.importorskip("onnxruntime")
    from templater.bench.conv import _detector_rows

    rows = _detector_rows(1, lambda _: None)
    assert rows[0].section == "find_faces (float32)" and rows[0].value > 0
    steps = [f"step: {s}" for s in (*STAGES, "other")]
    assert [r.section for r in rows[1:8]] == steps
    assert all(r.value > 0 and r.baseline_value > 0 for r in rows[1:7])  # every step ran
    if len(rows) > 8:  # the evaluation set's photos are installed: the same steps over them
        assert rows[8].section == "evaluation set" and rows[8].unit == "s/MP"
        assert [r.section for r in rows[9:]] == ["set " + s for s in steps]
        assert all(r.value > 0 and r.baseline_value > 0 for r in rows[9:15])
