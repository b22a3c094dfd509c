"""The expressions of a released-interface program: reads, static facts and constant folding.

:class:`ExprTranslator` translates one expression to ``(new node, static value)``: released reads
go through :class:`~espark_jax.masks.released_reads.Reads`; names bound to facts known before
tracing (warehouse indices, counts, lists of warehouses) become literals, and operations on
them are folded, so the statement translator (:mod:`espark_jax.masks.released`) can resolve
``if`` and loops on them. Everything else is copied with its children translated.
"""

from __future__ import annotations

import ast
import copy
import operator
from typing import Any

from espark_jax.masks.released_reads import NOT, Reads, bad

BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Div: operator.truediv,
}
CMPOPS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def literal(value: Any) -> ast.expr:
    """The literal node of a static value (numbers, booleans, nested lists)."""
    if isinstance(value, (list, tuple, range)):
        return ast.List([literal(v) for v in value], ast.Load())
    return ast.Constant(value)


class ExprTranslator:
    """Translates expressions of one function; ``states`` / ``chain`` / ``actions`` are its
    parameter names for ``agent_states`` / ``supply_chain`` / ``action_space`` (None in
    helpers)."""

    def __init__(self, reads: Reads, states: str | None, chain: str | None, actions: str | None):
        self.reads, self.states, self.chain, self.actions = reads, states, chain, actions
        self.static: dict[str, Any] = {}
        self.bools: set[str] = set()
        self.dicts: set[str] = set()
        self.only_static: set[str] = set()
        self.fresh = 0

    # ------------------------------------------------------------------ expressions
    def expr(self, node: ast.expr) -> tuple[ast.expr, Any]:
        """``(translated node, its static value or NOT)``."""
        read = self.reads.try_read(self, node)
        if read is not None:
            return read
        if isinstance(node, ast.Name):
            if node.id in (self.states, self.chain):
                raise bad(
                    node,
                    f"{node.id} can only be indexed or asked for a documented attribute here",
                    "read the values you need first",
                )
            if isinstance(node.ctx, ast.Load) and node.id in self.static:
                value = self.static[node.id]
                return literal(value), value
            return node, NOT
        if isinstance(node, ast.Constant):
            index = self.reads.warehouse_index(node.value)
            if index is not None:
                return ast.Constant(index), index
            return node, node.value if isinstance(node.value, (int, float, bool)) else NOT
        if isinstance(node, (ast.List, ast.Tuple)):
            elts = [self.expr(e) for e in node.elts]
            new = type(node)([e for e, _ in elts], node.ctx)
            values = [v for _, v in elts]
            return new, (NOT if any(v is NOT for v in values) else values)
        if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
            (left, a), (right, b) = self.expr(node.left), self.expr(node.right)
            if a is not NOT and b is not NOT and not isinstance(a, list):
                value = BINOPS[type(node.op)](a, b)
                return ast.Constant(value), value
            return ast.BinOp(left, node.op, right), NOT
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in CMPOPS:
            (left, a), (right, b) = self.expr(node.left), self.expr(node.comparators[0])
            if a is not NOT and b is not NOT:
                value = CMPOPS[type(node.ops[0])](a, b)
                return ast.Constant(value), value
            return ast.Compare(left, node.ops, [right]), NOT
        if isinstance(node, ast.BoolOp):
            parts = [self.expr(v) for v in node.values]
            if all(v is not NOT for _, v in parts):
                value = (
                    all(v for _, v in parts)
                    if isinstance(node.op, ast.And)
                    else any(v for _, v in parts)
                )
                return ast.Constant(value), value
            return ast.BoolOp(node.op, [p for p, _ in parts]), NOT
        if isinstance(node, ast.UnaryOp):
            operand, v = self.expr(node.operand)
            if v is not NOT and isinstance(node.op, (ast.Not, ast.USub)):
                value = (not v) if isinstance(node.op, ast.Not) else -v
                return ast.Constant(value), value
            return ast.UnaryOp(node.op, operand), NOT
        if isinstance(node, ast.IfExp):
            test, v = self.expr(node.test)
            if v is not NOT:
                return self.expr(node.body if v else node.orelse)
        if isinstance(node, ast.ListComp):
            hidden = {
                n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)
            }
            saved = {k: self.static.pop(k) for k in list(self.static) if k in hidden}
            new = self._generic(node)
            self.static.update(saved)
            return new, NOT
        return self._generic(node), NOT

    def _generic(self, node: ast.AST) -> Any:
        new = copy.copy(node)
        for field, value in ast.iter_fields(node):
            if isinstance(value, ast.expr):
                setattr(new, field, self.expr(value)[0])
            elif isinstance(value, ast.AST) and not isinstance(value, (ast.expr_context,)):
                setattr(new, field, self._generic(value))
            elif isinstance(value, list):
                setattr(new, field, [self._item(v) for v in value])
        return new

    def _item(self, v: Any) -> Any:
        if isinstance(v, ast.expr):
            return self.expr(v)[0]
        if isinstance(v, ast.AST):
            return self._generic(v)
        return v
