"""Bounds: interval bounds of every value in a Program over an input domain, and the two exact
passes they allow: a neuron proven never active is removed with its outgoing terms, and a
neuron proven always active loses its `if` (it is linear).

The bounds are computed with the program's own float operations in the program's own order.
IEEE rounding is monotone (a <= b implies fl(a + c) <= fl(b + c), and fl(w * a) <= fl(w * b)
for w >= 0), so evaluating a sum left to right with each input at the end of its range that
lowers (raises) the sum gives a float no larger (smaller) than anything the program can compute
for inputs in the domain. Nothing is widened or estimated: a proof here holds for the emitted
program bit for bit. A bound that is not finite proves nothing.

Removing a term `w * 0.0` leaves every sum unchanged except, at most, the sign of a sum that is
exactly zero (the same contract as `passes.prune_zero_terms`; -0.0 == 0.0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from templater.errors import UsageError
from templater.network import Network
from templater.program import (
    Alloc,
    Assign,
    BinOp,
    Call,
    Comment,
    Compare,
    Const,
    Do,
    Expr,
    For,
    If,
    Load,
    Neg,
    Program,
    Return,
    Stmt,
    Sum,
    Var,
    walk,
)

Interval = tuple[float, float]
UNKNOWN: Interval = (-math.inf, math.inf)
# Activations whose scalar form is `if s > 0.0: ... else: ...` (lower.activation_stmts).
RELU_LIKE = ("relu", "leaky_relu", "step")


@dataclass(frozen=True)
class Domain:
    """What the program's input arrays may hold: array name -> (low, high) for every element,
    and the float type the program computes in."""

    arrays: tuple[tuple[str, Interval], ...]
    dtype: str = "float64"
    description: str = ""


def domain_for(
    net: Network, low: float, high: float, dtype: str = "float64"
) -> Domain:
    """Inputs in [low, high]; with window normalisation the normalised vector `xn` is bounded
    too: |xn_i| <= ||xn||_2 <= sqrt(n) (its root mean square is at most 1), and also
    |xn_i| <= (high - low) / eps; a relative margin covers the rounding of its statistics."""
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise UsageError(f"--input-range needs finite LO <= HI, got {low!r} {high!r}")
    arrays: list[tuple[str, Interval]] = [("x", (low, high))]
    text = f"inputs in [{low!r}, {high!r}]"
    if net.normalization.kind == "window":
        n = net.input_size
        unit = 2.0**-53 if dtype == "float64" else 2.0**-24
        margin = 1.0 + 4.0 * (n + 8) * unit + 1e-12
        r = min(math.sqrt(n), (high - low) / net.normalization.eps) * margin
        arrays.append(("xn", (-r, r)))
        text += f", normalised values in [-{r:.6g}, {r:.6g}]"
    return Domain(tuple(arrays), dtype, text)


# -- interval evaluation ----------------------------------------------------------------------


class _Evaluator:
    """Interval values of a program's top-level statements, in the program's float type."""

    def __init__(self, program: Program, domain: Domain):
        self.f: Callable[[float], float] = float if domain.dtype == "float64" else np.float32
        self.arrays: dict[str, Interval] = {k: self._cast(v) for k, v in domain.arrays}
        self.fixed = set(self.arrays)  # their bounds come from the domain, not the code
        for table in program.tables:
            self.arrays[table.name] = self._cast((min(table.values), max(table.values)))
            self.fixed.add(table.name)
        self.env: dict[str, Interval] = {}

    def _cast(self, iv: Interval) -> Interval:
        return (self.f(iv[0]), self.f(iv[1]))

    def _checked(self, lo: float, hi: float) -> Interval:
        if math.isnan(lo) or math.isnan(hi) or not (math.isfinite(lo) and math.isfinite(hi)):
            return UNKNOWN
        return (lo, hi)

    def expr(self, e: Expr) -> Interval:
        with np.errstate(all="ignore"):
            return self._expr(e)

    def _expr(self, e: Expr) -> Interval:
        if isinstance(e, Const):
            v = self.f(e.value)
            return (v, v)
        if isinstance(e, Var):
            return self.env.get(e.name, UNKNOWN)
        if isinstance(e, Load):
            return self.arrays.get(e.array, UNKNOWN)
        if isinstance(e, Neg):
            lo, hi = self._expr(e.operand)
            return (-hi, -lo)
        if isinstance(e, Sum):
            lo, hi = self._expr(e.terms[0])
            for term in e.terms[1:]:
                tlo, thi = self._expr(term)
                lo, hi = self._checked(lo + tlo, hi + thi)
            return (lo, hi)
        if isinstance(e, BinOp):
            a, b = self._expr(e.left), self._expr(e.right)
            if UNKNOWN in (a, b):
                return UNKNOWN
            if e.op == "+":
                return self._checked(a[0] + b[0], a[1] + b[1])
            if e.op == "-":
                return self._checked(a[0] - b[1], a[1] - b[0])
            if e.op == "*":
                corners = [x * y for x in a for y in b]
                return self._checked(min(corners), max(corners))
        return UNKNOWN  # division, calls, comparisons: not needed for the proofs

    def decide(self, test: Compare) -> bool | None:
        """True or False when the test has that value for every input in the domain."""
        (llo, lhi), (rlo, rhi) = self.expr(test.left), self.expr(test.right)
        if UNKNOWN in ((llo, lhi), (rlo, rhi)):
            return None  # finite bounds also rule out NaN, which fails every comparison
        op = test.op
        if op == ">":
            return True if llo > rhi else False if lhi <= rlo else None
        if op == ">=":
            return True if llo >= rhi else False if lhi < rlo else None
        if op == "<":
            return True if lhi < rlo else False if llo >= rhi else None
        if op == "<=":
            return True if lhi <= rlo else False if llo > rhi else None
        return None

    def run(self, stmts: tuple[Stmt, ...]) -> None:
        for stmt in stmts:
            self.statement(stmt)

    def statement(self, stmt: Stmt) -> None:
        if isinstance(stmt, Assign):
            value = self.expr(stmt.value)
            if isinstance(stmt.target, Var):
                self.env[stmt.target.name] = value
            elif stmt.target.array not in self.fixed:
                old = self.arrays.get(stmt.target.array)
                self.arrays[stmt.target.array] = value if old is None else _join(old, value)
        elif isinstance(stmt, If):
            self._if(stmt)
        elif isinstance(stmt, For):
            self._forget(stmt)
        elif isinstance(stmt, Alloc):
            if stmt.name not in self.fixed:
                self.arrays.pop(stmt.name, None)  # filled by the assignments that follow
        elif not isinstance(stmt, (Comment, Return, Do)):
            raise TypeError(f"no bounds for statement {type(stmt).__name__}")

    def _if(self, stmt: If) -> None:
        decided = self.decide(stmt.test)
        if decided is not None:
            self.run(stmt.body if decided else stmt.orelse)
            return
        before = dict(self.env), dict(self.arrays)
        self._refine(stmt.test, True)
        self.run(stmt.body)
        taken = dict(self.env), dict(self.arrays)
        self.env, self.arrays = dict(before[0]), dict(before[1])
        self._refine(stmt.test, False)
        self.run(stmt.orelse)
        for mine, theirs in ((self.env, taken[0]), (self.arrays, taken[1])):
            for name in set(mine) | set(theirs):
                mine[name] = _join(mine.get(name, UNKNOWN), theirs.get(name, UNKNOWN))

    def _refine(self, test: Compare, holds: bool) -> None:
        """`v > c` taken: v >= c; not taken: v <= c (finite v is never NaN)."""
        if not (isinstance(test.left, Var) and isinstance(test.right, Const)):
            return
        if test.op != ">" or test.left.name not in self.env:
            return
        lo, hi = self.env[test.left.name]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return  # not finite: the value may be NaN, which takes the else branch
        c = self.f(test.right.value)
        self.env[test.left.name] = (max(lo, c), hi) if holds else (lo, min(hi, c))

    def _forget(self, loop: For) -> None:
        """A loop: everything it assigns is unknown (except arrays the domain bounds)."""
        self.env[loop.var] = UNKNOWN
        for inner in walk(loop.body):
            if isinstance(inner, For):
                self.env[inner.var] = UNKNOWN
            elif isinstance(inner, Assign):
                if isinstance(inner.target, Var):
                    self.env[inner.target.name] = UNKNOWN
                elif inner.target.array not in self.fixed:
                    self.arrays[inner.target.array] = UNKNOWN


def _join(a: Interval, b: Interval) -> Interval:
    return (min(a[0], b[0]), max(a[1], b[1]))


def decisions(program: Program, domain: Domain) -> dict[int, bool]:
    """For each top-level `if` (by position in the body) whose test the domain decides."""
    ev = _Evaluator(program, domain)
    out: dict[int, bool] = {}
    for index, stmt in enumerate(program.body):
        if isinstance(stmt, If):
            decided = ev.decide(stmt.test)
            if decided is not None:
                out[index] = decided
        ev.statement(stmt)
    return out


def pre_activation_bounds(program: Program, domain: Domain) -> dict[str, Interval]:
    """Bounds of every top-level scalar the program computes (by name)."""
    ev = _Evaluator(program, domain)
    ev.run(program.body)
    return dict(ev.env)


# -- the two passes ---------------------------------------------------------------------------


@dataclass
class BoundsReport:
    """What the passes did: (layer, neuron) pairs, filled in as they run."""

    domain: str
    dead: list[tuple[int, int]] = field(default_factory=list)
    linear: list[tuple[int, int]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"bounds over {self.domain}:",
            f"  removed {len(self.dead)} neuron(s) never active: {_listed(self.dead)}",
            f"  dropped the if of {len(self.linear)} neuron(s) always active: "
            f"{_listed(self.linear)}",
        ]

    def to_json(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "dead": [list(p) for p in self.dead],
            "always_active": [list(p) for p in self.linear],
        }


def _per_layer(pairs: list[tuple[int, int]]) -> str:
    counts: dict[int, int] = {}
    for layer, _ in pairs:
        counts[layer] = counts.get(layer, 0) + 1
    return "".join(f" (layer {k}: {v})" for k, v in sorted(counts.items()))


def _listed(pairs: list[tuple[int, int]]) -> str:
    return ", ".join(f"layer {layer} neuron {j}" for layer, j in pairs) or "none"


def neuron_tests(net: Network) -> dict[str, tuple[int, int]]:
    """The pre-activation name of each ReLU-like neuron -> (layer, neuron)."""
    from templater.lower import neuron_name

    names = {}
    for number, layer in enumerate(net.layers, start=1):
        if layer.activation.name in RELU_LIKE:
            for j in range(layer.n_outputs):
                names[neuron_name(number, "s", j, layer.n_outputs)] = (number, j)
    return names


def _neuron_of(stmt: If, names: dict[str, tuple[int, int]]) -> tuple[int, int] | None:
    test = stmt.test
    if (
        test.op == ">" and isinstance(test.left, Var) and test.left.name in names
        and isinstance(test.right, Const) and test.right.value == 0.0
    ):
        return names[test.left.name]
    return None


def _zero_output(stmt: If) -> str | None:
    """The neuron's output name when its else branch is `h = 0.0` (relu, step)."""
    if len(stmt.orelse) != 1:
        return None
    only = stmt.orelse[0]
    if (
        isinstance(only, Assign) and isinstance(only.target, Var)
        and isinstance(only.value, Const) and only.value.value == 0.0
        and not math.copysign(1.0, only.value.value) < 0
    ):
        return only.target.name
    return None


