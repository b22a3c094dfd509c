"""Mask programs written against the authors' released interface, translated to ours.

The released loop (``run/gpt_as_mask_run_parallel_whole_iter.py``, ``prompts/``) asks for
``compute_mask(agent_states, supply_chain, action_space)`` returning ``(total_mask, components)``
and calls it with the simulator's own objects: ``agent_states[warehouse, item, date, sku]``
(warehouse names such as ``"store1"``, state items such as ``"in_stock"``, dates such as
``"today"`` / ``"lookback"``, ``"all_skus"`` or one SKU), ``supply_chain[warehouse, item]``, and
numpy with in-place writes. :func:`translate_released` rewrites such a program into a native
``compute_mask(ctx, action_space)`` of the same meaning, which then meets every check of the
compiler unchanged (the sandbox child translates, then validates, traces, exports). A task with
``interface="released"`` (:func:`released_task`) makes the compiler do this.

Translation: warehouses become their indices (head 0; ``"storeK"`` of W warehouses is W - K);
reads become context fields with the released shapes (``lookback`` gives ``[days, SKUs]``);
facts of the scenario (warehouse lists, counts, ``get_tail()``) become literals, so loops over
warehouses and ``if`` on them are resolved here (unrolled when an ``if`` needs the loop
variable); loops over ``action_space`` become ``range`` loops; ``x[idx] = v`` becomes
``x = x.at[idx].set(v)`` (``jnp.where`` for a boolean index); the components dict is dropped.
What the context cannot supply (future data such as today's demand, items like ``excess``,
numpy aliasing that a functional update would change) is a :class:`Rejected` at stage
``adapter`` with one line naming it. The rules of the reads are in :mod:`~.released_reads`.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
from typing import Any

from espark_jax.masks.released_alias import check_aliasing
from espark_jax.masks.released_exprs import BINOPS, ExprTranslator, literal
from espark_jax.masks.released_reads import NOT, Reads, bad, is_bool_expr, parse_expr
from espark_jax.masks.result import Rejected
from espark_jax.masks.rules import MAX_SOURCE_CHARS
from espark_jax.masks.static import parse_code
from espark_jax.masks.task import MaskTask

RELEASED_SIGNATURE = "def compute_mask(agent_states, supply_chain, action_space)"

#: Top-level imports of released mask files that name nothing the translation keeps.
_DROPPED_IMPORTS = ("numpy", "torch", "typing", "ReplenishmentEnv")

_AT_METHODS = {ast.Add: "add", ast.Mult: "multiply", ast.Div: "divide"}
_NUMPY = ("np", "numpy", "jnp")
_MAX_LIST = 64  # static lists longer than this (SKU ids) are not written into the program


def released_task(env: Any, function_name: str = "compute_mask") -> MaskTask:
    """The mask task of ``env`` (MABIM) for programs in the released interface: warehouse names
    from the spec's groups, and the scenario constants the released objects expose."""
    task = MaskTask.from_env_spec(env.spec, function_name)
    W = int(env.spec.agent_shape[0])
    facts: dict[str, tuple] = {"warehouses": tuple(str(g) for g in env.spec.group_names)}
    config = getattr(env, "config", None)
    for name in ("basic_holding_cost", "volume", "backlog_ratio", "overflow_cost_ratio"):
        value = getattr(config, name, None)
        if value is not None:
            values = tuple(float(v) for v in (value if isinstance(value, tuple) else (value,)))
            facts[name] = values if len(values) == W else values * W
    return dataclasses.replace(task, interface="released", facts=tuple(sorted(facts.items())))


