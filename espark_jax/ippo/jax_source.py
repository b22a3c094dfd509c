"""Rollout source for JAX environments: the whole rollout and evaluation inside jit.

One rollout (:func:`make_rollout`) is a ``lax.scan`` over ``T`` decisions; one step:

1. mask contexts of all ``K x E`` environments (``env.mask_context`` vmapped twice);
2. the K masks (:func:`~espark_jax.ippo.rollout.apply_masks`);
3. the policy samples actions under the masks (:func:`~espark_jax.ippo.rollout.policy_step`);
4. the environments step (vmapped over ``K x E``); finished environments are reset inside a
   ``lax.cond`` on "any environment done", so fixed-length episodes pay for a reset only at
   their ends.

Evaluation is another scan (:func:`espark_jax.ippo.evaluate.make_evaluate`). Rollout programs
are cached per mask set and evaluation programs per (split, environments, masks).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.core import MaskContext
from espark_jax.ippo import sharding as shd
from espark_jax.ippo.batching import invariant_sum, kmap
from espark_jax.ippo.compiled import TimedJit
from espark_jax.ippo.evaluate import make_evaluate, summarize
from espark_jax.ippo.recurrent import Sequences, is_recurrent, recurrent_policy_step
from espark_jax.ippo.rollout import RolloutStats, Transition, apply_masks, policy_step
from espark_jax.masks.safe import MaskFn


@flax.struct.dataclass
class EnvBatch:
    """Environment-side carry of K learners: states ``[K, E]`` and episode bookkeeping."""

    state: Any  # env state pytree, leaves [K, E, ...]
    obs: jax.Array  # [K, E, n_agents, obs_dim]
    episode_return: jax.Array  # [K, E] running (unscaled) return of the current episode
    memory: Any = None  # recurrent policies: the hidden state, leaves [K, E, n_agents, ...]


def _vmap2(fn: Callable, in_axes: tuple) -> Callable:
    """Map over E then K with the same ``in_axes`` (0 for batched, None for shared)."""
    return kmap(jax.vmap(fn, in_axes=in_axes), in_axes=in_axes)


#: XLA options of the rollout program on CPU, compiled again for every mask set: LLVM at -O2
#: instead of -O3 compiles it faster and runs it as fast (benchmarks/rollout_compile.py)
ROLLOUT_CPU_OPTIONS = {"xla_backend_optimization_level": 2}


@functools.lru_cache(maxsize=64)
def _traced_once(fn: Callable, in_axes: tuple) -> Callable:
    """``_vmap2(fn, in_axes)`` jitted once per (function, axes): the rollout of every new mask set
    calls it as a nested jit, so its trace and lowering are reused and only the masks are new."""
    return jax.jit(_vmap2(fn, in_axes))


#: the policy step as a nested jit, traced and lowered once per network (see _traced_once)
_policy_step_once = jax.jit(policy_step, static_argnums=0)


def reset_envs(env: Any, keys: jax.Array, env_params: Any, policy: Any = None) -> EnvBatch:
    """Reset ``K x E`` environments (``keys [K, E, 2]``); with a recurrent ``policy``, with its
    start memory."""
    obs, state = _vmap2(env.reset, (0, None))(keys, env_params)
    obs = obs.astype(jnp.float32)  # the learners work in float32, a float64 environment included
    memory = policy.initial(obs.shape[:3]) if is_recurrent(policy) else None
    returns = jnp.zeros(keys.shape[:2], jnp.float32)
    return EnvBatch(state=state, obs=obs, episode_return=returns, memory=memory)


def _strong(tree: Any) -> Any:
    """Drop weak types (a mask built from Python scalars can be weakly typed), so the buffer's
    types, and hence the PPO update's trace, never depend on how a mask function was written."""
    return jax.tree_util.tree_map(
        lambda x: jax.lax.convert_element_type(x, jnp.result_type(x)), tree
    )