def remove_dead_neurons(
    program: Program, domain: Domain, names: dict[str, tuple[int, int]],
    report: BoundsReport | None = None,
) -> Program:
    """Neurons whose pre-activation is never > 0 on the domain and whose else is `h = 0.0`: the
    `if` goes, every later `w * h` term goes, any other use of `h` reads 0.0. Their sums are
    then unused (passes.remove_dead_code drops them)."""
    decided = decisions(program, domain)
    zeros: set[str] = set()
    body: list[Stmt] = []
    for index, stmt in enumerate(program.body):
        if isinstance(stmt, If) and decided.get(index) is False:
            neuron, h = _neuron_of(stmt, names), _zero_output(stmt)
            if neuron is not None and h is not None:
                zeros.add(h)
                if report is not None:
                    report.dead.append(neuron)
                continue
        body.append(_without(stmt, zeros) if zeros else stmt)
    return replace(program, body=tuple(body))


def drop_decided_ifs(
    program: Program, domain: Domain, names: dict[str, tuple[int, int]],
    report: BoundsReport | None = None,
) -> Program:
    """A neuron's `if` whose test the domain decides becomes the branch always taken (always
    active: `h = s`, the neuron is linear)."""
    decided = decisions(program, domain)
    body: list[Stmt] = []
    for index, stmt in enumerate(program.body):
        neuron = _neuron_of(stmt, names) if isinstance(stmt, If) else None
        if neuron is None or index not in decided:
            body.append(stmt)
            continue
        if decided[index] and report is not None:
            report.linear.append(neuron)
        body.extend(stmt.body if decided[index] else stmt.orelse)
    return replace(program, body=tuple(body))


