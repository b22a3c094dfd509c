"""IPPO on the SUMO bridge: the host-driven trainer, availability masks, evaluation metrics,
the loop.

Everything runs on the generated ``sumo/grid2x2`` with 150-s episodes (10 decisions), K = 2
learners x 1 simulation, and one network / PPO configuration, so the compiled programs are shared
between the tests (and with the session's compilation cache).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from espark_jax.families import family_of, make_env
from espark_jax.ippo import TrainConfig, make, selection_scores, train
from espark_jax.ippo.host_source import (
    EPISODE_METRICS,
    SPLIT_SEEDS,
    HostSource,
    combine_with_availability,
    record_host_contexts,
)
from espark_jax.llm.prompts import EnvPromptInfo
from espark_jax.llm.providers import TemplateProvider
from espark_jax.masks.builtin import get_builtin_mask
from espark_jax.runs import RunDir
from espark_jax.search import SearchConfig, run_search

pytestmark = pytest.mark.sumo
SCENARIO = "sumo/grid2x2"
ENV_KWARGS = {"episode_seconds": 150}  # 10 decisions
DECISIONS = 10
HIDDEN = (16, 16)
# intersection i may only use these phases (the generated grid has all 8 everywhere)
ALLOWED = np.zeros((4, 8), bool)
ALLOWED[0, [0, 1]] = True
ALLOWED[1, [2, 3, 4]] = True
ALLOWED[2, [0, 1, 2, 3, 4, 6, 7]] = True
ALLOWED[3, 7] = True


class RestrictedAvail:
    """The grid with fewer available phases (``ALLOWED``); an unavailable action raises, like the
    bridge."""

    def __init__(self, env):
        self.env, self.spec, self.n_envs = env, env.spec, env.n_envs
        self.actions_sent = 0

    @property
    def avail_actions(self) -> np.ndarray:
        return self.env.avail_actions & ALLOWED

    def reset(self, seeds):
        return self.env.reset(seeds)

    def mask_context(self):
        ctx = self.env.mask_context()
        return ctx.replace(phase_avail=ctx.phase_avail & ALLOWED)

    def step(self, actions):
        ok = np.take_along_axis(self.avail_actions, np.asarray(actions)[..., None], axis=-1)
        if not ok.all():
            raise ValueError(f"unavailable action sent: {actions}")
        self.actions_sent += ok.size
        return self.env.step(actions)


def only_unavailable(ctx, action_space):
    """A mask allowing exactly the unavailable phases: its AND with availability is always empty."""
    return ~ctx.phase_avail


def _config(**kw) -> TrainConfig:
    base = dict(
        num_envs=1,
        hidden=HIDDEN,
        reward_scale=None,
        eval_envs=1,
        eval_every=1,
        updates_per_chunk=1,
        select_last=1,
    )
    return TrainConfig(**{**base, **kw})


def _worker_children() -> set[int]:
    """Live SUMO worker processes started by this process."""
    out = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"sumo/worker.py" in cmd:
            out.add(int(d.name))
    return out


@pytest.fixture(scope="module")
def env():
    env = make_env(SCENARIO, 2, 1, **ENV_KWARGS)
    yield env
    env.close()


@pytest.fixture(scope="module")
def rollout(env):
    """One episode + update of K=2 learners: slot 0 under a mask that only allows unavailable
    phases (so it falls back to availability), slot 1 under MaxPressure pruning."""
    restricted = RestrictedAvail(env)
    fns = [only_unavailable, get_builtin_mask("maxpressure-pruning", env.spec)]
    trainer = make(restricted, _config(), fns)
    state = trainer.init(jax.random.PRNGKey(0))
    before = jax.device_get(state.params)
    state, traj, last_value, stats, k_upd, episode = trainer.rollout(state)
    params, opt_state, metrics = trainer.update(
        state.params, state.opt_state, traj, last_value, k_upd
    )
    state = state.replace(params=params, opt_state=opt_state)
    return {
        "trainer": trainer,
        "env": restricted,
        "state": state,
        "traj": jax.device_get(traj),
        "stats": stats,
        "episode": episode,
        "metrics": metrics,
        "before": before,
    }


def test_combine_with_availability_by_hand():
    avail = jnp.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 1]], bool)
    mask = jnp.array([[0, 1, 1, 0], [0, 1, 1, 1], [1, 1, 0, 1]])
    out = np.asarray(combine_with_availability(mask, avail))
    assert out.tolist() == [
        [False, True, False, False],  # AND
        [True, False, False, False],  # AND is empty: availability alone
        [False, True, False, True],
    ]


def test_rollout_buffer_respects_availability(rollout):
    traj, env = rollout["traj"], rollout["env"]
    k, e, i, a = 2, 1, 4, 8
    assert traj.obs.shape[:4] == (DECISIONS, k, e, i) and traj.mask.shape == (DECISIONS, k, e, i, a)
    assert (
        traj.action.dtype == np.int32
        and traj.reward.dtype == np.float32
        and traj.done.dtype == bool
    )
    assert traj.done[-1].all() and not traj.done[:-1].any()
    assert (
        env.actions_sent == DECISIONS * k * e * i
    )  # every action was valid (RestrictedAvail raises otherwise)
    mask = traj.mask.astype(bool)
    assert not (mask & ~ALLOWED).any(), "a behaviour mask allowed an unavailable phase"
    chosen = np.take_along_axis(mask, traj.action[..., None], axis=-1)[..., 0]
    assert chosen.all(), "an action outside its behaviour mask"
    # slot 0's mask never overlaps availability: it fell back to availability alone everywhere
    assert (mask[:, 0] == ALLOWED).all()
    # slot 1: MaxPressure top-4 of the available phases
    assert (mask[:, 1].sum(-1) == np.minimum(ALLOWED.sum(-1), 4)).all()
    # rewards are scaled minus stopped vehicles; the reported return is unscaled
    ret = np.asarray(rollout["stats"].mean_episode_return)
    np.testing.assert_allclose(
        ret, traj.reward.sum(axis=(0, 2, 3)) / family_of(SCENARIO).reward_scale, rtol=1e-5
    )
    assert (traj.reward <= 0).all()
    np.testing.assert_allclose(
        np.asarray(rollout["stats"].allowed_fraction),
        [ALLOWED.mean(), np.minimum(ALLOWED.sum(-1), 4).sum() / ALLOWED.size],
    )
    for m in EPISODE_METRICS:
        assert rollout["episode"][m].shape == (k,) and np.isfinite(rollout["episode"][m]).all()


def test_update_changes_both_learners(rollout):
    before, after = rollout["before"], jax.device_get(rollout["state"].params)
    for slot in (0, 1):
        assert not np.array_equal(
            before["actor_0"]["kernel"][slot], after["actor_0"]["kernel"][slot]
        )
    assert all(np.isfinite(np.asarray(v)).all() for v in rollout["metrics"].values())


def test_update_compiled_once_across_mask_sets(rollout):
    trainer, state = rollout["trainer"], rollout["state"]
    trainer.set_masks(
        [get_builtin_mask("none", trainer.spec), get_builtin_mask("random-pruning", trainer.spec)]
    )
    state, metrics = trainer.train_chunk(state, 1)
    assert trainer.trace_counts["rollout"] == 2 and trainer.trace_counts["update"] == 1
    assert len(trainer.compile_seconds["update"]) == 1
    assert metrics["train_return"].shape == (1, 2) and metrics["avg_delay"].shape == (1, 2)
    assert np.asarray(metrics["allowed_fraction"])[0, 0] == pytest.approx(ALLOWED.mean())
    rollout["state"] = state


def test_evaluation_reports_sumo_metrics_with_common_seeds(rollout):
    trainer, state = rollout["trainer"], rollout["state"]
    ev = trainer.evaluate(state.params, jax.random.PRNGKey(1), split="validation", greedy=True)
    assert ev["split"] == "validation" and ev["greedy"] is True and ev["episodes"] == 1
    assert ev["first_seed"] == SPLIT_SEEDS["validation"]
    assert set(ev["metrics"]) == set(EPISODE_METRICS) and all(
        len(v) == 2 for v in ev["metrics"].values()
    )
    assert set(ev["components"]) == {"stopped", "waiting_time", "queue_length", "pressure"}
    assert ev["return"][0] == pytest.approx(-ev["components"]["stopped"]["intersections"][0])
    # retention puts learner 1 into both slots: same parameters and seeds give identical episodes
    same = trainer.retain(state, 1, jax.random.PRNGKey(2))
    ev2 = trainer.evaluate(same.params, jax.random.PRNGKey(1), split="validation", greedy=True)
    assert (
        ev2["return"][0] == ev2["return"][1]
        and ev2["metrics"]["avg_delay"][0] == ev2["metrics"]["avg_delay"][1]
    )
    # one learner on both simulations: at least 3 episodes means 2 rounds of 2
    # (test seeds 2e6 .. 2e6+3)
    one = jax.tree_util.tree_map(lambda x: x[:1], state.params)
    ev3 = trainer.evaluate(one, jax.random.PRNGKey(3), split="test", greedy=False, num_envs=3)
    assert (
        ev3["episodes"] == 4
        and len(ev3["return"]) == 1
        and np.isfinite(ev3["metrics"]["avg_trip_time"][0])
    )
    assert rollout["env"].actions_sent > 0


def test_train_driver_writes_json_lines(rollout, tmp_path):
    trainer = rollout["trainer"]
    path = tmp_path / "metrics.jsonl"
    result = train(
        trainer,
        trainer.init(jax.random.PRNGKey(4)),
        jax.random.PRNGKey(5),
        num_updates=1,
        metrics_path=str(path),
        progress=False,
    )
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["train", "eval"]
    assert lines[0]["env_steps"] == DECISIONS and len(lines[0]["avg_delay"]) == 2
    assert result.scores == selection_scores(result.evals, 1) and "metrics" in lines[1]
    assert trainer.trace_counts["update"] == 1


def test_bad_inputs_one_line_errors(env):
    fns = [get_builtin_mask("none", env.spec)] * 2
    with pytest.raises(ValueError, match="make_env"):
        make(env, _config(num_envs=2), fns)
    with pytest.raises(ValueError, match="num_steps"):
        make(env, _config(num_steps=5), fns)
    # the one door picks the worker-driven source for a host environment, and the family's scale
    host = make(env, _config(), fns)
    assert isinstance(host.source, HostSource) and host.config.reward_scale == 1e-2
    with pytest.raises(ValueError, match="ss-pruning reads MABIM"):
        get_builtin_mask("ss-pruning", env.spec)
    trainer = host
    three = jax.tree_util.tree_map(
        lambda x: jnp.concatenate([x, x[:1]]), trainer.init(jax.random.PRNGKey(0)).params
    )
    with pytest.raises(ValueError, match="do not divide"):
        trainer.evaluate(three, jax.random.PRNGKey(0))


def test_record_host_contexts(env):
    samples = record_host_contexts(env, seed=0, decisions=DECISIONS, every=5)
    assert set(samples) == {f.name for f in env.spec.context_fields}
    assert samples["phase_pressure"].shape == (2 * env.n_envs, 4, 8) and samples[
        "step"
    ].tolist() == [0, 0, 5, 5]


def test_sumo_presets_scale_down():
    quick = SearchConfig.from_preset("quick", scenario="sumo/grid4x4")
    assert (quick.num_envs, quick.steps, quick.updates_per_chunk) == (1, 1_440, 1)
    assert SearchConfig.from_preset("quick", scenario="sumo/grid4x4", num_envs=2).num_envs == 2
    assert SearchConfig.from_preset("quick").num_envs == 2  # MABIM: the base preset
    assert SearchConfig.from_preset("paper", scenario="sumo/cologne8").steps == 2_400_000


def test_template_loop_iteration_on_sumo(env, tmp_path):
    before = _worker_children()
    cfg = SearchConfig(
        scenario=SCENARIO,
        k=2,
        iterations=1,
        steps=DECISIONS,
        num_envs=1,
        eval_checkpoints=1,
        select_last=1,
        eval_envs=1,
        updates_per_chunk=1,
        hidden=HIDDEN,
        repair_rounds=0,
        check_rounds=0,
        checker=False,
        provider="template",
        seed=0,
        env_kwargs=ENV_KWARGS,
    )
    run = RunDir.create(tmp_path / "run", {"config": cfg.to_dict()})
    results = run_search(
        cfg,
        run,
        TemplateProvider("sumo", 0, EnvPromptInfo.from_env(env)),
        progress=False,
        log=lambda s: None,
    )
    assert (run.path / "results.json").is_file() and results[
        "provider"
    ] == "template-mutation (no LLM)"
    test = results["test"]["greedy"]
    assert np.isfinite(test["return"]) and set(test["metrics"]) == set(EPISODE_METRICS)
    summary = json.loads((run.iter_dir(1) / "summary.json").read_text())
    assert summary["statuses"] == ["ok", "ok"] and len(summary["scores"]) == 2
    assert "stopped" in summary["feedback"]
    assert _worker_children() <= before, "the loop left SUMO workers running"


def test_close_leaves_no_sumo_process(env):
    pids = set(p for p in env.worker_pids() if p is not None)
    assert pids and pids <= _worker_children()
    env.close()
    assert not (pids & _worker_children())
