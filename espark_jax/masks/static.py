"""The static check of a mask program: extraction from the reply, then the AST allow-list.

:func:`extract_program` takes the program out of an LLM reply; :func:`validate_source` checks
its top level (only function definitions and harmless numpy imports), every function's
signature and body (:class:`~espark_jax.masks.function_check.FunctionChecker` with the rules of
:mod:`espark_jax.masks.rules`) and the call graph (no recursion), and returns the cleaned AST.
Every failure raises :class:`~espark_jax.masks.result.Rejected`. Nothing here executes the
candidate.
"""

from __future__ import annotations

import ast
import textwrap

from espark_jax.llm.extract import ExtractionError, extract_code, fenced_blocks
from espark_jax.masks.function_check import FunctionChecker
from espark_jax.masks.result import Rejected
from espark_jax.masks.rules import (
    ALLOWED_BUILTINS,
    ARRAY_MODULE_NAMES,
    DANGEROUS_NAMES,
    MAX_SOURCE_CHARS,
    NUMPY_IMPORTS,
    reject,
)
from espark_jax.masks.task import MaskTask


def extract_program(text: str, function_name: str = "compute_mask") -> str:
    """The program inside an LLM response (dedented), or a :class:`Rejected` at stage ``extract``.

    A text with fenced blocks goes through :func:`espark_jax.llm.extract.extract_code`; a text
    without any fenced block is taken as code as it is (template programs, stored ``code.py``).
    """
    if not isinstance(text, str):
        raise Rejected(
            "extract", f"the response is {type(text).__name__}, not text", "send the code as text"
        )
    try:
        code = extract_code(text, function_name) if fenced_blocks(text) else text
    except ExtractionError as err:
        raise Rejected(
            "extract", str(err), f"answer with one ```python block that defines {function_name}"
        ) from None
    return textwrap.dedent(code).strip("\n") + "\n"


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


