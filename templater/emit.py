"""Emitting: the visitor that turns Program statements and tables into lines of source."""

from __future__ import annotations

from templater.literals import literal
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
    Return,
    Stmt,
    Sum,
    Table,
    Var,
)
from templater.targets import Target

INDENT = "    "
VALUES_PER_LINE = 8
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class Emitter:
    """Dispatches on node type; an unknown node is an error, never silently skipped."""

    def __init__(self, target: Target):
        self.target = target

    # -- statements ---------------------------------------------------------------------------
    def statements(self, stmts: tuple[Stmt, ...], depth: int) -> list[str]:
        lines: list[str] = []
        for stmt in stmts:
            lines.extend(self.statement(stmt, depth))
        return lines or [INDENT * depth + "pass"]

    def statement(self, stmt: Stmt, depth: int) -> list[str]:
        pad = INDENT * depth
        if isinstance(stmt, Comment):
            if "\n" in stmt.text or "\r" in stmt.text:
                raise ValueError("comments are one line")
            return [f"{pad}# {stmt.text}"]
        if isinstance(stmt, Assign):
            target = self.expr(stmt.target)
            if isinstance(stmt.value, Sum) and len(stmt.value.terms) > 1:
                return [f"{pad}{target} = (", *self._sum_lines(stmt.value, depth + 1), f"{pad})"]
            return [f"{pad}{target} = {self.expr(stmt.value)}"]
        if isinstance(stmt, If):
            return self._if(stmt, depth, "if")
        if isinstance(stmt, For):
            bounds = f"{stmt.stop}" if stmt.start == 0 else f"{stmt.start}, {stmt.stop}"
            if stmt.step != 1:
                bounds = f"{stmt.start}, {stmt.stop}, {stmt.step}"
            head = f"{pad}for {stmt.var} in range({bounds}):"
            return [head, *self.statements(stmt.body, depth + 1)]
        if isinstance(stmt, Alloc):
            alloc = self.target.alloc_rows if stmt.rows else self.target.alloc
            return [f"{pad}{stmt.name} = {alloc.format(size=stmt.size, rows=stmt.rows)}"]
        if isinstance(stmt, Return):
            return [f"{pad}return {self.expr(stmt.value)}"]
        if isinstance(stmt, Do):
            return [f"{pad}{self.expr(stmt.call)}"]
        raise TypeError(f"no emitter for statement {type(stmt).__name__}")

    def _if(self, stmt: If, depth: int, keyword: str) -> list[str]:
        pad = INDENT * depth
        lines = [f"{pad}{keyword} {self.expr(stmt.test)}:", *self.statements(stmt.body, depth + 1)]
        if len(stmt.orelse) == 1 and isinstance(stmt.orelse[0], If):
            lines.extend(self._if(stmt.orelse[0], depth, "elif"))
        elif stmt.orelse:
            lines.append(f"{pad}else:")
            lines.extend(self.statements(stmt.orelse, depth + 1))
        return lines

    def _sum_lines(self, total: Sum, depth: int) -> list[str]:
        """One term per line; a term with a negative weight is written as a subtraction,
        which IEEE arithmetic defines as the same operation."""
        pad = INDENT * depth
        lines = [pad + self.expr(total.terms[0])]
        for term in total.terms[1:]:
            sign, magnitude = "+", term
            if isinstance(term, Const) and _negative(term.value):
                sign, magnitude = "-", Const(-term.value)
            elif (
                isinstance(term, BinOp)
                and term.op == "*"
                and isinstance(term.left, Const)
                and _negative(term.left.value)
            ):
                sign, magnitude = "-", BinOp("*", Const(-term.left.value), term.right)
            lines.append(f"{pad}{sign} {self.expr(magnitude, 2)}")
        return lines

    # -- expressions --------------------------------------------------------------------------
    def expr(self, e: Expr, context: int = 0) -> str:
        if isinstance(e, Const):
            text = self.target.const.format(value=literal(e.value, self.target.dtype))
            # A negative literal inside a product or quotient reads fine; as the right
            # operand of a subtraction it is parenthesised to stay readable.
            return f"({text})" if context >= 3 and text.startswith("-") else text
        if isinstance(e, Var):
            return e.name
        if isinstance(e, Load):
            if not e.index:
                return e.array
            if len(e.index) == 1:
                return f"{e.array}[{e.index[0]}]"
            i, j = e.index
            return self.target.index2.format(array=e.array, i=i, j=j)
        if isinstance(e, BinOp):
            prec = _PRECEDENCE[e.op]
            left = self.expr(e.left, prec)
            # A right operand at equal precedence keeps its parentheses: float + and * are not
            # associative, so (a + b) + (c + d) must not print as a + b + c + d.
            right = self.expr(e.right, prec + 1)
            text = f"{left} {e.op} {right}"
            return f"({text})" if prec < context else text
        if isinstance(e, Neg):
            if isinstance(e.operand, Const):
                return self.expr(Const(-e.operand.value), context)
            return f"-{self.expr(e.operand, 3)}"
        if isinstance(e, Sum):
            text = " + ".join(self.expr(t, 1) for t in e.terms)
            return f"({text})" if context > 1 and len(e.terms) > 1 else text
        if isinstance(e, Call):
            args = ", ".join(self.expr(a) for a in e.args)
            return f"{self.target.function(e.func)}({args})"
        if isinstance(e, Compare):
            return f"{self.expr(e.left, 1)} {e.op} {self.expr(e.right, 1)}"
        raise TypeError(f"no emitter for expression {type(e).__name__}")

    # -- tables -------------------------------------------------------------------------------
    def table(self, table: Table) -> list[str]:
        """`NAME = (rows)`, each row wrapped at VALUES_PER_LINE literals."""
        t = self.target
        lines = []
        if table.comment:
            lines.append(f"# {table.comment}")
        lines.append(f"{table.name} = {t.table_open}(")
        values = [literal(v, t.dtype) for v in table.values]
        if len(table.shape) == 1:
            lines.extend(_wrapped(values, INDENT, INDENT))
        else:
            width = table.shape[1]
            for start in range(0, len(values), width):
                row = values[start : start + width]
                wrapped = _wrapped(row, INDENT + "(", INDENT + " ")
                # close the row's tuple; a 1-tuple keeps its comma: (0.5,),
                wrapped[-1] = wrapped[-1] + ")," if len(row) == 1 else wrapped[-1][:-1] + "),"
                lines.extend(wrapped)
        lines.append(f"){t.table_close}")
        return lines


