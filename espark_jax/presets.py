"""The eSpark presets and the names of the run options that select released-code behaviour.

Plain data without JAX (the command line reads the choices from here before anything heavy is
imported). :class:`~espark_jax.search_config.SearchConfig` builds a configuration from a preset.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # a few minutes on a 2-core CPU: small K, few iterations, a short budget (about 0.2 % of
    # the paper's). PPO settings measured for it (benchmarks/ippo_tuning.py, validation split):
    # lr 3e-3, one epoch of 16 minibatches, mask distillation 0.3, per-agent reward normalisation
    "quick": dict(
        k=4,
        iterations=3,
        steps=9_000,
        num_envs=2,
        eval_checkpoints=3,
        eval_envs=2,
        updates_per_chunk=5,
        hidden=(64, 64),
        lr=3e-3,
        update_epochs=1,
        num_minibatches=16,
        mask_distill=0.3,
        reward_norm="agent",
        repair_rounds=1,
        check_rounds=1,
    ),
    # the paper: K = 16, ten iterations over 5.02 M environment steps per candidate (MABIM)
    "paper": dict(
        k=16,
        iterations=10,
        steps=5_020_000,
        num_envs=32,
        eval_checkpoints=5,
        eval_envs=8,
        updates_per_chunk=10,
        hidden=(64, 64),
        repair_rounds=2,
        check_rounds=1,
    ),
    # the authors' released code (github.com/LiuZhihao2022/eSpark, config/algs/eSpark.yaml and
    # run/gpt_as_mask_run_parallel_whole_iter.py; README "Where we follow the released code"):
    # 16 candidates, 10 iterations of 8000 episodes of 100 days each (8 M steps; t_max 5.02 M is
    # not read by that loop), 4 environments and one update per 4 episodes, 4 full-batch PPO
    # epochs, Adam's default eps, rewards x 1e-2 (/1e4 in the env wrapper, x100 in the
    # learner), FC-GRU-FC networks of width 128 (layer norm in the critic, last action in the
    # actor's input), a greedy evaluation episode every 500 episodes scored by the mean of the
    # last 5, up to 5 generator/checker rounds and no compile repairs, no control learner, the
    # released mask rules (whole-environment fallback, unmasked first step) and feedback form
    "authors": dict(
        k=16,
        iterations=10,
        steps=8_000_000,
        num_envs=4,
        eval_checkpoints=16,
        select_last=5,
        eval_envs=1,
        updates_per_chunk=10,
        network="gru",
        hidden=(128,),
        layer_norm=True,
        last_action=True,
        lr=5e-4,
        adam_eps=1e-8,
        update_epochs=4,
        num_minibatches=1,
        reward_scale=1e-2,
        repair_rounds=0,
        check_rounds=5,
        control=False,
        mask_fallback="per_env",
        mask_first_step=False,
        feedback="released",
    ),
}

#: Settings of a preset that change with the budget (environment steps per candidate over the
#: run), for MABIM: from each threshold on, its values replace the preset's unless given
#: explicitly. Measured with ``benchmarks/ippo_tuning.py`` on the validation split (section
#: "IPPO settings for larger budgets" of ``benchmarks/README.md``): at 2e5 steps, 16
#: environments per learner and a learning rate annealed over the run; at the quick budget
#: (9,000 steps) neither helps.
BUDGET_SETTINGS: dict[str, tuple[tuple[int, dict[str, Any]], ...]] = {
    "quick": ((100_000, dict(num_envs=16, anneal_lr=True)),),
}

#: Families the budget settings are measured for.
BUDGET_FAMILIES = ("mabim",)


def budget_settings(preset: str, steps: int) -> dict[str, Any]:
    """The :data:`BUDGET_SETTINGS` of ``preset`` that apply at ``steps`` (later thresholds win)."""
    out: dict[str, Any] = {}
    for threshold, values in BUDGET_SETTINGS.get(preset, ()):
        if steps >= threshold:
            out.update(values)
    return out


#: Families a preset is made for (others: every family).
PRESET_FAMILIES: dict[str, tuple[str, ...]] = {"authors": ("mabim",)}

#: Forms of the policy feedback: ours (:mod:`espark_jax.feedback`) or the released code's
#: (:mod:`espark_jax.feedback_released`).
FEEDBACK_FORMS = ("ours", "released")

#: Rules for an agent whose mask allows nothing (:mod:`espark_jax.masks.fallback`): ours
#: (``per_agent``) and the released code's (``per_env``).
FALLBACK_RULES = ("per_agent", "per_env")

#: Interfaces a mask program can be written against (``MaskTask.interface``): ours, and the
#: authors' released one (:mod:`espark_jax.masks.released`).
MASK_INTERFACES = ("native", "released")

#: Reward normalisations of the PPO update (:class:`~espark_jax.ippo.ppo.PPOConfig`): none
#: (the paper) or per agent (each agent's rewards over the RMS of its discounted return).
REWARD_NORMS = ("none", "agent")
