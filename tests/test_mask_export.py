"""Checked once, run as checked: the trainer runs the sandbox's exported artefact, never the text.

A program whose output depends on how it is called (the text of a traced value, the batch size,
an extra context field, the x64 flag, object identity, a concrete or traced ``action_space``,
reflection on its arguments) is either rejected or gives the trainer the mask the check saw;
compute bombs fail the cost budget; the validator is linear; Unicode identifiers are judged by
what they normalise to; keyword names are allow-listed; the sandbox child keeps only its own
pipes and drops root.
One sandbox batch (module fixture) serves the tests that need a child.
"""

from __future__ import annotations

import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mask_tasks import mabim_task

from envs_jax.core import MaskContext
from espark_jax.ippo.rollout import apply_masks
from espark_jax.masks import (
    CheckLimits,
    Rejected,
    check_candidates,
    check_in_process,
    compile_mask,
    load_exported,
    sample_contexts,
    validate_source,
)

TASK = mabim_task()
A = TASK.n_actions
RULE = """
def compute_mask(ctx, action_space):
    order = jnp.floor(action_space[None, None, :] * ctx.demand_mean[:, :, None])
    room = (ctx.capacity - ctx.total_stock - ctx.total_in_transit)[:, None, None]
    cover = (ctx.in_stock + ctx.in_transit) / jnp.maximum(ctx.demand_mean, 1e-6)
    fits = jnp.logical_or(order <= room, order == 0)
    return jnp.where((cover > 6.0)[:, :, None], (action_space == 0)[None, None, :], fits)
"""
# all actions under 64-bit JAX, only "order nothing" otherwise
X64_PROBE = """
def compute_mask(ctx, action_space):
    wide = jnp.asarray(0.5).dtype == jnp.float64
    return jnp.broadcast_to(jnp.where(wide, action_space >= 0.0, action_space == 0.0), (2, 3, 34))
"""
MU_GOOD = """
def compute_mask(ctx, action_space):
    μ = ctx.demand_mean
    σ = ctx.demand_std
    return (μ + σ)[:, :, None] * action_space >= 0.0
"""
ONES = "jnp.ones((2, 3, 34))"
EVAL_FULLWIDTH = f"def compute_mask(ctx, action_space):\n    x = ｅｖａｌ('1')\n    return {ONES}\n"
SAVE_FULLWIDTH = (
    "def compute_mask(ctx, action_space):\n"
    f"    x = jnp.ｓａｖｅ('m', ctx.in_stock)\n    return {ONES}\n"
)
HOMOGLYPH = (  # a Cyrillic "е" in "where": not a jnp function
    "def compute_mask(ctx, action_space):\n"
    "    return jnp.wh\u0435re(action_space > 1.0, True, False) * jnp.ones((2, 3, 1))\n"
)
_THRESHOLD = "    return jnp.broadcast_to(action_space >= n, (2, 3, 34))\n"
# programs that look at how they are called; the check either rejects them (stage) or they are
# accepted ("ok") and must give the trainer the masks the check saw
CALL_PROBES = {
    "float-of-action": ("    n = float(action_space[1])\n", "trace"),  # concrete vs traced
    "int-of-field": ("    n = int(ctx.day)\n", "trace"),
    "len-of-ctx": ("    n = len(ctx)\n", "trace"),  # would count the rollout's extra ctx.key
    "lengths": ("    n = len(ctx.in_stock) + len(action_space) * 0.01\n", "ok"),
    "shapes": (
        "    n = (ctx.in_stock.shape[0] + ctx.in_stock.ndim + ctx.in_stock.size) * 0.1\n",
        "ok",
    ),
    "identity": ("    n = 13.0 - 12.0 * (ctx == ctx)\n", "ok"),  # same object in the check
    "dtypes": (
        "    n = 5.0 * (ctx.in_stock.dtype == jnp.float64) + 1.0 * (action_space.dtype == "
        "jnp.float64)\n",
        "ok",
    ),
    "np-asarray": ("    n = np.asarray(action_space)[1] * 3.0\n", "ok"),
}
PROBE_CODE = {
    name: f"def compute_mask(ctx, action_space):\n{body}{_THRESHOLD}"
    for name, (body, _) in CALL_PROBES.items()
}
BATCH = [RULE, X64_PROBE, MU_GOOD, EVAL_FULLWIDTH, SAVE_FULLWIDTH, HOMOGLYPH, *PROBE_CODE.values()]


@pytest.fixture(scope="module")
def batch():
    return check_candidates(BATCH, TASK, max_workers=3)


def check_contexts(task=TASK) -> dict[str, np.ndarray]:
    """The sample contexts the value check uses, stacked in its order."""
    limits = CheckLimits()
    kinds = sample_contexts(task, limits.n_random, limits.seed)
    return {f.name: np.concatenate([k[f.name] for k in kinds.values()]) for f in task.fields}


