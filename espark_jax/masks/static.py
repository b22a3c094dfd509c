"""Extraction of the mask program from an LLM response, and the AST allow-list.

The validator accepts a small, side-effect-free subset of Python: top-level function definitions
whose bodies assign, loop over literal ranges and return, calling an allow-listed view of
``jax.numpy`` (bound to ``jnp``, ``np`` and ``numpy``), a few builtins and each other. Everything
it rejects raises :class:`Rejected` with the line, a one-line message and a hint for the LLM.
Nothing here executes the candidate.
"""

from __future__ import annotations

import ast
import difflib
import math
import textwrap
from typing import Iterable

from espark_jax.llm.extract import ExtractionError, fenced_blocks
from espark_jax.llm.extract import extract_code as _extract_fenced
from espark_jax.masks.task import MaskTask

MAX_SOURCE_CHARS = 8000
MAX_LOOP_STEPS = 64
MAX_UNROLL = 4096
MAX_EXPONENT = 16
MAX_INT_LITERAL = 2**31 - 1
MAX_STR_LITERAL = 64

#: Names the array modules are bound to inside a mask program (the same allow-listed view).
ARRAY_MODULE_NAMES = ("jnp", "np", "numpy")

#: ``jax.numpy`` members a mask program may use (pure, shape-static numerics and dtypes).
JNP_ALLOWED: frozenset[str] = frozenset(
    """
abs absolute add all allclose amax amin any arange arccos arcsin arctan arctan2 argmax argmin argsort around array
array_equal asarray atleast_1d atleast_2d average bincount bitwise_and bitwise_not bitwise_or bitwise_xor bool bool_
broadcast_arrays broadcast_to cbrt ceil clip column_stack concatenate copysign cos cosh count_nonzero cumprod cumsum
cumulative_sum deg2rad diag diagonal diff digitize divide dot dstack e einsum equal exp exp2 expand_dims expm1 eye
float16 float32 float64 floor floor_divide flip fliplr flipud fmax fmin fmod full full_like greater greater_equal
heaviside hstack hypot identity inf inner isin int8 int16 int32 int64 interp invert isclose isfinite isinf isnan isneginf
isposinf less less_equal linspace log log10 log1p log2 logaddexp logical_and logical_not logical_or logical_xor matmul
max maximum mean median min minimum mod moveaxis multiply nan nan_to_num nanmax nanmean nanmin nansum negative newaxis
not_equal ones ones_like outer percentile pi positive power prod ptp quantile rad2deg ravel reciprocal remainder repeat
reshape rint roll round searchsorted select sign signbit sin sinh sort sqrt square squeeze stack std subtract sum
swapaxes take take_along_axis tan tanh tile trace transpose tril triu true_divide trunc uint8 uint32 var vstack where
zeros zeros_like
""".split()
)

_JNP_IO = frozenset(
    "save savez savez_compressed load fromfile frombuffer fromstring fromiter from_dlpack tofile "
    "set_printoptions printoptions get_printoptions".split()
)
_JNP_CALLABLE = frozenset(
    "vectorize frompyfunc piecewise apply_along_axis apply_over_axes fromfunction".split()
)
_JNP_DYNAMIC = frozenset(
    "nonzero argwhere flatnonzero unique unique_values unique_counts extract compress "
    "trim_zeros".split()
)

#: Attributes allowed on arrays (and on ``x.at[...]``): read-only properties and pure methods.
ARRAY_ATTRS: frozenset[str] = frozenset(
    """
T all any argmax argmin argsort astype at clip copy cumprod cumsum dtype flatten get max mean min multiply ndim prod
ravel repeat reshape round set add divide power size shape sort squeeze std sum swapaxes take transpose var append
extend
""".split()
)

#: Builtins available to a mask program.
ALLOWED_BUILTINS: frozenset[str] = frozenset(
    "range len min max abs float int bool enumerate zip round sum list tuple".split()
)

_DANGEROUS_NAMES = frozenset(
    """open eval exec compile getattr setattr delattr hasattr __import__ globals locals vars
dir type input breakpoint exit quit help memoryview object super classmethod staticmethod property isinstance
issubclass id hash iter next callable bytearray bytes __build_class__ __builtins__ __loader__ __spec__""".split()
)

_ALLOWED_OPS = (
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.MatMult,
    ast.BitAnd,
    ast.BitOr,
    ast.BitXor,
)
_ALLOWED_CMP = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_ALLOWED_UNARY = (ast.USub, ast.UAdd, ast.Invert)

