"""The block form (BLOCK rows per pass) behind score_batch and find_faces: exact, any row count.

Two numba programs at most: the shared 625-8-1 scanner net and one mixed-layout regression net.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from templater.compiler import program_of
from templater.forms import BLOCK, block_program
from templater.network import Dense, Head, Network
from templater.program import Alloc, For, walk

ROW_COUNTS = (0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3, 257, 700)


@pytest.fixture(scope="module")
def mixed_net():
    """4 -> 8 (unrolled) -> 40 (table) -> 3 (unrolled), three outputs: every block path."""
    rng = np.random.default_rng(7)
    sizes = (4, 8, 40, 3)
    layers = tuple(
        Dense(rng.normal(0, 0.7, (a, b)), rng.normal(0, 0.1, b), "relu" if k < 2 else "identity")
        for k, (a, b) in enumerate(itertools.pairwise(sizes))
    )
    return Network(4, layers, Head("regression"), name="mixed block test net")


LAYOUTS = ("unrolled", "table", "unrolled")


@pytest.fixture(scope="module")
def mixed_program(mixed_net, tmp_path_factory):
    from templater import compile as compile_network
    from templater import import_program

    path = tmp_path_factory.mktemp("block") / "mixed_numba.py"
    path.write_text(compile_network(mixed_net, "numba", LAYOUTS), encoding="utf-8")
    return import_program(path)


def test_block_form_allocates_block_rows_and_loops_over_them(mixed_net):
    allocs, body = block_program(program_of(mixed_net, "numba", LAYOUTS), BLOCK)
    assert allocs and all(isinstance(a, Alloc) and a.rows == BLOCK for a in allocs)
    loops = [s for s in walk(body) if isinstance(s, For)]
    assert any(s.var == "b" and s.stop == BLOCK for s in loops)
    assert any(s.var == "i" for s in loops)  # the table layer's input-major loop


@pytest.mark.parametrize("n", ROW_COUNTS)
def test_batch_is_the_reference_bit_for_bit_at_any_row_count(scan_net, build_program, n):
    program = build_program(scan_net, "numba")
    rows = np.random.default_rng(n).random((n, 625)) * 3.0
    got = program.score_batch(rows)
    assert got.shape == (n,)
    want = scan_net.forward(rows, exact=True)[:, 0] if n else np.zeros(0)
    assert np.array_equal(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("n", ROW_COUNTS)
def test_multi_output_batch_with_mixed_layouts_is_exact(mixed_net, mixed_program, n):
    program = mixed_program
    rows = np.random.default_rng(n).normal(0, 2, (n, 4))
    got = program.score_batch(rows)
    assert got.shape == (n, 3)
    if n:
        assert np.array_equal(got, mixed_net.forward(rows, exact=True))
        assert np.array_equal(program.scores(rows[0]), mixed_net.forward(rows[0], exact=True))


@pytest.mark.parametrize("n", (1, BLOCK - 1, BLOCK + 1, 700))
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
def test_batch_refuses_non_finite_values_in_any_row(scan_net, build_program, n, bad):
    program = build_program(scan_net, "numba")
    for row in sorted({0, n // 2, n - 1}):
        rows = np.zeros((n, 625))
        rows[row, 624 - row % 625] = bad
        with pytest.raises(ValueError, match="finite"):
            program.score_batch(rows)
    single = np.zeros(625)
    single[3] = bad
    with pytest.raises(ValueError, match="finite"):
        program.score(single)


def test_batch_works_in_a_forked_child_after_the_parent_used_threads(scan_net, build_program):
    import multiprocessing
    import warnings

    program = build_program(scan_net, "numba")
    rows = np.random.default_rng(3).random((700, 625))
    want = program.score_batch(rows)  # the parent's thread pool now exists
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a multi-threaded process: that is the case tested
        warnings.simplefilter("ignore", DeprecationWarning)
        with multiprocessing.get_context("fork").Pool(1) as pool:
            got = pool.apply_async(program.score_batch, (rows,)).get(timeout=120)
    assert np.array_equal(got, want)