def trainer_masks(fns, fields, traced_action=False) -> np.ndarray:
    """Masks as the rollout computes them (it adds ``ctx.key``): ``apply_masks`` under jit,
    K = len(fns) learners over the given environments (``[K, E, agents, A]``)."""
    n_k, n_e = len(fns), next(iter(fields.values())).shape[0]
    ctx = MaskContext({k: jnp.broadcast_to(v, (n_k, *v.shape)) for k, v in fields.items()})
    keys = jax.random.split(jax.random.PRNGKey(0), n_k * n_e).reshape(n_k, n_e, 2)
    action = jnp.asarray(TASK.action_values, jnp.float32)
    if traced_action:
        run = jax.jit(lambda c, k, a: apply_masks(fns, c, k, a, TASK.agent_shape))
        return np.asarray(run(ctx, keys, action))
    run = jax.jit(lambda c, k: apply_masks(fns, c, k, action, TASK.agent_shape))
    return np.asarray(run(ctx, keys))


def allowed_rate(masks: np.ndarray) -> list[float]:
    return [round(float(r), 4) for r in masks.reshape(-1, A).mean(axis=0)]


# ------------------------------------------------------------------ one calling convention
TEXT_PROGRAMS = {
    # the text of a traced action_space differs from a concrete one's ("Traced<...>" / "Array")
    "action-text": "n = len('%s' % action_space)\nreturn "
    "jnp.broadcast_to(action_space < n * 0.1, (2, 3, 34))",
    # the text of ctx names its fields (ctx.key in the trainer) and, under vmap, the batch
    "ctx-text": "n = len('%s' % ctx)\nreturn jnp.broadcast_to(action_space < n * 0.01, (2, 3, 34))",
    "field-text": "n = len('%r' % ctx.in_stock)\nreturn "
    "jnp.broadcast_to(action_space < n * 0.1, (2, 3, 34))",
    "text-variable": "f = '%s'\nreturn jnp.broadcast_to(action_space < len(f % ctx), (2, 3, 34))",
    "format": "n = len('{}'.format(ctx.day))\n"
    "return jnp.broadcast_to(action_space < n, (2, 3, 34))",
    "str": "n = len(str(ctx.day))\nreturn jnp.broadcast_to(action_space < n, (2, 3, 34))",
    "repr": "n = len(repr(action_space))\nreturn jnp.broadcast_to(action_space < n, (2, 3, 34))",
    "helper-text": None,  # below: text smuggled into a helper's parameter
}


@pytest.mark.parametrize("name", sorted(TEXT_PROGRAMS))
def test_text_of_values_is_rejected(name: str) -> None:
    body = TEXT_PROGRAMS[name]
    if body is None:
        code = (
            "def fmt(t, x):\n    return len(t % x)\n\n"
            "def compute_mask(ctx, action_space):\n"
            "    return jnp.broadcast_to(action_space < fmt('%s', ctx), (2, 3, 34))\n"
        )
    else:
        code = "def compute_mask(ctx, action_space):\n" + "".join(
            f"    {line}\n" for line in body.splitlines()
        )
    with pytest.raises(Rejected) as err:
        validate_source(code, TASK)
    assert err.value.stage == "static"
    assert "text" in err.value.message, err.value.message


def test_trainer_runs_the_mask_the_check_saw(batch) -> None:
    rule = batch[0]
    assert rule.ok, rule.reason
    fields = check_contexts()
    checked = rule.stats["allowed_rate"]
    assert 0.0 < rule.stats["mean_allowed"] < A  # a rule that is not trivial on these contexts
    one = trainer_masks([rule.fn], fields)  # K = 1, E = 19: the check's batch
    assert allowed_rate(one) == checked
    # the same artefact under every calling convention the trainer may use
    twins = [rule.fn, load_exported(rule.fn.data, TASK)]  # two objects, the same artefact
    variants = {
        "K=3, one object (one call on K x E)": trainer_masks([rule.fn] * 3, fields),
        "K=2, two objects (one call per learner)": trainer_masks(twins, fields),
        "traced action_space": trainer_masks([rule.fn], fields, traced_action=True),
    }
    for name, masks in variants.items():
        for k in range(masks.shape[0]):
            np.testing.assert_array_equal(masks[k], one[0], err_msg=name)
    # called directly: without the rollout's ctx.key, or with another extra field
    action = jnp.asarray(TASK.action_values, jnp.float32)
    for extra in ({}, {"bogus": np.zeros(len(fields["day"]))}):
        direct = np.asarray(jax.jit(rule.fn)(MaskContext({**fields, **extra}), action))
        np.testing.assert_array_equal(direct.reshape(one[0].shape), one[0])
    for size in (1, 5):  # other batch sizes: the same masks environment by environment
        part = {n: v[:size] for n, v in fields.items()}
        np.testing.assert_array_equal(trainer_masks([rule.fn], part)[0], one[0, :size])