_WHERE = "use jnp.where(cond, a, b)"
_LOGICAL = "use jnp.logical_and / jnp.logical_or / jnp.logical_not (or & | ~ on boolean arrays)"
_BANNED_NODES: dict[type, tuple[str, str]] = {
    ast.If: ("Python `if` is not allowed (it cannot branch on array values)", _WHERE),
    ast.IfExp: ("the conditional expression `a if c else b` is not allowed", _WHERE),
    ast.While: (
        "`while` loops are not allowed",
        "use a for loop over range(<int literal>) or vectorised jnp ops",
    ),
    ast.BoolOp: ("`and` / `or` are not allowed (they call bool() on arrays)", _LOGICAL),
    ast.Import: (
        "imports are not allowed",
        "np, numpy and jnp (jax.numpy) are already provided; remove the import",
    ),
    ast.ImportFrom: (
        "imports are not allowed",
        "np, numpy and jnp (jax.numpy) are already provided; remove the import",
    ),
    ast.Global: (
        "`global` is not allowed (no global state)",
        "compute everything from ctx and action_space",
    ),
    ast.Nonlocal: (
        "`nonlocal` is not allowed (no shared state)",
        "return values from helper functions instead",
    ),
    ast.Lambda: ("`lambda` is not allowed", "define a named helper function at top level"),
    ast.Try: ("`try` is not allowed", "mask code must not raise; remove the try block"),
    ast.With: ("`with` is not allowed", "remove the with block"),
    ast.Raise: ("`raise` is not allowed", "mask code must not raise; remove it"),
    ast.Assert: ("`assert` is not allowed", "remove it (shapes are checked by the compiler)"),
    ast.Delete: ("`del` is not allowed", "simply stop using the name"),
    ast.ClassDef: ("classes are not allowed", "write plain functions"),
    ast.FunctionDef: (
        "nested function definitions are not allowed",
        "define helper functions at top level",
    ),
    ast.AsyncFunctionDef: ("async functions are not allowed", "write a plain def"),
    ast.AsyncFor: ("async loops are not allowed", "write a plain for loop"),
    ast.AsyncWith: ("async with is not allowed", "remove it"),
    ast.Await: ("await is not allowed", "remove it"),
    ast.Yield: ("generators are not allowed", "return one array"),
    ast.YieldFrom: ("generators are not allowed", "return one array"),
    ast.GeneratorExp: (
        "generator expressions are not allowed",
        "use a list comprehension [... for i in range(n)]",
    ),
    ast.Dict: ("dicts are not allowed", "use separate variables or jnp.stack"),
    ast.DictComp: ("dict comprehensions are not allowed", "use a list comprehension or jnp ops"),
    ast.Set: ("sets are not allowed", "use a list or jnp ops"),
    ast.SetComp: ("set comprehensions are not allowed", "use a list comprehension or jnp ops"),
    ast.JoinedStr: ("f-strings are not allowed", "masks do not need strings"),
    ast.NamedExpr: ("the walrus operator := is not allowed", "assign on a separate line"),
    ast.Break: ("`break` is not allowed", "loops must run their full literal range"),
    ast.Continue: ("`continue` is not allowed", _WHERE),
    ast.Match: ("`match` is not allowed", _WHERE),
}
if hasattr(ast, "TryStar"):
    _BANNED_NODES[ast.TryStar] = _BANNED_NODES[ast.Try]

_ALLOWED_NODES = (
    ast.Assign,
    ast.AugAssign,
    ast.Return,
    ast.For,
    ast.Pass,
    ast.Expr,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.Call,
    ast.Name,
    ast.Constant,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.Tuple,
    ast.List,
    ast.ListComp,
    ast.Starred,
    ast.keyword,
    ast.comprehension,
    ast.Load,
    ast.Store,
    ast.operator,
    ast.cmpop,
    ast.unaryop,
)

_NUMPY_IMPORTS = {
    ("numpy", "np"),
    ("numpy", None),
    ("numpy", "numpy"),
    ("jax.numpy", "jnp"),
    ("jax.numpy", "np"),
}


