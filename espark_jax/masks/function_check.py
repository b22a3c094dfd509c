"""The allow-list applied to one function of a mask program: statements, names, loops, calls.

:class:`FunctionChecker` walks one top-level function and rejects what the rules of
:mod:`espark_jax.masks.rules` forbid, plus what needs the function's scope: unknown or rebound
names, helpers used as values, loops that are not over literal ranges or unroll too far, unknown
``ctx`` fields, out-of-range literal indices into context fields, text anywhere but as an argument
of a jnp function or array method, and keyword names outside the allow-list. Every node is visited
once, so the check is linear in the program's size. Nothing here runs the code.
"""

from __future__ import annotations

import ast
from typing import Iterable, Mapping, Sequence

from espark_jax.masks.rules import (
    ALLOWED_BUILTINS,
    ALLOWED_OPS,
    ARRAY_ATTRS,
    ARRAY_MODULE_NAMES,
    DANGEROUS_NAMES,
    MAX_LOOP_STEPS,
    MAX_UNROLL,
    TEXT_BUILTINS,
    WHERE_HINT,
    check_binop,
    check_constant,
    check_jnp_member,
    check_keyword,
    check_node_type,
    closest,
    int_literal,
    reject,
)
from espark_jax.masks.task import MaskTask


def target_names(target: ast.AST) -> Iterable[ast.Name]:
    """Every name bound by an assignment target (tuples, lists and starred parts included)."""
    if isinstance(target, ast.Name):
        yield target
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from target_names(elt)
    elif isinstance(target, ast.Starred):
        yield from target_names(target.value)


