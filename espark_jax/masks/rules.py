"""The allow-list of mask programs: limits, permitted names and syntax, and the per-node checks.

A mask program may use a side-effect-free subset of Python over an allow-listed view of
``jax.numpy``. This module holds that subset as data (which ``jnp`` members, array attributes,
builtins and AST nodes are allowed, and why the others are not) and the checks that need only one
node (node types, operators, literals, ``jnp`` members). Each failed check is a :class:`Rejected`
with the line, a one-line message and a hint. Nothing here executes the candidate.
"""

from __future__ import annotations

import ast
import difflib
import math
from typing import Iterable, Sequence

from espark_jax.masks.result import Rejected

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
abs absolute add all allclose amax amin any arange arccos arcsin arctan arctan2 argmax argmin
argsort around array array_equal asarray atleast_1d atleast_2d average bincount bitwise_and
bitwise_not bitwise_or bitwise_xor bool bool_ broadcast_arrays broadcast_to cbrt ceil clip
column_stack concatenate copysign cos cosh count_nonzero cumprod cumsum cumulative_sum deg2rad diag
diagonal diff digitize divide dot dstack e einsum equal exp exp2 expand_dims expm1 eye float16
float32 float64 floor floor_divide flip fliplr flipud fmax fmin fmod full full_like greater
greater_equal heaviside hstack hypot identity inf inner isin int8 int16 int32 int64 interp invert
isclose isfinite isinf isnan isneginf isposinf less less_equal linspace log log10 log1p log2
logaddexp logical_and logical_not logical_or logical_xor matmul max maximum mean median min minimum
mod moveaxis multiply nan nan_to_num nanmax nanmean nanmin nansum negative newaxis not_equal ones
ones_like outer percentile pi positive power prod ptp quantile rad2deg ravel reciprocal remainder
repeat reshape rint roll round searchsorted select sign signbit sin sinh sort sqrt square squeeze
stack std subtract sum swapaxes take take_along_axis tan tanh tile trace transpose tril triu
true_divide trunc uint8 uint32 var vstack where zeros zeros_like
""".split()
)

#: ``jax.numpy`` members that are refused, grouped by the reason given to the LLM.
_JNP_REFUSED: tuple[tuple[frozenset[str], str, str], ...] = (
    (
        frozenset(
            "save savez savez_compressed load fromfile frombuffer fromstring fromiter from_dlpack "
            "tofile set_printoptions printoptions get_printoptions".split()
        ),
        "is not allowed: mask programs may not do I/O",
        "compute the mask from ctx and action_space only",
    ),
    (
        frozenset(
            "vectorize frompyfunc piecewise apply_along_axis apply_over_axes fromfunction".split()
        ),
        "is not allowed (it takes a Python function)",
        "write vectorised jnp expressions directly",
    ),
    (
        frozenset(
            "nonzero argwhere flatnonzero unique unique_values unique_counts extract compress "
            "trim_zeros".split()
        ),
        "is not allowed (its output shape depends on the data)",
        "use jnp.where(cond, a, b) to keep shapes fixed",
    ),
    (
        frozenset(("random", "linalg", "fft")),
        "is not available in mask programs",
        "masks must be deterministic elementwise/reduction jnp code",
    ),
)

#: Attributes allowed on arrays (and on ``x.at[...]``): read-only properties and pure methods.
ARRAY_ATTRS: frozenset[str] = frozenset(
    """
T all any argmax argmin argsort astype at clip copy cumprod cumsum dtype flatten get max mean min
multiply ndim prod ravel repeat reshape round set add divide power size shape sort squeeze std sum
swapaxes take transpose var append extend
""".split()
)

#: Builtins available to a mask program.
ALLOWED_BUILTINS: frozenset[str] = frozenset(
    "range len min max abs float int bool enumerate zip round sum list tuple".split()
)

#: Builtins that turn values into text: never available (a traced value's text differs between
#: the check and the trainer, so output computed from it could differ too).
TEXT_BUILTINS: frozenset[str] = frozenset("str repr format ascii chr ord hex oct bin".split())

#: Keyword-argument names a call may use: the public parameters of the allowed jnp functions,
#: array methods and builtins, less placement, output and precision controls.
KEYWORD_NAMES: frozenset[str] = frozenset(
    """