class Rejected(ValueError):
    """A candidate failed a check.

    Attributes:
        stage: where it failed (``extract``, ``syntax``, ``static``, ``trace``, ``abstract``, ``values``, ...).
        message: one line, LLM-readable, with the line number where known.
        hint: how to fix it.
        line: 1-based line in the extracted code, or None.
    """

    def __init__(self, stage: str, message: str, hint: str = "", line: int | None = None) -> None:
        self.stage = stage
        self.line = line
        self.message = f"line {line}: {message}" if line else message
        self.hint = hint
        super().__init__(f"{stage}: {self.message}" + (f" (hint: {hint})" if hint else ""))


def _reject(node: ast.AST | None, message: str, hint: str = "") -> Rejected:
    return Rejected("static", message, hint, getattr(node, "lineno", None))


# ------------------------------------------------------------------------------ extraction
def extract_code(text: str, function_name: str = "compute_mask") -> str:
    """The program inside an LLM response (dedented).

    The last fenced block that defines ``function_name``, else the last fenced block (the rules of
    :func:`espark_jax.llm.extract.extract_code`); a text without any fenced block is taken as
    code as it is (template programs, stored ``code.py`` files).
    """
    if not isinstance(text, str):
        raise Rejected(
            "extract", f"the response is {type(text).__name__}, not text", "send the code as text"
        )
    try:
        code = _extract_fenced(text, function_name) if fenced_blocks(text) else text
    except ExtractionError as err:
        raise Rejected(
            "extract", str(err), f"answer with one ```python block that defines {function_name}"
        ) from None
    return textwrap.dedent(code).strip("\n") + "\n"


# ------------------------------------------------------------------------------ helpers
def _int_literal(node: ast.AST) -> int | None:
    """The value of an int literal (also ``-3``), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _int_literal(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _number_literal(node: ast.AST) -> float | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _number_literal(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    return None


def _target_names(target: ast.AST) -> Iterable[ast.Name]:
    if isinstance(target, ast.Name):
        yield target
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _target_names(elt)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _closest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(options), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


class _StripAnnotations(ast.NodeTransformer):
    """Remove every annotation (they would be evaluated when ``def`` runs)."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.returns = None
        for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs):
            a.annotation = None
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return ast.copy_location(ast.Pass(), node)
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)


