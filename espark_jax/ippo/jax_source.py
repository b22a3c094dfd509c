"""Rollout source for JAX environments: the whole rollout and evaluation inside jit.

One rollout is a ``lax.scan`` over ``T`` decisions of ``K x E`` environments
(:func:`espark_jax.ippo.rollout.make_rollout`); evaluation is another scan
(:func:`espark_jax.ippo.evaluate.make_evaluate`). Rollout programs are cached per mask set and
evaluation programs per (split, environments, masks), so an eSpark run compiles each once.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.core import MaskContext
from espark_jax.ippo import sharding as shd
from espark_jax.ippo.compiled import TimedJit
from espark_jax.ippo.evaluate import make_evaluate, summarize
from espark_jax.ippo.rollout import make_rollout, reset_envs
from espark_jax.masks.safe import MaskFn


class JaxSource:
    """The :class:`~espark_jax.ippo.trainer.RolloutSource` of a jittable environment.

    Args:
        env: a JAX environment (pure ``reset``/``step``/``mask_context``, ``spec.is_jax``).
        num_steps: rollout length per update; 0 means the train episode length.
    """

    shardable = True
    blocking = False

    def __init__(self, env: Any, num_steps: int = 0) -> None:
        self.env, self.spec = env, env.spec
        self.num_steps = int(num_steps or env.spec.episode_length["train"])
        self.train_params = env.default_params("train")
        self.timings: dict[str, float] = {}
        self.phase: Any = None
        self._rollout: TimedJit | None = None
        self._programs: dict[tuple, tuple[Any, TimedJit]] = {}
        self._eval_fns: dict[tuple, TimedJit] = {}
        self._eval_params: dict[str, Any] = {}

    def bind(self, trainer: Any) -> None:
        """Take the trainer's network, log, mesh and reward scale."""
        self.trainer = trainer
        env = self.env
        self._reset = TimedJit(lambda keys, p: reset_envs(env, keys, p), "reset", trainer.log)

    def check(self, n_learners: int) -> None:
        """Any number of learners works."""

    def set_masks(self, mask_fns: tuple[MaskFn, ...]) -> None:
        """The rollout program of this mask set (built and cached on first use)."""
        if mask_fns not in self._programs:
            t = self.trainer
            rollout = make_rollout(
                self.env,
                t.apply_fn,
                mask_fns,
                self.num_steps,
                t.config.reward_scale,
                on_trace=t.log.counter("rollout"),
            )
            phase = self._phase(rollout)
            self._programs[mask_fns] = (phase, TimedJit(phase, "rollout", t.log, donate=(0,)))
        self.phase, self._rollout = self._programs[mask_fns]

    def _phase(self, rollout: Any) -> Any:
        trainer = self.trainer

        def phase(state: Any, env_params: Any):
            keys = jax.vmap(lambda k: jax.random.split(k, 3))(state.key)
            k_next, k_roll, k_upd = keys[:, 0], keys[:, 1], keys[:, 2]
            envs, traj, last_value, stats = rollout(state.params, state.envs, k_roll, env_params)
            state = state.replace(envs=envs, key=k_next)
            if trainer.mesh is not None:
                state = shd.constrain(state, trainer.state_shardings(state))
                traj = shd.constrain(traj, shd.buffer_shardings(traj, trainer.mesh))
            return state, traj, last_value, stats, k_upd

        return phase

    def reset(self, env_keys: jax.Array) -> Any:
        """``K x E`` fresh environments (an :class:`~espark_jax.ippo.rollout.EnvBatch`)."""
        return self._reset(env_keys, self.train_params)

    def rollout(self, state: Any) -> tuple:
        """One jitted rollout under the current masks; no extras."""
        return (*self._rollout(state, self.train_params), {})

    def evaluate(
        self, params: Any, key: jax.Array, split: str, greedy: bool, num_envs: int, masked: bool
    ) -> dict[str, Any]:
        """One jitted episode per environment; one program serves greedy and sampled."""
        if split not in self._eval_params:
            self._eval_params[split] = self.env.default_params(split)
        masks = self.trainer.mask_fns if masked else None
        sig = (split, num_envs, masks)
        if sig not in self._eval_fns:
            length = int(self.spec.episode_length[split])
            fn = make_evaluate(self.env, self.trainer.apply_fn, length, num_envs, masks)
            self._eval_fns[sig] = TimedJit(fn, "evaluate", self.trainer.log)
        raw = self._eval_fns[sig](params, key, self._eval_params[split], jnp.asarray(greedy))
        summary = summarize(jax.device_get(raw), tuple(self.spec.group_names))
        return {"split": split, "greedy": greedy, "masked": masked, **summary}

    def record_contexts(self, key: jax.Array) -> dict[str, np.ndarray]:
        """Contexts visited by the constant order-the-mean policy (:func:`record_contexts`)."""
        return record_contexts(self.env, key)


def record_contexts(
    env: Any, key: jax.Array, n_envs: int = 4, every: int = 7
) -> dict[str, np.ndarray]:
    """Mask contexts visited by a constant "action value nearest 1" policy on the train split
    (MABIM: order the mean demand). Returns field -> ``[batch, *shape]`` numpy arrays
    (``n_envs`` episodes x every ``every``-th decision)."""
    params = env.default_params("train")
    spec = env.spec
    steady = int(np.argmin(np.abs(np.asarray(spec.action_values) - 1.0)))
    actions = jnp.full((spec.n_agents,), steady, jnp.int32)
    length = int(spec.episode_length["train"])

    def episode(k: jax.Array) -> MaskContext:
        _, state = env.reset(k, params)

        def day(s: Any, _: Any) -> tuple[Any, MaskContext]:
            ctx = env.mask_context(s, params)
            _, s, _, _, _ = env.step(None, s, actions, params)
            return s, ctx

        _, ctxs = jax.lax.scan(day, state, None, length=length)
        return jax.tree_util.tree_map(lambda x: x[::every], ctxs)

    ctxs = jax.jit(jax.vmap(episode))(jax.random.split(key, n_envs))
    return {
        name: np.asarray(v).reshape((-1,) + np.shape(v)[2:]) for name, v in ctxs.as_dict().items()
    }
