"""The mask compiler in-process: extraction, AST allow-list, trace/abstract/value checks, safe_mask.

Bad inputs are checked with ``check_in_process`` (nothing dangerous can run: everything that
reaches exec passed the allow-list). The sandbox itself is tested in test_mask_sandbox.py.
"""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mask_tasks import contexts, mabim_spec, mabim_task, sumo_task

from envs_jax.core import MaskContext
from espark_jax.masks import (
    ArtefactError,
    CheckLimits,
    MaskTask,
    Rejected,
    apply_mask_fn,
    check_in_process,
    extract_program,
    load_exported,
    safe_mask,
    sample_contexts,
    validate_source,
)
from espark_jax.masks.checks import abstract_check
from espark_jax.masks.restricted import exec_program
from espark_jax.masks.safe import all_ones, fallback_empty_rows
from espark_jax.masks.task import load_samples, normalize_samples, save_samples

TASK = mabim_task()
SUMO = sumo_task()
ONES = "jnp.ones((2, 3, 34))"


def fn(body: str, header: str = "def compute_mask(ctx, action_space):") -> str:
    """A compute_mask definition around ``body`` (dedented, then indented by 4)."""
    return header + "\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


# ------------------------------------------------------------------------------ bad inputs
# (id, source, expected stage, substring of the message)
BAD_STATIC = [
    ("import-top", "import os\n" + fn(f"return {ONES}"), "static", "imports are not allowed"),
    ("import-inside", fn(f"import os\nreturn {ONES}"), "static", "imports are not allowed"),
    (
        "from-import",
        "from os import system\n" + fn(f"return {ONES}"),
        "static",
        "imports are not allowed",
    ),
    ("import-jax", "import jax\n" + fn(f"return {ONES}"), "static", "imports are not allowed"),
    (
        "dunder-import",
        fn(f"m = __import__('os')\nreturn {ONES}"),
        "static",
        "'__import__' is not allowed",
    ),
    (
        "dunder-walk",
        fn(f"s = ().__class__.__base__.__subclasses__()\nreturn {ONES}"),
        "static",
        "dunder attributes are blocked",
    ),
    ("dunder-ctx", fn(f"g = ctx.__class__\nreturn {ONES}"), "static", ".__class__ is not allowed"),
    (
        "dunder-globals",
        fn(f"g = compute_mask.__globals__\nreturn {ONES}"),
        "static",
        "can only be called",
    ),
    ("getattr", fn(f"f = getattr(jnp, 'load')\nreturn {ONES}"), "static", "getattr is not allowed"),
    ("open", fn(f"f = open('/tmp/x', 'w')\nreturn {ONES}"), "static", "open is not allowed"),
    ("eval", fn(f"x = eval('1')\nreturn {ONES}"), "static", "eval is not allowed"),
    ("exec", fn(f"x = exec('y = 1')\nreturn {ONES}"), "static", "exec is not allowed"),
    (
        "jnp-save",
        fn(f"x = jnp.save('m.npy', ctx.in_stock)\nreturn {ONES}"),
        "static",
        "jnp.save is not allowed",
    ),
    ("np-load", fn(f"x = np.load('m.npy')\nreturn {ONES}"), "static", "np.load is not allowed"),
    (
        "jnp-vectorize",
        fn(f"f = jnp.vectorize(abs)\nreturn {ONES}"),
        "static",
        "takes a Python function",
    ),
    (
        "jnp-nonzero",
        fn(f"i = jnp.nonzero(ctx.in_stock)\nreturn {ONES}"),
        "static",
        "depends on the data",
    ),
    (
        "np-random",
        fn("return np.random.rand(2, 3, 34) > 0.5"),
        "static",
        "np.random is not available",
    ),
    (
        "jax-debug",
        fn(f"x = jax.debug.print('{{}}', ctx.day)\nreturn {ONES}"),
        "static",
        "`jax` is not available",
    ),
    ("print", fn(f"print(ctx.day)\nreturn {ONES}"), "static", "print() is a side effect"),
    ("bare-expression", fn(f"ctx.in_stock + 1\nreturn {ONES}"), "static", "bare expression"),
    ("global", fn(f"global N\nreturn {ONES}"), "static", "`global` is not allowed"),
    (
        "module-state",
        "N = 5\n" + fn(f"return {ONES}"),
        "static",
        "only function definitions are allowed",
    ),
    (
        "main-block",
        fn(f"return {ONES}") + "if __name__ == '__main__':\n    pass\n",
        "static",
        "only function definitions are allowed",
    ),
    (
        "attr-assign",
        fn(f"jnp.where = None\nreturn {ONES}"),
        "static",
        "attribute assignment is not allowed",
    ),
    (
        "item-assign",
        fn(f"m = {ONES}\nm[0] = 0\nreturn m"),
        "static",
        "item assignment x[...] = v is not allowed",
    ),
    (
        "while",
        fn(f"while True:\n    x = 1\nreturn {ONES}"),
        "static",
        "`while` loops are not allowed",
    ),
    (
        "range-huge",
        fn(f"for i in range(10**12):\n    x = i\nreturn {ONES}"),
        "static",
        "int literal arguments",
    ),
    (
        "range-dynamic",
        fn(f"for i in range(len(action_space) * 1000):\n    x = i\nreturn {ONES}"),
        "static",
        "int literal arguments",
    ),
    ("range-long", fn(f"for i in range(1000):\n    x = i\nreturn {ONES}"), "static", "at most 64"),
    (
        "loop-over-array",
        fn(f"for v in ctx.in_stock:\n    x = v\nreturn {ONES}"),
        "static",
        "for loops may only run",
    ),
    (
        "nested-loops",
        fn(
            f"x = 0\nfor i in range(64):\n    for j in range(64):\n        for k in range(64):\n"
            f"            x = x + 1\nreturn {ONES}"
        ),
        "static",
        "nested loops run",
    ),
    (
        "pow-tower",
        fn(f"x = 10**10**10\nreturn {ONES}"),
        "static",
        "exponent of ** must be a number literal",
    ),
    ("pow-big", fn(f"x = 2 ** 100\nreturn {ONES}"), "static", "exponent 100 is too large"),
    ("list-repeat", fn(f"x = [0] * 2000000000\nreturn {ONES}"), "static", "sequence repetition"),
    ("str-repeat", fn(f"x = 'a' * 2e9\nreturn {ONES}"), "static", "sequence repetition"),
    ("int-literal", fn(f"x = 10000000000000\nreturn {ONES}"), "static", "too large"),
    (
        "recursion",
        fn("return compute_mask(ctx, action_space)"),
        "static",
        "recursion is not allowed",
    ),
    (
        "mutual-recursion",
        "def a(x):\n    return b(x)\n\ndef b(x):\n    return a(x)\n\n" + fn("return a(ctx)"),
        "static",
        "recursion is not allowed (a -> b -> a)",
    ),
    (
        "helper-alias",
        "def h(x):\n    return x\n\n" + fn(f"g = h\nreturn {ONES}"),
        "static",
        "can only be called",
    ),
    (
        "python-if",
        fn(f"if ctx.day > 3:\n    return {ONES}\nreturn {ONES}"),
        "static",
        "Python `if` is not allowed",
    ),
    (
        "ternary",
        fn(f"return {ONES} if ctx.day > 3 else {ONES}"),
        "static",
        "conditional expression",
    ),
    ("and-or", fn(f"c = (ctx.day > 1) and (ctx.day < 5)\nreturn {ONES}"), "static", "`and` / `or`"),
    ("not", fn(f"c = not ctx.day\nreturn {ONES}"), "static", "`not` is not allowed"),
    (
        "chained-compare",
        fn(f"c = 0 < ctx.in_stock < 5\nreturn {ONES}"),
        "static",
        "chained comparisons",
    ),
    (
        "in-operator",
        fn(f"c = 3 in action_space\nreturn {ONES}"),
        "static",
        "(in / is) is not allowed",
    ),
    ("lambda", fn(f"f = lambda x: x\nreturn {ONES}"), "static", "`lambda` is not allowed"),
    (
        "try",
        fn(f"try:\n    x = 1\nexcept Exception:\n    x = 2\nreturn {ONES}"),
        "static",
        "`try` is not allowed",
    ),
    (
        "with",
        fn(f"with open('x') as f:\n    x = 1\nreturn {ONES}"),
        "static",
        "`with` is not allowed",
    ),
    (
        "class",
        "class A:\n    pass\n\n" + fn(f"return {ONES}"),
        "static",
        "only function definitions",
    ),
    (
        "nested-def",
        fn(f"def g(x):\n    return x\nreturn {ONES}"),
        "static",
        "nested function definitions",
    ),
    (
        "generator",
        fn(f"s = sum(x for x in range(3))\nreturn {ONES}"),
        "static",
        "generator expressions",
    ),
    ("dict", fn(f"d = {{'a': 1}}\nreturn {ONES}"), "static", "dicts are not allowed"),
    ("fstring", fn(f"s = f'{{ctx.day}}'\nreturn {ONES}"), "static", "f-strings are not allowed"),
    ("kwargs-call", fn("return jnp.ones(**{})"), "static", "**kwargs in calls are not allowed"),
    ("decorator", "@jax.jit\n" + fn(f"return {ONES}"), "static", "decorators are not allowed"),
    (
        "default-arg",
        fn(f"return {ONES}", "def compute_mask(ctx, action_space, f=open):"),
        "static",
        "default parameter values",
    ),
    (
        "three-params",
        fn(f"return {ONES}", "def compute_mask(ctx, action_space, extra):"),
        "static",
        "it must take exactly two",
    ),
    (
        "wrong-name",
        fn("return jnp.ones(34)", "def exploration_mask(obs):"),
        "static",
        "no function named 'compute_mask'",
    ),
    (
        "unknown-field",
        fn(f"x = ctx.inventory\nreturn {ONES}"),
        "static",
        "ctx has no field 'inventory'",
    ),
    (
        "ctx-subscript",
        fn(f"x = ctx['in_stock']\nreturn {ONES}"),
        "static",
        "ctx is not subscriptable",
    ),
    (
        "index-out-of-range",
        fn(f"x = ctx.demand_history[:, :, 25]\nreturn {ONES}"),
        "static",
        "index 25 is out of range for axis 2 of ctx.demand_history (size 21)",
    ),
    (
        "action-index",
        fn(f"x = action_space[40]\nreturn {ONES}"),
        "static",
        "index 40 is out of range",
    ),
    (
        "array-method",
        fn(f"x = ctx.in_stock.tofile('x')\nreturn {ONES}"),
        "static",
        "attribute .tofile is not allowed",
    ),
    (
        "undefined-name",
        fn(f"x = foo(ctx.in_stock)\nreturn {ONES}"),
        "static",
        "name 'foo' is not defined",
    ),
    ("rebind-builtin", fn(f"range = 3\nreturn {ONES}"), "static", "do not rebind"),
    ("shift", fn(f"x = 1 << 40\nreturn {ONES}"), "static", "LShift is not allowed"),
    ("syntax-error", "def compute_mask(ctx, action_space)\n    return 1\n", "syntax", "line 1"),
    ("empty", "   \n", "extract", "no code found"),
    ("empty-fence", "Here:\n```python\n```\n", "extract", "no ```python code block"),
    ("deep-nesting", fn("x = ctx" + ".T" * 3000 + "\nreturn x"), "static", "nested too deeply"),
    ("long-sum", fn("x = " + "+".join(["1"] * 2500) + "\nreturn x"), "static", "nested too deeply"),
    ("too-long", fn("x = 1\n" * 3000 + f"return {ONES}"), "extract", "at most 8000 are allowed"),
]

