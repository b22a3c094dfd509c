"""The one K-parallel IPPO trainer (K learners, each under its own mask function) and its driver.

A :class:`Trainer` owns what every environment kind shares: the network, parameters and
optimiser states with a leading K axis, K-axis initialisation, retention, mask sets, chunks of
updates, the PPO update (compiled once per trainer, whatever the masks), learner checkpoints and
the compile/trace log. What differs between environment kinds is only its rollout source
(:class:`RolloutSource`): a jitted scan for JAX environments
(:class:`~espark_jax.ippo.jax_source.JaxSource`) or worker-driven steps for host environments
(:class:`~espark_jax.ippo.host_source.HostSource`). Build one with :func:`espark_jax.ippo.make`.

:func:`train` drives any trainer: chunks of updates (one host sync per chunk), one JSON line of
per-learner metrics per chunk, evaluation checkpoints, selection scores.
"""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from espark_jax.checkpoints import restore_tree, save_tree
from espark_jax.ippo import sharding as shd
from espark_jax.ippo.compiled import ProgramLog, TimedJit
from espark_jax.ippo.core import LearnerState, RolloutSource, TrainConfig, broadcast, select_slot
from espark_jax.ippo.networks import init_stacked_params, param_shapes
from espark_jax.ippo.ppo import make_optimizer, make_update
from espark_jax.ippo.records import TrainResult, chunk_record, fmt_best, selection_scores
from espark_jax.ippo.recurrent import make_network
from espark_jax.ippo.rollout import RolloutStats
from espark_jax.masks.safe import MaskFn