def translate_released(code: str, task: MaskTask) -> str:
    """The native program of a released-interface program (see the module doc).

    Raises:
        Rejected: stage ``syntax`` or ``adapter`` (one line, with a hint).
    """
    try:
        tree = parse_code(code)
    except (RecursionError, MemoryError):
        raise Rejected("syntax", "the code is nested too deeply", "flatten it") from None
    body = [s for s in tree.body if not _dropped_import(s) and not _is_docstring(s)]
    main = next(
        (s for s in body if isinstance(s, ast.FunctionDef) and s.name == task.function_name), None
    )
    if main is None:
        raise bad(None, f"no function {task.function_name!r}", f"define {RELEASED_SIGNATURE}")
    params = [a.arg for a in main.args.args]
    if len(params) != 3 or main.args.posonlyargs or main.args.vararg or main.args.kwonlyargs:
        raise bad(
            main,
            f"{task.function_name} takes {len(params)} parameters; the released interface has "
            "three",
            f"define {RELEASED_SIGNATURE}",
        )
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | set(params)
    ctx = next(c for c in ("ctx", "ctx_", "ctx__", "released_ctx") if c not in used)
    reads = Reads(task, ctx)
    out: list[ast.stmt] = [ast.Expr(ast.Constant("translated from the released interface"))]
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef):
            names = (params[0], params[1], params[2]) if stmt is main else (None, None, None)
            fn = _Translator(reads, *names).function(stmt)
            if stmt is main:
                fn.args.args = [ast.arg(ctx), ast.arg(params[2])]
            out.append(fn)
        else:
            out.append(stmt)  # docstrings, other imports: the compiler judges them
    text = ast.unparse(ast.fix_missing_locations(ast.Module(out, [])))
    if len(text) > MAX_SOURCE_CHARS:
        raise bad(
            None,
            f"the translated program has {len(text)} characters (loops unrolled for their `if`); "
            f"at most {MAX_SOURCE_CHARS} are allowed",
            "branch with np.where instead of `if` inside loops over warehouses",
        )
    return text + "\n"


def _dropped_import(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Import):
        return all(a.name.split(".")[0] in _DROPPED_IMPORTS for a in stmt.names)
    if isinstance(stmt, ast.ImportFrom):
        return (stmt.module or "").split(".")[0] in _DROPPED_IMPORTS
    return False


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)


def _assigned(nodes: list[ast.stmt]) -> set[str]:
    names = set()
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                names.add(n.id)
    return names


