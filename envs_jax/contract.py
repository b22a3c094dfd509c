"""Checks that an environment keeps the contract of :mod:`envs_jax.core`.

:func:`check_env` takes a built environment of either kind (:class:`~envs_jax.core.JaxEnv` or
:class:`~envs_jax.core.HostEnv`), checks its spec (:func:`check_spec`), resets it and takes a few
steps with random valid actions, and checks every output: shapes, dtypes, reward components and
the mask context against ``spec.context_fields``. The first problem raises
:class:`ContractError` with one line naming the scenario and what is wrong. JAX environments run
jitted, or only abstractly (``abstract=True``: ``jax.eval_shape``, no computation, for large
scenarios); a batched (``vmap``) step is always checked abstractly.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.core import EnvSpec, HostEnv, JaxEnv, MaskContext, layout_problem

SPLITS = ("train", "validation", "test")
CONTEXT_DTYPES = ("float32", "int32", "bool")
VMAP_CHECK_SIZE = 2


class ContractError(ValueError):
    """An environment or spec breaks the contract; the message says what, in one line."""


def check_env(
    env: Any, *, steps: int = 2, seed: int = 0, split: str = "train", abstract: bool = False
) -> None:
    """Check ``env`` against its protocol (chosen by ``env.spec.is_jax``).

    Args:
        env: a built environment; a host environment is left open (close it yourself).
        steps: decisions to take after the reset (abstract mode: one).
        seed: key / SUMO seed of the episode and of the random actions.
        split: the split whose parameters a JAX environment runs on.
        abstract: JAX environments only: trace with ``jax.eval_shape`` instead of running.

    Raises:
        ContractError: the first problem found.
    """
    spec = getattr(env, "spec", None)
    if not isinstance(spec, EnvSpec):
        raise ContractError(f"{type(env).__name__}: env.spec must be an EnvSpec, got {spec!r}")
    check_spec(spec)
    if spec.is_jax:
        check_jax_env(env, steps=steps, seed=seed, split=split, abstract=abstract)
    else:
        check_host_env(env, steps=steps, seed=seed)


# --------------------------------------------------------------------------------------- spec


def check_spec(spec: EnvSpec) -> None:
    """Check an :class:`EnvSpec` for consistency; raise :class:`ContractError` on a problem.

    Layout (``prod(agent_shape) == n_agents``, one value and name per action, ``agent_group`` in
    ``range(n_groups)``), positive sizes, unique names, ``episode_length`` for exactly the splits
    train / validation / test, documented context dtypes, and ``dims`` covering every symbolic
    dimension of the context fields.
    """
    problem = _spec_problem(spec)
    if problem is not None:
        raise ContractError(f"{spec.name}: {problem}")


def _spec_problem(spec: EnvSpec) -> str | None:
    if not isinstance(spec.name, str) or spec.name.count("/") != 1:
        return f"spec.name must look like 'family/scenario', got {spec.name!r}"
    for attr in ("n_agents", "obs_dim", "n_actions"):
        value = getattr(spec, attr)
        if not isinstance(value, (int, np.integer)) or value < 1:
            return f"spec.{attr} must be a positive int, got {value!r}"
    problem = layout_problem(spec)
    if problem is not None:
        return problem
    if not all(math.isfinite(v) for v in spec.action_values):
        return "spec.action_values must be finite numbers"
    group = np.asarray(spec.agent_group)
    if not np.issubdtype(group.dtype, np.integer):
        return f"spec.agent_group must hold integers, got dtype {group.dtype}"
    if not spec.group_names or group.min() < 0 or group.max() >= spec.n_groups:
        return (
            f"spec.agent_group must lie in [0, {spec.n_groups - 1}] (one per group name), "
            f"got [{group.min()}, {group.max()}]"
        )
    for attr in ("action_names", "reward_components", "group_names"):
        names = getattr(spec, attr)
        if not names or len(set(names)) != len(names):
            return f"spec.{attr} must be non-empty and unique, got {tuple(names)}"
    if sorted(spec.episode_length) != sorted(SPLITS):
        return (
            f"spec.episode_length must have exactly the keys {', '.join(SPLITS)}, got "
            f"{', '.join(sorted(spec.episode_length)) or 'none'}"
        )
    bad_lengths = {k: v for k, v in spec.episode_length.items() if int(v) < 1}
    if bad_lengths:
        return f"spec.episode_length must be positive, got {bad_lengths}"
    if not isinstance(spec.is_jax, bool):
        return f"spec.is_jax must be a bool, got {spec.is_jax!r}"
    return _fields_problem(spec)


def _fields_problem(spec: EnvSpec) -> str | None:
    names = [f.name for f in spec.context_fields]
    if not names or len(set(names)) != len(names):
        return f"spec.context_fields must be non-empty with unique names, got {names}"
    bad_dims = {k: v for k, v in spec.dims.items() if not isinstance(v, (int, np.integer)) or v < 1}
    if bad_dims:
        return f"spec.dims must be positive ints, got {bad_dims}"
    for f in spec.context_fields:
        if f.dtype not in CONTEXT_DTYPES:
            return (
                f"context field {f.name} has dtype {f.dtype!r}; "
                f"use one of {', '.join(CONTEXT_DTYPES)}"
            )
        missing = [d for d in f.shape if isinstance(d, str) and d not in spec.dims]
        if missing:
            return (
                f"context field {f.name} has shape {f.shape} but spec.dims lacks "
                f"{', '.join(missing)}"
            )
        if not all(isinstance(d, (str, int)) for d in f.shape):
            return f"context field {f.name}: shape entries must be names or ints, got {f.shape}"
    return None


# ---------------------------------------------------------------------------------- arrays


def _float_dtypes() -> tuple[np.dtype, ...]:
    """float32, and float64 in x64 mode."""
    if jax.config.jax_enable_x64:
        return (np.dtype(np.float32), np.dtype(np.float64))
    return (np.dtype(np.float32),)


def _dtype_ok(dtype: Any, documented: str) -> bool:
    dtype = np.dtype(dtype)
    if documented == "float32":
        return dtype in _float_dtypes()
    return dtype == np.dtype(documented)


def _check_array(name: str, what: str, x: Any, shape: tuple[int, ...], kind: str) -> None:
    """``x`` must have ``shape`` and dtype ``kind`` (``float32`` meaning float32/float64, ...)."""
    got = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    if got != tuple(shape):
        raise ContractError(f"{name}: {what} has shape {got}, expected {tuple(shape)}")
    dtype = getattr(x, "dtype", None)
    if dtype is None or not _dtype_ok(dtype, kind):
        allowed = "/".join(str(d) for d in _float_dtypes()) if kind == "float32" else kind
        raise ContractError(f"{name}: {what} has dtype {dtype}, expected {allowed}")


def _check_finite(spec: EnvSpec, what: str, x: Any) -> None:
    if not np.isfinite(np.asarray(x)).all():
        raise ContractError(f"{spec.name}: {what} has non-finite entries")


def _check_finite_context(spec: EnvSpec, ctx: MaskContext, what: str) -> None:
    for f in spec.context_fields:
        if f.dtype == "float32":
            _check_finite(spec, f"{what} field {f.name}", getattr(ctx, f.name))


def check_context(spec: EnvSpec, ctx: Any, batch: tuple[int, ...] = (), what: str = "") -> None:
    """``ctx`` must be a :class:`MaskContext` with exactly ``spec.context_fields``.

    Each field has shape ``batch + spec.field_shape(field)`` and its documented dtype (float32
    fields may be float64 in x64 mode).
    """
    what = what or "mask_context"
    if not isinstance(ctx, MaskContext):
        raise ContractError(f"{spec.name}: {what} must return a MaskContext, got {type(ctx)}")
    documented = [f.name for f in spec.context_fields]
    missing = sorted(set(documented) - set(ctx.keys()))
    extra = sorted(set(ctx.keys()) - set(documented))
    if missing:
        raise ContractError(f"{spec.name}: {what} lacks documented field(s) {', '.join(missing)}")
    if extra:
        raise ContractError(f"{spec.name}: {what} has undocumented field(s) {', '.join(extra)}")
    for f in spec.context_fields:
        shape = (*batch, *spec.field_shape(f))
        _check_array(spec.name, f"{what} field {f.name}", getattr(ctx, f.name), shape, f.dtype)


def _check_components(spec: EnvSpec, info: Any, shape: tuple[int, ...], what: str) -> None:
    comps = info.get("components") if isinstance(info, dict) else None
    if not isinstance(comps, dict):
        raise ContractError(f"{spec.name}: {what} info must be a dict with a 'components' dict")
    missing = [c for c in spec.reward_components if c not in comps]
    extra = sorted(set(comps) - set(spec.reward_components))
    if missing:
        raise ContractError(
            f"{spec.name}: {what} info['components'] lacks {', '.join(missing)} "
            f"(spec.reward_components)"
        )
    if extra:
        raise ContractError(
            f"{spec.name}: {what} info['components'] has undocumented {', '.join(extra)}"
        )
    for c in spec.reward_components:
        _check_array(spec.name, f"{what} component {c}", comps[c], shape, "float32")


# ------------------------------------------------------------------------------ JAX kind


def check_jax_env(
    env: Any, *, steps: int = 2, seed: int = 0, split: str = "train", abstract: bool = False
) -> None:
    """The :class:`~envs_jax.core.JaxEnv` checks of :func:`check_env` (spec not re-checked).

    Shapes and dtypes are checked on abstract values (``jax.eval_shape``: one environment and a
    ``vmap`` over a few with shared params); unless ``abstract``, one jitted program then resets
    and takes ``steps`` random decisions, and its values must be finite with ``done`` False
    before the split's episode length.
    """
    spec = env.spec
    if not isinstance(env, JaxEnv):
        raise ContractError(
            f"{spec.name}: spec.is_jax is True but the environment lacks "
            f"{_missing(env, JaxEnv)} (envs_jax.core.JaxEnv)"
        )
    for other in SPLITS:  # every split must have parameters
        env.default_params(other)
    params = env.default_params(split)
    key = jax.random.key(seed)
    for batch in ((), (VMAP_CHECK_SIZE,)):
        _check_abstract(env, params, key, batch)
    if not abstract:
        _check_values(env, params, key, steps, split)


def _check_abstract(env: Any, params: Any, key: jax.Array, batch: tuple[int, ...]) -> None:
    """Shapes and dtypes of reset, step and mask_context, for one or ``batch`` environments."""
    spec = env.spec
    reset, step, context = env.reset, env.step, env.mask_context
    prefix = ""
    if batch:
        key = jax.random.split(key, batch[0])
        reset = jax.vmap(reset, in_axes=(0, None))
        step = jax.vmap(step, in_axes=(0, 0, 0, None))
        context = jax.vmap(context, in_axes=(0, None))
        prefix = "vmapped "
    obs, state = _unpack(spec, jax.eval_shape(reset, key, params), 2, f"{prefix}reset")
    _check_obs(spec, obs, batch, f"{prefix}reset")
    ctx = jax.eval_shape(context, state, params)
    check_context(spec, ctx, batch, f"{prefix}mask_context after reset")
    actions = jax.ShapeDtypeStruct((*batch, spec.n_agents), jnp.int32)
    out = _unpack(spec, jax.eval_shape(step, key, state, actions, params), 5, f"{prefix}step")
    obs, state, reward, done, info = out
    what = f"{prefix}step"
    _check_obs(spec, obs, batch, what)
    _check_array(spec.name, f"{what} reward", reward, (*batch, spec.n_agents), "float32")
    _check_array(spec.name, f"{what} done", done, batch, "bool")
    _check_components(spec, info, (*batch, spec.n_agents), what)
    ctx = jax.eval_shape(context, state, params)
    check_context(spec, ctx, batch, f"{prefix}mask_context after step")


def _check_values(env: Any, params: Any, key: jax.Array, steps: int, split: str) -> None:
    """One jitted reset and ``steps`` random decisions: finite values, ``done`` not too early."""
    spec = env.spec

    def rollout(key: jax.Array, params: Any) -> tuple[Any, Any]:
        obs, state = env.reset(key, params)
        first = (obs, env.mask_context(state, params))

        def decide(state: Any, key: jax.Array) -> tuple[Any, Any]:
            k_act, k_step = jax.random.split(key)
            actions = jax.random.randint(k_act, (spec.n_agents,), 0, spec.n_actions, jnp.int32)
            obs, state, reward, done, info = env.step(k_step, state, actions, params)
            out = (obs, reward, done, info["components"], env.mask_context(state, params))
            return state, out

        return first, jax.lax.scan(decide, state, jax.random.split(key, steps))[1]

    (obs, ctx), (obs_t, reward_t, done_t, comps_t, ctx_t) = jax.jit(rollout)(key, params)
    _check_finite(spec, "reset obs", obs)
    _check_finite_context(spec, ctx, "mask_context after reset")
    for t in range(steps):
        what = f"step {t + 1}"
        _check_finite(spec, f"{what} obs", obs_t[t])
        _check_finite(spec, f"{what} reward", reward_t[t])
        for c in spec.reward_components:
            _check_finite(spec, f"{what} component {c}", comps_t[c][t])
        _check_finite_context(spec, jax.tree_util.tree_map(lambda x: x[t], ctx_t), what)
        if bool(done_t[t]) and t + 1 < spec.episode_length[split]:
            raise ContractError(
                f"{spec.name}: done after {t + 1} decision(s), but spec.episode_length"
                f"[{split!r}] is {spec.episode_length[split]}"
            )


def _unpack(spec: EnvSpec, out: Any, n: int, what: str) -> tuple:
    if not isinstance(out, tuple) or len(out) != n:
        got = f"a {len(out)}-tuple" if isinstance(out, tuple) else type(out).__name__
        raise ContractError(f"{spec.name}: {what} must return a {n}-tuple, got {got}")
    return out


def _check_obs(spec: EnvSpec, obs: Any, batch: tuple[int, ...], what: str) -> None:
    _check_array(spec.name, f"{what} obs", obs, (*batch, spec.n_agents, spec.obs_dim), "float32")


def _missing(env: Any, protocol: type) -> str:
    """The members of ``protocol`` that ``env`` lacks, comma-separated."""
    members = set(protocol.__annotations__) | {n for n in vars(protocol) if not n.startswith("_")}
    return ", ".join(sorted(n for n in members if not hasattr(env, n))) or "a protocol member"


# ----------------------------------------------------------------------------- host kind


def check_host_env(env: Any, *, steps: int = 2, seed: int = 0) -> None:
    """The :class:`~envs_jax.core.HostEnv` checks of :func:`check_env` (spec not re-checked).

    Resets with seeds ``seed .. seed + B - 1`` and takes ``steps`` decisions with random
    available actions; where the episode ends, ``done`` must be all True and ``info["metrics"]``
    hold ``[B]`` arrays.
    """
    spec = env.spec
    if not isinstance(env, HostEnv):
        raise ContractError(
            f"{spec.name}: spec.is_jax is False but the environment lacks "
            f"{_missing(env, HostEnv)} (envs_jax.core.HostEnv)"
        )
    b = env.n_envs
    if not isinstance(b, (int, np.integer)) or b < 1:
        raise ContractError(f"{spec.name}: n_envs must be a positive int, got {b!r}")
    avail = np.asarray(env.avail_actions)
    _check_array(spec.name, "avail_actions", avail, (b, spec.n_agents, spec.n_actions), "bool")
    if not avail.any(axis=-1).all():
        raise ContractError(f"{spec.name}: avail_actions leaves an agent without any action")
    obs, _ = _unpack(spec, env.reset(np.arange(b) + seed), 2, "reset")
    _check_obs(spec, obs, (b,), "reset")
    _check_finite(spec, "reset obs", obs)
    check_context(spec, env.mask_context(), (b,), "mask_context after reset")
    rng = np.random.default_rng(seed)
    length = spec.episode_length["train"]
    for t in range(steps):
        what = f"step {t + 1}"
        scores = rng.random(avail.shape) * avail
        actions = scores.argmax(axis=-1).astype(np.int32)
        obs, reward, done, info = _unpack(spec, env.step(actions), 4, "step")
        _check_obs(spec, obs, (b,), what)
        _check_array(spec.name, f"{what} reward", reward, (b, spec.n_agents), "float32")
        _check_array(spec.name, f"{what} done", done, (b,), "bool")
        _check_components(spec, info, (b, spec.n_agents), what)
        for name, x in [("obs", obs), ("reward", reward), *info["components"].items()]:
            _check_finite(spec, f"{what} {name}", x)
        ctx = env.mask_context()
        check_context(spec, ctx, (b,), f"mask_context after {what}")
        _check_finite_context(spec, ctx, f"mask_context after {what}")
        ended = t + 1 >= length
        if not (np.asarray(done) == ended).all():
            raise ContractError(
                f"{spec.name}: {what} done is {np.asarray(done).tolist()}, expected all "
                f"{ended} (spec.episode_length['train'] = {length})"
            )
        if ended:
            _check_metrics(spec, info, b, what)
            return


def _check_metrics(spec: EnvSpec, info: dict, b: int, what: str) -> None:
    metrics = info.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ContractError(
            f"{spec.name}: {what} ends the episode but info has no 'metrics' dict of [B] arrays"
        )
    for name, value in metrics.items():
        if np.shape(value) != (b,):
            raise ContractError(
                f"{spec.name}: {what} info['metrics'][{name!r}] has shape {np.shape(value)}, "
                f"expected ({b},)"
            )
