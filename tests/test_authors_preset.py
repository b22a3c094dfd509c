"""The ``authors`` preset (the released code's settings), the released mask rules (whole-
environment fallback, unmasked first step) and the released feedback form, against hand-computed
cases and one tiny run of the loop."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

import envs_jax
from envs_jax.core import MaskContext
from espark_jax.cli import build_parser
from espark_jax.feedback_released import (
    allowed_rate_by_group,
    availability_bands,
    build_released_feedback,
    stage_statistics,
)
from espark_jax.ippo.rollout import apply_masks
from espark_jax.masks import check_in_process
from espark_jax.masks.fallback import check_fallback, per_env_fallback, with_fallback
from espark_jax.masks.safe import apply_mask_fn, fallback_empty_rows
from espark_jax.search import run_search
from espark_jax.search_config import SearchConfig, train_config
from tests.mask_tasks import mabim_task
from tests.test_search import ScriptedProvider, new_run, tiny_config

# 2 environments x agents (1 warehouse, 3 SKUs) x 3 actions; env 0 has an empty row (SKU 1)
MASK = np.array(
    [
        [[[1, 0, 0], [0, 0, 0], [0, 1, 1]]],
        [[[1, 0, 0], [0, 1, 0], [0, 0, 1]]],
    ],
    dtype=bool,
)


def test_authors_preset_holds_the_released_settings():
    cfg = SearchConfig.from_preset("authors")
    env = envs_jax.make("mabim/standard-100")
    tc, updates = train_config(cfg, env)
    # eSpark.yaml: 16 samples, 10 iterations x 8000 episodes of 100 days, 4 envs, one update per
    # 4 episodes, evaluation every 500 episodes, selection over the last 5 evaluations
    assert (cfg.k, cfg.iterations, cfg.steps) == (16, 10, 10 * 8000 * 100)
    assert updates == 8000 // 4 and tc.num_envs == 4
    assert tc.eval_every * tc.num_envs == 500 and tc.eval_envs == 1 and tc.select_last == 5
    assert (tc.network, tc.hidden, tc.layer_norm, tc.last_action) == ("gru", (128,), True, True)
    ppo = tc.ppo
    assert (ppo.update_epochs, ppo.num_minibatches, ppo.clip_eps, ppo.lr) == (4, 1, 0.2, 5e-4)
    assert (ppo.gamma, ppo.gae_lambda, ppo.ent_coef, ppo.vf_coef) == (0.985, 0.95, 0.0, 0.5)
    assert (ppo.adam_eps, ppo.max_grad_norm, tc.reward_scale) == (1e-8, 10.0, 1e-2)
    assert (cfg.mask_fallback, cfg.mask_first_step, cfg.feedback) == ("per_env", False, "released")
    assert (cfg.check_rounds, cfg.repair_rounds, cfg.control) == (5, 0, False)
    assert tc.eval_greedy and tc.eval_split == "validation"
    # the other presets keep ours
    quick = SearchConfig.from_preset("quick")
    assert (quick.mask_fallback, quick.mask_first_step, quick.feedback) == (
        "per_agent",
        True,
        "ours",
    )


def test_authors_preset_on_the_command_line_and_its_errors():
    parser = build_parser()
    for cmd in ("run", "sweep"):
        assert parser.parse_args([cmd, "--preset", "authors"]).preset == "authors"
    args = parser.parse_args(["run", "--mask-fallback", "per_env", "--no-mask-first-step"])
    assert (args.mask_fallback, args.mask_first_step) == ("per_env", False)
    with pytest.raises(ValueError, match="made for mabim scenarios.*--preset quick"):
        SearchConfig.from_preset("authors", scenario="sumo/grid4x4")
    with pytest.raises(ValueError, match="--mask-fallback must be 'per_agent' or 'per_env'"):
        SearchConfig(mask_fallback="everyone")
    with pytest.raises(ValueError, match="needs a 'day' context field"):
        check_fallback("per_env", False, ("phase_queue",))


def test_per_env_fallback_matches_the_hand_computed_case():
    out = np.asarray(per_env_fallback(MASK, agent_ndim=2))
    assert out[0].all()  # env 0: SKU 1 allowed nothing -> everyone in env 0 unmasked
    np.testing.assert_array_equal(out[1], MASK[1])  # env 1: no empty row, mask kept
    # ours (per agent): only SKU 1 of env 0 is unmasked
    ours = np.asarray(fallback_empty_rows(MASK))
    np.testing.assert_array_equal(ours[0, 0, 1], [True, True, True])
    np.testing.assert_array_equal(ours[0, 0, [0, 2]], MASK[0, 0, [0, 2]])


@pytest.mark.parametrize("batched", [False, True])
def test_with_fallback_per_env_and_first_step(batched):
    ctx = MaskContext({"m": jnp.asarray(MASK), "day": jnp.asarray([5, 0])})

    def fn(c, a):
        return c.m

    if batched:
        fn.batched = True
    wrapped = with_fallback(fn, agent_ndim=2, rule="per_env", mask_first_step=False)
    out = np.asarray(apply_mask_fn(wrapped, ctx, jnp.arange(3.0), batch_dims=1))
    assert out[0].all() and out[1].all()  # env 0: fallback; env 1: its first decision (day 0)
    only_first = with_fallback(fn, agent_ndim=2, rule="per_agent", mask_first_step=False)
    out = np.asarray(apply_mask_fn(only_first, ctx, jnp.arange(3.0), batch_dims=1))
    np.testing.assert_array_equal(out[0], MASK[0])
    assert out[1].all()
    assert with_fallback(fn, 2) is fn  # ours: the mask is used as it is


def test_exported_mask_gets_the_rule_from_its_raw_output():
    """An exported mask fills empty rows per agent when called; the released rule must see the
    empty row anyway, also in the trainer's apply_masks."""
    program = (
        "def compute_mask(ctx, action_space):\n"
        "    low = ctx.in_stock[..., None] < 50.0\n"
        "    return low & (action_space > 1.0)\n"
    )
    task = mabim_task()  # 2 warehouses x 3 SKUs x 34 actions
    res = check_in_process(program, task)
    assert res.ok, res.reason
    fields = {f.name: np.ones((2, *f.shape), f.dtype) for f in task.fields}
    fields["in_stock"] = np.array([[[0.0, 100.0, 0.0], [0.0, 0.0, 0.0]]] * 2, np.float32)
    fields["in_stock"][1] = 0.0  # env 1: every agent low -> no empty row
    ctx = MaskContext({k: jnp.asarray(v) for k, v in fields.items()})
    acts = jnp.asarray(task.action_values, jnp.float32)
    wrapped = with_fallback(res.fn, 2, "per_env")
    keys = jnp.zeros((1, 2, 2), jnp.uint32)
    ctx_k = MaskContext({k: v[None] for k, v in fields.items()})
    out = np.asarray(apply_masks([wrapped], ctx_k, keys, acts, task.agent_shape))[0]
    assert out[0].all()  # env 0: warehouse 0 SKU 1 has stock -> empty row -> all unmasked
    want = np.broadcast_to(np.asarray(task.action_values) > 1.0, (6, 34))
    np.testing.assert_array_equal(out[1], want)
    per_agent = np.asarray(res.fn(ctx, acts)).reshape(2, 6, 34)
    assert per_agent[0, 1].all() and not per_agent[0, 0].all()