A M N a a1 a2 append arr array arrays assume_unique atol axes axis axis1 axis2 b bins choicelist
condlist copy correction ddof decimals default descending destination dtype element endpoint
equal_nan fill_value fp include_initial indices indices_are_sorted initial invert k keepdims kind
left length m max mean method min minlength mode n nan ndigits neginf num offset order period
posinf prepend promote_integers q repeats reps retstep returned right rtol shape shift side size
sorter source stable start step stop test_elements total_repeat_length tup unique_indices v values
weights where wrap_negative_indices x x1 x2
""".split()
)

#: Builtins and module globals that a mask program may neither call nor define.
DANGEROUS_NAMES: frozenset[str] = frozenset(
    """open eval exec compile getattr setattr delattr hasattr __import__ globals locals vars
dir type input breakpoint exit quit help memoryview object super classmethod staticmethod property
isinstance issubclass id hash iter next callable bytearray bytes __build_class__ __builtins__
__loader__ __spec__""".split()
)

#: Binary operators a mask program may use (also in ``x op= y``).
ALLOWED_OPS = (
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

#: The hint for every construct that would branch on array values.
WHERE_HINT = "use jnp.where(cond, a, b)"
_LOGICAL = "use jnp.logical_and / jnp.logical_or / jnp.logical_not (or & | ~ on boolean arrays)"
_NO_IMPORT = (
    "imports are not allowed",
    "np, numpy and jnp (jax.numpy) are already provided; remove the import",
)
_NO_GENERATOR = ("generators are not allowed", "return one array")
_BANNED_NODES: dict[type, tuple[str, str]] = {
    ast.If: ("Python `if` is not allowed (it cannot branch on array values)", WHERE_HINT),
    ast.IfExp: ("the conditional expression `a if c else b` is not allowed", WHERE_HINT),
    ast.While: (
        "`while` loops are not allowed",
        "use a for loop over range(<int literal>) or vectorised jnp ops",
    ),
    ast.BoolOp: ("`and` / `or` are not allowed (they call bool() on arrays)", _LOGICAL),
    ast.Import: _NO_IMPORT,
    ast.ImportFrom: _NO_IMPORT,
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
    ast.Yield: _NO_GENERATOR,
    ast.YieldFrom: _NO_GENERATOR,
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
    ast.Continue: ("`continue` is not allowed", WHERE_HINT),
    ast.Match: ("`match` is not allowed", WHERE_HINT),
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

#: ``(module, bound name)`` of the imports a program may keep (they bind the allowed view).
NUMPY_IMPORTS = {
    ("numpy", "np"),
    ("numpy", None),
    ("numpy", "numpy"),
    ("jax.numpy", "jnp"),
    ("jax.numpy", "np"),
}


def reject(node: ast.AST | None, message: str, hint: str = "") -> Rejected:
    """A ``static`` rejection at ``node``'s line."""
    return Rejected("static", message, hint, getattr(node, "lineno", None))


def closest(name: str, options: Iterable[str]) -> str:
    """`` (did you mean a, b?)`` for the options close to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, sorted(options), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def number_literal(node: ast.AST, types: tuple[type, ...] = (int, float)) -> float | None:
    """The value of a number literal of one of ``types`` (also ``-3``), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = number_literal(node.operand, types)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.Constant) and type(node.value) in types:
        return node.value
    return None


def int_literal(node: ast.AST) -> int | None:
    """The value of an int literal (also ``-3``), else None."""
    return number_literal(node, (int,))  # type: ignore[return-value]


