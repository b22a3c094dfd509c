"""K-parallel IPPO: K learners, each under its own mask function, trained together.

Typical use::

    trainer = Trainer(env, TrainConfig(num_envs=16), [get_builtin_mask("none", env.spec)] * 16)
    state = trainer.init(jax.random.PRNGKey(0))                 # K fresh learners
    state, metrics = trainer.train_chunk(state, 10)              # all K advance by 10 updates
    ev = trainer.evaluate(state.params, jax.random.PRNGKey(1))   # no masks, validation split
    trainer.set_masks(new_mask_fns)                              # next eSpark iteration:
    state = trainer.retain(state, best_k, jax.random.PRNGKey(2)) # best learner into every slot

Compiled programs. The rollout depends on the mask functions and is rebuilt by
:meth:`Trainer.set_masks`; the PPO update reads masks from the buffer and is built once per
trainer. With ``fuse_chunk=True`` a chunk of U updates is ONE jitted program (a ``lax.scan``
over U x (rollout; update)); the update's trace is reused across mask sets, but XLA compiles the
fused program again for each mask set. With ``fuse_chunk=False`` the rollout and the update are
two executables dispatched U times asynchronously (no host synchronisation inside a chunk), and
the update is compiled exactly once per trainer. ``Trainer.compile_seconds`` and
``Trainer.trace_counts`` record both.

Reward scaling: rewards enter the buffer multiplied by ``reward_scale`` (default 1e-3: MABIM
rewards are 1e0-1e3 per agent and day, so scaled values and returns stay O(0.01-10)). Reported
returns are always unscaled.

Episodes: the rollout length defaults to the train episode length and environments auto-reset, so
with MABIM's fixed-length episodes one update = one whole episode of E environments per learner.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from espark_jax.ippo import sharding as shd
from espark_jax.ippo.evaluate import make_evaluate, summarize
from espark_jax.ippo.networks import ActorCritic, init_stacked_params
from espark_jax.ippo.ppo import PPOConfig, make_optimizer, make_update
from espark_jax.ippo.rollout import EnvBatch, make_rollout, reset_envs
from espark_jax.masks.safe import MaskFn


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes the compiled programs and the training schedule.

    Attributes:
        num_envs: environments per learner (E).
        num_steps: rollout length per update; 0 means the train episode length.
        num_updates: updates per learner done by :func:`train`.
        updates_per_chunk: updates per :meth:`Trainer.train_chunk` call (U).
        hidden, activation: actor and critic MLP torsos.
        reward_scale: multiplier applied to rewards before PPO (see the module doc).
        ppo: PPO hyper-parameters.
        eval_every: evaluate every this many updates (and at the end).
        eval_envs: environments per evaluation.
        eval_split: split used for the periodic evaluation (and the selection score).
        eval_greedy: greedy (True) or sampled (False) periodic evaluation.
        select_last: selection score = mean evaluation return over this many last checkpoints.
        fuse_chunk: one jitted program per chunk (True), or the rollout and the update as two
            programs dispatched U times without host synchronisation (False, the default: the
            update then compiles once per trainer, whatever the mask functions).
        shard: spread K (and E) over all visible devices when there are several.
    """

    num_envs: int = 8
    num_steps: int = 0
    num_updates: int = 100
    updates_per_chunk: int = 5
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    reward_scale: float = 1e-3
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    eval_every: int = 10
    eval_envs: int = 4
    eval_split: str = "validation"
    eval_greedy: bool = True
    select_last: int = 3
    fuse_chunk: bool = False
    shard: bool = True

    def __post_init__(self) -> None:
        for name in (
            "num_envs",
            "num_updates",
            "updates_per_chunk",
            "eval_every",
            "eval_envs",
            "select_last",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_steps < 0:
            raise ValueError("TrainConfig.num_steps must be >= 0 (0 = the train episode length)")
        if isinstance(self.ppo, dict):  # from JSON
            object.__setattr__(self, "ppo", PPOConfig(**self.ppo))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inverse: ``TrainConfig(**d)``)."""
        return dataclasses.asdict(self)


@flax.struct.dataclass
class LearnerState:
    """K learners: every leaf has a leading K axis (environment leaves ``[K, E, ...]``)."""

    params: Any
    opt_state: Any
    envs: EnvBatch
    key: jax.Array  # [K, 2]
    n_updates: jax.Array  # [K] int32


class _TimedJit:
    """``jax.jit`` with explicit ahead-of-time compilation, timed, one executable per input signature."""

    def __init__(
        self, fn: Callable, name: str, log: dict[str, list[float]], donate: tuple[int, ...] = ()
    ):
        self.jitted = jax.jit(fn, donate_argnums=donate)
        self._name, self._log = name, log
        self._executables: dict[Any, Any] = {}

    def __call__(self, *args: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(args)
        sig = (
            treedef,
            tuple((np.shape(x), _dtype(x), getattr(x, "sharding", None)) for x in leaves),
        )
        exe = self._executables.get(sig)
        if exe is None:
            start = time.perf_counter()
            exe = self.jitted.lower(*args).compile()
            self._log.setdefault(self._name, []).append(time.perf_counter() - start)
            self._executables[sig] = exe
        return exe(*args)


def _dtype(x: Any) -> Any:
    dtype = getattr(x, "dtype", None)
    return (
        (dtype, bool(getattr(x, "weak_type", False))) if dtype is not None else np.asarray(x).dtype
    )


def _slot(tree: Any, index: int) -> Any:
    return jax.tree_util.tree_map(lambda x: x[index], tree)


def _broadcast(tree: Any, k: int) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (k,) + jnp.shape(x)), tree)


class LearnerSet:
    """What every K-learner trainer shares: ``mask_fns`` (one per learner) and trace counters."""

    mask_fns: tuple[MaskFn, ...]
    trace_counts: dict[str, int]

    @property
    def num_learners(self) -> int:
        """K, the number of learners (= number of mask functions)."""
        return len(self.mask_fns)

    def _count(self, name: str) -> Callable[[], None]:
        """A callback that counts traces of the program ``name`` (called at trace time)."""

        def bump() -> None:
            self.trace_counts[name] += 1

        return bump


class Trainer(LearnerSet):
    """K-parallel IPPO for one environment and one configuration (see the module doc).

    Args:
        env: a JAX environment honouring ``envs_jax.core.MultiAgentEnv``.
        config: the :class:`TrainConfig`.
        mask_fns: K mask functions ``f(ctx, action_space) -> [*agent_shape, A]``; K = len.
        devices: devices to shard over (default: all visible, when ``config.shard``).
    """

    def __init__(
        self,
        env: Any,
        config: TrainConfig,
        mask_fns: Sequence[MaskFn],
        devices: Sequence[Any] | None = None,
    ):
        if not getattr(env.spec, "is_jax", True):
            raise ValueError(
                f"{env.spec.name} is a host environment; Trainer needs a JAX environment"
            )
        self.env, self.spec, self.config = env, env.spec, config
        self.network = ActorCritic(env.spec.n_actions, config.hidden, config.activation)
        self.optimizer = make_optimizer(config.ppo)
        self.num_steps = config.num_steps or int(env.spec.episode_length["train"])
        self.train_params = env.default_params("train")
        self.trace_counts: dict[str, int] = {"rollout": 0, "update": 0}
        self.compile_seconds: dict[str, list[float]] = {}
        self._devices = devices
        self._eval_fns: dict[tuple, _TimedJit] = {}
        self._eval_params: dict[str, Any] = {}
        self.apply_fn = lambda params, obs: self.network.apply({"params": params}, obs)
        update = make_update(
            self.apply_fn, self.optimizer, config.ppo, on_trace=self._count("update")
        )
        self._update_fn = self._constrained_update(update)
        self._update = _TimedJit(self._update_fn, "update", self.compile_seconds, donate=(0, 1))
        self._inner_update = jax.jit(
            self._update_fn
        )  # used inside fused chunks: one trace per trainer
        self._reset = _TimedJit(
            lambda keys, p: reset_envs(env, keys, p), "reset", self.compile_seconds
        )
        self.mask_fns: tuple[MaskFn, ...] = ()
        self._programs: dict[tuple, tuple] = {}
        self.set_masks(mask_fns)

    # ---------------------------------------------------------------- setup
    def set_masks(self, mask_fns: Sequence[MaskFn]) -> None:
        """Use new mask functions (same K): only the rollout is rebuilt; the update is kept.

        Rollout programs are cached per tuple of mask functions (by identity), so switching back
        to an earlier mask set does not compile again.
        """
        mask_fns = tuple(mask_fns)
        if not mask_fns:
            raise ValueError(
                "Trainer needs at least one mask function (use get_builtin_mask('none', spec))"
            )
        if self.mask_fns and len(mask_fns) != len(self.mask_fns):
            raise ValueError(
                f"set_masks got {len(mask_fns)} masks for {len(self.mask_fns)} learners; build a new Trainer"
            )
        if not self.mask_fns:
            self.mesh = (
                shd.make_mesh(len(mask_fns), self.config.num_envs, self._devices)
                if self.config.shard
                else None
            )
        self.mask_fns = mask_fns
        if mask_fns not in self._programs:
            rollout = make_rollout(
                self.env,
                self.apply_fn,
                mask_fns,
                self.num_steps,
                self.config.reward_scale,
                on_trace=self._count("rollout"),
            )
            phase = self._rollout_phase(rollout)
            self._programs[mask_fns] = (
                phase,
                _TimedJit(phase, "rollout", self.compile_seconds, donate=(0,)),
                {},
            )
        self._rollout_fn, self._rollout, self._chunks = self._programs[mask_fns]

    # ---------------------------------------------------------------- state
    def init(self, key: jax.Array, params: Any = None, opt_state: Any = None) -> LearnerState:
        """K learners from one key; with ``params`` (one learner's), all K start from them (retention).

        Learner k uses ``jax.random.split(key, K)[k]``, so slot k equals a one-learner trainer
        initialised by :meth:`init_from_keys` with that key.
        """
        return self.init_from_keys(jax.random.split(key, self.num_learners), params, opt_state)

    def init_from_keys(
        self, keys: jax.Array, params: Any = None, opt_state: Any = None
    ) -> LearnerState:
        """K learners, learner k from ``keys[k]``; optional single-learner ``params``/``opt_state``."""
        n_k = self.num_learners
        if keys.shape[0] != n_k:
            raise ValueError(f"init_from_keys needs {n_k} keys, got {keys.shape[0]}")
        k_init, k_env, k_run = jnp.moveaxis(jax.vmap(lambda k: jax.random.split(k, 3))(keys), 1, 0)
        if params is None:
            params = init_stacked_params(self.network, k_init, self.spec.obs_dim)
        else:
            params = _broadcast(params, n_k)
        if opt_state is None:
            opt_state = jax.vmap(self.optimizer.init)(params)
        else:
            opt_state = _broadcast(opt_state, n_k)
        env_keys = jax.vmap(lambda k: jax.random.split(k, self.config.num_envs))(k_env)
        envs = self._reset(env_keys, self.train_params)
        state = LearnerState(
            params=params,
            opt_state=opt_state,
            envs=envs,
            key=k_run,
            n_updates=jnp.zeros((n_k,), jnp.int32),
        )
        return self.place(state)

    def retain(self, state: LearnerState, index: int, key: jax.Array) -> LearnerState:
        """Retention: learner ``index``'s parameters and optimizer state copied into all K slots,
        with fresh environments and keys from ``key``."""
        return self.init(
            key, params=_slot(state.params, index), opt_state=_slot(state.opt_state, index)
        )

    def place(self, state: LearnerState) -> LearnerState:
        """Put a learner state on the trainer's devices (sharded when a mesh is in use)."""
        if self.mesh is None:
            return state
        return jax.device_put(state, self._state_shardings(state))

    def _state_shardings(self, state: LearnerState) -> LearnerState:
        return LearnerState(
            params=shd.learner_shardings(state.params, self.mesh),
            opt_state=shd.learner_shardings(state.opt_state, self.mesh),
            envs=shd.env_shardings(state.envs, self.mesh),
            key=shd.learner_shardings(state.key, self.mesh),
            n_updates=shd.learner_shardings(state.n_updates, self.mesh),
        )

    # ---------------------------------------------------------------- programs
    def _rollout_phase(self, rollout: Callable) -> Callable:
        def phase(state: LearnerState, env_params: Any):
            keys = jax.vmap(lambda k: jax.random.split(k, 3))(state.key)
            k_next, k_roll, k_upd = keys[:, 0], keys[:, 1], keys[:, 2]
            envs, traj, last_value, stats = rollout(state.params, state.envs, k_roll, env_params)
            state = state.replace(envs=envs, key=k_next)
            if self.mesh is not None:
                state = shd.constrain(state, self._state_shardings(state))
                traj = shd.constrain(traj, shd.buffer_shardings(traj, self.mesh))
            return state, traj, last_value, stats, k_upd

        return phase

    def _constrained_update(self, update: Callable) -> Callable:
        def constrained(params, opt_state, traj, last_value, key):
            params, opt_state, metrics = update(params, opt_state, traj, last_value, key)
            if self.mesh is not None:
                params = shd.constrain(params, shd.learner_shardings(params, self.mesh))
                opt_state = shd.constrain(opt_state, shd.learner_shardings(opt_state, self.mesh))
            return params, opt_state, metrics

        return constrained

    @staticmethod
    def _finish(
        state: LearnerState, params, opt_state, metrics, stats
    ) -> tuple[LearnerState, dict]:
        state = state.replace(params=params, opt_state=opt_state, n_updates=state.n_updates + 1)
        metrics = dict(metrics)
        metrics["train_return"] = stats.mean_episode_return
        metrics["allowed_fraction"] = stats.allowed_fraction
        return state, metrics

    def _fused_chunk(self, n_updates: int) -> _TimedJit:
        if n_updates not in self._chunks:

            def chunk(state: LearnerState, env_params: Any):
                def one(state, _):
                    state, traj, last_value, stats, k_upd = self._rollout_fn(state, env_params)
                    params, opt_state, metrics = self._inner_update(
                        state.params, state.opt_state, traj, last_value, k_upd
                    )
                    return self._finish(state, params, opt_state, metrics, stats)

                return jax.lax.scan(one, state, None, length=n_updates)

            self._chunks[n_updates] = _TimedJit(chunk, "chunk", self.compile_seconds, donate=(0,))
        return self._chunks[n_updates]

    def train_chunk(
        self, state: LearnerState, n_updates: int | None = None
    ) -> tuple[LearnerState, dict]:
        """Advance all K learners by ``n_updates`` (default ``config.updates_per_chunk``) updates.

        Returns the new state and metrics ``{name: [U, K]}`` (device arrays; nothing is synced).
        The input state's buffers are donated: do not reuse ``state`` afterwards.
        """
        n_updates = n_updates or self.config.updates_per_chunk
        if self.config.fuse_chunk:
            return self._fused_chunk(n_updates)(state, self.train_params)
        history = []
        for _ in range(n_updates):
            state, traj, last_value, stats, k_upd = self._rollout(state, self.train_params)
            params, opt_state, metrics = self._update(
                state.params, state.opt_state, traj, last_value, k_upd
            )
            state, metrics = self._finish(state, params, opt_state, metrics, stats)
            history.append(metrics)
        return state, jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *history)

    def rollout(self, state: LearnerState):
        """One rollout (no update): ``(state, traj [T, K, E, ...], last_value, stats, update_key)``."""
        return self._rollout(state, self.train_params)

    def update(self, params: Any, opt_state: Any, traj: Any, last_value: jax.Array, key: jax.Array):
        """One PPO update of K learners from a rollout buffer (inputs are donated)."""
        return self._update(params, opt_state, traj, last_value, key)

    # ---------------------------------------------------------------- evaluation
    def evaluate(
        self,
        params: Any,
        key: jax.Array,
        split: str | None = None,
        greedy: bool | None = None,
        num_envs: int | None = None,
        masked: bool = False,
    ) -> dict[str, Any]:
        """Evaluate K learners (params ``[K, ...]``) without masks; JSON-ready means over environments.

        ``masked=True`` is a diagnostic: learner k acts under its current training mask (pi_E).
        Returns ``{"split", "greedy", "masked", "return": [K], "return_std": [K],
        "group_return": {group: [K]}, "components": {name: {group: [K]}}}``.
        """
        split = split or self.config.eval_split
        greedy = self.config.eval_greedy if greedy is None else greedy
        num_envs = num_envs or self.config.eval_envs
        if split not in self.spec.episode_length:
            raise ValueError(
                f"unknown split {split!r}; use one of {sorted(self.spec.episode_length)}"
            )
        if split not in self._eval_params:
            self._eval_params[split] = self.env.default_params(split)
        masks = self.mask_fns if masked else None
        sig = (split, num_envs, masks)
        if sig not in self._eval_fns:
            fn = make_evaluate(
                self.env, self.apply_fn, int(self.spec.episode_length[split]), num_envs, masks
            )
            self._eval_fns[sig] = _TimedJit(fn, "evaluate", self.compile_seconds)
        raw = self._eval_fns[sig](params, key, self._eval_params[split], jnp.asarray(bool(greedy)))
        return {
            "split": split,
            "greedy": greedy,
            "masked": masked,
            **summarize(jax.device_get(raw), tuple(self.spec.group_names)),
        }

    # ---------------------------------------------------------------- bookkeeping
    def agent_steps_per_update(self) -> int:
        """Training agent-steps of ONE learner in one update (T x E x n_agents)."""
        return self.num_steps * self.config.num_envs * self.spec.n_agents


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        state: the final learner state (K learners).
        evals: evaluation checkpoints, each ``{"update", "env_steps", "return": [K], ...}``.
        scores: selection score per learner = mean evaluation return over the last
            ``config.select_last`` checkpoints.
        seconds: wall time of the whole call (compilation included).
    """

    state: LearnerState
    evals: list[dict[str, Any]]
    scores: list[float]
    seconds: float


def selection_scores(evals: Sequence[dict[str, Any]], last: int) -> list[float]:
    """Mean ``return`` over the last ``last`` evaluation checkpoints, per learner."""
    if not evals:
        raise ValueError("no evaluation checkpoints: train for at least one update")
    returns = np.asarray([e["return"] for e in evals[-last:]], dtype=np.float64)
    return returns.mean(axis=0).tolist()


def _per_learner_means(values: Any) -> list[float | None]:
    """``[U, K]`` -> per-learner mean over the chunk, ignoring NaN (``None`` when all are NaN)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr.reshape(arr.shape[0], -1)
    finite = ~np.isnan(arr)
    sums = np.where(finite, arr, 0.0).sum(axis=0)
    counts = finite.sum(axis=0)
    return [float(s / c) if c else None for s, c in zip(sums, counts)]


def _chunk_record(
    metrics: dict, update: int, trainer: Trainer, seconds: float, n_updates: int
) -> dict[str, Any]:
    """One JSON line for a chunk: counters, throughput and per-learner metric means."""
    per_update = trainer.agent_steps_per_update()
    record: dict[str, Any] = {
        "kind": "train",
        "update": update,
        "env_steps": update * trainer.num_steps * trainer.config.num_envs,
        "agent_steps": update * per_update,
        "seconds": seconds,
        "agent_steps_per_s": per_update * n_updates * trainer.num_learners / seconds
        if seconds > 0
        else None,
    }
    for name, value in jax.device_get(metrics).items():
        record[name] = _per_learner_means(value)
    return record


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
                record = _chunk_record(metrics, done, trainer, time.perf_counter() - t0, n)
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
                postfix = {"train": _fmt_best(record.get("train_return"))}
                if evals:
                    postfix["eval"] = _fmt_best(evals[-1]["return"])
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


def _fmt_best(values: Sequence[float | None] | None) -> str:
    vals = [v for v in (values or []) if v is not None]
    return f"{max(vals):.4g}" if vals else "-"