def _without(stmt: Stmt, zeros: set[str]) -> Stmt:
    """`stmt` with each `w * h` term of a zero `h` dropped from sums, other uses read 0.0."""

    def ex(e: Expr) -> Expr:
        if isinstance(e, Var):
            return Const(0.0) if e.name in zeros else e
        if isinstance(e, Sum):
            first, *rest = e.terms
            kept = [ex(t) for t in rest if not _zero_term(t, zeros)]
            return Sum((ex(first), *kept))
        if isinstance(e, BinOp):
            return BinOp(e.op, ex(e.left), ex(e.right))
        if isinstance(e, Compare):
            return Compare(e.op, ex(e.left), ex(e.right))
        if isinstance(e, Neg):
            return Neg(ex(e.operand))
        if isinstance(e, Call):
            return Call(e.func, tuple(ex(a) for a in e.args))
        return e

    if isinstance(stmt, Assign):
        return Assign(stmt.target, ex(stmt.value))
    if isinstance(stmt, If):
        test = ex(stmt.test)
        assert isinstance(test, Compare)
        return If(test, tuple(_without(s, zeros) for s in stmt.body),
                  tuple(_without(s, zeros) for s in stmt.orelse))
    if isinstance(stmt, For):
        return replace(stmt, body=tuple(_without(s, zeros) for s in stmt.body))
    if isinstance(stmt, Return):
        return Return(ex(stmt.value))
    if isinstance(stmt, Do):
        call = ex(stmt.call)
        assert isinstance(call, Call)
        return Do(call)
    return stmt