def test_programs_that_probe_the_call_are_rejected_or_agree(batch) -> None:
    fields = check_contexts()
    for (name, (_, expected)), result in zip(CALL_PROBES.items(), batch[6:]):
        if expected != "ok":
            assert result.stage == expected and result.fn is None, (name, result.reason)
            assert "\n" not in result.reason
            continue
        assert result.ok, (name, result.reason)
        checked = result.stats["allowed_rate"]
        twins = [result.fn, load_exported(result.fn.data, TASK)]
        full = trainer_masks(twins, fields, traced_action=True)  # K = 2 objects, E = 19
        assert allowed_rate(full) == checked, name
        assert allowed_rate(trainer_masks([result.fn], fields)) == checked, name
        first = {n: v[:1] for n, v in fields.items()}  # E = 1
        np.testing.assert_array_equal(trainer_masks([result.fn], first)[0], full[0, :1])


STATIC_PROBES = {
    "hasattr": "1.0 * hasattr(ctx, 'key')",
    "in": "1.0 * ('key' in ctx)",
    "is": "1.0 * (action_space is action_space)",
    "type": "1.0 * (type(action_space) == type(ctx.day))",
    "isinstance": "1.0 * isinstance(action_space, jnp.ndarray)",
    "id": "id(ctx) % 2",
    "hash": "hash(action_space) % 2",
    "getattr": "1.0 * (getattr(ctx, 'key', None) == None)",
    "vars": "len(vars(ctx))",
    "dunder": "len(ctx.__dict__)",
    "extra-field": "ctx.key[0] * 1.0",
    "weak-type": "1.0 * action_space.weak_type",
    "item": "action_space[1].item()",
    "tolist": "action_space.tolist()[1]",
}


@pytest.mark.parametrize("name", sorted(STATIC_PROBES))
def test_reflection_on_the_call_is_rejected_statically(name: str) -> None:
    code = f"def compute_mask(ctx, action_space):\n    n = {STATIC_PROBES[name]}\n{_THRESHOLD}"
    with pytest.raises(Rejected) as err:
        validate_source(code, TASK)
    assert err.value.stage == "static" and "\n" not in err.value.message


@pytest.mark.parametrize("x64", [False, True], ids=["x64-off", "x64-on"])
def test_the_run_x64_flag_is_the_exported_one(batch, x64: bool) -> None:
    if x64:
        with jax.enable_x64(True):
            probe = compile_mask(X64_PROBE, TASK)
            assert probe.ok, probe.reason
            masks = trainer_masks([probe.fn], check_contexts())
    else:
        probe = batch[1]
        assert probe.ok, probe.reason
        masks = trainer_masks([probe.fn], check_contexts())
    assert probe.stats["export"]["x64"] is x64
    assert probe.stats["allowed_rate"] == ([1.0] * A if x64 else [1.0] + [0.0] * (A - 1))
    assert allowed_rate(masks) == probe.stats["allowed_rate"]


# ------------------------------------------------------------------ cost budget
BOMB = """
def compute_mask(ctx, action_space):
    row = jnp.arange(1024, dtype=jnp.float32) * ctx.demand_mean[0, 0]
    m = jnp.outer(row, row)
    p = m @ m
    return jnp.broadcast_to(jnp.logical_or(jnp.sum(p) > -1.0, action_space >= 0.0), (2, 3, 34))
"""


def test_a_gigaflop_mask_is_rejected_naming_the_budget() -> None:
    limits = CheckLimits(learners=16, envs=8)
    bomb = check_in_process(BOMB, TASK, limits=limits)
    assert bomb.stage == "cost" and bomb.fn is None, bomb.reason
    assert "2.15e+09 FLOPs per environment step" in bomb.message
    assert "budget of 1e+06 FLOPs per agent (7.68e+08 for 16 x 8 environments x 6 agents)" in (
        bomb.message
    )
    assert "\n" not in bomb.reason
    tight = CheckLimits(max_bytes_per_agent=10.0)  # the bytes budget applies too
    heavy = check_in_process(RULE, TASK, limits=tight)
    assert heavy.stage == "cost" and "bytes accessed per environment step" in heavy.message
    fine = check_in_process(RULE, TASK, limits=limits)
    cost = fine.stats["cost"]
    assert fine.ok and 0 < cost["flops_per_env"] < cost["flops_budget_per_env"] == 6e6
    assert (cost["agents"], cost["learners"], cost["envs"]) == (6, 16, 8)