# ------------------------------------------------------------------------------ validator
class _FunctionChecker:
    """Checks one top-level function body against the allow-list."""

    def __init__(
        self,
        fn: ast.FunctionDef,
        task: MaskTask,
        helpers: set[str],
        ctx_names: set[str],
        action_names: set[str],
    ) -> None:
        self.fn = fn
        self.task = task
        self.helpers = helpers
        self.ctx_names = ctx_names
        self.action_names = action_names
        self.params = {a.arg for a in fn.args.args}
        self.globals = set(ARRAY_MODULE_NAMES) | ALLOWED_BUILTINS | helpers
        self.locals = set(self.params)
        self.calls: set[str] = set()
        self.call_funcs: set[int] = set()

    def run(self) -> None:
        body = self.fn.body
        for node in ast.walk(self.fn):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.For, ast.comprehension)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for name in _target_names(t):
                        self.locals.add(name.id)
        for i, stmt in enumerate(body):
            self._stmt(stmt, unroll=1, docstring_ok=(i == 0))

    # -- statements
    def _stmts(self, stmts: list[ast.stmt], unroll: int) -> None:
        for s in stmts:
            self._stmt(s, unroll, docstring_ok=False)

    def _stmt(self, node: ast.stmt, unroll: int, docstring_ok: bool) -> None:
        self._node_type(node)
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
                raise _reject(
                    node, "print() is a side effect and is not allowed", "remove the print call"
                )
            if (
                isinstance(v, ast.Call)
                and isinstance(v.func, ast.Name)
                and v.func.id in _DANGEROUS_NAMES
            ):
                self._expr(v, unroll)
            raise _reject(
                node,
                "a bare expression statement is not allowed (side effects are not allowed)",
                "assign the result to a variable or remove the line",
            )
        if isinstance(node, ast.Assign):
            for t in node.targets:
                self._target(t)
            self._expr(node.value, unroll)
        elif isinstance(node, ast.AugAssign):
            if not isinstance(node.op, _ALLOWED_OPS):
                raise _reject(
                    node,
                    f"the operator {type(node.op).__name__} is not allowed",
                    "use jnp arithmetic",
                )
            self._target(node.target)
            self._check_binop(node, node.op, node.target, node.value)
            self._expr(node.value, unroll)
        elif isinstance(node, ast.Return):
            if node.value is None:
                raise _reject(
                    node,
                    "`return` without a value",
                    f"return the mask array of shape {self.task.out_shape}",
                )
            self._expr(node.value, unroll)
        elif isinstance(node, ast.For):
            if node.orelse:
                raise _reject(node, "for/else is not allowed", "remove the else block")
            self._target(node.target)
            steps = self._loop_steps(node.iter, unroll)
            self._stmts(node.body, unroll * steps)

    def _target(self, t: ast.AST) -> None:
        if isinstance(t, ast.Subscript):
            raise _reject(
                t,
                "item assignment x[...] = v is not allowed (arrays are immutable)",
                "write x = x.at[...].set(v), or build the array with jnp.where",
            )
        if isinstance(t, ast.Attribute):
            raise _reject(
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
                raise _reject(
                    t,
                    f"do not rebind the name {t.id!r} (a provided name or the context)",
                    "choose another variable name",
                )
            return
        raise _reject(t, f"cannot assign to {type(t).__name__}", "assign to plain variable names")

    def _loop_steps(self, it: ast.AST, unroll: int) -> int:
        """Number of iterations of a for loop / comprehension, checking the iterable's form."""
        steps: int | None = None
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range":
            self._expr(it, unroll)
            steps = len(range(*[_int_literal(a) for a in it.args]))
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
            inner = [self._loop_steps(a, unroll) for a in it.args]
            steps = min(inner)
        if steps is None:
            raise _reject(
                it,
                "for loops may only run over range(<int literals>) or a literal list/tuple",
                "vectorise with jnp operations over the array axes instead of looping over array values",
            )
        if steps > MAX_LOOP_STEPS:
            raise _reject(
                it,
                f"the loop runs {steps} times; at most {MAX_LOOP_STEPS} are allowed",
                "vectorise with jnp operations instead of a long Python loop",
            )
        if unroll * max(steps, 1) > MAX_UNROLL:
            raise _reject(
                it,
                f"nested loops run {unroll * steps} times in total; at most {MAX_UNROLL} are allowed",
                "vectorise with jnp operations instead of nested Python loops",
            )
        return max(steps, 1)

    # -- expressions
    def _node_type(self, node: ast.AST) -> None:
        for banned, (msg, hint) in _BANNED_NODES.items():
            if isinstance(node, banned):
                raise _reject(node, msg, hint)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            raise _reject(
                node,
                "`not` is not allowed (it calls bool() on arrays)",
                "use jnp.logical_not(x) or ~x",
            )
        if isinstance(node, ast.Compare):
            if len(node.ops) > 1:
                raise _reject(
                    node,
                    "chained comparisons like a < x < b are not allowed (they use `and`)",
                    "write jnp.logical_and(a < x, x < b)",
                )
            if not isinstance(node.ops[0], _ALLOWED_CMP):
                raise _reject(
                    node,
                    f"the operator `{type(node.ops[0]).__name__}` (in / is) is not allowed",
                    "use jnp.isin(x, values) or jnp.any(x[..., None] == values, axis=-1)",
                )
        if isinstance(node, ast.BinOp) and not isinstance(node.op, _ALLOWED_OPS):
            raise _reject(
                node, f"the operator {type(node.op).__name__} is not allowed", "use jnp arithmetic"
            )
        if not isinstance(node, _ALLOWED_NODES):
            raise _reject(
                node,
                f"{type(node).__name__} is not allowed in mask code",
                "use assignments, for loops over range(<literal>), jnp calls and return",
            )

    def _expr(self, node: ast.AST, unroll: int) -> None:
        for sub in ast.walk(node):
            self._node_type(sub)
            if isinstance(sub, ast.ListComp):
                n = unroll
                for gen in sub.generators:
                    if gen.ifs:
                        raise _reject(
                            gen.ifs[0], "`if` inside a comprehension is not allowed", _WHERE
                        )
                    if gen.is_async:
                        raise _reject(sub, "async comprehensions are not allowed", "remove async")
                    self._target(gen.target)
                    n *= self._loop_steps(gen.iter, n)
            elif isinstance(sub, ast.Call):
                self._call(sub)
            elif isinstance(sub, ast.Name):
                self._load_name(sub)
            elif isinstance(sub, ast.Attribute):
                self._attribute(sub)
            elif isinstance(sub, ast.Subscript):
                self._subscript(sub)
            elif isinstance(sub, ast.Constant):
                self._constant(sub)
            elif isinstance(sub, ast.BinOp):
                self._check_binop(sub, sub.op, sub.left, sub.right)

    def _name_ok(self, node: ast.Name) -> None:
        if node.id.startswith("__"):
            raise _reject(
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
            raise _reject(
                node,
                f"the helper function {name!r} can only be called, not used as a value",
                f"call it: {name}(...)",
            )
        if name in self.locals or name in self.globals:
            return
        if name == "print":
            raise _reject(
                node, "print() is a side effect and is not allowed", "remove the print call"
            )
        if name in _DANGEROUS_NAMES:
            raise _reject(
                node,
                f"{name} is not allowed (no I/O, reflection or dynamic code in mask programs)",
                "use only jnp/np functions, arithmetic, ctx fields and your own helpers",
            )
        if name == "jax":
            raise _reject(
                node,
                "`jax` is not available; only jnp / np (an allow-listed jax.numpy) is",
                "write jnp.<function> instead of jax.<module>.<function>",
            )
        if name in ("math", "random", "os", "sys"):
            raise _reject(
                node, f"the module {name!r} is not available", "use jnp / np functions instead"
            )
        available = sorted(self.locals | set(ARRAY_MODULE_NAMES) | self.helpers | ALLOWED_BUILTINS)
        raise _reject(
            node,
            f"name {name!r} is not defined{_closest(name, available)}",
            f"available names: {', '.join(available)}",
        )

    def _call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name):
            self.call_funcs.add(id(node.func))
            if node.func.id in self.helpers:
                self.calls.add(node.func.id)
            if node.func.id == "range" and node.func.id not in self.locals:
                bounds = [_int_literal(a) for a in node.args]
                if node.keywords or not 1 <= len(bounds) <= 3 or any(b is None for b in bounds):
                    raise _reject(
                        node,
                        "range() needs int literal arguments, e.g. range(5)",
                        "loop over a fixed small range, or vectorise with jnp instead",
                    )
                if 0 in bounds[2:]:
                    raise _reject(node, "range() step must not be zero", "use a non-zero step")
                n = len(range(*bounds))
                if n > MAX_LOOP_STEPS:
                    raise _reject(
                        node,
                        f"range() with {n} steps; at most {MAX_LOOP_STEPS} are allowed",
                        "vectorise with jnp operations (e.g. jnp.arange) instead",
                    )
        for kw in node.keywords:
            if kw.arg is None:
                raise _reject(
                    node, "**kwargs in calls are not allowed", "pass keyword arguments explicitly"
                )

    def _attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Attribute):
            self._attribute(
                node.value
            )  # report the innermost bad attribute first (np.random before .rand)
        if isinstance(node.value, ast.Name):
            self._load_name(node.value)  # an unknown module such as jax/math/os is the real problem
        attr = node.attr
        if attr.startswith("_"):
            raise _reject(
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
            if attr in JNP_ALLOWED:
                return
            if attr in _JNP_IO:
                raise _reject(
                    node,
                    f"{base.id}.{attr} is not allowed: mask programs may not do I/O",
                    "compute the mask from ctx and action_space only",
                )
            if attr in _JNP_CALLABLE:
                raise _reject(
                    node,
                    f"{base.id}.{attr} is not allowed (it takes a Python function)",
                    "write vectorised jnp expressions directly",
                )
            if attr in _JNP_DYNAMIC:
                raise _reject(
                    node,
                    f"{base.id}.{attr} is not allowed (its output shape depends on the data)",
                    "use jnp.where(cond, a, b) to keep shapes fixed",
                )
            if attr in ("random", "linalg", "fft"):
                raise _reject(
                    node,
                    f"{base.id}.{attr} is not available in mask programs",
                    "masks must be deterministic elementwise/reduction jnp code",
                )
            raise _reject(
                node,
                f"{base.id}.{attr} is not in the allowed list of jnp functions{_closest(attr, JNP_ALLOWED)}",
                "use common jnp functions such as where, logical_and, floor, minimum, clip, sum, stack",
            )
        if isinstance(base, ast.Name) and base.id in self.ctx_names:
            if attr in self.task.field_map:
                return
            fields = ", ".join(self.task.field_names)
            raise _reject(
                node,
                f"ctx has no field {attr!r}{_closest(attr, self.task.field_names)}",
                f"valid fields: {fields}",
            )
        if attr in ARRAY_ATTRS or attr in self.task.field_map:
            return
        raise _reject(
            node,
            f"the attribute .{attr} is not allowed{_closest(attr, ARRAY_ATTRS)}",
            f"allowed array attributes: {', '.join(sorted(ARRAY_ATTRS))}",
        )

    def _subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Store):
            self._target(node)
        base = node.value
        if isinstance(base, ast.Name) and base.id in self.ctx_names:
            raise _reject(
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
            if (isinstance(ix, ast.Constant) and ix.value in (None, Ellipsis)) or axis >= len(
                shape
            ):
                return  # new axes / ellipsis: positions no longer line up; JAX reports too many indices itself
            k = _int_literal(ix)
            if k is not None and not -shape[axis] <= k < shape[axis]:
                raise _reject(
                    node,
                    f"index {k} is out of range for axis {axis} of {what} (size {shape[axis]})",
                    f"{what} has shape {shape}; JAX would silently clamp the index",
                )

    def _constant(self, node: ast.Constant) -> None:
        v = node.value
        if type(v) is int and abs(v) > MAX_INT_LITERAL:
            raise _reject(
                node,
                f"the int literal {v} is too large (max {MAX_INT_LITERAL})",
                "use a float literal",
            )
        if isinstance(v, float) and not math.isfinite(v):
            return
        if isinstance(v, complex):
            raise _reject(node, "complex numbers are not allowed", "masks are real-valued")
        if isinstance(v, bytes):
            raise _reject(node, "bytes literals are not allowed", "masks do not need bytes")
        if isinstance(v, str) and len(v) > MAX_STR_LITERAL:
            raise _reject(
                node,
                f"string literals longer than {MAX_STR_LITERAL} characters are not allowed",
                "use docstrings or comments for long text",
            )

    def _check_binop(self, node: ast.AST, op: ast.operator, left: ast.AST, right: ast.AST) -> None:
        if isinstance(op, ast.Pow):
            e = _number_literal(right)
            if e is None:
                raise _reject(
                    node,
                    "the exponent of ** must be a number literal",
                    "use jnp.power(x, y) for array exponents",
                )
            if abs(e) > MAX_EXPONENT:
                raise _reject(
                    node,
                    f"the exponent {e} is too large (at most {MAX_EXPONENT})",
                    "use a float literal such as 1e12 instead of 10**12",
                )
        if isinstance(op, ast.Mult):
            for side in (left, right):
                if isinstance(side, (ast.List, ast.Tuple, ast.ListComp)) or (
                    isinstance(side, ast.Constant) and isinstance(side.value, str)
                ):
                    raise _reject(
                        node,
                        "sequence repetition like [0] * n is not allowed",
                        "use jnp.zeros(shape) / jnp.full(shape, value)",
                    )


def _check_signature(fn: ast.FunctionDef) -> None:
    a = fn.args
    if fn.decorator_list:
        raise _reject(
            fn.decorator_list[0],
            f"decorators are not allowed (on {fn.name})",
            "remove the decorator",
        )
    if a.vararg or a.kwarg or a.kwonlyargs:
        raise _reject(
            fn,
            f"{fn.name}: *args, **kwargs and keyword-only parameters are not allowed",
            "use plain positional parameters",
        )
    if a.defaults or a.kw_defaults:
        raise _reject(
            fn, f"{fn.name}: default parameter values are not allowed", "remove the defaults"
        )
    if getattr(fn, "type_params", None):
        raise _reject(fn, f"{fn.name}: type parameters are not allowed", "remove them")
    for arg in (*a.posonlyargs, *a.args):
        if arg.arg.startswith("__"):
            raise _reject(arg, f"the parameter name {arg.arg!r} is not allowed", "use a plain name")
        if arg.arg in ARRAY_MODULE_NAMES or arg.arg in ALLOWED_BUILTINS:
            raise _reject(
                arg,
                f"the parameter name {arg.arg!r} shadows a provided name",
                "choose another name",
            )


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def validate_source(code: str, task: MaskTask) -> ast.Module:
    """Check a mask program against the allow-list and return its cleaned AST.

    The returned module has annotations and the harmless ``import numpy as np`` /
    ``import jax.numpy as jnp`` lines removed, and is ready for :func:`compile`.

    Raises:
        Rejected: stage ``extract``, ``syntax`` or ``static`` with a one-line message and a hint.
    """
    try:
        module = _validate(code, task)
        compile(module, "<mask>", "exec")  # the compiler has its own nesting limits
        return module
    except (RecursionError, MemoryError):
        raise Rejected(
            "static", "the code is nested too deeply", "split long expressions into several lines"
        ) from None


def _validate(code: str, task: MaskTask) -> ast.Module:
    if not code.strip():
        raise Rejected(
            "extract",
            "no code found in the response",
            f"answer with one ```python block that defines {task.signature()}",
        )
    if len(code) > MAX_SOURCE_CHARS:
        raise Rejected(
            "extract",
            f"the code has {len(code)} characters; at most {MAX_SOURCE_CHARS} are allowed",
            "write a shorter, vectorised function",
        )
    try:
        tree = ast.parse(code, filename="<mask>")
    except SyntaxError as err:
        raise Rejected(
            "syntax", f"{err.msg}", "fix the syntax error; send only Python code", err.lineno
        ) from None
    tree = _StripAnnotations().visit(tree)
    body: list[ast.stmt] = []
    functions: dict[str, ast.FunctionDef] = {}
    for i, stmt in enumerate(tree.body):
        if (
            i == 0
            and isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str)
        ):
            continue  # module docstring
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            if isinstance(stmt, ast.Import):
                pairs = [(a.name, a.asname) for a in stmt.names]
            else:
                pairs = (
                    [(f"{stmt.module}.{a.name}", a.asname or a.name) for a in stmt.names]
                    if stmt.level == 0
                    else []
                )
            if pairs and all(p in _NUMPY_IMPORTS for p in pairs):
                continue  # binds a name that is already the allow-listed jax.numpy view
            names = ", ".join(p[0] for p in pairs) or "a relative module"
            raise _reject(
                stmt,
                f"imports are not allowed (import of {names})",
                "np, numpy and jnp (jax.numpy) are already provided; remove the import",
            )
        if isinstance(stmt, ast.FunctionDef):
            if stmt.name in functions:
                raise _reject(
                    stmt, f"the function {stmt.name!r} is defined twice", "keep one definition"
                )
            if stmt.name.startswith("__"):
                raise _reject(
                    stmt, f"the function name {stmt.name!r} is not allowed", "use a plain name"
                )
            if (
                stmt.name in ARRAY_MODULE_NAMES
                or stmt.name in ALLOWED_BUILTINS
                or stmt.name in _DANGEROUS_NAMES
            ):
                raise _reject(
                    stmt, f"the function name {stmt.name!r} shadows a provided name", "rename it"
                )
            _check_signature(stmt)
            functions[stmt.name] = stmt
            body.append(stmt)
            continue
        if isinstance(stmt, (ast.Global, ast.Nonlocal)):
            raise _reject(
                stmt,
                "`global` is not allowed (no global state)",
                "compute everything inside the function",
            )
        kind = type(stmt).__name__
        raise _reject(
            stmt,
            f"only function definitions are allowed at top level (found {kind})",
            f"move constants and code into {task.function_name}; remove example usage",
        )
    name = task.function_name
    if name not in functions:
        found = ", ".join(functions) or "no function"
        raise _reject(
            None, f"no function named {name!r} (found {found})", f"define {task.signature()}"
        )
    main = functions[name]
    n_params = len(main.args.posonlyargs) + len(main.args.args)
    if n_params != 2 or main.args.posonlyargs:
        raise _reject(
            main,
            f"{name} takes {n_params} parameters; it must take exactly two",
            f"define {task.signature()}",
        )
    ctx_name, action_name = main.args.args[0].arg, main.args.args[1].arg
    helpers = set(functions)
    graph: dict[str, set[str]] = {}
    for fn in functions.values():
        params = [a.arg for a in fn.args.args]
        ctx_names = {ctx_name} & set(params) if fn is not main else {ctx_name}
        action_names = {action_name} & set(params) if fn is not main else {action_name}
        checker = _FunctionChecker(fn, task, helpers, ctx_names, action_names)
        checker.run()
        graph[fn.name] = checker.calls
    cycle = _find_cycle(graph)
    if cycle:
        raise _reject(
            functions[cycle[0]],
            f"recursion is not allowed ({' -> '.join(cycle)})",
            "write the computation without recursive calls (vectorise or use a literal-range loop)",
        )
    tree.body = body
    return ast.fix_missing_locations(tree)
