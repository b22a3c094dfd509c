"""What ``agent_states[...]`` and ``supply_chain[...]`` of the released interface read, in ours.

The released objects (``ReplenishmentEnv/env/agent_states.py``, ``supply_chain.py``) hold the
simulator's whole state table ``[warehouse, item, day, SKU]``, future days included. A mask
there runs after ``env.step``, when ``today`` is the day about to be decided and ``in_stock`` /
``in_transit`` of today equal yesterday's end-of-day values. :class:`Reads` maps each read to
the context field of the same meaning and the released shape:

============================  ============================================================
released read                 here
============================  ============================================================
in_stock, in_transit          ``today`` / ``yesterday``: ``ctx.in_stock`` / ``ctx.in_transit``
demand, replenish             ``yesterday``: last day of ``ctx.demand_history`` /
                              ``ctx.replenish_history``; ``lookback``: the 21 days,
                              ``[days, SKUs]`` (``[W, days, SKUs]`` for all warehouses)
sale                          only as a mean over ``lookback``: ``ctx.sale_mean``
vlt, unit_order_cost          ``ctx.vlt``, ``ctx.unit_order_cost`` (any named date)
selling_price,                ``today`` / ``yesterday``: ``ctx.selling_price`` /
procurement_cost              ``ctx.procurement_cost`` (the last simulated day's; the released
                              ``today`` is the next day's price from the data files)
basic_holding_cost, volume,   the scenario's constants (:func:`~.released.released_task`)
backlog_ratio,
overflow_cost_ratio
supply_chain[w, "capacity"]   ``ctx.capacity[w]``; ``upstream`` / ``downstream``: w - 1 / w + 1
                              (``"super_vendor"`` is -1, ``"consumer"`` is W)
current_step, durations       ``ctx.day``, ``ctx.day + ctx.days_left``
============================  ============================================================

Everything else is refused with one line: today's demand and other future days (the released
table holds them, the decision-time context does not), absolute dates, ``excess`` /
``arrived`` / ``accepted``, SKU ids by name, the supply chain's ``init_balance`` /
``unit_storage_cost`` / ``accept_sku``.
"""

from __future__ import annotations

import ast
from typing import Any

from espark_jax.masks.result import Rejected
from espark_jax.masks.task import MaskTask

NOT = object()
"""Marks an expression whose value is not known before tracing."""

_CURRENT = {
    "in_stock": "in_stock",
    "in_transit": "in_transit",
    "selling_price": "selling_price",
    "procurement_cost": "procurement_cost",
    "vlt": "vlt",
    "unit_order_cost": "unit_order_cost",
}
_HISTORY = {"demand": "demand_history", "replenish": "replenish_history"}
_STATIC = ("vlt", "unit_order_cost")  # the same on every day: lookback reads broadcast
_CONSTANTS = ("basic_holding_cost", "volume", "backlog_ratio", "overflow_cost_ratio")
_MISSING = ("excess", "arrived", "accepted")
_ITEMS = (*_CURRENT, *_HISTORY, *_CONSTANTS, *_MISSING, "sale")
_BOOL_CALLS = frozenset(
    "logical_and logical_or logical_not logical_xor isin isnan isinf isfinite isclose signbit "
    "isposinf isneginf greater less greater_equal less_equal equal not_equal".split()
)
_CHAIN_METHODS = {
    "get_head": lambda W: 0,
    "get_tail": lambda W: W - 1,
    "get_warehouse_count": lambda W: W,
    "get_warehouse_list": lambda W: list(range(W)),
    "get_consumer": lambda W: W,
    "get_super_vendor": lambda W: -1,
}
_STATIC_CALLS = {
    "range": lambda *a: list(range(*a)),
    "list": list,
    "enumerate": lambda x: [[i, v] for i, v in enumerate(x)],
    "zip": lambda *xs: [list(t) for t in zip(*xs)],
    "int": int,
    "float": float,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sum": sum,
}


