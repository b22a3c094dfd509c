"""Rollout source for host environments that step outside JAX (the SUMO bridge).

Layout. Simulation ``b = k * E + e`` belongs to learner ``k``; the environment holds
``B = K x E`` simulations (build it with :func:`espark_jax.families.make_env`). One update = one
whole episode of all ``B`` simulations (SUMO episodes have a fixed number of decisions and end
together). Per decision the host reads observations and mask contexts and hands both to ONE
jitted function, which applies the K mask functions (each to its learner's ``E`` contexts),
ANDs them with the availability mask (rows left empty fall back to availability alone:
:func:`combine_with_availability`) and samples actions; only the actions come back for
``env.step``. At the end of the episode the host's observations and rewards and the device's
log-probabilities, values and behaviour masks form the usual rollout buffer, and the trainer's
PPO update runs on it unchanged.

Seeds. Training episodes draw SUMO seeds from ``[0, TRAIN_SEED_RANGE)`` with each learner's key.
Evaluation uses fixed seeds per split (:data:`SPLIT_SEEDS`): episode ``e`` of the validation
split is SUMO seed ``1_000_000 + e`` for every learner and checkpoint, so all are compared on the
same traffic. Evaluation applies the availability mask but no exploration mask.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.core import MaskContext
from espark_jax.ippo import distributions as dist
from espark_jax.ippo.batching import kmap
from espark_jax.ippo.compiled import TimedJit
from espark_jax.ippo.evaluate import summarize
from espark_jax.ippo.rollout import RolloutStats, Transition, apply_masks, policy_step
from espark_jax.masks.safe import MaskFn, fallback_empty_rows

TRAIN_SEED_RANGE = 1_000_000
SPLIT_SEEDS: dict[str, int] = {"train": 0, "validation": 1_000_000, "test": 2_000_000}
"""First SUMO seed of each evaluation split (episode ``e`` uses ``SPLIT_SEEDS[split] + e``)."""

EPISODE_METRICS = ("avg_delay", "avg_trip_time", "avg_waiting_time")
"""Tripinfo metrics reported per learner in training records and evaluations (seconds)."""


def combine_with_availability(mask: jax.Array, avail: jax.Array) -> jax.Array:
    """``mask AND avail`` per row; rows where that allows nothing fall back to ``avail``.

    ``mask`` is ``[..., A]`` bool or 0/1, ``avail`` ``[..., A]`` bool with at least one True per
    row; the result is a subset of ``avail`` with at least one True per row.
    """
    avail = jnp.asarray(avail, bool)
    return fallback_empty_rows((jnp.asarray(mask) != 0) & avail, avail)


def record_host_contexts(
    env: Any,
    seed: int = 0,
    decisions: int = 120,
    every: int = 12,
    controller: Callable[[MaskContext], np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Mask contexts visited by a classic controller (default: MaxPressure), for mask checks.

    Runs ``min(decisions, episode)`` decisions of one episode in all of ``env``'s simulations
    (seeds ``seed, seed + 1, ...``) and keeps the context of every ``every``-th decision.
    Returns field -> ``[n, *shape]`` numpy arrays. The environment is left mid-episode (the
    trainer resets it before every episode).
    """
    if controller is None:
        from envs_jax.sumo.baselines import MaxPressure

        controller = MaxPressure()
    if every < 1 or decisions < 1:
        raise ValueError(
            f"record_host_contexts needs decisions >= 1 and every >= 1, got {decisions}, {every}"
        )
    env.reset(seed)
    kept: list[dict[str, np.ndarray]] = []
    for t in range(min(int(decisions), int(env.spec.episode_length["train"]))):
        ctx = env.mask_context()
        if t % every == 0:
            kept.append(ctx.as_dict())
        env.step(controller(ctx))
    return {name: np.concatenate([np.asarray(c[name]) for c in kept]) for name in kept[0]}


