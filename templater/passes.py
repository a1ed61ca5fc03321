"""Passes: Program -> Program rewrites that keep every output value.

`prune_zero_terms` drops `0.0 * v` terms (for finite v they add a signed zero, so at most the
sign of a zero result changes, and -0.0 == 0.0). `remove_dead_code` then drops neurons whose
value nothing uses any more, e.g. a hidden unit whose outgoing weights are all zero.
"""

from __future__ import annotations

from dataclasses import replace

from templater.program import (
    Alloc,
    Assign,
    BinOp,
    Comment,
    Const,
    Expr,
    For,
    If,
    Load,
    Program,
    Return,
    Stmt,
    Sum,
    Var,
    expressions,
    walk,
)
from templater.transform import Transformer

DEFAULT_PASSES = ("prune_zero_terms", "remove_dead_code")


def run_passes(program: Program, names: tuple = DEFAULT_PASSES) -> Program:
    """Each pass in turn: a name in PASSES, or a function Program -> Program (templater.bounds
    makes its passes for one input domain)."""
    for name in names:
        program = (PASSES[name] if isinstance(name, str) else name)(program)
    return program


def prune_zero_terms(program: Program) -> Program:
    return replace(program, body=_PruneZeroTerms().statements(program.body))


def _is_zero_term(term: Expr) -> bool:
    return (
        isinstance(term, BinOp)
        and term.op == "*"
        and isinstance(term.left, Const)
        and term.left.value == 0.0
    )


class _PruneZeroTerms(Transformer):
    """Every sum, inside branches and loops too, without its `0.0 * v` terms."""

    def visit_Assign(self, stmt: Assign) -> Assign:
        if not isinstance(stmt.value, Sum):
            return stmt
        first, *rest = stmt.value.terms  # the bias (or running sum) stays, even when zero
        return replace(stmt, value=Sum((first, *(t for t in rest if not _is_zero_term(t)))))


def remove_dead_code(program: Program) -> Program:
    """Backward liveness over the top-level statements; writes into arrays are always kept."""
    live: set[str] = set()
    kept: list[Stmt] = []
    for stmt in reversed(program.body):
        defined, used, has_effect = _defs_uses(stmt)
        if has_effect or defined & live:
            live |= used
            kept.append(stmt)
    kept.reverse()
    # A sum that only adds its own previous value (`s = s`) after pruning is dropped too.
    body = tuple(s for s in kept if not _is_self_assign(s))
    return replace(program, body=_drop_orphan_comments(body))


def _is_self_assign(stmt: Stmt) -> bool:
    return (
        isinstance(stmt, Assign)
        and isinstance(stmt.target, Var)
        and isinstance(stmt.value, Sum)
        and stmt.value.terms == (stmt.target,)
    )


def _defs_uses(stmt: Stmt) -> tuple[set[str], set[str], bool]:
    """Names a top-level statement defines and uses, and whether it must stay regardless."""
    if isinstance(stmt, Comment):
        return set(), set(), True
    defined: set[str] = set()
    used: set[str] = set()
    effect = isinstance(stmt, (Return, For, Alloc))
    for inner in walk((stmt,)):
        roots: list[Expr] = []
        if isinstance(inner, Assign):
            if isinstance(inner.target, Var):
                defined.add(inner.target.name)
            else:
                effect = True
                roots.append(inner.target)
            roots.append(inner.value)
        elif isinstance(inner, If):
            roots.append(inner.test)
        elif isinstance(inner, Return):
            roots.append(inner.value)
        for root in roots:
            for e in expressions(root):
                if isinstance(e, Var):
                    used.add(e.name)
                elif isinstance(e, Load):
                    used.add(e.array)
    return defined, used, effect


def _drop_orphan_comments(body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    """Keep a comment only when a statement follows it before the next comment."""
    out: list[Stmt] = []
    for index, stmt in enumerate(body):
        if isinstance(stmt, Comment):
            following = body[index + 1] if index + 1 < len(body) else None
            if following is None or isinstance(following, Comment):
                continue
        out.append(stmt)
    return tuple(out)


PASSES = {
    "prune_zero_terms": prune_zero_terms,
    "remove_dead_code": remove_dead_code,
}