class _Translator(ExprTranslator):
    """Translates one function's statements (the expressions: :class:`ExprTranslator`)."""

    def function(self, fn: ast.FunctionDef) -> ast.FunctionDef:
        check_aliasing(fn, {self.states, self.chain} - {None})
        new = copy.copy(fn)
        new.decorator_list, new.returns = [], None
        for a in new.args.args:
            a.annotation = None
        new.body = self.block(fn.body) or [ast.Pass()]
        return new

    # ------------------------------------------------------------------ statements
    def block(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for s in stmts:
            out.extend(self.stmt(s))
        return out

    def stmt(self, node: ast.stmt) -> list[ast.stmt]:
        if isinstance(node, ast.Assign):
            return self.assign(node)
        if isinstance(node, ast.AugAssign):
            return self.aug_assign(node)
        if isinstance(node, ast.AnnAssign):
            if node.value is None:
                return []
            return self.assign(ast.copy_location(ast.Assign([node.target], node.value), node))
        if isinstance(node, ast.Expr):
            if self._touches_dict(node.value):
                return []  # components.update(...) and the like
            return [ast.copy_location(ast.Expr(self.expr(node.value)[0]), node)]
        if isinstance(node, ast.Return):
            value = node.value
            if isinstance(value, ast.Tuple) and len(value.elts) == 2:
                value = value.elts[0]  # (total_mask, components): the components are dropped
            return [ast.copy_location(ast.Return(self.expr(value)[0] if value else None), node)]
        if isinstance(node, ast.If):
            test, known = self.expr(node.test)
            if known is not NOT:
                return self.block(node.body if known else node.orelse)
            body, orelse = self._branch(node.body), self._branch(node.orelse)
            self._forget(_assigned(node.body + node.orelse))
            return [ast.copy_location(ast.If(test, body or [ast.Pass()], orelse), node)]
        if isinstance(node, ast.For):
            return self.for_loop(node)
        return [node]

    def _branch(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        saved = dict(self.static)
        out = self.block(stmts)
        self.static = saved
        return out

    def _forget(self, names: set[str]) -> None:
        for n in names & self.only_static:
            raise bad(
                None,
                f"{n!r} holds a long list of SKUs and is changed later",
                "use a new name for the changed list",
            )
        for n in names:
            self.static.pop(n, None)
            self.bools.discard(n)

    def assign(self, node: ast.Assign) -> list[ast.stmt]:
        if len(node.targets) != 1:
            raise bad(node, "chained assignments a = b = ... are not supported", "split them")
        target = node.targets[0]
        if isinstance(target, ast.Subscript):
            return [self.write(target, None, node.value, node)]
        if isinstance(node.value, ast.Dict) or self._touches_dict(node.value):
            self.dicts.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            return []  # the components dict
        value, known = self.expr(node.value)
        names = [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
        self._forget(set(names))
        if known is not NOT and isinstance(target, ast.Name):
            self.static[target.id] = known
            if isinstance(known, list) and len(known) > _MAX_LIST:
                self.only_static.add(target.id)  # e.g. sku_ids: read as a constant only
                return []
        elif known is not NOT and isinstance(target, ast.Tuple) and len(known) == len(names):
            self.static.update(zip(names, known))
        if isinstance(target, ast.Name) and is_bool_expr(node.value, self.bools):
            self.bools.add(target.id)
        return [ast.copy_location(ast.Assign([target], value), node)]

    def aug_assign(self, node: ast.AugAssign) -> list[ast.stmt]:
        if isinstance(node.target, ast.Subscript):
            return [self.write(node.target, node.op, node.value, node)]
        value, known = self.expr(node.value)
        name = node.target.id if isinstance(node.target, ast.Name) else None
        old = self.static.get(name, NOT) if name else NOT
        self._forget({name} if name else set())
        if old is not NOT and known is not NOT and type(node.op) in BINOPS:
            self.static[name] = BINOPS[type(node.op)](old, known)
        return [ast.copy_location(ast.AugAssign(node.target, node.op, value), node)]

    def for_loop(self, node: ast.For) -> list[ast.stmt]:
        if node.orelse:
            raise bad(node, "for/else is not supported", "remove the else block")
        it = node.iter
        over_actions = self._is_actions(it) or (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name)
            and it.func.id == "enumerate"
            and len(it.args) == 1
            and self._is_actions(it.args[0])
        )
        if over_actions:
            return self._action_loop(node)
        iterable, known = self.expr(it)
        loop_vars = {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        if known is not NOT and self._needs_unroll(node.body, loop_vars):
            out: list[ast.stmt] = []
            for value in known:
                bind = ast.Assign([node.target], literal(value))
                out.extend(self.assign(ast.copy_location(bind, node)))
                out.extend(self.block(copy.deepcopy(node.body)))
            return out
        self._forget(loop_vars | _assigned(node.body))
        iter_node = literal(known) if known is not NOT else iterable
        body = self.block(node.body)
        self._forget(loop_vars | _assigned(node.body))
        return [ast.copy_location(ast.For(node.target, iter_node, body or [ast.Pass()], []), node)]

    def _action_loop(self, node: ast.For) -> list[ast.stmt]:
        """``for a in action_space`` / ``for i, a in enumerate(action_space)`` -> ``range(A)``."""
        target = node.target
        if isinstance(target, ast.Tuple) and len(target.elts) == 2:
            index, element = target.elts
        elif isinstance(target, ast.Name) and not isinstance(node.iter, ast.Call):
            self.fresh += 1
            index, element = ast.Name(f"action_index_{self.fresh}", ast.Store()), target
        else:
            raise bad(node, "this loop over action_space is not supported", "use enumerate")
        if not (isinstance(index, ast.Name) and isinstance(element, ast.Name)):
            raise bad(node, "loop targets over action_space must be plain names", "rename them")
        n = self.reads.n_actions
        self._forget({index.id, element.id} | _assigned(node.body))
        read = ast.Subscript(ast.Name(self.actions, ast.Load()), ast.Name(index.id, ast.Load()))
        body = [ast.Assign([ast.Name(element.id, ast.Store())], read)] + self.block(node.body)
        self._forget({index.id, element.id} | _assigned(node.body))
        loop = ast.For(ast.Name(index.id, ast.Store()), parse_expr(f"range({n})"), body, [])
        return [ast.copy_location(loop, node)]

    @staticmethod
    def _needs_unroll(body: list[ast.stmt], loop_vars: set[str]) -> bool:
        for stmt in body:
            for n in ast.walk(stmt):
                if isinstance(n, (ast.If, ast.IfExp)) and any(
                    isinstance(m, ast.Name) and m.id in loop_vars for m in ast.walk(n.test)
                ):
                    return True
        return False

    def write(self, target: ast.Subscript, op: Any, value: ast.expr, at: ast.AST) -> ast.stmt:
        """``x[idx] (op)= value`` as a functional update of ``x``."""
        parts: list[ast.expr] = []
        base: ast.expr = target
        while isinstance(base, ast.Subscript):
            sl = base.slice
            parts[:0] = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
            base = base.value
            inner = base.slice if isinstance(base, ast.Subscript) else None
            inner_parts = list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
            if inner is not None and any(
                isinstance(p, ast.Slice) or is_bool_expr(p, self.bools) for p in inner_parts
            ):
                raise bad(
                    at,
                    "chained indexing x[a][b] = v after a slice or a condition",
                    "write one index, x[a, b] = v",
                )
        if not isinstance(base, ast.Name):
            raise bad(at, "only local arrays can be written into", "assign to a variable first")
        if base.id in self.dicts:
            return ast.Pass()  # components["name"] = ...
        if base.id in (self.states, self.chain):
            raise bad(at, f"writing into {base.id} would change the environment", "copy first")
        name = base.id
        flags = [is_bool_expr(p, self.bools) for p in parts]
        idx = [self.expr(p)[0] for p in parts]
        new_value, _ = self.expr(value)
        text = ast.unparse
        if any(flags):
            if flags.index(True) != len(flags) - 1 or any(isinstance(p, ast.Slice) for p in parts):
                raise bad(
                    at,
                    "a boolean index must come last, after integer indices only",
                    "write x = np.where(cond, value, x)",
                )
            if not self._scalar_like(value, parts[-1]):
                raise bad(
                    at,
                    "x[cond] = <array> (assigning the selected elements in order) is not supported",
                    "write x = np.where(cond, value, x)",
                )
            prefix = ", ".join(text(i) for i in idx[:-1])
            sel = f"{name}[{prefix}]" if prefix else name
            cond = f"jnp.broadcast_to(({text(idx[-1])}).T, ({sel}).T.shape).T"
            new = self._combined(sel, op, value, new_value)
            where = f"jnp.where({cond}, {new}, {sel}).astype({name}.dtype)"
            rhs = f"{name}.at[{prefix}].set({where})" if prefix else where
        else:
            index = ", ".join(text(i) for i in idx) or "()"
            if op is None:
                rhs = f"{name}.at[{index}].set({text(new_value)})"
            elif type(op) in _AT_METHODS:
                rhs = f"{name}.at[{index}].{_AT_METHODS[type(op)]}({text(new_value)})"
            elif isinstance(op, ast.Sub):
                rhs = f"{name}.at[{index}].add(-({text(new_value)}))"
            else:
                rhs = f"{name}.at[{index}].set({self._combined(f'{name}[{index}]', op, value, new_value)})"  # noqa: E501
        stmt = ast.Assign([ast.Name(name, ast.Store())], parse_expr(rhs))
        return ast.copy_location(stmt, at)

    def _combined(self, sel: str, op: Any, value: ast.expr, new_value: ast.expr) -> str:
        if op is None:
            return ast.unparse(new_value)
        symbol = ast.unparse(ast.BinOp(ast.Name("a"), op, ast.Name("b")))[2:-2]
        return f"{sel} {symbol} ({ast.unparse(new_value)})"

    def _scalar_like(self, value: ast.expr, cond: ast.expr) -> bool:
        """A value numpy would broadcast to the selected elements: a number (or a static or
        np constant), or ``y[cond]`` with the same condition (then y stands for itself)."""
        if isinstance(value, ast.UnaryOp):
            return self._scalar_like(value.operand, cond)
        if isinstance(value, ast.Constant) or self.expr(value)[1] is not NOT:
            return True
        if isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name):
            return value.value.id in _NUMPY
        return False

    def _touches_dict(self, node: ast.expr) -> bool:
        return any(isinstance(n, ast.Name) and n.id in self.dicts for n in ast.walk(node))

    def _is_actions(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Name) and node.id == self.actions
