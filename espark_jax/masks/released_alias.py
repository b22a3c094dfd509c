"""Where numpy's in-place writes and the translation's functional updates would differ.

The translation turns ``x[idx] = v`` into ``x = x.at[idx].set(v)``: it rebinds ``x`` instead of
changing the array that ``x`` names. The two agree unless the array has another name when it is
written: ``y = x`` (or ``y = x.reshape(...)``, ``y = x[0]``, a view), a list it was appended to
before the write, a loop variable over a list, a parameter (the caller's array), or a read of
``agent_states`` (numpy would change the environment itself). :func:`check_aliasing` follows
the statements in order (loop bodies twice, as a second iteration would) and refuses those
writes with one line; every other program keeps its meaning.
"""

from __future__ import annotations

import ast

from espark_jax.masks.released_reads import bad

#: numpy functions and array methods that may return a view of their argument.
_VIEWS = frozenset(
    "reshape transpose swapaxes moveaxis squeeze expand_dims broadcast_to ravel asarray view "
    "atleast_1d atleast_2d atleast_3d diagonal flip fliplr flipud rot90 T real imag".split()
)
_NUMPY = ("np", "numpy", "jnp")
_COPY_HINT = "write y = x.copy() before writing into y"


def _writes(fn: ast.FunctionDef) -> set[str]:
    out = set()
    for n in ast.walk(fn):
        targets = n.targets if isinstance(n, ast.Assign) else [getattr(n, "target", None)]
        if isinstance(n, (ast.Assign, ast.AugAssign)):
            for t in targets:
                while isinstance(t, ast.Subscript):
                    t = t.value
                    if isinstance(t, ast.Name):
                        out.add(t.id)
    return out


def _may_view(value: ast.expr) -> bool:
    """True when ``value`` may share memory with an existing array."""
    if isinstance(value, (ast.Name, ast.Subscript)):
        return True
    if isinstance(value, ast.Attribute):
        return value.attr in _VIEWS
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
        return value.func.attr in _VIEWS
    if isinstance(value, ast.IfExp):
        return _may_view(value.body) or _may_view(value.orelse)
    return False


def _contained(node: ast.AST, names: set[str]) -> set[str]:
    """Written names that ``node`` stores into a list (append, extend or a list literal)."""
    out = set()
    for n in ast.walk(node):
        items: list[ast.expr] = []
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            if n.func.attr in ("append", "extend", "insert"):
                items = list(n.args)
        elif isinstance(n, (ast.List, ast.Tuple)) and isinstance(n.ctx, ast.Load):
            items = list(n.elts)
        out |= {i.id for i in items if isinstance(i, ast.Name) and i.id in names}
    return out


def check_aliasing(fn: ast.FunctionDef, env_objects: set[str]) -> None:
    """Refuse writes into arrays that have another name at that point (see the module doc).

    Raises:
        Rejected: stage ``adapter``, naming the array and the fix.
    """
    written = _writes(fn)
    params = {a.arg for a in fn.args.args}
    for name in sorted(written & params):
        raise bad(
            fn,
            f"{fn.name} writes into its parameter {name!r}, which numpy would change "
            "for the caller too",
            f"copy it first: {name} = {name}.copy()",
        )
    shared: set[str] = set()

    def visit(stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.For):
                for t in ast.walk(stmt.target):
                    if isinstance(t, ast.Name) and t.id in written:
                        raise bad(
                            stmt,
                            f"the loop variable {t.id!r} is written into; numpy "
                            "would change the list's element too",
                            _COPY_HINT,
                        )
                visit(stmt.body)
                visit(stmt.body)  # what iteration 1 shared, iteration 2 must not write
                continue
            if isinstance(stmt, ast.If):
                visit(stmt.body)
                visit(stmt.orelse)
                continue
            if isinstance(stmt, (ast.Assign, ast.AugAssign)):
                _assignment(stmt)
            shared.update(_contained(stmt, written))

    def _assignment(stmt: ast.Assign | ast.AugAssign) -> None:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        for t in targets:
            base = t
            while isinstance(base, ast.Subscript):
                base = base.value
            if base is not t and isinstance(base, ast.Name) and base.id in shared:
                raise bad(
                    stmt,
                    f"{base.id!r} is written after it was put into a list; numpy "
                    "would change that list element too",
                    _COPY_HINT,
                )
            if not isinstance(t, ast.Name) or not isinstance(stmt, ast.Assign):
                continue
            value = stmt.value
            names = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
            if t.id in written and names & env_objects and _may_view(value):
                raise bad(
                    stmt,
                    f"{t.id!r} is read from the environment's state and written "
                    "into; numpy would change the environment",
                    _COPY_HINT,
                )
            if _may_view(value) and (
                t.id in written or (names & written and isinstance(value, ast.Name))
            ):
                raise bad(
                    stmt,
                    f"{t.id!r} may share its array with "
                    f"{ast.unparse(value)[:40]!r}, and one of them is written into",
                    _COPY_HINT,
                )
            shared.discard(t.id)  # a new array

    visit(fn.body)
