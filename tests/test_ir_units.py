"""Unit tests on small hand-built IR: the emitter, each pass, the transformer and the data literal.

Expected text is written out in full (golden snippets); a mismatch prints a unified diff.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass

import pytest

from templater.emit import Emitter, data_literal, layers_constant
from templater.errors import MalformedModelError
from templater.passes import prune_zero_terms, remove_dead_code
from templater.program import (
    INPUT_MAJOR,
    Alloc,
    Assign,
    BinOp,
    Call,
    Comment,
    Compare,
    Const,
    For,
    If,
    LayerInfo,
    Load,
    Neg,
    Program,
    Return,
    Sum,
    Table,
    Var,
)
from templater.targets import NUMBA, NUMBA32, PYTHON
from templater.transform import Transformer


def _same(got: list[str] | str, expected: str) -> None:
    text = got if isinstance(got, str) else "\n".join(got)
    expected = expected.strip("\n")
    if text != expected:
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), text.splitlines(),
                                              "expected", "emitted", lineterm=""))
        pytest.fail("emitted text differs:\n" + diff)


x = lambda i: Load("x", (i,))  # noqa: E731


# -- the emitter ------------------------------------------------------------------------------


def test_a_sum_is_one_term_per_line_and_negative_weights_subtract():
    stmt = Assign(Var("s"), Sum((Const(0.5), BinOp("*", Const(-2.0), x(0)),
                                 BinOp("*", Const(3.0), x(1)), Const(-0.0))))
    _same(Emitter(PYTHON).statement(stmt, 1), """
    s = (
        0.5
        - 2.0 * x[0]
        + 3.0 * x[1]
        - 0.0
    )
""")


def test_nested_ifs_become_elif_and_binops_keep_their_grouping():
    inner = If(Compare(">", Var("t"), Const(1.0)), (Assign(Var("h"), Const(1.0)),),
               (Assign(Var("h"), Var("t")),))
    stmt = If(Compare("<", Var("t"), Const(0.0)), (Assign(Var("h"), Const(0.0)),), (inner,))
    grouped = Assign(Var("y"), BinOp("+", BinOp("+", Var("a"), Var("b")),
                                     BinOp("+", Var("c"), Neg(Var("d")))))
    _same(Emitter(PYTHON).statements((stmt, grouped), 0), """
if t < 0.0:
    h = 0.0
elif t > 1.0:
    h = 1.0
else:
    h = t
y = a + b + (c + -d)
""")


def test_targets_differ_only_in_their_records():
    body = (
        Alloc("v", 3),
        For("i", 0, 6, (Assign(Load("v", ("j",)), BinOp("*", Load("W", ("i", "j")),
                                                         Call("exp", (Var("z"),)))),), step=2),
        Return(Const(0.25)),
    )
    _same(Emitter(PYTHON).statements(body, 0), """
v = [0.0] * 3
for i in range(0, 6, 2):
    v[j] = W[i][j] * _exp(z)
return 0.25
""")
    _same(Emitter(NUMBA32).statements(body, 0), """
v = np.empty(3, dtype=np.float32)
for i in range(0, 6, 2):
    v[j] = W[i, j] * math.exp(z)
return np.float32(0.25)
""")


def test_a_table_is_rows_of_literals():
    table = Table("L1_W", (2, 2), (0.1, -0.2, 1e-300, 3.0), "layer 1 weights")
    _same(Emitter(NUMBA).table(table), """