def _check_signature(fn: ast.FunctionDef) -> None:
    a = fn.args
    if fn.decorator_list:
        raise reject(
            fn.decorator_list[0],
            f"decorators are not allowed (on {fn.name})",
            "remove the decorator",
        )
    if a.vararg or a.kwarg or a.kwonlyargs:
        raise reject(
            fn,
            f"{fn.name}: *args, **kwargs and keyword-only parameters are not allowed",
            "use plain positional parameters",
        )
    if a.defaults or a.kw_defaults:
        raise reject(
            fn, f"{fn.name}: default parameter values are not allowed", "remove the defaults"
        )
    if getattr(fn, "type_params", None):
        raise reject(fn, f"{fn.name}: type parameters are not allowed", "remove them")
    for arg in (*a.posonlyargs, *a.args):
        if arg.arg.startswith("__"):
            raise reject(arg, f"the parameter name {arg.arg!r} is not allowed", "use a plain name")
        if arg.arg in ARRAY_MODULE_NAMES or arg.arg in ALLOWED_BUILTINS:
            raise reject(
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
    tree = _parse(code, task)
    functions = _top_level_functions(tree, task)
    main = _main_function(functions, task)
    ctx_name, action_name = main.args.args[0].arg, main.args.args[1].arg
    helpers = {name: tuple(a.arg for a in f.args.args) for name, f in functions.items()}
    graph: dict[str, set[str]] = {}
    for fn in functions.values():
        params = {a.arg for a in fn.args.args}
        ctx_names = {ctx_name} if fn is main else {ctx_name} & params
        action_names = {action_name} if fn is main else {action_name} & params
        checker = FunctionChecker(fn, task, helpers, ctx_names, action_names)
        checker.run()
        graph[fn.name] = checker.calls
    cycle = _find_cycle(graph)
    if cycle:
        raise reject(
            functions[cycle[0]],
            f"recursion is not allowed ({' -> '.join(cycle)})",
            "write the computation without recursive calls (vectorise or use a literal-range loop)",
        )
    tree.body = list(functions.values())
    return ast.fix_missing_locations(tree)


def _parse(code: str, task: MaskTask) -> ast.Module:
    """The AST of ``code`` without annotations (size and syntax checked first)."""
    if not code.strip():
        raise Rejected(
            "extract",
            "no code found in the response",
            f"answer with one ```python block that defines {task.signature()}",
        )
    return _StripAnnotations().visit(parse_code(code))


def parse_code(code: str) -> ast.Module:
    """The AST of a program, its size and syntax checked first (nothing runs).

    Raises:
        Rejected: stage ``extract`` (too long) or ``syntax``.
    """
    if len(code) > MAX_SOURCE_CHARS:
        raise Rejected(
            "extract",
            f"the code has {len(code)} characters; at most {MAX_SOURCE_CHARS} are allowed",
            "write a shorter, vectorised function",
        )
    try:
        return ast.parse(code, filename="<mask>")
    except SyntaxError as err:
        raise Rejected(
            "syntax", f"{err.msg}", "fix the syntax error; send only Python code", err.lineno
        ) from None


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _check_import(stmt: ast.Import | ast.ImportFrom) -> None:
    """Allow an import only when it binds a name that already is the allow-listed numpy view."""
    if isinstance(stmt, ast.Import):
        pairs = [(a.name, a.asname) for a in stmt.names]
    elif stmt.level == 0:
        pairs = [(f"{stmt.module}.{a.name}", a.asname or a.name) for a in stmt.names]
    else:
        pairs = []
    if pairs and all(p in NUMPY_IMPORTS for p in pairs):
        return
    names = ", ".join(p[0] for p in pairs) or "a relative module"
    raise reject(
        stmt,
        f"imports are not allowed (import of {names})",
        "np, numpy and jnp (jax.numpy) are already provided; remove the import",
    )


def _top_level_functions(tree: ast.Module, task: MaskTask) -> dict[str, ast.FunctionDef]:
    """The module's functions by name; anything else at top level (but a docstring and the
    numpy imports) is rejected."""
    functions: dict[str, ast.FunctionDef] = {}
    for i, stmt in enumerate(tree.body):
        if i == 0 and _is_docstring(stmt):
            continue
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            _check_import(stmt)
            continue
        if isinstance(stmt, ast.FunctionDef):
            if stmt.name in functions:
                raise reject(
                    stmt, f"the function {stmt.name!r} is defined twice", "keep one definition"
                )
            if stmt.name.startswith("__"):
                raise reject(
                    stmt, f"the function name {stmt.name!r} is not allowed", "use a plain name"
                )
            if (
                stmt.name in ARRAY_MODULE_NAMES
                or stmt.name in ALLOWED_BUILTINS
                or stmt.name in DANGEROUS_NAMES
            ):
                raise reject(
                    stmt, f"the function name {stmt.name!r} shadows a provided name", "rename it"
                )
            _check_signature(stmt)
            functions[stmt.name] = stmt
            continue
        if isinstance(stmt, (ast.Global, ast.Nonlocal)):
            raise reject(
                stmt,
                "`global` is not allowed (no global state)",
                "compute everything inside the function",
            )
        kind = type(stmt).__name__
        raise reject(
            stmt,
            f"only function definitions are allowed at top level (found {kind})",
            f"move constants and code into {task.function_name}; remove example usage",
        )
    return functions


def _main_function(functions: dict[str, ast.FunctionDef], task: MaskTask) -> ast.FunctionDef:
    """The function the task names, checked to take exactly ``(ctx, action_space)``."""
    name = task.function_name
    if name not in functions:
        found = ", ".join(functions) or "no function"
        raise reject(
            None, f"no function named {name!r} (found {found})", f"define {task.signature()}"
        )
    main = functions[name]
    n_params = len(main.args.posonlyargs) + len(main.args.args)
    if n_params != 2 or main.args.posonlyargs:
        raise reject(
            main,
            f"{name} takes {n_params} parameters; it must take exactly two",
            f"define {task.signature()}",
        )
    return main