def _zero_term(term: Expr, zeros: set[str]) -> bool:
    """`w * h` with a literal w (finite, so the product is a signed zero) and h known 0.0."""
    return (
        isinstance(term, BinOp) and term.op == "*" and isinstance(term.left, Const)
        and math.isfinite(term.left.value) and isinstance(term.right, Var)
        and term.right.name in zeros
    )


def bound_passes(
    net: Network, domain: Domain, report: BoundsReport
) -> tuple[Callable[[Program], Program], ...]:
    """The two passes as Program -> Program functions (for `passes.run_passes`)."""
    names = neuron_tests(net)

    def dead(program: Program) -> Program:
        return remove_dead_neurons(program, domain, names, report)

    def linear(program: Program) -> Program:
        return drop_decided_ifs(program, domain, names, report)

    return dead, linear


# -- compiling with them ----------------------------------------------------------------------


def compile_bounded(
    net: Network,
    low: float,
    high: float,
    target: str = "python",
    layout: str = "auto",
    dtype: str = "float64",
) -> tuple[str, BoundsReport]:
    """`templater.compile` with the bound passes first; the header says what they removed."""
    from templater.compiler import compile as compile_network
    from templater.compiler import rounded
    from templater.passes import DEFAULT_PASSES

    domain = domain_for(net, low, high, dtype)
    report = BoundsReport(domain.description)
    # float32 programs are lowered from the network rounded to float32: prove on those weights
    passes = (*bound_passes(rounded(net, dtype), domain, report), *DEFAULT_PASSES)
    source = compile_network(net, target, layout, passes=passes, dtype=dtype)
    return with_header(source, report), report


def with_header(source: str, report: BoundsReport) -> str:
    """The header's docstring gains a line after `Layer layouts: ...` saying what was proven."""
    marker = "\nLayer layouts: "
    at = source.find(marker)
    if at < 0:
        raise ValueError("no header to annotate")
    end = source.index("\n", at + 1)
    line = (
        f"\nExact passes over {report.domain}:"
        f"\n  removed {len(report.dead)} neuron(s) proven never active{_per_layer(report.dead)};"
        f"\n  dropped the if of {len(report.linear)} neuron(s) proven always active"
        f"{_per_layer(report.linear)}."
    )
    return source[:end] + line + source[end:]
