"""Transforming: one base class that rebuilds a Program's statements and expressions.

A subclass overrides `visit_<Node>` for the nodes it changes (jinja's `NodeTransformer`); every
other node is rebuilt from its transformed children, and a node kind this class does not know is
an error, never passed through unseen. Passes and program forms build on it.
"""

from __future__ import annotations

from dataclasses import replace

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
    Var,
)

_LEAVES = (Const, Var, Load, Comment, Alloc)


class Transformer:
    """`visit_<Node>(node)` returns the new node; for a statement it may instead return a tuple of
    statements (none drops it, several replace it). The defaults rebuild children in order."""

    def statements(self, stmts: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
        out: list[Stmt] = []
        for stmt in stmts:
            new = self.statement(stmt)
            out.extend(new if isinstance(new, tuple) else (new,))
        return tuple(out)

    def statement(self, stmt: Stmt) -> Stmt | tuple[Stmt, ...]:
        return self._visit(stmt)

    def expr(self, e: Expr) -> Expr:
        return self._visit(e)

    def _visit(self, node):
        visit = getattr(self, f"visit_{type(node).__name__}", None)
        if visit is not None:
            return visit(node)
        return self.generic_visit(node)

    def generic_visit(self, node):
        """`node` rebuilt from its transformed children."""
        if isinstance(node, _LEAVES):
            return node
        if isinstance(node, (BinOp, Compare)):
            return replace(node, left=self.expr(node.left), right=self.expr(node.right))
        if isinstance(node, Neg):
            return Neg(self.expr(node.operand))
        if isinstance(node, Sum):
            return Sum(tuple(self.expr(t) for t in node.terms))
        if isinstance(node, Call):
            return Call(node.func, tuple(self.expr(a) for a in node.args))
        if isinstance(node, Assign):
            return Assign(self.expr(node.target), self.expr(node.value))
        if isinstance(node, If):
            return If(self.expr(node.test), self.statements(node.body),
                      self.statements(node.orelse))
        if isinstance(node, For):
            return replace(node, body=self.statements(node.body))
        if isinstance(node, Return):
            return Return(self.expr(node.value))
        if isinstance(node, Do):
            return Do(self.expr(node.call))
        raise TypeError(f"{type(self).__name__} has no rule for {type(node).__name__}")