def test_released_feedback_statistics_and_bands():
    v = np.array([[1.0, 2.0], [5.0, -1.0], [0.0, 0.0], [2.0, 2.0], [3.0, 3.0], [1.0, 1.0]])
    s = stage_statistics(v)
    np.testing.assert_array_equal(s["max"], [3.0, 3.0])  # totals 3, 4, 0, 4, 6, 2 -> row 4
    np.testing.assert_array_equal(s["min"], [0.0, 0.0])
    np.testing.assert_allclose(s["early"], [11 / 5, 6 / 5])  # first min(5, 6) rows
    np.testing.assert_allclose(s["late"], [11 / 5, 5 / 5])
    np.testing.assert_allclose(s["mean"], [2.0, 7 / 6])
    bands = availability_bands(np.array([[0.0, 0.3, 0.5, 0.7, 1.0]]))
    assert bands == [[[0, 1], [1, 2, 3], [3, 4]]]  # borders in both bands, as released
    rate = allowed_rate_by_group(MASK, [0, 1, 1], 2)  # agents: SKU 0 group 0, SKUs 1-2 group 1
    np.testing.assert_allclose(rate, [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])  # 4 rows in group 1
    evals = [
        {"group_return": {"a": [1.0 * i]}, "components": {"profit": {"a": [2.0 * i]}}}
        for i in range(3)
    ]
    text = build_released_feedback(
        evals=evals,
        best_slot=0,
        eval_every_episodes=500,
        allowed_rate=np.array([[1.0, 0.2]]),
        action_values=(0.0, 0.5),
    )
    assert "every 500 training episodes (3 evaluations)" in text
    assert "reward: highest [2.0], lowest [0.0], early mean [1.0]" in text
    assert "profit: highest [4.0]" in text
    assert "warehouse 0: [0, 0.3]: 0.5; [0.3, 0.7]: no action; [0.7, 1]: 0" in text


# SKU 0 allows nothing; the other four allow only action 0 (order nothing)
EMPTY_SKU0 = (
    "```python\ndef compute_mask(ctx, action_space):\n"
    "    sku = jnp.cumsum(jnp.ones_like(ctx.in_stock), axis=1) - 1.0\n"
    "    return (action_space[None, None, :] == 0.0) & (sku[..., None] > 0.5)\n```"
)


@pytest.mark.slow
def test_released_rules_in_the_loop(tmp_path):
    """One iteration on mabim/tiny (1 x 5 agents, 34 actions): the training masks follow the
    chosen rule (allowed fraction hand-computed) and the feedback takes the released form."""

    def reply(req):
        return '{"pass": true, "reasons": []}' if req.role == "checker" else EMPTY_SKU0

    fractions = {}
    for rule, first in (("per_env", True), ("per_agent", False)):
        cfg = tiny_config(
            k=1, iterations=1, steps=200, provider="scripted", control=False,
            mask_fallback=rule, mask_first_step=first, feedback="released",
        )  # fmt: skip
        run = new_run(tmp_path / rule, cfg)
        run_search(cfg, run, ScriptedProvider(reply), progress=False, log=lambda s: None)
        lines = (run.iter_dir(1) / "metrics.jsonl").read_text().splitlines()
        train = [json.loads(x) for x in lines if json.loads(x).get("kind") == "train"]
        fractions[rule] = train[0]["allowed_fraction"][0]
        summary = json.loads((run.iter_dir(1) / "summary.json").read_text())
        assert summary["statuses"] == ["ok"]
        assert "evaluated without masks every 2 training episodes" in summary["feedback"]
        assert "warehouse 0: [0, 0.3]:" in summary["feedback"]
    assert fractions["per_env"] == pytest.approx(1.0)  # every step had SKU 0's empty row
    per_step = (4 * 1 + 34) / (5 * 34)  # four rows allow one action, SKU 0 falls back to 34
    assert fractions["per_agent"] == pytest.approx((99 * per_step + 1.0) / 100, rel=1e-5)
    assert not math.isclose(fractions["per_agent"], per_step)