BAD_RUNTIME = [
    (
        "bool-of-array",
        fn(f"c = bool(ctx.day > 3)\nreturn {ONES}"),
        "trace",
        "a Python bool was taken of an array",
    ),
    (
        "python-max",
        fn(f"x = max(ctx.in_stock, 1.0)\nreturn {ONES}"),
        "trace",
        "a Python bool was taken",
    ),
    ("int-of-array", fn(f"n = int(ctx.day)\nreturn {ONES} * n"), "trace", "concrete number"),
    (
        "bool-index",
        fn(f"x = ctx.in_stock[ctx.in_stock > 0]\nreturn {ONES}"),
        "trace",
        "data-dependent shape",
    ),
    ("unbound-local", fn("y = y + 1\nreturn y"), "trace", "UnboundLocalError"),
    ("missing-arg", fn("return jnp.ones()"), "trace", "TypeError"),
    ("bad-method", fn(f"x = ctx.in_stock.append(1)\nreturn {ONES}"), "trace", "AttributeError"),
    ("wrong-shape", fn("return jnp.ones((3, 34))"), "abstract", "expected (2, 3, 34)"),
    ("scalar", fn("return 1.0"), "abstract", "the mask has a scalar"),
    ("tuple-output", fn(f"return {ONES}, {ONES}"), "abstract", "returned tuple"),
    ("no-return", fn("x = 1"), "abstract", "returned None"),
    ("complex-dtype", fn(f"return {ONES}.astype('complex64')"), "abstract", "dtype complex64"),
    (
        "huge-intermediate",
        fn(f"z = jnp.zeros((100000, 100000))\nreturn {ONES} + z[0, 0]"),
        "abstract",
        "exceeds the limit",
    ),
    (
        "too-many-ops",
        fn(
            f"x = 0.0\nfor i in range(64):\n    for j in range(64):\n        x = x + ctx.in_stock\n"
            f"return {ONES} + x[:, :, None]"
        ),
        "abstract",
        "operations",
    ),
    ("half", fn("return jnp.full((2, 3, 34), 0.5)"), "values", "other than 0 and 1 (e.g. 0.5)"),
    ("two", fn(f"return {ONES} * 2"), "values", "other than 0 and 1 (e.g. 2)"),
    (
        "nan",
        fn("return jnp.log(ctx.in_stock - 1e9)[:, :, None] + jnp.zeros(34)"),
        "values",
        "NaN or inf",
    ),
    ("all-zero", fn("return jnp.zeros((2, 3, 34))"), "values", "no action at all for 100%"),
    (
        "almost-all-zero",
        fn("return jnp.broadcast_to(ctx.day > 1000000000, (2, 3, 34))"),
        "values",
        "no action at all",
    ),
]