# ------------------------------------------------------------------ the validator
def nested_program(depth: int, statements: int) -> str:
    lines = ["def compute_mask(ctx, action_space):"]
    for s in range(statements):
        inner = "1"
        for _ in range(depth):
            inner = f"[a for a in [{inner}]]"
        lines.append(f"    x{s} = {inner}")
    lines.append(f"    return {ONES}")
    return "\n".join(lines) + "\n"


def _too_slow(signum, frame):
    raise TimeoutError("the validator took more than 10 s")


def test_nested_comprehensions_validate_in_linear_time() -> None:
    code = nested_program(depth=30, statements=4)
    assert 1800 <= len(code) <= 2200
    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(10)  # re-walking each level doubled the work: 2**30 walks here
    try:
        t0 = time.perf_counter()
        validate_source(code, TASK)
        seconds = time.perf_counter() - t0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert seconds < 1.0  # generous on a loaded machine; benchmarks/mask_check_time.py measures
    # nested comprehensions multiply their counts, as nested loops do
    with pytest.raises(Rejected, match="nested loops run 262144 times"):
        validate_source(
            "def compute_mask(ctx, action_space):\n    x = [[[0 for c in range(64)] for b in "
            f"range(64)] for a in range(64)]\n    return {ONES}\n",
            TASK,
        )


# ------------------------------------------------------------------ Unicode identifiers
def test_unicode_identifiers_are_judged_by_their_normal_form(batch) -> None:
    mu = batch[2]
    assert mu.ok, mu.reason  # the parser's unicodedata import no longer trips the sandbox
    eval_, save, homoglyph = batch[3:6]
    assert eval_.stage == "static" and "eval is not allowed" in eval_.message
    assert save.stage == "static" and "jnp.save is not allowed" in save.message
    assert homoglyph.stage == "static" and "is not in the allowed list" in homoglyph.message


# ------------------------------------------------------------------ keyword names
KWARG_CASES = [
    ("jnp.einsum('ij,j->i', ctx.in_stock, ctx.vlt, _dot_general=jnp.multiply)", "private"),
    ("jnp.sum(ctx.in_stock, axis=-1, device=None)", "device= is not allowed"),
    ("jnp.zeros((2, 3), out_sharding=None)", "out_sharding= is not allowed"),
    ("jnp.clip(ctx.in_stock, mn=0.0)", "mn= is not allowed (did you mean min"),
    ("scale(ctx.in_stock, factor=2.0)", "factor= is not allowed"),
]


@pytest.mark.parametrize("expr,needle", KWARG_CASES, ids=[c[1].split()[0] for c in KWARG_CASES])
def test_keyword_names_are_allow_listed(expr: str, needle: str) -> None:
    code = (
        "def scale(x, f):\n    return x * f\n\n"
        f"def compute_mask(ctx, action_space):\n    y = {expr}\n    return {ONES}\n"
    )
    with pytest.raises(Rejected, match="keyword argument") as err:
        validate_source(code, TASK)
    assert needle in err.value.message


def test_allowed_keyword_names_pass() -> None:
    code = (
        "def scale(x, f):\n    return x * f\n\n"
        "def compute_mask(ctx, action_space):\n"
        "    y = jnp.sum(scale(ctx.in_stock, f=2.0), axis=-1, keepdims=True)\n"
        "    z = jnp.clip(y, min=0.0).astype('float32')\n"
        "    return jnp.broadcast_to(z[:, :, None] >= 0.0, (2, 3, 34))\n"
    )
    validate_source(code, TASK)


# ------------------------------------------------------------------ OS protections
def test_children_keep_only_their_own_pipes(batch) -> None:
    protections = [r.stats["sandbox"] for r in batch]
    assert all(p["open_fds"] == [0, 1, 2, 3] for p in protections), protections
    # children forked while siblings ran inherited the siblings' pipes, and closed them
    assert sum(p["closed_fds"] for p in protections) > 0
    for p in protections:
        assert p["rlimits"]["FSIZE"] == 0 and p["rlimits"]["CORE"] == 0
        assert p["rlimits"]["NOFILE"] > 0 and p["rlimits"]["CPU"] > 0 and p["rlimits"]["AS"] > 0
        assert p["cwd_empty"] is True and p["audit_hook"] is True
        assert p["network_namespace"].startswith(("new", "unavailable"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop applies when run as root")
def test_children_started_as_root_drop_privileges(batch) -> None:
    for r in batch:
        p = r.stats["sandbox"]
        assert p["privileges_dropped"] is True and p["uid"] != 0 and p["gid"] != 0, p
        assert p["rlimits"]["NPROC"] > 0  # enforced once the child is not root