def make_rollout(
    env: Any,
    apply_fn: Callable,
    mask_fns: Sequence[MaskFn],
    num_steps: int,
    reward_scale: float,
    on_trace: Callable[[], None] | None = None,
    reset_at_end: bool = False,
) -> Callable:
    """Build ``rollout(params, envs, key, env_params) -> (envs, traj, last_value, stats, pending)``.

    ``params`` has a leading K axis (K = ``len(mask_fns)``), ``envs`` is an :class:`EnvBatch`,
    ``key`` is ``[K, 2]``. ``traj`` is a :class:`Transition` with leaves ``[T, K, E, ...]``
    (a recurrent ``apply_fn``: :class:`~espark_jax.ippo.recurrent.Sequences` of them and the
    memory before the first step; the memory is reset where an episode ends),
    ``last_value`` is ``[K, E, n_agents]`` (the value of the observation after the last step, for
    bootstrapping), ``stats`` a :class:`RolloutStats`. The function is pure; jit it.

    Finished environments are reset inside the scan, unless ``reset_at_end``: for episodes that
    all end exactly at the rollout's last step, the reset is left to :func:`reset_finished` on
    ``pending = (done [K, E], reset keys [K, E, 2])`` of the last step (same keys, same result),
    so a program that does not depend on the masks does it and the mask-dependent rollout
    compiles without the environment's reset. ``pending`` is None otherwise.
    """
    spec = env.spec
    mask_fns = tuple(mask_fns)
    action_space = jnp.asarray(spec.action_values, jnp.float32)
    recurrent = is_recurrent(apply_fn)

    def rollout(params, envs: EnvBatch, key: jax.Array, env_params: Any):
        if on_trace is not None:
            on_trace()
        n_envs = envs.episode_return.shape[1]

        def step(carry, step_keys):
            envs, ret_sum, n_eps, n_allowed = carry
            k_act = step_keys[:, 0]  # [K, 2]
            mask_keys, env_keys, reset_keys = (
                step_keys[:, 1 + i * n_envs : 1 + (i + 1) * n_envs] for i in range(3)
            )
            ctx = _traced_once(env.mask_context, (0, None))(envs.state, env_params)
            masks = apply_masks(mask_fns, ctx, mask_keys, action_space, spec.agent_shape)
            if recurrent:
                memory, action, log_prob, value = recurrent_policy_step(
                    apply_fn, params, envs.memory, envs.obs, masks, k_act
                )
            else:
                action, log_prob, value = _policy_step_once(
                    apply_fn, params, envs.obs, masks, k_act
                )
            obs, state, reward, done, _ = _traced_once(env.step, (0, 0, 0, None))(
                env_keys, envs.state, action, env_params
            )
            obs, reward = obs.astype(jnp.float32), reward.astype(jnp.float32)
            done = jnp.asarray(done, bool)
            ep_ret = envs.episode_return + invariant_sum(reward, axis=-1)
            ret_sum = ret_sum + jnp.where(done, ep_ret, 0.0)  # [K, E]; reduced once at the end
            n_eps = n_eps + done
            n_allowed = n_allowed + jnp.sum(masks, axis=(1, 2, 3), dtype=jnp.int32)

            def do_reset(_):
                after = EnvBatch(state=state, obs=obs, episode_return=ep_ret)
                after = reset_finished(env, after, (done, reset_keys), env_params)
                return after.state, after.obs

            if not reset_at_end:
                state, obs = jax.lax.cond(jnp.any(done), do_reset, lambda _: (state, obs), None)
            trans = _strong(
                Transition(
                    obs=envs.obs,
                    action=action,
                    log_prob=log_prob,
                    value=value,
                    reward=reward * reward_scale,
                    done=done,
                    mask=masks,
                )
            )
            new_envs = EnvBatch(
                state=state,
                obs=obs,
                episode_return=jnp.where(done, 0.0, ep_ret),
                memory=apply_fn.advance(memory, action, done) if recurrent else None,
            )
            return (new_envs, ret_sum, n_eps, n_allowed), (trans, reset_keys)

        n_k = key.shape[0]
        # every key of the rollout from one batched split (one threefry in the program: cheaper to
        # compile than splitting inside the loop): per step one action key and E mask, step and
        # reset keys per learner
        per_step = 1 + 3 * n_envs
        keys = jax.vmap(
            lambda k: jax.random.split(k, num_steps * per_step).reshape(num_steps, per_step, -1)
        )(key)
        keys = jnp.moveaxis(keys, 1, 0)  # [T, K, 1 + 3E, 2]
        init = (
            envs,
            jnp.zeros((n_k, n_envs), jnp.float32),
            jnp.zeros((n_k, n_envs), jnp.int32),
            jnp.zeros((n_k,), jnp.int32),
        )
        first = envs.memory
        (envs, ret_sum, n_eps, n_allowed), (traj, reset_keys) = jax.lax.scan(step, init, keys)
        pending = (traj.done[-1], reset_keys[-1]) if reset_at_end else None
        if recurrent:
            _, _, last_value = kmap(apply_fn.step)(params, envs.memory, envs.obs)
            traj = Sequences(steps=traj, memory=first)
        else:
            _, last_value = kmap(apply_fn)(params, envs.obs)
        episodes = jnp.sum(n_eps, axis=1)
        mean_return = kmap(invariant_sum)(ret_sum) * (
            1.0 / jnp.maximum(episodes, 1).astype(jnp.float32)
        )
        total = num_steps * n_envs * spec.n_agents * spec.n_actions
        stats = RolloutStats(
            mean_episode_return=jnp.where(episodes > 0, mean_return, jnp.nan),
            episodes=episodes,
            allowed_fraction=n_allowed.astype(jnp.float32) * (1.0 / total),
        )
        return envs, traj, last_value, stats, pending

    return rollout


def reset_finished(env: Any, envs: EnvBatch, pending: tuple, env_params: Any) -> EnvBatch:
    """Reset what a ``reset_at_end`` rollout left finished (see :func:`make_rollout`)."""
    done, keys = pending
    fresh = reset_envs(env, keys, env_params)

    def pick(new: jax.Array, old: jax.Array) -> jax.Array:
        return jnp.where(done.reshape(done.shape + (1,) * (old.ndim - 2)), new, old)

    state = jax.tree_util.tree_map(pick, fresh.state, envs.state)
    return envs.replace(state=state, obs=pick(fresh.obs, envs.obs))