@pytest.mark.parametrize(
    "source,stage,needle", [b[1:] for b in BAD_STATIC], ids=[b[0] for b in BAD_STATIC]
)
def test_static_rejections(source: str, stage: str, needle: str) -> None:
    result = check_in_process(source, TASK)
    assert not result.ok and result.fn is None
    assert result.stage == stage, result.reason
    assert needle in result.message, result.message
    assert result.hint, "every rejection carries a hint"
    assert "\n" not in result.reason and result.reason.startswith(f"{stage}: ")
    assert (
        "timings" in result.stats and "abstract" not in result.stats["timings"]
    )  # nothing was traced


@pytest.mark.parametrize(
    "source,stage,needle", [b[1:] for b in BAD_RUNTIME], ids=[b[0] for b in BAD_RUNTIME]
)
def test_runtime_rejections(source: str, stage: str, needle: str) -> None:
    result = check_in_process(source, TASK)
    assert not result.ok and result.fn is None
    assert result.stage == stage, result.reason
    assert needle in result.message, result.message
    assert result.hint and "\n" not in result.reason


def test_attack_table_is_large_enough() -> None:
    assert len(BAD_STATIC) + len(BAD_RUNTIME) >= 80


def test_messages_name_the_line() -> None:
    result = check_in_process(fn(f"x = 1\ny = 2\nz = open('f')\nreturn {ONES}"), TASK)
    assert result.message.startswith("line 4: ")
    traced = check_in_process(fn(f"x = 1\nc = bool(ctx.day > 3)\nreturn {ONES}"), TASK)
    assert traced.message.startswith("line 3: ")