def bad(node: ast.AST | None, message: str, hint: str = "") -> Rejected:
    """A rejection at stage ``adapter`` (a part of the released interface we cannot supply)."""
    return Rejected("adapter", message, hint, getattr(node, "lineno", None))


def parse_expr(text: str) -> ast.expr:
    """The expression node of ``text`` (text the translation wrote itself)."""
    return ast.parse(text, mode="eval").body


def is_bool_expr(node: ast.AST, bools: set[str]) -> bool:
    """True when ``node`` is evidently a boolean array: a comparison, a logical combination,
    a ``np.logical_*`` / ``isin`` / ``isnan`` call, ``.astype(bool)``, or a name bound to one."""
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.Name):
        return node.id in bools
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Invert, ast.Not)):
        return is_bool_expr(node.operand, bools)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr, ast.BitXor)):
        return is_bool_expr(node.left, bools) or is_bool_expr(node.right, bools)
    if isinstance(node, ast.Subscript):
        return is_bool_expr(node.value, bools)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in _BOOL_CALLS:
            return True
        if node.func.attr == "astype" and node.args:
            arg = node.args[0]
            return (isinstance(arg, ast.Name) and arg.id == "bool") or (
                isinstance(arg, ast.Constant) and arg.value == "bool"
            )
    return False


