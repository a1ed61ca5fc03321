"""The report: the results as a table, and the performance criteria judged on them."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from templater.bench.records import Results, Row


def table(results: Results) -> str:
    """The results as a Markdown table (one row per figure)."""
    m = results.machine
    lines = [
        f"machine: {m['processor']}, {m['cpus']} cpus; python {m['python']}, numpy "
        f"{m['numpy']}, numba {m['numba']}; OPENBLAS_CORETYPE={m['openblas_coretype'] or '-'}",
        f"FMA peak: {m['fma_peak_gmacs']:.1f} GMAC/s float64 ({m['peak_method']})",
        "",
        "| network | section | figure | value | baseline | baseline value | speedup | note |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    for r in results.rows:
        base = "" if r.baseline_value is None else _fmt(r.baseline_value)
        speedup = "" if r.speedup is None else f"{r.speedup:.2f}x"
        lines.append(
            f"| {r.network} | {r.section} | {r.what} | {_fmt(r.value)} {r.unit} | {r.baseline} "
            f"| {base} | {speedup} | {r.note} |"
        )
    return "\n".join(lines)


class Criterion(NamedTuple):
    """One performance criterion: which rows it reads and how it judges them."""

    what: str
    networks: tuple[str, ...]
    section: str
    figure: str
    baseline: str
    met: Callable[[Row], bool]
    shows: str = "speedup"  # the column shown as measured: "speedup", "value" or "note"


def _at_least(ratio: float) -> Callable[[Row], bool]:
    return lambda r: (r.speedup or 0.0) >= ratio


DETECTORS = ("625-32-1", "625-128-1")
SCAN = "find_faces on the astronaut"
CRITERIA = (
    Criterion(
        "cold compile <= 3 s",
        ("625-32-1",),
        "compile",
        "numba cold compile (fresh process)",
        "",
        lambda r: r.value <= 3.0,
        "value",
    ),
    Criterion(
        "cached first call <= 0.6 s",
        ("625-32-1",),
        "compile",
        "cached first call (fresh process)",
        "",
        lambda r: r.value <= 0.6,
        "value",
    ),
    Criterion(
        "in-loop >= 10 GMAC/s",
        DETECTORS,
        "in-loop",
        "multiply-add rate",
        "plain numba loop",
        lambda r: r.value >= 10.0,
        "value",
    ),
    Criterion(
        "single call >= 5x onnxruntime",
        ("625-32-1",),
        "single",
        "decide(x) from Python",
        "onnxruntime float32",
        _at_least(5.0),
    ),
    Criterion(
        "single call >= 2x numpy float64",
        ("625-32-1",),
        "single",
        "decide(x) from Python",
        "numpy float64",
        _at_least(2.0),
    ),
    Criterion(
        "batch >= numpy float64",
        DETECTORS,
        "batch",
        "score_batch samples/s",
        "numpy float64",
        _at_least(1.0),
    ),
    Criterion(
        "scan >= 5x numpy im2col + matmul",
        DETECTORS,
        "scan",
        SCAN,
        "numpy im2col + matmul",
        _at_least(5.0),
    ),
    Criterion(
        "scan faster than the LBP cascade",
        DETECTORS,
        "scan",
        SCAN,
        "skimage LBP Cascade",
        lambda r: (r.speedup or 0.0) > 1.0,
    ),
    Criterion(
        "scan: same boxes as the reference",
        DETECTORS,
        "scan",
        SCAN,
        "numpy im2col + matmul",
        lambda r: r.note.endswith("same boxes as the reference: True"),
        "note",
    ),
    Criterion(
        "1M parameters compile <= 30 s",
        ("625-1600-1",),
        "size sweep",
        "numba cold compile (fresh process)",
        "",
        lambda r: r.value <= 30.0,
        "value",
    ),
    Criterion(
        "1M parameters: peak memory < 2 GB",
        ("625-1600-1",),
        "size sweep",
        "peak memory, cold compile process",
        "",
        lambda r: r.value < 2048.0,
        "value",
    ),
)


def criteria(results: Results) -> str:
    """The criteria judged on this run's rows (float32 programs too, when measured)."""
    lines = ["| criterion | network | measured | met |", "|---|---|---:|---|"]
    for t in CRITERIA:
        for network in t.networks:
            for row in results.rows:
                name = row.network.removesuffix(" float32")
                if (name, row.section, row.what, row.baseline) != (
                    network,
                    t.section,
                    t.figure,
                    t.baseline,
                ):
                    continue
                shown = {
                    "speedup": f"{row.speedup or 0.0:.2f}x",
                    "value": f"{_fmt(row.value)} {row.unit}",
                    "note": row.note.rsplit(": ", 1)[-1],
                }[t.shows]
                verdict = "yes" if t.met(row) else "**no**"
                lines.append(f"| {t.what} | {row.network} | {shown} | {verdict} |")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if value == 0 or 0.01 <= abs(value) < 1e6:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:.3e}"
