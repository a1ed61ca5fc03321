"""ONNX's own node test cases, run through templater's compiled programs for both targets."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
from templater.errors import TemplaterError
from templater.importers.onnx_backend import TemplaterBackend

CASES = json.loads((Path(__file__).parent / "onnx_cases.json").read_text())
# Each numba program is a compile of a few seconds: those cases belong to the full run.
TARGETS = ("python", pytest.param("numba", marks=pytest.mark.slow))


@pytest.fixture(scope="session")
def node_cases():
    """Every ONNX node case by name (built offline from onnx's case generators: ~5 s)."""
    import onnx.backend.test.loader as loader

    with warnings.catch_warnings():
        # onnx's generators for cases we do not run (Cast, ReduceMax, ...) overflow on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        return {case.name: case for case in loader.load_model_tests(kind="node")}


@pytest.fixture(scope="session")
def program_folder(request, tmp_path_factory):
    """Programs kept across runs (named by weights digest): numba's disk cache stays valid."""
    cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    if cache is None:
        return tmp_path_factory.mktemp("onnx-programs")
    return cache.mkdir("templater-onnx-conformance")


def test_case_list_is_complete_and_above_the_floor(node_cases):
    included, excluded = CASES["included"], CASES["excluded"]
    assert len(included) >= CASES["floor"] >= 50
    assert not set(included) & set(excluded)
    assert all(reason.strip() for reason in excluded.values())
    in_scope = {
        name for name in node_cases if name.startswith(tuple(CASES["scope_prefixes"]))
    }
    assert in_scope == set(included) | set(excluded), "update tests/onnx_cases.json"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", CASES["included"])
def test_included_case_passes(node_cases, program_folder, name, target):
    case = node_cases[name]
    rep = TemplaterBackend.prepare(case.model, target=target, folder=program_folder)
    assert case.data_sets, name
    for inputs, expected in case.data_sets:
        got = rep.run(inputs)
        assert len(got) == len(expected)
        for out, ref in zip(got, expected, strict=True):
            assert out.dtype == ref.dtype and out.shape == ref.shape
            np.testing.assert_allclose(out, ref, rtol=case.rtol, atol=case.atol)


@pytest.mark.parametrize("name", sorted(CASES["excluded"]))
def test_excluded_case_is_refused_not_miscomputed(node_cases, tmp_path, name):
    """An excluded case must be refused with a project error, never answered wrongly."""
    case = node_cases[name]
    rep = TemplaterBackend.prepare(case.model, target="python", folder=tmp_path)
    inputs, _ = case.data_sets[0]
    with pytest.raises(TemplaterError):
        rep.run(inputs)