# ------------------------------------------------------------------------------ good programs
FIG21_NUMPY = '''Here is the exploration function.

```python
import numpy as np

def compute_mask(ctx, action_space: np.ndarray) -> np.ndarray:
    """Capacity rule (paper Fig. 21 style)."""
    order = np.floor(action_space[np.newaxis, np.newaxis, :] * ctx.demand_mean[:, :, np.newaxis])
    pipeline = (ctx.total_stock + ctx.total_in_transit)[:, None, None]
    fits = np.logical_or(pipeline + order <= ctx.capacity[:, None, None], order == 0)
    cover = (ctx.in_stock + ctx.in_transit) / np.maximum(ctx.demand_mean, 1e-6)
    overstocked = (cover > 10.0)[:, :, None]
    order_nothing = (action_space == 0)[None, None, :]
    mask = np.where(overstocked, order_nothing, fits)
    return mask.astype(np.float32)
```
It keeps the warehouses under capacity.'''


def fig21_reference(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
    order = jnp.floor(action_space * ctx.demand_mean[..., None])
    room = ctx.capacity - ctx.total_stock - ctx.total_in_transit
    fits = (order <= room[:, None, None]) | (order == 0)
    days_of_cover = (ctx.in_stock + ctx.in_transit) / jnp.maximum(ctx.demand_mean, 1e-6)
    return jnp.where((days_of_cover > 10.0)[..., None], action_space == 0, fits)


HELPERS_JNP = '''
def cover_days(ctx):
    return (ctx.in_stock + ctx.in_transit) / jnp.maximum(ctx.demand_mean, 1e-6)

def compute_mask(ctx, action_space):
    """Allow multipliers between a lower and an upper bound that depend on days of cover."""
    cover = cover_days(ctx)
    upper = jnp.clip(8.0 - cover, 0.0, 12.0)[..., None]
    mask = action_space[None, None, :] <= upper
    recent = [ctx.demand_history[:, :, -1 - k] for k in range(3)]
    spike = jnp.stack(recent, axis=-1).mean(axis=-1) > 2 * ctx.demand_mean
    mask = mask.at[:, :, 0].set(jnp.logical_or(mask[:, :, 0], ~spike))
    for w, scale in enumerate([1.0, 0.5]):
        mask = mask.at[w].set(jnp.logical_and(mask[w], action_space <= 12.0 * scale))
    return mask
'''


def helpers_reference(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
    cover = (ctx.in_stock + ctx.in_transit) / jnp.maximum(ctx.demand_mean, 1e-6)
    mask = action_space <= jnp.clip(8.0 - cover, 0.0, 12.0)[..., None]
    h = ctx.demand_history
    spike = (
        jnp.stack([h[..., -1], h[..., -2], h[..., -3]], axis=-1).mean(axis=-1) > 2 * ctx.demand_mean
    )
    mask = mask.at[:, :, 0].set(mask[:, :, 0] | ~spike)
    return mask & (action_space <= 12.0 * jnp.array([1.0, 0.5])[:, None, None])


SUMO_TOP4 = """
def compute_mask(ctx, action_space):
    score = jnp.where(ctx.phase_available, ctx.phase_queue, -1e9)
    kth = jnp.sort(score, axis=-1)[:, -4]
    keep = jnp.logical_and(score >= kth[:, None], ctx.phase_available)
    keep = jnp.logical_or(keep, jnp.arange(8)[None, :] == ctx.current_phase[:, None])
    return keep.astype(jnp.int32)
"""


def sumo_reference(ctx: MaskContext, action_space: jax.Array) -> jax.Array:
    score = jnp.where(ctx.phase_available, ctx.phase_queue, -1e9)
    top = jax.lax.top_k(score, 4)[0][:, -1]
    keep = (score >= top[:, None]) & ctx.phase_available
    return keep | (jnp.arange(8) == ctx.current_phase[:, None])


@pytest.mark.parametrize(
    "text,reference,task",
    [
        (FIG21_NUMPY, fig21_reference, TASK),
        (HELPERS_JNP, helpers_reference, TASK),
        (SUMO_TOP4, sumo_reference, SUMO),
    ],
    ids=["fig21-numpy", "helpers-jnp", "sumo-top4"],
)
def test_good_programs_match_reference(text: str, reference, task: MaskTask) -> None:
    result = check_in_process(text, task)
    assert result.ok, result.reason
    assert result.stage == "ok" and result.reason == "" and result.fn is not None
    raw = exec_program(validate_source(result.code, task), task)
    action_space = jnp.asarray(task.action_values, dtype=jnp.float32)
    batch = contexts(task)
    n = batch.day.shape[0] if "day" in batch else batch.current_phase.shape[0]
    want = np.asarray(
        jax.jit(lambda c: apply_mask_fn(reference, c, action_space, batch_dims=1))(batch)
    )
    got_raw = jax.jit(lambda c: apply_mask_fn(raw, c, action_space, batch_dims=1))(batch)
    np.testing.assert_array_equal(np.asarray(got_raw) != 0, want)
    # the safe function, jitted and vmapped over environments as the trainer uses it
    got = jax.jit(lambda c: apply_mask_fn(result.fn, c, action_space, batch_dims=1))(batch)
    np.testing.assert_array_equal(np.asarray(got), want | ~want.any(axis=-1, keepdims=True))
    assert got.dtype == jnp.bool_ and got.shape == (n, *task.out_shape)
    assert 0.0 < want.mean() < 1.0  # the rule is not trivial on these contexts
    # one environment, no batch axis
    one = jax.jit(result.fn)(jax.tree_util.tree_map(lambda x: x[0], batch), action_space)
    np.testing.assert_array_equal(np.asarray(one), np.asarray(got[0]))


def test_fig21_hand_computed_case() -> None:
    """A warehouse at the capacity edge, one over it, one overstocked SKU: checked per entry."""
    fields = {f.name: np.zeros(f.shape, np.dtype(f.dtype)) for f in TASK.fields}
    fields["demand_mean"] = np.array([[10.0, 1.0, 0.0], [4.0, 4.0, 4.0]], np.float32)
    fields["in_stock"] = np.array([[5.0, 50.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    fields["capacity"] = np.array([100.0, 10.0], np.float32)
    fields["total_stock"] = np.array([55.0, 20.0], np.float32)
    fields["total_in_transit"] = np.array([15.0, 0.0], np.float32)
    ctx = MaskContext(fields)
    fn_ = check_in_process(FIG21_NUMPY, TASK).fn
    mask = np.asarray(jax.jit(fn_)(ctx, jnp.asarray(TASK.action_values, dtype=jnp.float32)))
    mult = np.asarray(TASK.action_values)
    # warehouse 0, SKU 0: room 30 units, order floor(10 m) <= 30  <=>  m <= 3.0 (3.16 -> 31 units)
    np.testing.assert_array_equal(mask[0, 0], mult <= 3.0)
    # SKU 1 has 50 days of cover: only "order nothing"
    np.testing.assert_array_equal(mask[0, 1], mult == 0)
    # SKU 2 has no demand: every order is 0 units and fits
    assert mask[0, 2].all()
    # warehouse 1 is already over capacity: only orders of 0 units (floor(4 m) = 0 <=> m <= 0.16)
    for sku in range(3):
        np.testing.assert_array_equal(mask[1, sku], mult <= 0.16)


def test_annotations_are_never_evaluated(tmp_path) -> None:
    target = tmp_path / "pwned"
    text = (
        f"def compute_mask(ctx: open({str(target)!r}, 'w'), "
        "action_space: print('x')) -> exec('1'):\n"
        f"    m: open({str(target)!r}, 'w') = {ONES}\n    return m\n"
    )
    result = check_in_process(text, TASK)
    assert result.ok, result.reason
    result.fn(
        MaskContext({f.name: jnp.zeros(f.shape, f.dtype) for f in TASK.fields}), jnp.zeros(34)
    )
    assert not target.exists()


def test_numpy_and_jnp_share_one_allow_listed_view() -> None:
    text = "import numpy as np\nimport jax.numpy as jnp\n" + fn(
        "a = np.ones((2, 3, 34), dtype=np.float32)\nb = numpy.zeros_like(a)\n"
        "return jnp.maximum(a, b) > 0"
    )
    result = check_in_process(text, TASK)
    assert result.ok, result.reason
    assert result.stats["all_allowed_frac"] == 1.0


# ------------------------------------------------------------------------------ statistics
def test_statistics_hand_computed() -> None:
    # only "order nothing" (action 0) and the largest multiplier (action 33) on the head warehouse
    text = fn(
        "m = jnp.zeros((2, 3, 34), dtype=bool)\nm = m.at[:, :, 0].set(True)\n"
        "m = m.at[0, :, 33].set(True)\n"
        "return m"
    )
    result = check_in_process(text, TASK, limits=CheckLimits(n_random=4))
    assert result.ok, result.reason
    s = result.stats
    n_ctx = 4 + 1 + 2  # random, zeros, extreme
    assert s["rows"] == n_ctx * 6 and s["by_kind"]["random"]["rows"] == 24
    assert s["none_allowed_frac"] == 0.0 and s["all_allowed_frac"] == 0.0
    assert s["mean_allowed"] == pytest.approx(1.5)
    rate = np.asarray(s["allowed_rate"])
    assert rate[0] == 1.0 and rate[33] == 0.5 and rate[1:33].sum() == 0 and len(rate) == 34
    assert s["out_dtype"] == "bool" and 0 < s["equations"] < 50
    assert s["max_intermediate"] == 2 * 3 * 34


def test_empty_rows_judged_on_recorded_contexts() -> None:
    # allows nothing where stock is above 5 units: fine on synthetic data, rejected on recorded
    # states
    text = fn("return jnp.broadcast_to((ctx.in_stock <= 5.0)[:, :, None], (2, 3, 34))")
    rng = np.random.default_rng(0)
    recorded = {f.name: rng.uniform(10, 20, (3, 4, *f.shape)).astype(f.dtype) for f in TASK.fields}
    limits = CheckLimits(empty_row_reject_frac=0.5)
    low = {k: v * 0.0 for k, v in recorded.items()}
    ok = check_in_process(text, TASK, samples=low, limits=limits)
    assert ok.ok and ok.stats["by_kind"]["recorded"] == {
        "rows": 72,
        "none_allowed_frac": 0.0,
        "all_allowed_frac": 1.0,
        "mean_allowed": 34.0,
    }
    bad = check_in_process(text, TASK, samples=recorded, limits=limits)
    assert bad.stage == "values" and "recorded contexts" in bad.message


def test_recorded_samples_must_match_the_task(tmp_path) -> None:
    fields = {f.name: np.zeros((5, *f.shape), f.dtype) for f in TASK.fields}
    with pytest.raises(ValueError, match="lack fields"):
        normalize_samples(TASK, {k: v for k, v in fields.items() if k != "vlt"})
    with pytest.raises(ValueError, match="expected \\[batch..., 2, 3\\]"):
        normalize_samples(TASK, {**fields, "in_stock": np.zeros((5, 3, 2))})
    with pytest.raises(ValueError, match="unknown fields"):
        normalize_samples(TASK, {**fields, "bogus": np.zeros(5)})
    save_samples(str(tmp_path / "s.npz"), TASK, MaskContext(fields))
    back = load_samples(str(tmp_path / "s.npz"), TASK)
    assert back["demand_history"].shape == (5, 2, 3, 21) and back["echelon"].dtype == np.int32


# ------------------------------------------------------------------------------ pieces
def test_extraction_rules() -> None:
    two = (
        "```python\ndef helper(x):\n    return x\n```\ntext\n"
        "```python\ndef compute_mask(ctx, a):\n    return 1\n```\n"
        "```python\nprint('usage')\n```\n"
    )
    assert extract_program(two).startswith("def compute_mask")
    assert extract_program("```\nx = 1\n```\n```\ny = 2\n```") == "y = 2\n"
    assert (
        extract_program("    def compute_mask(ctx, a):\n        return 1\n")
        == "def compute_mask(ctx, a):\n    return 1\n"
    )


def test_load_exported_verifies_the_artefact() -> None:
    result = check_in_process(fn("return jnp.zeros((2, 3, 34)).at[0, 0, 0].set(1.0)"), TASK)
    assert result.ok, result.reason
    data, digest = result.artefact, result.stats["export"]["sha256"]
    good = load_exported(data, TASK, digest=digest, x64=False)
    out = good(
        MaskContext({f.name: jnp.zeros(f.shape, f.dtype) for f in TASK.fields}), jnp.zeros(34)
    )
    assert out.dtype == jnp.bool_ and out[0, 0].tolist() == [True] + [False] * 33
    assert bool(out[1].all() and out[0, 1:].all())  # safe: empty rows become all-allowed
    with pytest.raises(ArtefactError, match="SHA-256 is not the recorded"):
        load_exported(data[:-1] + bytes([data[-1] ^ 1]), TASK, digest=digest)
    with pytest.raises(ArtefactError, match="exported with jax_enable_x64=True"):
        load_exported(data, TASK, x64=True)
    with pytest.raises(ArtefactError, match="cannot be deserialised"):
        load_exported(b"not an artefact", TASK)
    with pytest.raises(ArtefactError, match="inputs are not the task's context fields"):
        load_exported(data, SUMO)


def test_safe_mask_casts_and_fills_empty_rows() -> None:
    raw = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    wrapped = safe_mask(lambda ctx, a: raw)
    out = jax.jit(wrapped)(None, jnp.zeros(3))
    np.testing.assert_array_equal(
        np.asarray(out), [[False, True, False], [True, True, True], [True, True, True]]
    )
    assert out.dtype == jnp.bool_
    batched = jax.vmap(safe_mask(lambda c, a: c > 0), in_axes=(0, None))(
        jnp.array([[[-1.0, 2.0]], [[-1.0, -2.0]]]), 0
    )
    np.testing.assert_array_equal(np.asarray(batched), [[[False, True]], [[True, True]]])
    ones = all_ones(mabim_spec())(None, None)
    assert ones.shape == (2, 3, 34) and bool(ones.all())


def test_task_from_spec_and_json_roundtrip() -> None:
    task = MaskTask.from_env_spec(mabim_spec())
    assert (
        task.function_name == "compute_mask" and task.agent_shape == (2, 3) and task.n_actions == 34
    )
    assert (
        task.field_map["demand_history"].shape == (2, 3, 21) and task.field_map["day"].shape == ()
    )
    assert task.field_map["echelon"].dtype == "int32" and task.action_values[-1] == 12.0
    assert MaskTask.from_json(task.to_json()) == task
    assert (
        SUMO.agent_shape == (4,)
        and SUMO.out_shape == (4, 8)
        and SUMO.field_map["phase_available"].dtype == "bool"
    )
    with pytest.raises(ValueError, match="action_values has 2 entries"):
        MaskTask("compute_mask", (), (1,), 3, (0.0, 1.0))


def test_sample_contexts_shapes_and_kinds() -> None:
    kinds = sample_contexts(SUMO, n_random=5, seed=3)
    assert set(kinds) == {"random", "zeros", "extreme"}
    assert (
        kinds["random"]["phase_queue"].shape == (5, 4, 8)
        and kinds["random"]["phase_available"].dtype == bool
    )
    assert (
        kinds["zeros"]["current_phase"].shape == (1, 4) and not kinds["zeros"]["phase_queue"].any()
    )
    assert kinds["extreme"]["phase_queue"].max() == 1e6
    again = sample_contexts(SUMO, n_random=5, seed=3)
    np.testing.assert_array_equal(kinds["random"]["phase_queue"], again["random"]["phase_queue"])


# ------------------------------------------------------------------------------ properties
_FIX = jax.jit(fallback_empty_rows)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans(), min_size=15, max_size=15))
def test_fix_empty_rows_property(bits: list[bool]) -> None:
    raw = np.array(bits).reshape(3, 5)
    out = np.asarray(_FIX(jnp.asarray(raw, dtype=jnp.float32)))
    assert out.any(axis=-1).all()
    keep = raw.any(axis=-1)
    np.testing.assert_array_equal(out[keep], raw[keep])
    assert out[~keep].all()


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_validator_only_ever_rejects_cleanly(data) -> None:
    """Arbitrary text and damaged good programs: accepted or a Rejected, never another error."""
    source = data.draw(
        st.one_of(
            st.text(max_size=200),
            st.sampled_from([HELPERS_JNP, extract_program(FIG21_NUMPY), SUMO_TOP4]).flatmap(
                lambda src: st.lists(st.integers(0, src.count("\n")), max_size=3).map(
                    lambda drop: "\n".join(
                        line for i, line in enumerate(src.splitlines()) if i not in drop
                    )
                )
            ),
        )
    )
    try:
        validate_source(source, TASK)
    except Rejected as rej:
        assert rej.stage in {"extract", "syntax", "static"} and rej.message and rej.hint


def test_abstract_check_bans_callbacks_defence_in_depth() -> None:
    """Code reaching jax.pure_callback cannot pass the allow-list; the jaxpr check catches it."""

    def sneaky(ctx, action_space):
        host = jax.pure_callback(
            lambda x: np.asarray(x), jax.ShapeDtypeStruct((2, 3), jnp.float32), ctx.in_stock
        )
        return jnp.broadcast_to(host[..., None] > 0, (2, 3, 34))

    with pytest.raises(Rejected, match="primitive 'pure_callback' is not allowed"):
        abstract_check(sneaky, TASK, CheckLimits())
