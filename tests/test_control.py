"""The IPPO control learner trained beside the candidates, and where a run stands against it."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from toy_env import ToyInventoryEnv

from espark_jax import ippo
from espark_jax.families import make_env
from espark_jax.llm.providers import TemplateProvider
from espark_jax.masks.builtin import get_builtin_mask
from espark_jax.masks.safe import all_ones
from espark_jax.report import final_table
from espark_jax.runs import CONTROL, RunDir
from espark_jax.search import run_search
from espark_jax.search_config import SearchConfig, train_config


@pytest.fixture(scope="module")
def control_run(tmp_path_factory):
    cfg = SearchConfig(
        scenario="mabim/tiny",
        k=2,
        iterations=2,
        steps=800,
        num_envs=2,
        eval_checkpoints=2,
        select_last=2,
        eval_envs=2,
        updates_per_chunk=1,
        hidden=(16, 16),
        repair_rounds=0,
        check_rounds=0,
        checker=False,
        provider="template",
        seed=0,
    )
    run = RunDir.create(tmp_path_factory.mktemp("runs") / "ctl", {"config": cfg.to_dict()})
    results = run_search(
        cfg, run, TemplateProvider("mabim", seed=0), progress=False, log=lambda s: None
    )
    return cfg, run, results


def _leaves_equal(a, b, slot_a: int, slot_b: int) -> bool:
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    return all(np.array_equal(np.asarray(x)[slot_a], np.asarray(y)[slot_b]) for x, y in pairs)


def test_control_slot_is_bitwise_a_separate_plain_ippo_run():
    """The control's slot of a K+1 trainer (candidates under masks, retained from one learner;
    the control continuing from its own) equals a one-learner plain IPPO trainer with the same
    keys, bit for bit (toy environment: its shapes lower the same batched and unbatched)."""
    env = ToyInventoryEnv(n_warehouses=2, n_skus=4, episode_lengths=(8, 6, 6))
    cfg = ippo.TrainConfig(
        num_envs=2,
        hidden=(16, 16),
        ppo=ippo.PPOConfig(update_epochs=2, num_minibatches=2),
        updates_per_chunk=2,
        eval_every=2,
        eval_envs=2,
    )
    cands = [get_builtin_mask(n, env.spec) for n in ("upbound", "ss-pruning")]
    joint = ippo.make(env, cfg, cands + [all_ones(env.spec)])
    alone = ippo.make(env, cfg, [all_ones(env.spec)])
    key = jax.random.PRNGKey(5)
    # iteration 1: everything fresh
    state = joint.init_slots(key, [None, None, None])
    result = ippo.train(joint, state, jax.random.PRNGKey(6), num_updates=2, progress=False)
    solo = ippo.train(
        alone,
        alone.init_from_keys(jax.random.split(key, 3)[2:]),
        jax.random.PRNGKey(6),
        num_updates=2,
        progress=False,
    )
    assert _leaves_equal(result.state.params, solo.state.params, 2, 0)
    assert result.scores[2] == solo.scores[0]
    # iteration 2: candidates retain learner 0, the control continues itself
    best, control = joint.learner(result.state, 0), joint.learner(result.state, 2)
    key2 = jax.random.PRNGKey(7)
    state = joint.init_slots(key2, [best, best, control])
    assert _leaves_equal(
        state.params, jax.tree_util.tree_map(lambda x: x[None], best["params"]), 1, 0
    )
    result = ippo.train(joint, state, jax.random.PRNGKey(8), num_updates=2, progress=False)
    start = alone.init_from_keys(jax.random.split(key2, 3)[2:], **control)
    solo = ippo.train(alone, start, jax.random.PRNGKey(8), num_updates=2, progress=False)
    assert _leaves_equal(result.state.params, solo.state.params, 2, 0)
    assert _leaves_equal(result.state.opt_state, solo.state.opt_state, 2, 0)
    assert result.scores[2] == solo.scores[0]


def test_loop_control_matches_a_separate_plain_ippo_run(control_run):
    """On MABIM the loop's control is the same training as a separate plain IPPO run with the
    same keys (to float32 rounding: XLA's CPU code for MABIM's shapes orders some backward-pass
    sums differently for 3 learners than for 1)."""
    cfg, run, _ = control_run
    env = make_env(cfg.scenario)
    tc, updates = train_config(cfg, env)
    alone = ippo.make(env, tc, [all_ones(env.spec)])
    root, learner = jax.random.PRNGKey(cfg.seed), None
    for it in (1, 2):
        k_init, k_train = jax.random.split(jax.random.fold_in(root, it))
        keys = jax.random.split(k_init, cfg.n_learners)[cfg.k :]  # the control's slot
        state = alone.init_from_keys(keys, **({} if learner is None else learner))
        result = ippo.train(alone, state, k_train, num_updates=updates, progress=False)
        learner = alone.learner(result.state, 0)
        saved = run.load_learner(it, alone.learner_template(), name=CONTROL)
        for a, b in zip(jax.tree_util.tree_leaves(saved), jax.tree_util.tree_leaves(learner)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6)
        summary = json.loads((run.iter_dir(it) / "summary.json").read_text())
        assert summary["control_score"] == pytest.approx(result.scores[0], rel=1e-4)
        assert len(summary["scores"]) == cfg.k  # the control is never a candidate
        assert summary["best_slot"] < cfg.k


def test_results_show_control_baselines_and_change_ratio(control_run):
    cfg, run, results = control_run
    saved = json.loads((run.path / "results.json").read_text())
    assert set(saved["baselines"]) == {
        "constant",
        "base_stock_static",
        "base_stock_dynamic",
        "sS_static",
    }
    for mode in ("greedy", "sampled"):
        espark, ctl = saved["test"][mode]["return"], saved["control"][mode]["return"]
        assert saved["change_vs_ippo"][mode] == pytest.approx((espark - ctl) / abs(ctl))
    table = final_table(results)
    assert "IPPO (control, all-ones mask)" in table and "base stock (static)" in table
    assert f"{saved['baselines']['constant']['return']:,.1f}" in table


def test_no_control_trains_only_the_candidates(tmp_path):
    cfg = SearchConfig(
        scenario="mabim/tiny",
        k=2,
        iterations=1,
        steps=400,
        num_envs=2,
        eval_checkpoints=1,
        select_last=1,
        eval_envs=1,
        updates_per_chunk=1,
        hidden=(16, 16),
        repair_rounds=0,
        check_rounds=0,
        checker=False,
        provider="template",
        seed=0,
        control=False,
    )
    run = RunDir.create(tmp_path / "noctl", {"config": cfg.to_dict()})
    results = run_search(
        cfg, run, TemplateProvider("mabim", seed=0), progress=False, log=lambda s: None
    )
    assert results["control"] is None and results["change_vs_ippo"] is None
    assert not (run.iter_dir(1) / CONTROL).exists()
    assert "IPPO (control" not in final_table(results)