class FunctionChecker:
    """Checks one top-level function body against the allow-list.

    Args:
        fn: the function.
        task: what the program is compiled against (context fields, action count).
        helpers: the program's top-level functions (callable, never values) and their
            parameter names.
        ctx_names: parameter names in ``fn`` that hold the context.
        action_names: parameter names in ``fn`` that hold ``action_space``.
    """

    def __init__(
        self,
        fn: ast.FunctionDef,
        task: MaskTask,
        helpers: Mapping[str, Sequence[str]],
        ctx_names: set[str],
        action_names: set[str],
    ) -> None:
        self.fn = fn
        self.task = task
        self.helpers = helpers
        self.ctx_names = ctx_names
        self.action_names = action_names
        self.params = {a.arg for a in fn.args.args}
        self.globals = set(ARRAY_MODULE_NAMES) | ALLOWED_BUILTINS | set(helpers)
        self.locals = set(self.params)
        self.calls: set[str] = set()
        self.call_funcs: set[int] = set()
        self.text_args: set[int] = set()  # string literals passed to jnp functions / methods

    def run(self) -> None:
        """Check the whole body; afterwards :attr:`calls` names the helpers it calls.

        Raises:
            Rejected: at the first statement or expression the allow-list forbids.
        """
        body = self.fn.body
        for node in ast.walk(self.fn):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.For, ast.comprehension)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for name in target_names(t):
                        self.locals.add(name.id)
        for i, stmt in enumerate(body):
            self._stmt(stmt, unroll=1, docstring_ok=(i == 0))

    # -- statements
    def _stmts(self, stmts: list[ast.stmt], unroll: int) -> None:
        for s in stmts:
            self._stmt(s, unroll, docstring_ok=False)

    def _stmt(self, node: ast.stmt, unroll: int, docstring_ok: bool) -> None:
        check_node_type(node)
        if isinstance(node, ast.Expr):
            v = node.value
            if docstring_ok and isinstance(v, ast.Constant) and isinstance(v.value, str):
                return
            if (
                isinstance(v, ast.Call)
                and isinstance(v.func, ast.Attribute)
                and v.func.attr in ("append", "extend")
                and isinstance(v.func.value, ast.Name)
            ):
                self._expr(v, unroll)
                return
            if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "print":
                raise reject(
                    node, "print() is a side effect and is not allowed", "remove the print call"
                )
            if (
                isinstance(v, ast.Call)
                and isinstance(v.func, ast.Name)
                and v.func.id in DANGEROUS_NAMES
            ):
                self._expr(v, unroll)
            raise reject(
                node,
                "a bare expression statement is not allowed (side effects are not allowed)",
                "assign the result to a variable or remove the line",
            )
        if isinstance(node, ast.Assign):
            for t in node.targets:
                self._target(t)
            self._expr(node.value, unroll)
        elif isinstance(node, ast.AugAssign):
            if not isinstance(node.op, ALLOWED_OPS):
                raise reject(
                    node,
                    f"the operator {type(node.op).__name__} is not allowed",
                    "use jnp arithmetic",
                )
            self._target(node.target)
            check_binop(node, node.op, node.target, node.value)
            self._expr(node.value, unroll)
        elif isinstance(node, ast.Return):
            if node.value is None:
                raise reject(
                    node,
                    "`return` without a value",
                    f"return the mask array of shape {self.task.out_shape}",
                )
            self._expr(node.value, unroll)
        elif isinstance(node, ast.For):
            if node.orelse:
                raise reject(node, "for/else is not allowed", "remove the else block")
            self._target(node.target)
            steps = self._loop_steps(node.iter, unroll)
            self._stmts(node.body, unroll * steps)

    def _target(self, t: ast.AST) -> None:
        if isinstance(t, ast.Subscript):
            raise reject(
                t,
                "item assignment x[...] = v is not allowed (arrays are immutable)",
                "write x = x.at[...].set(v), or build the array with jnp.where",
            )
        if isinstance(t, ast.Attribute):
            raise reject(
                t,
                "attribute assignment is not allowed (no global or shared state)",
                "assign to a local variable instead",
            )
        if isinstance(t, ast.Starred):
            self._target(t.value)
            return
        if isinstance(t, (ast.Tuple, ast.List)):
            for elt in t.elts:
                self._target(elt)
            return
        if isinstance(t, ast.Name):
            self._name_ok(t)
            if t.id in self.globals or t.id in self.ctx_names:
                raise reject(
                    t,
                    f"do not rebind the name {t.id!r} (a provided name or the context)",
                    "choose another variable name",
                )
            return
        raise reject(t, f"cannot assign to {type(t).__name__}", "assign to plain variable names")

    def _loop_steps(self, it: ast.AST, unroll: int) -> int:
        """Number of iterations of a for loop / comprehension, checking the iterable's form."""
        steps: int | None = None
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range":
            self._expr(it, unroll)
            steps = len(range(*[int_literal(a) for a in it.args]))
        elif isinstance(it, (ast.List, ast.Tuple)):
            self._expr(it, unroll)
            steps = len(it.elts)
        elif (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name)
            and it.func.id in ("enumerate", "zip")
            and it.args
            and not it.keywords
        ):
            check_node_type(it)
            self.call_funcs.add(id(it.func))
            self._load_name(it.func)
            inner = [self._loop_steps(a, unroll) for a in it.args]
            steps = min(inner)
        if steps is None:
            raise reject(
                it,
                "for loops may only run over range(<int literals>) or a literal list/tuple",
                "vectorise with jnp operations over the array axes "
                "instead of looping over array values",
            )
        if steps > MAX_LOOP_STEPS:
            raise reject(
                it,
                f"the loop runs {steps} times; at most {MAX_LOOP_STEPS} are allowed",
                "vectorise with jnp operations instead of a long Python loop",
            )
        if unroll * max(steps, 1) > MAX_UNROLL:
            raise reject(
                it,
                f"nested loops run {unroll * steps} times in total; "
                f"at most {MAX_UNROLL} are allowed",
                "vectorise with jnp operations instead of nested Python loops",
            )
        return max(steps, 1)

    # -- expressions
    def _expr(self, node: ast.AST, unroll: int) -> None:
        """Check an expression; each node once (no re-walks: linear in the program's size)."""
        check_node_type(node)
        if isinstance(node, ast.ListComp):
            self._comprehension(node, unroll)
            return
        if isinstance(node, ast.Call):
            self._call(node, unroll)
            return
        if isinstance(node, ast.Attribute):
            self._expr(node.value, unroll)  # the innermost bad attribute first (np.random)
            self._attribute(node)
            return
        if isinstance(node, ast.Name):
            self._load_name(node)
        elif isinstance(node, ast.Subscript):
            self._subscript(node)
        elif isinstance(node, ast.Constant):
            check_constant(node)
            if isinstance(node.value, str) and id(node) not in self.text_args:
                raise reject(
                    node,
                    "text is only allowed as an argument of a jnp function or array method "
                    "(no string formatting, operations on strings or string variables)",
                    "compute with arrays; pass dtype names and the like directly, "
                    "e.g. x.astype('float32')",
                )
        elif isinstance(node, ast.BinOp):
            check_binop(node, node.op, node.left, node.right)
        for child in ast.iter_child_nodes(node):
            self._expr(child, unroll)

    def _comprehension(self, node: ast.ListComp, unroll: int) -> None:
        n = unroll
        for gen in node.generators:
            if gen.ifs:
                raise reject(gen.ifs[0], "`if` inside a comprehension is not allowed", WHERE_HINT)
            if gen.is_async:
                raise reject(node, "async comprehensions are not allowed", "remove async")
            self._target(gen.target)
            n *= self._loop_steps(gen.iter, n)
        self._expr(node.elt, n)  # the element is evaluated n times

    def _name_ok(self, node: ast.Name) -> None:
        if node.id.startswith("__"):
            raise reject(
                node,
                f"the name {node.id!r} is not allowed (dunder names reach Python internals)",
                "use only jnp/np functions, ctx fields and your own variables",
            )

    def _load_name(self, node: ast.Name) -> None:
        self._name_ok(node)
        name = node.id
        if isinstance(node.ctx, ast.Store):
            return
        if name in self.helpers and id(node) not in self.call_funcs:
            raise reject(
                node,
                f"the helper function {name!r} can only be called, not used as a value",
                f"call it: {name}(...)",
            )
        if name in self.locals or name in self.globals:
            return
        if name == "print":
            raise reject(
                node, "print() is a side effect and is not allowed", "remove the print call"
            )
        if name in DANGEROUS_NAMES:
            raise reject(
                node,
                f"{name} is not allowed (no I/O, reflection or dynamic code in mask programs)",
                "use only jnp/np functions, arithmetic, ctx fields and your own helpers",
            )
        if name == "jax":
            raise reject(
                node,
                "`jax` is not available; only jnp / np (an allow-listed jax.numpy) is",
                "write jnp.<function> instead of jax.<module>.<function>",
            )
        if name in TEXT_BUILTINS:
            raise reject(
                node,
                f"{name}() is not allowed: mask programs may not turn values into text",
                "compute with arrays; compare numbers, not their text",
            )
        if name in ("math", "random", "os", "sys"):
            raise reject(
                node, f"the module {name!r} is not available", "use jnp / np functions instead"
            )
        names = self.locals | set(ARRAY_MODULE_NAMES) | set(self.helpers) | ALLOWED_BUILTINS
        available = sorted(names)
        raise reject(
            node,
            f"name {name!r} is not defined{closest(name, available)}",
            f"available names: {', '.join(available)}",
        )

    def _call(self, node: ast.Call, unroll: int) -> None:
        if isinstance(node.func, ast.Name):
            self.call_funcs.add(id(node.func))
            if node.func.id in self.helpers:
                self.calls.add(node.func.id)
            if node.func.id == "range" and node.func.id not in self.locals:
                bounds = [int_literal(a) for a in node.args]
                if node.keywords or not 1 <= len(bounds) <= 3 or any(b is None for b in bounds):
                    raise reject(
                        node,
                        "range() needs int literal arguments, e.g. range(5)",
                        "loop over a fixed small range, or vectorise with jnp instead",
                    )
                if 0 in bounds[2:]:
                    raise reject(node, "range() step must not be zero", "use a non-zero step")
                n = len(range(*bounds))
                if n > MAX_LOOP_STEPS:
                    raise reject(
                        node,
                        f"range() with {n} steps; at most {MAX_LOOP_STEPS} are allowed",
                        "vectorise with jnp operations (e.g. jnp.arange) instead",
                    )
        func = node.func
        self._expr(func, unroll)
        helper = func.id if isinstance(func, ast.Name) and func.id in self.helpers else None
        for kw in node.keywords:
            if kw.arg is None:
                raise reject(
                    node, "**kwargs in calls are not allowed", "pass keyword arguments explicitly"
                )
            check_keyword(kw, kw.arg, self.helpers[helper] if helper else None)
        if isinstance(func, ast.Attribute) or (isinstance(func, ast.Name) and func.id == "float"):
            for arg in (*node.args, *(kw.value for kw in node.keywords)):
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    self.text_args.add(id(arg))
        for arg in node.args:
            self._expr(arg, unroll)
        for kw in node.keywords:
            self._expr(kw.value, unroll)

    def _attribute(self, node: ast.Attribute) -> None:
        """One attribute access (its base was checked already: an unknown module first)."""
        attr = node.attr
        if attr.startswith("_"):
            raise reject(
                node,
                f"the attribute .{attr} is not allowed (private and dunder attributes are blocked)",
                "use only public jnp functions, array methods and ctx fields",
            )
        base = node.value
        if (
            isinstance(base, ast.Name)
            and base.id in ARRAY_MODULE_NAMES
            and base.id not in self.locals
        ):
            check_jnp_member(node, base.id)
            return
        if isinstance(base, ast.Name) and base.id in self.ctx_names:
            if attr in self.task.field_map:
                return
            fields = ", ".join(self.task.field_names)
            raise reject(
                node,
                f"ctx has no field {attr!r}{closest(attr, self.task.field_names)}",
                f"valid fields: {fields}",
            )
        if attr in ARRAY_ATTRS or attr in self.task.field_map:
            return
        raise reject(
            node,
            f"the attribute .{attr} is not allowed{closest(attr, ARRAY_ATTRS)}",
            f"allowed array attributes: {', '.join(sorted(ARRAY_ATTRS))}",
        )

    def _subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Store):
            self._target(node)
        base = node.value
        if isinstance(base, ast.Name) and base.id in self.ctx_names:
            raise reject(
                node, "ctx is not subscriptable", "read fields as attributes, e.g. ctx.in_stock"
            )
        shape: tuple[int, ...] | None = None
        what = ""
        if (
            isinstance(base, ast.Attribute)
            and isinstance(base.value, ast.Name)
            and base.value.id in self.ctx_names
            and base.attr in self.task.field_map
        ):
            shape, what = self.task.field_map[base.attr].shape, f"ctx.{base.attr}"
        elif isinstance(base, ast.Name) and base.id in self.action_names:
            shape, what = (self.task.n_actions,), base.id
        if shape is None:
            return
        idx = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        for axis, ix in enumerate(idx):
            if axis >= len(shape) or (
                isinstance(ix, ast.Constant) and ix.value in (None, Ellipsis)
            ):
                # new axes / ellipsis: positions no longer line up (JAX reports too many indices)
                return
            k = int_literal(ix)
            if k is not None and not -shape[axis] <= k < shape[axis]:
                raise reject(
                    node,
                    f"index {k} is out of range for axis {axis} of {what} (size {shape[axis]})",
                    f"{what} has shape {shape}; JAX would silently clamp the index",
                )