class HostSource:
    """The :class:`~espark_jax.ippo.trainer.RolloutSource` of a host environment.

    Args:
        env: a host environment (``spec.is_jax`` False) with ``n_envs``, ``reset(seeds)``,
            ``step(actions)``, ``mask_context()`` and ``avail_actions``.
        num_envs: simulations per learner (E).
        num_steps: 0 or the episode length (host environments train on whole episodes).
        progress: show a per-decision progress bar for every episode.
    """

    shardable = False
    blocking = True
    phase = None
    train_params = None

    def __init__(self, env: Any, num_envs: int, num_steps: int = 0, progress: bool = False):
        episode = int(env.spec.episode_length["train"])
        if num_steps not in (0, episode):
            raise ValueError(
                f"host environments train on whole episodes: set num_steps to 0 or {episode}, "
                f"got {num_steps}"
            )
        avail = np.asarray(env.avail_actions, bool)
        if not avail.any(axis=-1).all():
            raise ValueError(f"{env.spec.name}: an agent has no available action")
        self.env, self.spec, self.num_envs, self.progress = env, env.spec, int(num_envs), progress
        self.num_steps = episode
        self.timings: dict[str, float] = {"env_s": 0.0, "policy_s": 0.0, "update_s": 0.0}
        self._action_space = jnp.asarray(env.spec.action_values, jnp.float32)
        self._programs: dict[tuple, TimedJit] = {}
        self._act: TimedJit | None = None

    def bind(self, trainer: Any) -> None:
        """Take the trainer's network and log; build the evaluation policy step."""
        if trainer.config.network != "mlp":
            raise ValueError(
                f"{self.spec.name}: --network {trainer.config.network} needs a JAX environment "
                "(MABIM); train host environments with --network mlp"
            )
        self.trainer = trainer
        self._eval_act = TimedJit(self._make_eval_act(), "evaluate", trainer.log)

    def check(self, n_learners: int) -> None:
        """The environment must hold ``K x E`` simulations."""
        k, e = n_learners, self.num_envs
        if self.env.n_envs != k * e:
            raise ValueError(
                f"{self.spec.name}: the environment has {self.env.n_envs} simulations but {k} "
                f"learners x {e} envs need {k * e}; build it with "
                f"espark_jax.families.make_env(name, {k}, {e})"
            )

    def set_masks(self, mask_fns: tuple[MaskFn, ...]) -> None:
        """The per-decision policy function of this mask set (cached by identity)."""
        if mask_fns not in self._programs:
            self._programs[mask_fns] = TimedJit(
                self._make_act(mask_fns), "rollout", self.trainer.log
            )
        self._act = self._programs[mask_fns]

    def _make_act(self, mask_fns: tuple[MaskFn, ...]) -> Callable:
        """``act(params, obs, ctx, avail, key, t) -> (action, log_prob, value, mask)``."""
        n_envs, agent_shape = self.num_envs, tuple(self.spec.agent_shape)
        on_trace, apply_fn = self.trainer.log.counter("rollout"), self.trainer.apply_fn
        action_space = self._action_space

        def act(params, obs, ctx, avail, key, t):
            on_trace()
            split = lambda k: jax.random.split(jax.random.fold_in(k, t), 1 + n_envs)  # noqa: E731
            keys = jax.vmap(split)(key)  # [K, 1 + E, 2]
            explore = apply_masks(mask_fns, ctx, keys[:, 1:], action_space, agent_shape)
            mask = combine_with_availability(explore, avail)
            action, log_prob, value = policy_step(apply_fn, params, obs, mask, keys[:, 0])
            return action, log_prob, value, mask

        return act

    def _make_eval_act(self) -> Callable:
        """``eval_act(params, obs, avail, key, t, greedy) -> action``: no exploration masks."""
        on_trace, apply_fn = self.trainer.log.counter("evaluate"), self.trainer.apply_fn

        def eval_act(params, obs, avail, key, t, greedy):
            on_trace()
            logits, _ = kmap(apply_fn)(params, obs)
            sampled = dist.sample(jax.random.fold_in(key, t), logits, avail)  # common randomness
            return jnp.where(greedy, dist.mode(logits, avail), sampled)

        return eval_act

    def reset(self, env_keys: jax.Array) -> None:
        """Nothing to hold: the simulations live in the environment; each update resets them."""
        return None

    def _split_batch(self, x: np.ndarray) -> np.ndarray:
        """``[B, ...]`` -> ``[K, E, ...]``."""
        return x.reshape((-1, self.num_envs) + x.shape[1:])

    def _decisions(self, desc: str) -> Any:
        if not self.progress:
            return range(self.num_steps)
        from tqdm.auto import tqdm

        return tqdm(range(self.num_steps), desc=desc, unit="dec", leave=False, dynamic_ncols=True)

    def rollout(self, state: Any) -> tuple:
        """One episode of all ``K x E`` simulations under the current masks (no update).

        ``traj`` has leaves ``[T, K, E, I, ...]``, ``last_value`` is zeros (the episode end is
        terminal), the extras map each of :data:`EPISODE_METRICS` to the per-learner mean
        ``[K]`` over its simulations.
        """
        env, timings = self.env, self.timings
        n_k, n_e, n_i = state.key.shape[0], self.num_envs, self.spec.n_agents
        keys = jax.vmap(lambda k: jax.random.split(k, 4))(state.key)
        k_next, k_seed, k_act, k_upd = (keys[:, i] for i in range(4))
        draw = lambda k: jax.random.randint(k, (n_e,), 0, TRAIN_SEED_RANGE)  # noqa: E731
        seeds = np.asarray(jax.vmap(draw)(k_seed)).reshape(-1)
        t0 = time.perf_counter()
        obs, _ = env.reset(seeds)
        avail = jax.device_put(self._split_batch(np.asarray(env.avail_actions, bool)))
        timings["env_s"] += time.perf_counter() - t0
        host: dict[str, list[np.ndarray]] = {"obs": [], "reward": [], "done": []}
        device: dict[str, list[jax.Array]] = {"action": [], "log_prob": [], "value": [], "mask": []}
        info: dict[str, Any] = {}
        done = np.zeros(env.n_envs, bool)
        for t in self._decisions("train episode"):
            t0 = time.perf_counter()
            ctx = jax.tree_util.tree_map(self._split_batch, env.mask_context())
            obs_k, ctx = jax.device_put((self._split_batch(obs), ctx))
            out = self._act(state.params, obs_k, ctx, avail, k_act, np.int32(t))
            actions = np.asarray(out[0]).reshape(n_k * n_e, n_i)
            t1 = time.perf_counter()
            next_obs, reward, done, info = env.step(actions)
            timings["policy_s"] += t1 - t0
            timings["env_s"] += time.perf_counter() - t1
            for name, value in zip(host, (obs, reward, done)):
                host[name].append(value)
            for name, value in zip(device, out):
                device[name].append(value)
            obs = next_obs
        if not np.all(done) or "metrics" not in info:
            raise RuntimeError(
                f"{self.spec.name}: the episode did not end after {self.num_steps} decisions"
            )
        rewards = np.stack(host["reward"]).astype(np.float32)  # [T, B, I]
        shape = (self.num_steps, n_k, n_e)
        scale = np.float32(self.trainer.config.reward_scale)
        traj = Transition(
            obs=jnp.asarray(np.stack(host["obs"]).reshape(shape + (n_i, self.spec.obs_dim))),
            action=jnp.stack(device["action"]),
            log_prob=jnp.stack(device["log_prob"]),
            value=jnp.stack(device["value"]),
            reward=jnp.asarray((rewards * scale).reshape(shape + (n_i,))),
            done=jnp.asarray(np.stack(host["done"]).reshape(shape)),
            mask=jnp.stack(device["mask"]),
        )
        returns = self._split_batch(rewards.sum(axis=(0, 2)))  # [K, E] unscaled episode returns
        stats = RolloutStats(
            mean_episode_return=jnp.asarray(returns.mean(axis=1), jnp.float32),
            episodes=jnp.full((n_k,), n_e, jnp.int32),
            allowed_fraction=jnp.mean(traj.mask, axis=(0, 2, 3, 4), dtype=jnp.float32),
        )
        extras = {
            m: self._split_batch(np.asarray(info["metrics"][m], np.float64)).mean(axis=1)
            for m in EPISODE_METRICS
        }
        last_value = jnp.zeros((n_k, n_e, n_i), jnp.float32)
        return state.replace(key=k_next), traj, last_value, stats, k_upd, extras

    def evaluate(
        self,
        params: Any,
        key: jax.Array,
        split: str,
        greedy: bool,
        num_envs: int,
        masked: bool = False,
        first_seed: int | None = None,
    ) -> dict[str, Any]:
        """Evaluate K' learners (``K'`` dividing ``B``) without exploration masks.

        Each learner gets ``B / K'`` simulations per round and at least ``num_envs`` episodes,
        rounded up to whole rounds; episode ``e`` uses SUMO seed ``first_seed + e`` for every
        learner (default ``SPLIT_SEEDS[split]``). ``key`` drives the sampled policy only. Adds
        ``metrics`` / ``metrics_std`` (:data:`EPISODE_METRICS`), ``episodes`` and ``first_seed``.
        """
        if masked:
            raise ValueError("masked evaluation is available for JAX environments only")
        env, spec = self.env, self.spec
        first_seed = SPLIT_SEEDS[split] if first_seed is None else int(first_seed)
        n_k = int(jax.tree_util.tree_leaves(params)[0].shape[0])
        if env.n_envs % n_k:
            raise ValueError(
                f"evaluate: {n_k} learners do not divide the {env.n_envs} simulations; pass the "
                f"parameters of 1 or {self.trainer.num_learners} learners"
            )
        per = env.n_envs // n_k
        rounds = max(1, math.ceil(num_envs / per))
        onehot = np.eye(spec.n_groups)[np.asarray(spec.agent_group)]  # [I, G]
        avail = np.asarray(env.avail_actions, bool).reshape(n_k, per, spec.n_agents, -1)
        avail = jax.device_put(avail)
        raw: dict[str, list] = {"return": [], "group_return": [], "components": [], "metrics": []}
        for r in range(rounds):
            obs, _ = env.reset(first_seed + r * per + np.tile(np.arange(per), n_k))
            rewards = np.zeros((env.n_envs, spec.n_agents))
            comps = {c: np.zeros((env.n_envs, spec.n_agents)) for c in spec.reward_components}
            for t in self._decisions(f"eval {split}"):
                obs_k = jax.device_put(obs.reshape(n_k, per, *obs.shape[1:]))
                step = np.int32(r * self.num_steps + t)
                action = self._eval_act(params, obs_k, avail, key, step, np.bool_(greedy))
                obs, reward, done, info = env.step(np.asarray(action).reshape(env.n_envs, -1))
                rewards += reward
                for c in comps:
                    comps[c] += info["components"][c]
            raw["return"].append(rewards.sum(-1))
            raw["group_return"].append(rewards @ onehot)
            raw["components"].append({c: v @ onehot for c, v in comps.items()})
            raw["metrics"].append(
                {m: np.asarray(info["metrics"][m], np.float64) for m in EPISODE_METRICS}
            )

        def by_learner(parts: list[np.ndarray]) -> np.ndarray:  # rounds of [B, ...] -> [K', n]
            return np.concatenate([p.reshape(n_k, per, *p.shape[1:]) for p in parts], axis=1)

        merged = {
            "return": by_learner(raw["return"]),
            "group_return": by_learner(raw["group_return"]),
            "components": {
                c: by_learner([p[c] for p in raw["components"]]) for c in spec.reward_components
            },
        }
        metrics = {m: by_learner([p[m] for p in raw["metrics"]]) for m in EPISODE_METRICS}
        return {
            "split": split,
            "greedy": greedy,
            **summarize(merged, tuple(spec.group_names)),
            "metrics": {m: v.mean(axis=1).tolist() for m, v in metrics.items()},
            "metrics_std": {m: v.std(axis=1).tolist() for m, v in metrics.items()},
            "episodes": rounds * per,
            "first_seed": first_seed,
        }

    def record_contexts(self, key: jax.Array) -> dict[str, np.ndarray]:
        """Contexts visited by MaxPressure (:func:`record_host_contexts`), seeds from ``key``."""
        seed = int(jax.random.randint(key, (), 0, TRAIN_SEED_RANGE))
        return record_host_contexts(self.env, seed=seed)