class Reads:
    """The released reads of one task (see the module doc); ``ctx`` names the context."""

    def __init__(self, task: MaskTask, ctx: str) -> None:
        if task.interface != "released" or len(task.agent_shape) != 2:
            raise ValueError("the released interface needs a MABIM task from released_task()")
        facts = dict(task.facts)
        self.ctx = ctx
        self.W, self.N = (int(a) for a in task.agent_shape)
        self.n_actions = int(task.n_actions)
        history = task.field_map.get("demand_history")
        self.L = int(history.shape[-1]) if history is not None else 0
        self.warehouses = tuple(facts.get("warehouses", ()))
        self.constants = {k: tuple(v) for k, v in facts.items() if k in _CONSTANTS}

    def warehouse_index(self, value: Any) -> int | None:
        """The index standing for a warehouse name (``"consumer"`` W, ``"super_vendor"`` -1)."""
        if not isinstance(value, str):
            return None
        if value in self.warehouses:
            return self.warehouses.index(value)
        return {"consumer": self.W, "super_vendor": -1}.get(value)

    def try_read(self, tr: Any, node: ast.expr) -> tuple[ast.expr, Any] | None:
        """The translation of a released read in ``node`` (None: not one)."""
        states, chain = tr.states, tr.chain
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            if node.value.id == states:
                return parse_expr(self._state(tr, node)), NOT
            if node.value.id == chain:
                return self._chain(tr, node)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            base = node.value
            if isinstance(base.value, ast.Name) and base.value.id == states:
                if base.attr in ("warehouse_to_id", "sku_to_id"):
                    return tr.expr(node.slice)  # names are indices here
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in {states, chain} - {None}:
                return self._attribute(node, node.value.id == states)
        if isinstance(node, ast.Call):
            return self._call(tr, node)
        return None

    # ------------------------------------------------------------------ agent_states[...]
    def _state(self, tr: Any, node: ast.Subscript, mean_axis: Any = NOT) -> str:
        elts = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if not 2 <= len(elts) <= 4:
            raise bad(
                node,
                f"agent_states takes 2 to 4 indices, got {len(elts)}",
                "agent_states[warehouse, item, date, sku]",
            )
        w_node, item_node = elts[0], elts[1]
        date = _literal_str(elts[2]) if len(elts) > 2 else "today"
        sku_node = elts[3] if len(elts) > 3 else ast.Constant("all_skus")
        item = _literal_str(item_node)
        if item is None or item not in _ITEMS:
            raise bad(
                node,
                f"agent_states has no state item {ast.unparse(item_node)}",
                f"use a string literal, one of {', '.join(_ITEMS)}",
            )
        if date is None:
            raise bad(
                node,
                f"the date {ast.unparse(elts[2])} (an absolute or future day) is not "
                "in the decision-time context",
                "use 'today', 'yesterday' or 'lookback'",
            )
        w = ":" if _literal_str(w_node) == "all_warehouses" else ast.unparse(tr.expr(w_node)[0])
        sku_name = _literal_str(sku_node)
        if sku_name is not None and sku_name != "all_skus":
            raise bad(
                node,
                f"SKU {sku_name!r} by name is not available",
                "index SKUs by position (0 .. N-1) or use 'all_skus'",
            )
        s = None if sku_name == "all_skus" else ast.unparse(tr.expr(sku_node)[0])
        every = f"[{w}, {s or ':'}]"
        c = self.ctx
        if item == "sale":
            if date != "lookback" or mean_axis is NOT:
                raise bad(
                    node,
                    "the sale history is not in the context; only its mean over the lookback is",
                    "np.mean(agent_states[w, 'sale', 'lookback'], axis=<the date axis>)",
                )
            return f"{c}.sale_mean{every}"
        if item in _MISSING:
            raise bad(
                node,
                f"the state item {item!r} is not in the decision-time context",
                "build the rule from in_stock, in_transit, demand and the costs",
            )
        if item in _HISTORY:
            field = _HISTORY[item]
            if date == "yesterday":
                return f"{c}.{field}[{w}, {s or ':'}, -1]"
            if date == "lookback":
                return f"{c}.{field}[{w}, {s}]" if s else f"{c}.{field}[{w}].swapaxes(-1, -2)"
            why = "the future demand" if item == "demand" else "an order not yet placed"
            raise bad(
                node,
                f"agent_states[..., {item!r}, {date!r}] is {why} in the released "
                "table; the context holds past days only",
                "use 'yesterday' or 'lookback'",
            )
        if item in _CONSTANTS:
            if item not in self.constants:
                raise bad(
                    node,
                    f"the scenario constant {item!r} is not known to this task",
                    "build the task with released_task(env)",
                )
            table = f"jnp.asarray({list(self.constants[item])})"
            if w == ":":
                current = table if s else f"({table}[:, None] + jnp.zeros(({self.W}, {self.N})))"
            else:
                current = f"{table}[{w}]" if s else f"({table}[{w}] + jnp.zeros(({self.N},)))"
        elif date in ("today", "yesterday", "lookback") and item in _CURRENT:
            if date == "lookback" and item not in _STATIC:
                raise bad(
                    node,
                    f"past values of {item!r} are not in the context",
                    "use 'today' or 'yesterday'",
                )
            current = f"{c}.{_CURRENT[item]}{every}"
        else:
            raise bad(
                node,
                f"the date {date!r} is not available for {item!r}",
                "use 'today', 'yesterday' or 'lookback'",
            )
        if date != "lookback":
            return current
        if w == ":":
            return (
                f"jnp.broadcast_to(({current})[:, None], ({self.W}, {self.L}))"
                if s
                else f"jnp.broadcast_to(({current})[:, None, :], ({self.W}, {self.L}, {self.N}))"
            )
        shape = f"({self.L},)" if s else f"({self.L}, {self.N})"
        return f"jnp.broadcast_to({current}, {shape})"

    # ------------------------------------------------------------------ supply_chain[...]
    def _chain(self, tr: Any, node: ast.Subscript) -> tuple[ast.expr, Any]:
        elts = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        item = _literal_str(elts[1]) if len(elts) == 2 else None
        if item is None:
            raise bad(
                node,
                "supply_chain takes [warehouse, item] with a string item",
                "e.g. supply_chain[warehouse, 'capacity']",
            )
        w_node, w = tr.expr(elts[0])
        if item == "capacity":
            return parse_expr(f"{self.ctx}.capacity[{ast.unparse(w_node)}]"), NOT
        if item in ("upstream", "downstream"):
            step = -1 if item == "upstream" else 1
            if w is not NOT:
                return ast.Constant(w + step), w + step
            return parse_expr(f"({ast.unparse(w_node)} + {step})"), NOT
        raise bad(
            node,
            f"supply_chain[..., {item!r}] is not in the context",
            "use 'capacity', 'upstream' or 'downstream'",
        )

    def _attribute(self, node: ast.Attribute, states: bool) -> tuple[ast.expr, Any]:
        W, N, c = self.W, self.N, self.ctx
        known = (
            {
                "warehouse_list": list(range(W)),
                "sku_ids": list(range(N)),
                "skus_count": N,
                "lookback_len": self.L,
            }
            if states
            else {"head": 0, "tail": W - 1, "consumer": W, "super_vendor": -1}
        )
        if node.attr in known:
            value = known[node.attr]
            return _value_node(value), value
        if states and node.attr == "current_step":
            return parse_expr(f"{c}.day"), NOT
        if states and node.attr == "durations":
            return parse_expr(f"({c}.day + {c}.days_left)"), NOT
        owner = "agent_states" if states else "supply_chain"
        raise bad(
            node,
            f"{owner}.{node.attr} is not available here",
            "read values with agent_states[...] / supply_chain[...]",
        )

    def _call(self, tr: Any, node: ast.Call) -> tuple[ast.expr, Any] | None:
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            if f.value.id == tr.chain and f.attr in _CHAIN_METHODS:
                value = _CHAIN_METHODS[f.attr](self.W)
                return _value_node(value), value
            if tr.states is not None and f.value.id == tr.states:
                raise bad(
                    node,
                    f"agent_states.{f.attr}() is not available here",
                    "read values with agent_states[...]",
                )
            if f.value.id in ("np", "numpy", "jnp") and f.attr in ("mean", "average", "sum"):
                return self._sale_mean(tr, node)
        if not isinstance(f, ast.Name):
            return None
        if f.id == "len" and len(node.args) == 1 and not node.keywords:
            arg = node.args[0]
            if isinstance(arg, ast.Name) and arg.id in {tr.states, tr.actions} - {None}:
                value = self.N if arg.id == tr.states else self.n_actions
                return ast.Constant(value), value
            translated, known = tr.expr(arg)
            if isinstance(known, list):
                return ast.Constant(len(known)), len(known)
            return ast.Call(f, [translated], []), NOT
        if f.id in _STATIC_CALLS and not node.keywords and node.args:
            args = [tr.expr(a) for a in node.args]
            if all(v is not NOT for _, v in args):
                value = _STATIC_CALLS[f.id](*(v for _, v in args))
                if f.id == "range":
                    return ast.Call(f, [a for a, _ in args], []), value
                return _value_node(value), value
        return None

    def _sale_mean(self, tr: Any, node: ast.Call) -> tuple[ast.expr, Any] | None:
        arg = node.args[0] if node.args else None
        if not (isinstance(arg, ast.Subscript) and isinstance(arg.value, ast.Name)):
            return None
        elts = list(arg.slice.elts) if isinstance(arg.slice, ast.Tuple) else [arg.slice]
        if arg.value.id != tr.states or len(elts) < 3 or _literal_str(elts[1]) != "sale":
            return None
        axis = node.args[1] if len(node.args) > 1 else None
        for kw in node.keywords:
            axis = kw.value if kw.arg == "axis" else axis
        all_w = _literal_str(elts[0]) == "all_warehouses"
        one_sku = len(elts) > 3 and _literal_str(elts[3]) != "all_skus"
        want = 1 if all_w else 0
        got = axis.value if isinstance(axis, ast.Constant) else (NOT if axis else None)
        if got != want and not (got is None and one_sku and not all_w):
            raise bad(
                node,
                "only the mean of the sale lookback over its days is in the context",
                f"average over the date axis, axis={want}",
            )
        text = self._state(tr, arg, mean_axis=want)
        scale = f" * {self.L}" if node.func.attr == "sum" else ""
        return parse_expr(f"({text}{scale})"), NOT


def _literal_str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _value_node(value: Any) -> ast.expr:
    if isinstance(value, list):
        return ast.List([_value_node(v) for v in value], ast.Load())
    return ast.Constant(value)