class Trainer:
    """K-parallel IPPO over one rollout source and one configuration (see the module doc).

    Typical use::

        trainer = espark_jax.ippo.make(env, TrainConfig(num_envs=16), mask_fns)  # K = len
        state = trainer.init(jax.random.PRNGKey(0))
        state, metrics = trainer.train_chunk(state, 10)          # all K advance by 10 updates
        ev = trainer.evaluate(state.params, jax.random.PRNGKey(1))  # no masks, validation
        trainer.set_masks(new_mask_fns)                          # next eSpark iteration
        state = trainer.retain(state, best_slot, jax.random.PRNGKey(2))

    Args:
        source: the rollout source of the environment.
        config: the :class:`TrainConfig` (``reward_scale`` resolved).
        mask_fns: K mask functions ``f(ctx, action_space) -> [*agent_shape, A]``; K = len.
        devices: devices to shard over (default: all visible, when ``config.shard``).
    """

    def __init__(
        self,
        source: RolloutSource,
        config: TrainConfig,
        mask_fns: Sequence[MaskFn],
        devices: Sequence[Any] | None = None,
    ) -> None:
        if config.reward_scale is None:
            raise ValueError("TrainConfig.reward_scale is None; build trainers with ippo.make")
        self.source, self.env, self.spec, self.config = source, source.env, source.env.spec, config
        self.network, self.apply_fn = make_network(config, self.spec.n_actions)
        self.optimizer = make_optimizer(config.ppo)
        self.log = ProgramLog()
        self.mesh = None
        self._devices = devices
        update = make_update(
            self.apply_fn, self.optimizer, config.ppo, on_trace=self.log.counter("update")
        )
        self._update_fn = self._constrained_update(update)
        self._update = TimedJit(self._update_fn, "update", self.log, donate=(0, 1))
        self._inner_update = jax.jit(self._update_fn)  # inside fused chunks: one trace
        self._chunks: dict[tuple, TimedJit] = {}
        self.mask_fns: tuple[MaskFn, ...] = ()
        source.bind(self)
        self.num_steps = source.num_steps
        self.set_masks(mask_fns)

    @property
    def compile_seconds(self) -> dict[str, list[float]]:
        """Compile seconds per program (``rollout``, ``update``, ``chunk``, ``evaluate`` ...)."""
        return self.log.compile_seconds

    @property
    def trace_counts(self) -> dict[str, int]:
        """Traces per program; the update is traced once per trainer."""
        return self.log.trace_counts

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per activity of a host source (environment, policy, update)."""
        return self.source.timings

    @property
    def num_learners(self) -> int:
        """K, the number of learners (= number of mask functions)."""
        return len(self.mask_fns)

    # ---------------------------------------------------------------- masks
    def set_masks(self, mask_fns: Sequence[MaskFn]) -> None:
        """Use new mask functions (same K): only the rollout is rebuilt; the update is kept.

        Rollout programs are cached per tuple of mask functions (by identity), so switching back
        to an earlier mask set does not compile again.
        """
        mask_fns = tuple(mask_fns)
        if not mask_fns:
            raise ValueError("a trainer needs at least one mask function (masks.safe.all_ones)")
        if self.mask_fns and len(mask_fns) != len(self.mask_fns):
            raise ValueError(
                f"set_masks got {len(mask_fns)} masks for {len(self.mask_fns)} learners; "
                "build a new Trainer"
            )
        if not self.mask_fns:
            self.source.check(len(mask_fns))
            if self.config.shard and self.source.shardable:
                self.mesh = shd.make_mesh(len(mask_fns), self.config.num_envs, self._devices)
        self.mask_fns = mask_fns
        self.source.set_masks(mask_fns)

    # ---------------------------------------------------------------- state
    def init(self, key: jax.Array, params: Any = None, opt_state: Any = None) -> LearnerState:
        """K learners from one key; with ``params`` (one learner's), all K start from them.

        Learner k uses ``jax.random.split(key, K)[k]``, so slot k equals a one-learner trainer
        initialised by :meth:`init_from_keys` with that key.
        """
        return self.init_from_keys(jax.random.split(key, self.num_learners), params, opt_state)

    def init_from_keys(
        self, keys: jax.Array, params: Any = None, opt_state: Any = None
    ) -> LearnerState:
        """K learners, learner k from ``keys[k]``; optional one-learner ``params``/``opt_state``."""
        n_k = self.num_learners
        if keys.shape[0] != n_k:
            raise ValueError(f"init_from_keys needs {n_k} keys, got {keys.shape[0]}")
        k_init, k_env, k_run = jnp.moveaxis(jax.vmap(lambda k: jax.random.split(k, 3))(keys), 1, 0)
        if params is None:
            params = init_stacked_params(self.network, k_init, self.spec.obs_dim)
        else:
            params = broadcast(params, n_k)
        if opt_state is None:
            opt_state = jax.vmap(self.optimizer.init)(params)
        else:
            opt_state = broadcast(opt_state, n_k)
        env_keys = jax.vmap(lambda k: jax.random.split(k, self.config.num_envs))(k_env)
        state = LearnerState(
            params=params,
            opt_state=opt_state,
            envs=self.source.reset(env_keys),
            key=k_run,
            n_updates=jnp.zeros((n_k,), jnp.int32),
        )
        return self.place(state)

    def init_slots(self, key: jax.Array, learners: Sequence[dict[str, Any] | None]) -> LearnerState:
        """K learners from one key, as :meth:`init`; slot k starts from ``learners[k]``
        (``{"params", "opt_state"}`` of one learner) when it is given, fresh otherwise."""
        if len(learners) != self.num_learners:
            raise ValueError(f"init_slots needs {self.num_learners} entries, got {len(learners)}")
        state = self.init(key)
        if all(learner is None for learner in learners):
            return state
        fresh = shd.fetch({"params": state.params, "opt_state": state.opt_state})

        def stack(path: str) -> Any:
            def pick(k: int) -> Any:
                given = learners[k]
                source = shd.fetch(given[path]) if given is not None else None
                return source if source is not None else select_slot(fresh[path], k)

            slots = [pick(k) for k in range(self.num_learners)]
            return jax.tree_util.tree_map(
                lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *slots
            )

        return self.place(state.replace(params=stack("params"), opt_state=stack("opt_state")))

    def retain(self, state: LearnerState, slot: int, key: jax.Array) -> LearnerState:
        """Retention: the parameters and optimizer state in ``slot`` copied into all K
        slots, with fresh environments and keys from ``key``."""
        learner = self.learner(state, slot)
        return self.init(key, params=learner["params"], opt_state=learner["opt_state"])

    def place(self, state: LearnerState) -> LearnerState:
        """Put a learner state on the trainer's devices (sharded when a mesh is in use)."""
        if self.mesh is None:
            return state
        return jax.device_put(state, self.state_shardings(state))

    def state_shardings(self, state: LearnerState) -> LearnerState:
        """The ``NamedSharding`` of every leaf of a learner state over the trainer's mesh."""
        learners = lambda tree: shd.learner_shardings(tree, self.mesh)  # noqa: E731
        return LearnerState(
            params=learners(state.params),
            opt_state=learners(state.opt_state),
            envs=shd.env_shardings(state.envs, self.mesh),
            key=learners(state.key),
            n_updates=learners(state.n_updates),
        )

    # ---------------------------------------------------------------- training
    def _constrained_update(self, update: Any) -> Any:
        def constrained(params, opt_state, traj, last_value, key):
            params, opt_state, metrics = update(params, opt_state, traj, last_value, key)
            if self.mesh is not None:
                params = shd.constrain(params, shd.learner_shardings(params, self.mesh))
                opt_state = shd.constrain(opt_state, shd.learner_shardings(opt_state, self.mesh))
            return params, opt_state, metrics

        return constrained

    @staticmethod
    def _finish(
        state: LearnerState,
        params: Any,
        opt_state: Any,
        metrics: dict,
        stats: RolloutStats,
        extras: dict,
    ) -> tuple[LearnerState, dict]:
        state = state.replace(params=params, opt_state=opt_state, n_updates=state.n_updates + 1)
        metrics = dict(metrics)
        metrics["train_return"] = stats.mean_episode_return
        metrics["allowed_fraction"] = stats.allowed_fraction
        metrics.update({name: jnp.asarray(v, jnp.float32) for name, v in extras.items()})
        return state, metrics

    def _fused_chunk(self, n_updates: int) -> TimedJit:
        sig = (self.mask_fns, n_updates)
        if sig not in self._chunks:
            phase = self.source.phase

            def chunk(state: LearnerState, env_params: Any):
                def one(state, _):
                    state, traj, last_value, stats, k_upd = phase(state, env_params)
                    params, opt_state, metrics = self._inner_update(
                        state.params, state.opt_state, traj, last_value, k_upd
                    )
                    return self._finish(state, params, opt_state, metrics, stats, {})

                return jax.lax.scan(one, state, None, length=n_updates)

            self._chunks[sig] = TimedJit(chunk, "chunk", self.log, donate=(0,))
        return self._chunks[sig]

    def train_chunk(
        self, state: LearnerState, n_updates: int | None = None
    ) -> tuple[LearnerState, dict]:
        """Advance all K learners by ``n_updates`` (default ``config.updates_per_chunk``).

        Returns the new state and metrics ``{name: [U, K]}`` (device arrays; nothing is synced):
        the PPO statistics, ``train_return`` (unscaled), ``allowed_fraction`` and the source's
        extras (SUMO: the training episodes' trip metrics). The input state's buffers are
        donated: do not reuse ``state`` afterwards.
        """
        n_updates = n_updates or self.config.updates_per_chunk
        if self.config.fuse_chunk and self.source.phase is not None:
            return self._fused_chunk(n_updates)(state, self.source.train_params)
        history = []
        for _ in range(n_updates):
            state, traj, last_value, stats, k_upd, extras = self.rollout(state)
            params, opt_state, metrics = self.update(
                state.params, state.opt_state, traj, last_value, k_upd
            )
            state, metrics = self._finish(state, params, opt_state, metrics, stats, extras)
            history.append(metrics)
        return state, jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *history)

    def rollout(self, state: LearnerState) -> tuple:
        """One rollout (no update): ``(state, traj [T, K, E, ...], last_value, stats,
        update_key, extras)``; the input state is donated."""
        return self.source.rollout(state)

    def update(
        self, params: Any, opt_state: Any, traj: Any, last_value: jax.Array, key: jax.Array
    ) -> tuple:
        """One PPO update of K learners from a rollout buffer (inputs are donated)."""
        if not self.source.blocking:
            return self._update(params, opt_state, traj, last_value, key)
        start = time.perf_counter()
        out = self._update(params, opt_state, traj, last_value, key)
        jax.block_until_ready(out[0])
        self.source.timings["update_s"] = (
            self.source.timings.get("update_s", 0.0) + time.perf_counter() - start
        )
        return out

    # ---------------------------------------------------------------- evaluation
    def evaluate(
        self,
        params: Any,
        key: jax.Array,
        split: str | None = None,
        greedy: bool | None = None,
        num_envs: int | None = None,
        masked: bool = False,
        **options: Any,
    ) -> dict[str, Any]:
        """Evaluate learners (params ``[K', ...]``) without masks; JSON-ready means.

        ``masked=True`` is a diagnostic: learner k acts under its current training mask.
        ``options`` go to the source (SUMO: ``first_seed``).
        Returns ``{"split", "greedy", "return": [K'], "return_std": [K'],
        "group_return": {group: [K']}, "components": {name: {group: [K']}}}`` plus what the
        source adds (SUMO: ``metrics``, ``episodes``, ``first_seed``).
        """
        split = split or self.config.eval_split
        if split not in self.spec.episode_length:
            raise ValueError(
                f"unknown split {split!r}; use one of {sorted(self.spec.episode_length)}"
            )
        greedy = self.config.eval_greedy if greedy is None else bool(greedy)
        num_envs = int(num_envs or self.config.eval_envs)
        evaluate = shd.per_process(self.source.evaluate, params)  # each process its own learners
        return evaluate(params, key, split, greedy, num_envs, masked, **options)

    def record_contexts(self, key: jax.Array) -> dict[str, Any]:
        """Mask contexts visited by the source's reference policy, for the mask checks."""
        return self.source.record_contexts(key)

    # ---------------------------------------------------------------- checkpoints
    def learner(self, state: LearnerState, slot: int) -> dict[str, Any]:
        """The learner in ``slot`` as ``{"params", "opt_state"}`` (what a checkpoint holds)."""
        params, opt_state = select_slot(state.params, slot), select_slot(state.opt_state, slot)
        return shd.host_local({"params": params, "opt_state": opt_state})

    def learner_template(self) -> dict[str, Any]:
        """Shapes and dtypes of :meth:`learner`'s result, computed without initialising."""
        params = param_shapes(self.network, self.spec.obs_dim)
        return {"params": params, "opt_state": jax.eval_shape(self.optimizer.init, params)}

    def save_learner(self, path: Any, learner: dict[str, Any]) -> None:
        """Write one learner checkpoint atomically (:func:`espark_jax.checkpoints.save_tree`)."""
        save_tree(path, learner)

    def load_learner(self, path: Any) -> dict[str, Any]:
        """Restore a checkpoint written by :meth:`save_learner` for this network."""
        return restore_tree(path, self.learner_template())

    # ---------------------------------------------------------------- bookkeeping
    def agent_steps_per_update(self) -> int:
        """Training agent-steps of ONE learner in one update (T x E x n_agents)."""
        return self.num_steps * self.config.num_envs * self.spec.n_agents