class JaxSource:
    """The :class:`~espark_jax.ippo.trainer.RolloutSource` of a jittable environment.

    Args:
        env: a JAX environment (pure ``reset``/``step``/``mask_context``, ``spec.is_jax``).
        num_steps: rollout length per update; 0 means the train episode length.
        fixed_episodes: every episode lasts exactly the split's episode length (MABIM); with
            ``num_steps`` equal to it, finished environments are reset by a separate program
            compiled once per run instead of inside every mask set's rollout.
    """

    shardable = True
    blocking = False

    def __init__(self, env: Any, num_steps: int = 0, fixed_episodes: bool = False) -> None:
        self.env, self.spec = env, env.spec
        episode = int(env.spec.episode_length["train"])
        self.num_steps = int(num_steps or episode)
        self.reset_at_end = bool(fixed_episodes) and self.num_steps == episode
        self.train_params = env.default_params("train")
        self.timings: dict[str, float] = {}
        self.phase: Any = None
        self._rollout: TimedJit | None = None
        self._programs: dict[tuple, tuple[Any, TimedJit]] = {}
        self._eval_fns: dict[tuple, TimedJit] = {}
        self._eval_params: dict[str, Any] = {}
        #: XLA options of the per-mask-set rollout program (compiled once per iteration)
        self.rollout_compiler_options: dict[str, Any] | None = (
            dict(ROLLOUT_CPU_OPTIONS) if jax.default_backend() == "cpu" else None
        )

    def bind(self, trainer: Any) -> None:
        """Take the trainer's network, log, mesh and reward scale."""
        self.trainer = trainer
        env = self.env
        policy = trainer.apply_fn
        self._reset = TimedJit(
            lambda keys, p: reset_envs(env, keys, p, policy), "reset", trainer.log
        )
        self._reset_finished = TimedJit(self._finish, "reset", trainer.log, donate=(0,))

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
                reset_at_end=self.reset_at_end,
            )
            split = self._phase(rollout)
            self._programs[mask_fns] = (
                self._fused(split),
                TimedJit(
                    split,
                    "rollout",
                    t.log,
                    donate=(0,),
                    compiler_options=self.rollout_compiler_options,
                ),
            )
        self.phase, self._rollout = self._programs[mask_fns]

    @property
    def rollout_program(self) -> TimedJit:
        """The compiled rollout of the current masks (``program(state, train_params)``)."""
        if self._rollout is None:
            raise RuntimeError("no masks set yet; call set_masks first")
        return self._rollout

    def _constrain(self, state: Any) -> Any:
        mesh = self.trainer.mesh
        return state if mesh is None else shd.constrain(state, self.trainer.state_shardings(state))

    def _phase(self, rollout: Any) -> Any:
        """The rollout program: ``(state, traj, last_value, stats, update_key, pending)``."""
        trainer = self.trainer

        def phase(state: Any, env_params: Any):
            keys = jax.vmap(lambda k: jax.random.split(k, 3))(state.key)
            k_next, k_roll, k_upd = keys[:, 0], keys[:, 1], keys[:, 2]
            envs, traj, last_value, stats, pending = rollout(
                state.params, state.envs, k_roll, env_params
            )
            state = self._constrain(state.replace(envs=envs, key=k_next))
            if trainer.mesh is not None:
                steps = traj.steps if isinstance(traj, Sequences) else traj
                steps = shd.constrain(steps, shd.buffer_shardings(steps, trainer.mesh))
                if isinstance(traj, Sequences):
                    memory = shd.constrain(
                        traj.memory, shd.env_shardings(traj.memory, trainer.mesh)
                    )
                    traj = Sequences(steps=steps, memory=memory)
                else:
                    traj = steps
            return state, traj, last_value, stats, k_upd, pending

        return phase

    def _finish(self, state: Any, pending: Any, env_params: Any) -> Any:
        """Reset what a ``reset_at_end`` rollout left finished (compiled once per run)."""
        envs = reset_finished(self.env, state.envs, pending, env_params)
        return self._constrain(state.replace(envs=envs))

    def _fused(self, split: Any) -> Any:
        """The pure one-update phase for fused chunks (reset included)."""

        def phase(state: Any, env_params: Any):
            state, traj, last_value, stats, k_upd, pending = split(state, env_params)
            if pending is not None:
                state = self._finish(state, pending, env_params)
            return state, traj, last_value, stats, k_upd

        return phase

    def reset(self, env_keys: jax.Array) -> Any:
        """``K x E`` fresh environments (an :class:`~espark_jax.ippo.rollout.EnvBatch`)."""
        return self._reset(env_keys, self.train_params)

    def rollout(self, state: Any) -> tuple:
        """One jitted rollout under the current masks (then the reset program); no extras."""
        state, traj, last_value, stats, k_upd, pending = self._rollout(state, self.train_params)
        if pending is not None:
            state = self._reset_finished(state, pending, self.train_params)
        return state, traj, last_value, stats, k_upd, {}

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
