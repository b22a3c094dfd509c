"""K-parallel IPPO: K learners, each under its own mask function, trained in one program.

The door is :func:`make`; everything else a user needs is re-exported here::

    from espark_jax import ippo
    trainer = ippo.make(env, ippo.TrainConfig(num_envs=16), mask_fns)   # K = len(mask_fns)
    result = ippo.train(trainer, trainer.init(key), key_train)          # chunks, evals, scores
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from espark_jax.ippo.core import LearnerState, RolloutSource, TrainConfig
from espark_jax.ippo.evaluate import evaluate_learner
from espark_jax.ippo.ppo import PPOConfig
from espark_jax.ippo.records import TrainResult, selection_scores
from espark_jax.ippo.trainer import Trainer, train
from espark_jax.masks.safe import MaskFn


def make(
    env: Any,
    config: TrainConfig | None = None,
    masks: Sequence[MaskFn] | None = None,
    *,
    devices: Sequence[Any] | None = None,
    progress: bool = False,
) -> Trainer:
    """The trainer for ``env``: the one way to build one, for every environment kind.

    Args:
        env: a JAX environment (``spec.is_jax``) or a host environment holding ``K x E``
            simulations (build it with :func:`espark_jax.families.make_env`).
        config: the :class:`TrainConfig`; a ``reward_scale`` of None takes the scenario
            family's default (:mod:`espark_jax.families`).
        masks: K mask functions (default: one all-ones mask, plain IPPO).
        devices: devices to shard over (JAX environments; default all visible).
        progress: per-decision progress bars (host environments).
    """
    from espark_jax.families import family_of
    from espark_jax.masks.safe import all_ones

    config = config or TrainConfig()
    family = family_of(env.spec.name)
    if config.reward_scale is None:
        config = dataclasses.replace(config, reward_scale=family.reward_scale)
    masks = list(masks) if masks is not None else [all_ones(env.spec)]
    if env.spec.is_jax:
        from espark_jax.ippo.jax_source import JaxSource

        source: RolloutSource = JaxSource(env, config.num_steps, family.fixed_episodes)
    else:
        from espark_jax.ippo.host_source import HostSource

        source = HostSource(env, config.num_envs, config.num_steps, progress=progress)
    return Trainer(source, config, masks, devices)


__all__ = [
    "LearnerState",
    "PPOConfig",
    "RolloutSource",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate_learner",
    "make",
    "selection_scores",
    "train",
]
