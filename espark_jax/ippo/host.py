"""K-parallel IPPO driven from the host, for environments that step outside JAX (the SUMO bridge).

Same public surface as :class:`espark_jax.ippo.train.Trainer` (``init``, ``set_masks``,
``retain``, ``train_chunk``, ``evaluate``, ``compile_seconds``, ``trace_counts``), so
:func:`espark_jax.ippo.train.train` and the eSpark loop drive it unchanged::

    env = make_env("sumo/grid4x4", n_learners=K, num_envs=E)      # one SumoEnv, B = K x E simulations
    trainer = HostTrainer(env, TrainConfig(num_envs=E, reward_scale=REWARD_SCALE), mask_fns)
    result = train(trainer, trainer.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    env.close()

Layout. Simulation ``b = k * E + e`` belongs to learner ``k``. One update = one whole episode of
all ``B`` simulations (SUMO episodes have a fixed number of decisions and end together). Per
decision the host reads ``obs [B, I, D]`` and the mask context, hands both to ONE jitted function
(one batched host-to-device transfer) which

1. applies the K mask functions, each to its own learner's ``E`` contexts
   (:func:`espark_jax.ippo.rollout.apply_masks`, stacked at trace time);
2. ANDs each mask with the availability mask ``env.avail_actions`` (a phase with no lanes is
   never a valid action); where the combination allows nothing, the availability mask alone is
   used (:func:`combine_with_availability`);
3. samples actions, log-probabilities and values (:func:`espark_jax.ippo.rollout.policy_step`);

and only the actions come back to the host for ``env.step``. Log-probabilities, values and the
behaviour masks stay on the device; at the end of the episode they are stacked with the host's
observations and rewards into the usual rollout buffer (:class:`~espark_jax.ippo.rollout.Transition`
with leaves ``[T, K, E, I, ...]``) and the unchanged jitted PPO update
(:func:`espark_jax.ippo.ppo.make_update`) runs on it. The update reads masks from the buffer, so it
is compiled once per trainer whatever the mask functions; only the per-decision function is
traced again for a new mask set (``trace_counts["rollout"]``).

Reward scaling. The SUMO reward is minus the number of stopped vehicles on an intersection's
incoming lanes after each 15-s decision: about -3 to -6 per intersection under MaxPressure on
Grid 4x4, -20 and below when the network jams. :data:`REWARD_SCALE` (0.01) maps that to -0.03 to
-0.2 per step, so discounted returns (gamma 0.985, a horizon of about 67 decisions) are a few units
and the clipped value loss can follow them. The end of an episode (3600 s) is treated as terminal,
as for MABIM: GAE does not bootstrap through it. Reported returns are unscaled.

Seeds. Training episodes draw SUMO seeds from ``[0, TRAIN_SEED_RANGE)`` with each learner's key
(different for every learner and update). Evaluation uses fixed seeds per split
(:data:`SPLIT_SEEDS`): episode ``e`` of the validation split is SUMO seed ``1_000_000 + e`` for
every learner and every checkpoint, so checkpoints and learners are compared on the same traffic.
Evaluation applies the availability mask but no exploration mask; the policy is greedy (argmax)
or sampled.

Not supported here (the JAX trainer has them): fused chunks and sharding over devices; the
policy runs on the default device and the simulations on the host's CPU cores.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.core import MaskContext
from espark_jax.ippo import distributions as dist
from espark_jax.ippo.batching import kmap
from espark_jax.ippo.evaluate import summarize
from espark_jax.ippo.networks import ActorCritic, init_stacked_params
from espark_jax.ippo.ppo import make_optimizer, make_update
from espark_jax.ippo.rollout import RolloutStats, Transition, apply_masks, policy_step
from espark_jax.ippo.train import (
    LearnerSet,
    LearnerState,
    TrainConfig,
    Trainer,
    _broadcast,
    _slot,
    _TimedJit,
)
from espark_jax.masks.safe import MaskFn, fallback_empty_rows

REWARD_SCALE = 0.01
"""Reward multiplier for SUMO (see the module doc); pass it as ``TrainConfig.reward_scale``."""

DEFAULT_NUM_ENVS = 2
"""Simulations per learner when none is given (one worker process each; small for 2-core machines)."""

TRAIN_SEED_RANGE = 1_000_000
SPLIT_SEEDS: dict[str, int] = {"train": 0, "validation": 1_000_000, "test": 2_000_000}
"""First SUMO seed of each evaluation split (episode ``e`` uses ``SPLIT_SEEDS[split] + e``)."""

EPISODE_METRICS = ("avg_delay", "avg_trip_time", "avg_waiting_time")
"""Tripinfo metrics reported per learner in training records and evaluations (seconds)."""


def is_host_env(env: Any) -> bool:
    """True for an environment whose ``reset``/``step`` run on the host (``spec.is_jax`` False)."""
    return not getattr(env.spec, "is_jax", True)


def make_env(name: str, n_learners: int, num_envs: int, **kwargs: Any) -> Any:
    """The environment for training ``n_learners`` x ``num_envs``.

    A JAX scenario is returned as built by :func:`envs_jax.make`. A host scenario is built with
    ``n_envs = n_learners * num_envs`` simulations (the first, one-simulation build only tells
    what kind of scenario ``name`` is, and is closed).
    """
    import envs_jax

    env = envs_jax.make(name, **kwargs)
    if not is_host_env(env):
        return env
    sims = int(n_learners) * int(num_envs)
    if getattr(env, "n_envs", None) == sims:
        return env
    env.close()
    return envs_jax.make(name, n_envs=sims, **kwargs)


def make_trainer(
    env: Any, config: TrainConfig, mask_fns: Sequence[MaskFn], progress: bool = False
) -> Any:
    """:class:`HostTrainer` for a host environment (``progress``: per-decision bars), else
    :class:`~espark_jax.ippo.train.Trainer` (whose progress bar is :func:`~espark_jax.ippo.train.train`'s)."""
    if is_host_env(env):
        return HostTrainer(env, config, mask_fns, progress=progress)
    return Trainer(env, config, mask_fns)


def combine_with_availability(mask: jax.Array, avail: jax.Array) -> jax.Array:
    """``mask AND avail`` per row; rows where that allows nothing fall back to ``avail``.

    Args:
        mask: ``[..., A]`` exploration mask (bool or 0/1).
        avail: ``[..., A]`` bool valid actions (at least one per row).

    Returns:
        ``[..., A]`` bool, a subset of ``avail`` with at least one True per row.
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
    """Mask contexts visited by a classic controller (default: MaxPressure), for the mask checks.

    Runs ``min(decisions, episode)`` decisions of one episode in all of ``env``'s simulations
    (seeds ``seed, seed + 1, ...``) and keeps the context of every ``every``-th decision.
    Returns field -> ``[n, *shape]`` numpy arrays (``n`` = kept decisions x simulations). The
    environment is left mid-episode (the trainer resets it before every episode).
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


class HostTrainer(LearnerSet):
    """K-parallel IPPO over a host environment with ``K x E`` simulations (see the module doc).

    Args:
        env: a host environment (``spec.is_jax`` False) with ``n_envs == K * config.num_envs``,
            ``reset(seeds)``, ``step(actions)``, ``mask_context()`` and ``avail_actions``.
        config: the :class:`~espark_jax.ippo.train.TrainConfig`; ``num_steps`` must be 0 or the
            episode length (one update = one episode); ``fuse_chunk`` and ``shard`` are ignored.
        mask_fns: K mask functions ``f(ctx, action_space) -> [I, A]``; K = len.
        progress: show a per-decision progress bar for every episode (training and evaluation).
    """

    def __init__(
        self, env: Any, config: TrainConfig, mask_fns: Sequence[MaskFn], progress: bool = False
    ) -> None:
        if not is_host_env(env):
            raise ValueError(
                f"{env.spec.name} is a JAX environment; use espark_jax.ippo.train.Trainer"
            )
        mask_fns = tuple(mask_fns)
        if not mask_fns:
            raise ValueError(
                "HostTrainer needs at least one mask function (use get_builtin_mask('none', spec))"
            )
        k, e = len(mask_fns), config.num_envs
        if env.n_envs != k * e:
            raise ValueError(
                f"{env.spec.name}: the environment has {env.n_envs} simulations but {k} learners x "
                f"{e} envs need {k * e}; build it with espark_jax.ippo.host.make_env(name, {k}, {e})"
            )
        episode = int(env.spec.episode_length["train"])
        if config.num_steps not in (0, episode):
            raise ValueError(
                f"host environments train on whole episodes: set num_steps to 0 or {episode}, "
                f"got {config.num_steps}"
            )
        avail = np.asarray(env.avail_actions, bool)
        if not avail.any(axis=-1).all():
            raise ValueError(f"{env.spec.name}: an agent has no available action")
        self.env, self.spec, self.config, self.progress = env, env.spec, config, progress
        self.num_steps = episode
        self.network = ActorCritic(env.spec.n_actions, config.hidden, config.activation)
        self.optimizer = make_optimizer(config.ppo)
        self.apply_fn = lambda params, obs: self.network.apply({"params": params}, obs)
        self.trace_counts: dict[str, int] = {"rollout": 0, "update": 0, "evaluate": 0}
        self.compile_seconds: dict[str, list[float]] = {}
        self.timings: dict[str, float] = {"env_s": 0.0, "policy_s": 0.0, "update_s": 0.0}
        self._action_space = jnp.asarray(env.spec.action_values, jnp.float32)
        update = make_update(
            self.apply_fn, self.optimizer, config.ppo, on_trace=self._count("update")
        )
        self._update = _TimedJit(update, "update", self.compile_seconds, donate=(0, 1))
        self._eval_act = _TimedJit(self._make_eval_act(), "evaluate", self.compile_seconds)
        self.mask_fns: tuple[MaskFn, ...] = ()
        self._programs: dict[tuple, _TimedJit] = {}
        self.set_masks(mask_fns)

    # ---------------------------------------------------------------- setup
    def set_masks(self, mask_fns: Sequence[MaskFn]) -> None:
        """Use new mask functions (same K): only the per-decision function is rebuilt.

        Programs are cached per tuple of mask functions (by identity).
        """
        mask_fns = tuple(mask_fns)
        if self.mask_fns and len(mask_fns) != len(self.mask_fns):
            raise ValueError(
                f"set_masks got {len(mask_fns)} masks for {len(self.mask_fns)} learners; "
                "build a new HostTrainer"
            )
        self.mask_fns = mask_fns
        if mask_fns not in self._programs:
            self._programs[mask_fns] = _TimedJit(
                self._make_act(mask_fns), "rollout", self.compile_seconds
            )
        self._act = self._programs[mask_fns]

    def _make_act(self, mask_fns: tuple[MaskFn, ...]) -> Callable:
        """``act(params, obs, ctx, avail, key, t) -> (action, log_prob, value, mask)`` for one decision."""
        n_envs, agent_shape, on_trace = (
            self.config.num_envs,
            tuple(self.spec.agent_shape),
            self._count("rollout"),
        )

        def act(params, obs, ctx, avail, key, t):
            on_trace()
            keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, t), 1 + n_envs))(
                key
            )  # [K, 1+E, 2]
            explore = apply_masks(mask_fns, ctx, keys[:, 1:], self._action_space, agent_shape)
            mask = combine_with_availability(explore, avail)
            action, log_prob, value = policy_step(self.apply_fn, params, obs, mask, keys[:, 0])
            return action, log_prob, value, mask

        return act

    def _make_eval_act(self) -> Callable:
        """``eval_act(params, obs, avail, key, t, greedy) -> action``: no exploration masks."""
        on_trace = self._count("evaluate")

        def eval_act(params, obs, avail, key, t, greedy):
            on_trace()
            logits, _ = kmap(self.apply_fn)(params, obs)
            sampled = dist.sample(
                jax.random.fold_in(key, t), logits, avail
            )  # one key: common random numbers
            return jnp.where(greedy, dist.mode(logits, avail), sampled)

        return eval_act

    # ---------------------------------------------------------------- state
    def init(self, key: jax.Array, params: Any = None, opt_state: Any = None) -> LearnerState:
        """K learners from one key; with ``params`` (one learner's), all K start from them (retention).

        Learner k uses ``jax.random.split(key, K)[k]``. The state's ``envs`` is None: the
        simulations live in the environment and every update starts a new episode.
        """
        return self.init_from_keys(jax.random.split(key, self.num_learners), params, opt_state)

    def init_from_keys(
        self, keys: jax.Array, params: Any = None, opt_state: Any = None
    ) -> LearnerState:
        """K learners, learner k from ``keys[k]``; optional single-learner ``params``/``opt_state``."""
        n_k = self.num_learners
        if keys.shape[0] != n_k:
            raise ValueError(f"init_from_keys needs {n_k} keys, got {keys.shape[0]}")
        k_init, k_run = jnp.moveaxis(jax.vmap(lambda k: jax.random.split(k, 2))(keys), 1, 0)
        params = (
            init_stacked_params(self.network, k_init, self.spec.obs_dim)
            if params is None
            else _broadcast(params, n_k)
        )
        opt_state = (
            jax.vmap(self.optimizer.init)(params)
            if opt_state is None
            else _broadcast(opt_state, n_k)
        )
        return LearnerState(
            params=params,
            opt_state=opt_state,
            envs=None,
            key=k_run,
            n_updates=jnp.zeros((n_k,), jnp.int32),
        )

    def retain(self, state: LearnerState, index: int, key: jax.Array) -> LearnerState:
        """Retention: learner ``index``'s parameters and optimizer state copied into all K slots."""
        return self.init(
            key, params=_slot(state.params, index), opt_state=_slot(state.opt_state, index)
        )

    # ---------------------------------------------------------------- training
    def _split_batch(self, x: np.ndarray) -> np.ndarray:
        """``[B, ...]`` -> ``[K, E, ...]``."""
        return x.reshape((self.num_learners, self.config.num_envs) + x.shape[1:])

    def rollout(
        self, state: LearnerState
    ) -> tuple[LearnerState, Transition, jax.Array, RolloutStats, jax.Array, dict]:
        """One episode of all ``K x E`` simulations under the current masks (no update).

        Returns ``(state, traj, last_value, stats, update_key, episode)``: ``traj`` has leaves
        ``[T, K, E, I, ...]``, ``last_value`` is zeros (the episode end is terminal), ``episode``
        maps each of :data:`EPISODE_METRICS` to the per-learner mean ``[K]`` over its simulations.
        """
        env, cfg = self.env, self.config
        n_k, n_e, n_i = self.num_learners, cfg.num_envs, self.spec.n_agents
        keys = jax.vmap(lambda k: jax.random.split(k, 4))(state.key)
        k_next, k_seed, k_act, k_upd = (keys[:, i] for i in range(4))
        seeds = np.asarray(
            jax.vmap(lambda k: jax.random.randint(k, (n_e,), 0, TRAIN_SEED_RANGE))(k_seed)
        ).reshape(-1)
        t0 = time.perf_counter()
        obs, _ = env.reset(seeds)
        avail = jax.device_put(self._split_batch(np.asarray(env.avail_actions, bool)))
        self.timings["env_s"] += time.perf_counter() - t0
        host: dict[str, list[np.ndarray]] = {"obs": [], "reward": [], "done": []}
        device: dict[str, list[jax.Array]] = {"action": [], "log_prob": [], "value": [], "mask": []}
        info: dict[str, Any] = {}
        for t in self._decisions("train episode"):
            t0 = time.perf_counter()
            ctx = jax.tree_util.tree_map(self._split_batch, env.mask_context())
            obs_k, ctx = jax.device_put((self._split_batch(obs), ctx))
            action, log_prob, value, mask = self._act(
                state.params, obs_k, ctx, avail, k_act, np.int32(t)
            )
            actions = np.asarray(action).reshape(n_k * n_e, n_i)
            t1 = time.perf_counter()
            next_obs, reward, done, info = env.step(actions)
            self.timings["policy_s"] += t1 - t0
            self.timings["env_s"] += time.perf_counter() - t1
            host["obs"].append(obs)
            host["reward"].append(reward)
            host["done"].append(done)
            for name, out in zip(device, (action, log_prob, value, mask)):
                device[name].append(out)
            obs = next_obs
        if not np.all(done) or "metrics" not in info:
            raise RuntimeError(
                f"{self.spec.name}: the episode did not end after {self.num_steps} decisions"
            )
        rewards = np.stack(host["reward"]).astype(np.float32)  # [T, B, I]
        shape = (self.num_steps, n_k, n_e)
        traj = Transition(
            obs=jnp.asarray(np.stack(host["obs"]).reshape(shape + (n_i, self.spec.obs_dim))),
            action=jnp.stack(device["action"]),
            log_prob=jnp.stack(device["log_prob"]),
            value=jnp.stack(device["value"]),
            reward=jnp.asarray((rewards * np.float32(cfg.reward_scale)).reshape(shape + (n_i,))),
            done=jnp.asarray(np.stack(host["done"]).reshape(shape)),
            mask=jnp.stack(device["mask"]),
        )
        returns = self._split_batch(rewards.sum(axis=(0, 2)))  # [K, E] unscaled episode returns
        stats = RolloutStats(
            mean_episode_return=jnp.asarray(returns.mean(axis=1), jnp.float32),
            episodes=jnp.full((n_k,), n_e, jnp.int32),
            allowed_fraction=jnp.mean(traj.mask, axis=(0, 2, 3, 4), dtype=jnp.float32),
        )
        episode = {
            m: self._split_batch(np.asarray(info["metrics"][m], np.float64)).mean(axis=1)
            for m in EPISODE_METRICS
        }
        last_value = jnp.zeros((n_k, n_e, n_i), jnp.float32)
        return state.replace(key=k_next), traj, last_value, stats, k_upd, episode

    def update(
        self, params: Any, opt_state: Any, traj: Transition, last_value: jax.Array, key: jax.Array
    ):
        """One PPO update of K learners from a rollout buffer (inputs are donated)."""
        t0 = time.perf_counter()
        out = self._update(params, opt_state, traj, last_value, key)
        jax.block_until_ready(out[0])
        self.timings["update_s"] += time.perf_counter() - t0
        return out

    def train_chunk(
        self, state: LearnerState, n_updates: int | None = None
    ) -> tuple[LearnerState, dict]:
        """Advance all K learners by ``n_updates`` episodes + updates (default ``config.updates_per_chunk``).

        Returns the new state and metrics ``{name: [U, K]}``: the PPO statistics, ``train_return``
        (unscaled), ``allowed_fraction`` (after the availability mask) and the training episodes'
        :data:`EPISODE_METRICS`.
        """
        history = []
        for _ in range(n_updates or self.config.updates_per_chunk):
            state, traj, last_value, stats, k_upd, episode = self.rollout(state)
            params, opt_state, metrics = self.update(
                state.params, state.opt_state, traj, last_value, k_upd
            )
            state = state.replace(params=params, opt_state=opt_state, n_updates=state.n_updates + 1)
            metrics = {
                **metrics,
                "train_return": stats.mean_episode_return,
                "allowed_fraction": stats.allowed_fraction,
                **{m: jnp.asarray(v, jnp.float32) for m, v in episode.items()},
            }
            history.append(metrics)
        return state, jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *history)

    # ---------------------------------------------------------------- evaluation
    def evaluate(
        self,
        params: Any,
        key: jax.Array,
        split: str | None = None,
        greedy: bool | None = None,
        num_envs: int | None = None,
        first_seed: int | None = None,
    ) -> dict[str, Any]:
        """Evaluate K' learners (params ``[K', ...]``, ``K'`` dividing ``B``) without exploration masks.

        Each learner gets ``B / K'`` simulations per round and at least ``num_envs`` (default
        ``config.eval_envs``) episodes, rounded up to fill whole rounds; episode ``e`` uses SUMO
        seed ``first_seed + e`` for every learner (default ``first_seed``: ``SPLIT_SEEDS[split]``).
        ``key`` drives the sampled policy only.

        Returns the dict of :meth:`Trainer.evaluate` (``split``, ``greedy``, ``return [K']``,
        ``return_std``, ``group_return``, ``components {name: {group: [K']}}``) plus ``metrics``
        and ``metrics_std`` (``{name: [K']}`` for :data:`EPISODE_METRICS`), ``episodes`` and
        ``first_seed``.
        """
        env, spec = self.env, self.spec
        split = split or self.config.eval_split
        greedy = self.config.eval_greedy if greedy is None else bool(greedy)
        wanted = int(num_envs or self.config.eval_envs)
        if split not in SPLIT_SEEDS:
            raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLIT_SEEDS)}")
        first_seed = SPLIT_SEEDS[split] if first_seed is None else int(first_seed)
        n_k = int(jax.tree_util.tree_leaves(params)[0].shape[0])
        if env.n_envs % n_k:
            raise ValueError(
                f"evaluate: {n_k} learners do not divide the {env.n_envs} simulations; pass the "
                f"parameters of 1 or {self.num_learners} learners"
            )
        per = env.n_envs // n_k
        rounds = max(1, math.ceil(wanted / per))
        onehot = np.eye(spec.n_groups)[np.asarray(spec.agent_group)]  # [I, G]
        avail = jax.device_put(
            np.asarray(env.avail_actions, bool).reshape(n_k, per, spec.n_agents, -1)
        )
        raw: dict[str, list] = {"return": [], "group_return": [], "components": [], "metrics": []}
        for r in range(rounds):
            obs, _ = env.reset(first_seed + r * per + np.tile(np.arange(per), n_k))
            rewards = np.zeros((env.n_envs, spec.n_agents))
            comps = {c: np.zeros((env.n_envs, spec.n_agents)) for c in spec.reward_components}
            for t in self._decisions(f"eval {split}"):
                obs_k = jax.device_put(obs.reshape(n_k, per, *obs.shape[1:]))
                action = self._eval_act(
                    params, obs_k, avail, key, np.int32(r * self.num_steps + t), np.bool_(greedy)
                )
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

        def by_learner(
            parts: list[np.ndarray],
        ) -> np.ndarray:  # rounds of [B, ...] -> [K', episodes, ...]
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

    # ---------------------------------------------------------------- bookkeeping
    def _decisions(self, desc: str) -> Any:
        if not self.progress:
            return range(self.num_steps)
        from tqdm.auto import tqdm

        return tqdm(range(self.num_steps), desc=desc, unit="dec", leave=False, dynamic_ncols=True)

    def agent_steps_per_update(self) -> int:
        """Training agent-steps of ONE learner in one update (T x E x n_agents)."""
        return self.num_steps * self.config.num_envs * self.spec.n_agents