def _wrapped(values: list[str], first: str, rest: str) -> list[str]:
    """Values with a comma after each (a 1-tuple needs it), VALUES_PER_LINE to a line."""
    lines = []
    for start in range(0, len(values), VALUES_PER_LINE):
        chunk = ", ".join(values[start : start + VALUES_PER_LINE])
        prefix = first if start == 0 else rest
        lines.append(f"{prefix}{chunk},")
    return lines


def _negative(value: float) -> bool:
    return value < 0.0 or (value == 0.0 and str(value).startswith("-"))


# -- data -------------------------------------------------------------------------------------


def data_literal(value: object) -> str:
    """A literal of dicts, tuples, strings, ints and floats (floats by the one formatter), read
    back by `ast.literal_eval`. Strings come from structure (names, kinds), never a model file."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        return literal(value)
    if isinstance(value, (int, str)):
        return repr(value)
    if isinstance(value, tuple):
        items = ", ".join(data_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, dict):
        items = ", ".join(f"{data_literal(k)}: {data_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"no literal for {type(value).__name__}")


def layers_constant(layers: tuple[dict[str, object], ...]) -> list[str]:
    """The LAYERS constant's lines: one dict per step, one key per line."""
    lines = ["LAYERS = ("]
    for layer in layers:
        lines.append(INDENT + "{")
        lines.extend(f"{INDENT * 2}{data_literal(k)}: {data_literal(v)}," for k, v in layer.items())
        lines.append(INDENT + "},")
    lines.append(")")
    return lines