# layer 1 weights
L1_W = np.array((
    (0.1, -0.2),
    (1e-300, 3.0),
))
""")


def test_an_unknown_node_is_refused():
    @dataclass(frozen=True)
    class Goto:
        label: str

    with pytest.raises(TypeError, match="Goto"):
        Emitter(PYTHON).statement(Goto("end"), 0)
    with pytest.raises(TypeError, match="Goto"):
        Transformer().statement(Goto("end"))


# -- the data literal -------------------------------------------------------------------------


def test_layers_constant_reads_back_with_literal_eval():
    infos = (
        LayerInfo("normalize", reads="x", output="xn", eps=0.05),
        LayerInfo("dense", 1, 4, 2, "leaky_relu", (("alpha", 0.1),), "unrolled", "xn",
                  ("l1_h0", "l1_h1"), sums=("l1_s0", "l1_s1"), function="_kernel"),
        LayerInfo("dense", 2, 2, 1, "identity", (), "table", ("l1_h0", "l1_h1"), "l2_h",
                  weights="L2_W", bias="L2_B", columns=(0,)),
    )
    dicts = tuple(i.literal() for i in infos)
    lines = layers_constant(dicts)
    value = ast.literal_eval(ast.parse("\n".join(lines)).body[0].value)
    assert value == dicts
    assert value[0] == {"kind": "normalize", "reads": "x", "output": "xn", "eps": 0.05}
    assert value[1]["params"] == {"alpha": 0.1} and "weights" not in value[1]
    assert data_literal(("a",)) == "('a',)" and data_literal(-0.0) == "-0.0"
    with pytest.raises(MalformedModelError, match="non-finite"):
        data_literal(float("nan"))


# -- passes -----------------------------------------------------------------------------------


def _program(body) -> Program:
    return Program(tables=(), body=tuple(body), n_inputs=2, n_outputs=1)


def test_prune_zero_terms_reaches_into_branches_and_loops():
    zero = BinOp("*", Const(0.0), x(1))
    keep = BinOp("*", Const(2.0), x(0))
    body = (
        Assign(Var("a"), Sum((Const(0.0), zero, keep))),
        If(Compare(">", Var("a"), Const(0.0)), (Assign(Var("b"), Sum((Var("a"), zero))),)),
        For("i", 0, 2, (Assign(Load("v", ("i",)), Sum((Const(1.0), zero, keep))),),
            role=INPUT_MAJOR),
        Return(Var("a")),
    )
    pruned = prune_zero_terms(_program(body)).body
    _same(Emitter(PYTHON).statements(pruned, 0), """
a = (
    0.0
    + 2.0 * x[0]
)
if a > 0.0:
    b = a
for i in range(2):
    v[i] = (
        1.0
        + 2.0 * x[0]
    )
return a
""")
    assert pruned[2].role == INPUT_MAJOR  # a rebuilt loop keeps its role


def test_remove_dead_code_drops_unused_neurons_and_their_comments():
    body = (
        Comment("layer 1", opens=1),
        Assign(Var("h0"), Sum((Const(1.0), BinOp("*", Const(2.0), x(0))))),
        Assign(Var("h1"), Sum((Const(1.0), BinOp("*", Const(3.0), x(1))))),
        Comment("unused"),
        Assign(Var("dead"), Var("h1")),
        Comment("layer 2", opens=2),
        Return(Var("h0")),
    )
    kept = remove_dead_code(_program(body)).body
    _same(Emitter(PYTHON).statements(kept, 0), """
# layer 1
h0 = (
    1.0
    + 2.0 * x[0]
)
# layer 2
return h0
""")
    assert [s.opens for s in kept if isinstance(s, Comment)] == [1, 2]


# -- the transformer --------------------------------------------------------------------------


def test_a_transformer_rebuilds_and_may_drop_or_expand_statements():
    class Doubler(Transformer):
        def visit_Const(self, e: Const) -> Const:
            return Const(2 * e.value)

        def visit_Comment(self, s: Comment):
            return ()  # dropped

        def visit_Return(self, s: Return):
            return (Assign(Var("r"), self.expr(s.value)), Return(Var("r")))

    body = (Comment("c"), If(Compare(">", x(0), Const(1.5)), (Return(Const(0.25)),)))
    out = Doubler().statements(body)
    _same(Emitter(PYTHON).statements(out, 0), """
if x[0] > 3.0:
    r = 0.5
    return r
""")