def check_node_type(node: ast.AST) -> None:
    """Reject a node whose type or operator is not allowed anywhere in a mask program."""
    for banned, (msg, hint) in _BANNED_NODES.items():
        if isinstance(node, banned):
            raise reject(node, msg, hint)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        raise reject(
            node,
            "`not` is not allowed (it calls bool() on arrays)",
            "use jnp.logical_not(x) or ~x",
        )
    if isinstance(node, ast.Compare):
        if len(node.ops) > 1:
            raise reject(
                node,
                "chained comparisons like a < x < b are not allowed (they use `and`)",
                "write jnp.logical_and(a < x, x < b)",
            )
        if not isinstance(node.ops[0], _ALLOWED_CMP):
            raise reject(
                node,
                f"the operator `{type(node.ops[0]).__name__}` (in / is) is not allowed",
                "use jnp.isin(x, values) or jnp.any(x[..., None] == values, axis=-1)",
            )
    if isinstance(node, ast.BinOp) and not isinstance(node.op, ALLOWED_OPS):
        raise reject(
            node, f"the operator {type(node.op).__name__} is not allowed", "use jnp arithmetic"
        )
    if not isinstance(node, _ALLOWED_NODES):
        raise reject(
            node,
            f"{type(node).__name__} is not allowed in mask code",
            "use assignments, for loops over range(<literal>), jnp calls and return",
        )


def check_constant(node: ast.Constant) -> None:
    """Reject literals that are too large, complex, bytes or long strings."""
    v = node.value
    if type(v) is int and abs(v) > MAX_INT_LITERAL:
        raise reject(
            node,
            f"the int literal {v} is too large (max {MAX_INT_LITERAL})",
            "use a float literal",
        )
    if isinstance(v, float) and not math.isfinite(v):
        return
    if isinstance(v, complex):
        raise reject(node, "complex numbers are not allowed", "masks are real-valued")
    if isinstance(v, bytes):
        raise reject(node, "bytes literals are not allowed", "masks do not need bytes")
    if isinstance(v, str) and len(v) > MAX_STR_LITERAL:
        raise reject(
            node,
            f"string literals longer than {MAX_STR_LITERAL} characters are not allowed",
            "use docstrings or comments for long text",
        )


def check_binop(node: ast.AST, op: ast.operator, left: ast.AST, right: ast.AST) -> None:
    """Reject non-literal or huge exponents and sequence repetition (``[0] * n``)."""
    if isinstance(op, ast.Pow):
        e = number_literal(right)
        if e is None:
            raise reject(
                node,
                "the exponent of ** must be a number literal",
                "use jnp.power(x, y) for array exponents",
            )
        if abs(e) > MAX_EXPONENT:
            raise reject(
                node,
                f"the exponent {e} is too large (at most {MAX_EXPONENT})",
                "use a float literal such as 1e12 instead of 10**12",
            )
    if isinstance(op, ast.Mult):
        for side in (left, right):
            if isinstance(side, (ast.List, ast.Tuple, ast.ListComp)) or (
                isinstance(side, ast.Constant) and isinstance(side.value, str)
            ):
                raise reject(
                    node,
                    "sequence repetition like [0] * n is not allowed",
                    "use jnp.zeros(shape) / jnp.full(shape, value)",
                )


def check_keyword(node: ast.keyword, name: str, helper_params: Sequence[str] | None) -> None:
    """Reject a keyword argument whose name is private or not allowed (``helper_params``: the
    parameters of the user's helper being called, else None for jnp functions and methods)."""
    if name.startswith("_"):
        raise reject(
            node,
            f"the keyword argument {name}= is not allowed (private names are blocked)",
            "pass only documented, public arguments",
        )
    allowed = KEYWORD_NAMES if helper_params is None else frozenset(helper_params)
    if name not in allowed:
        what = (
            f"the helper's parameters ({', '.join(helper_params)})"
            if helper_params is not None
            else "the documented keywords"
        )
        raise reject(
            node,
            f"the keyword argument {name}= is not allowed{closest(name, allowed)}",
            f"use {what} or pass the value positionally",
        )


def check_jnp_member(node: ast.Attribute, module: str) -> None:
    """Reject ``<module>.<attr>`` (``module`` one of :data:`ARRAY_MODULE_NAMES`) unless allowed."""
    attr = node.attr
    if attr in JNP_ALLOWED:
        return
    for names, why, hint in _JNP_REFUSED:
        if attr in names:
            raise reject(node, f"{module}.{attr} {why}", hint)
    raise reject(
        node,
        f"{module}.{attr} is not in the allowed list of jnp functions{closest(attr, JNP_ALLOWED)}",
        "use common jnp functions such as where, logical_and, floor, minimum, clip, sum, stack",
    )