def train(
    trainer: Trainer,
    state: LearnerState,
    key: jax.Array,
    num_updates: int | None = None,
    metrics_path: str | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train K learners for ``num_updates`` updates with periodic evaluation checkpoints.

    Chunks of ``config.updates_per_chunk`` updates run on device; after each chunk one JSON line
    of training metrics (per learner means over the chunk) is appended to ``metrics_path``, and
    every ``config.eval_every`` updates (and at the end) the learners are evaluated without masks
    on ``config.eval_split`` (one ``"kind": "eval"`` line). A tqdm bar shows progress.
    """
    from tqdm.auto import tqdm

    cfg = trainer.config
    num_updates = num_updates or cfg.num_updates
    start = time.perf_counter()
    evals: list[dict[str, Any]] = []
    sink = open(metrics_path, "a") if metrics_path else None
    done, next_eval = 0, cfg.eval_every
    try:
        with tqdm(
            total=num_updates, desc=desc, unit="upd", disable=not progress, dynamic_ncols=True
        ) as bar:
            while done < num_updates:
                n = min(cfg.updates_per_chunk, num_updates - done)
                t0 = time.perf_counter()
                state, metrics = trainer.train_chunk(state, n)
                jax.block_until_ready(state.n_updates)
                done += n
                record = chunk_record(metrics, done, trainer, time.perf_counter() - t0, n)
                records = [record]
                if done >= next_eval or done == num_updates:
                    key, k_eval = jax.random.split(key)
                    ev = trainer.evaluate(state.params, k_eval)
                    ev = {"kind": "eval", "update": done, "env_steps": record["env_steps"], **ev}
                    evals.append(ev)
                    records.append(ev)
                    while next_eval <= done:
                        next_eval += cfg.eval_every
                if sink is not None:
                    for r in records:
                        sink.write(json.dumps(r) + "\n")
                    sink.flush()
                postfix = {"train": fmt_best(record.get("train_return"))}
                if evals:
                    postfix["eval"] = fmt_best(evals[-1]["return"])
                bar.set_postfix(postfix)
                bar.update(n)
    finally:
        if sink is not None:
            sink.close()
    return TrainResult(
        state=state,
        evals=evals,
        scores=selection_scores(evals, cfg.select_last),
        seconds=time.perf_counter() - start,
    )
