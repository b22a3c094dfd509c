"""Evaluation of K learners: episode return and every reward component per group.

Masks act in training only; evaluation uses the raw policy, greedy (argmax) or sampled. (For
diagnostics, ``mask_fns`` evaluates each learner under its own training mask instead.) All K
learners see the same environment randomness (common random numbers), so their returns are
directly comparable. One evaluation = reset E environments and run one whole episode of the
split's length; rewards after an environment reports ``done`` are not counted.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from espark_jax.ippo import distributions as dist
from espark_jax.ippo.batching import kmap
from espark_jax.ippo.recurrent import is_recurrent
from espark_jax.ippo.rollout import apply_masks
from espark_jax.masks.safe import MaskFn


def make_evaluate(
    env: Any,
    apply_fn: Callable,
    length: int,
    num_envs: int,
    mask_fns: Sequence[MaskFn] | None = None,
    trace: bool = False,
) -> Callable:
    """Build ``evaluate(params, key, env_params, greedy) -> dict`` for K learners (``[K, ...]``).

    ``greedy`` is a traced bool (argmax actions when True, sampled otherwise), so one compiled
    program serves both modes. With ``mask_fns`` (K of them) learner k acts under mask k, as in
    training (the masked policy pi_E); without, under the raw policy. A recurrent ``apply_fn``
    (:class:`~espark_jax.ippo.recurrent.RecurrentPolicy`) carries its memory through the
    episode from the start memory.

    The result holds ``return`` ``[K, E]`` (episode reward summed over agents),
    ``group_return`` ``[K, E, G]`` and ``components`` ``{name: [K, E, G]}`` (episode sums per agent
    group, ``G = spec.n_groups``). Pure; jit it.

    With ``trace`` it adds ``trace``: per-step sums per group of the reward
    (``reward [T, K, E, G]``), of every component and of every flow the environment reports in
    ``info["flows"]`` with one value per agent (MABIM: demand, sale, excess, ...;
    ``{name: [T, K, E, G]}``), and ``action_counts [K, E, G, A]`` (how often each action was
    taken over the episode). Steps after ``done`` count as zero.
    """
    spec = env.spec
    group_onehot = jnp.asarray(
        np.eye(spec.n_groups, dtype=np.float32)[np.asarray(spec.agent_group)]
    )  # [n, G]
    names = tuple(spec.reward_components)
    action_space = jnp.asarray(spec.action_values, jnp.float32)
    recurrent = is_recurrent(apply_fn)

    def evaluate(params: Any, key: jax.Array, env_params: Any, greedy: jax.Array) -> dict[str, Any]:
        n_k = jax.tree_util.tree_leaves(params)[0].shape[0]
        k_reset, k_run = jax.random.split(key)
        reset_keys = jax.random.split(k_reset, num_envs)
        obs, state = jax.vmap(env.reset, (0, None))(reset_keys, env_params)
        obs = jnp.broadcast_to(obs, (n_k,) + obs.shape)
        state = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n_k,) + x.shape), state)
        step_env = kmap(jax.vmap(env.step, (0, 0, 0, None)), (None, 0, 0, None))

        def step(carry, step_key):
            state, obs, alive, reward_sum, comp_sum, memory = carry[:6]
            k_act, k_env, k_mask = jax.random.split(step_key, 3)
            if recurrent:
                memory, logits, _ = kmap(apply_fn.step)(params, memory, obs)
            else:
                logits, _ = kmap(apply_fn)(params, obs)
            mask = None
            if mask_fns is not None:
                ctx = kmap(jax.vmap(env.mask_context, (0, None)), (0, None))(state, env_params)
                mask_keys = jax.random.split(k_mask, (n_k, num_envs))
                mask = apply_masks(mask_fns, ctx, mask_keys, action_space, spec.agent_shape)
            action = jnp.where(greedy, dist.mode(logits, mask), dist.sample(k_act, logits, mask))
            env_keys = jax.random.split(k_env, num_envs)
            obs, state, reward, done, info = step_env(env_keys, state, action, env_params)
            w = alive[..., None].astype(reward.dtype)
            reward_sum = reward_sum + reward * w
            comp_sum = {n: comp_sum[n] + info["components"][n] * w for n in names}
            if recurrent:
                memory = apply_fn.advance(memory, action, jnp.asarray(done, bool))
            alive = alive & ~jnp.asarray(done, bool)
            if not trace:
                return (state, obs, alive, reward_sum, comp_sum, memory), None
            counts = carry[6] + jnp.einsum(
                "kena,ng->kega",
                jax.nn.one_hot(action, spec.n_actions, dtype=acc) * w[..., None],
                group_onehot,
            )
            flows = {
                f: jnp.reshape(v, (n_k, num_envs, -1)) * w
                for f, v in info.get("flows", {}).items()
                if np.prod(jnp.shape(v)[2:]) == spec.n_agents
            }
            daily = {
                "reward": (reward * w) @ group_onehot,
                "components": {n: (info["components"][n] * w) @ group_onehot for n in names},
                "flows": {f: v.astype(jnp.float32) @ group_onehot for f, v in flows.items()},
            }
            return (state, obs, alive, reward_sum, comp_sum, memory, counts), daily

        # sums in the widest float: exact returns of a float64 environment (64-bit JAX)
        acc = jax.dtypes.canonicalize_dtype(jnp.float64)
        zeros = jnp.zeros((n_k, num_envs, spec.n_agents), acc)
        memory = apply_fn.initial(obs.shape[:3]) if recurrent else None
        alive = jnp.ones((n_k, num_envs), bool)
        init = (state, obs, alive, zeros, {n: zeros for n in names}, memory)
        if trace:
            init += (jnp.zeros((n_k, num_envs, spec.n_groups, spec.n_actions), acc),)
        final, daily = jax.lax.scan(step, init, jax.random.split(k_run, length))
        reward_sum, comp_sum = final[3], final[4]
        out = {
            "return": jnp.sum(reward_sum, axis=-1),
            "group_return": reward_sum @ group_onehot,
            "components": {n: comp_sum[n] @ group_onehot for n in names},
        }
        if trace:
            out["trace"] = {**daily, "action_counts": final[6]}
        return out

    return evaluate


def summarize(raw: dict[str, Any], group_names: tuple[str, ...]) -> dict[str, Any]:
    """Means over environments as plain lists (JSON-ready): ``return [K]``, ``return_std [K]``,
    ``group_return {group: [K]}``, ``components {name: {group: [K]}}``."""
    ret = np.asarray(raw["return"], dtype=np.float64)
    group = np.asarray(raw["group_return"], dtype=np.float64).mean(axis=1)
    return {
        "return": ret.mean(axis=1).tolist(),
        "return_std": ret.std(axis=1).tolist(),
        "group_return": {g: group[:, i].tolist() for i, g in enumerate(group_names)},
        "components": {
            n: {
                g: np.asarray(v, dtype=np.float64).mean(axis=1)[:, i].tolist()
                for i, g in enumerate(group_names)
            }
            for n, v in raw["components"].items()
        },
    }


def evaluate_learner(
    trainer: Any, params: Any, key: jax.Array, splits: Sequence[str], num_envs: int
) -> dict[str, dict[str, Any]]:
    """One learner's ``params`` evaluated greedy and sampled (no masks) on each split:
    ``{split: {"greedy": ev, "sampled": ev}}`` with plain numbers instead of ``[1]`` lists."""
    stacked = jax.tree_util.tree_map(lambda x: jnp.expand_dims(x, 0), params)
    out: dict[str, dict[str, Any]] = {}
    for split in splits:
        for greedy in (True, False):
            ev = trainer.evaluate(stacked, key, split=split, greedy=greedy, num_envs=num_envs)
            out.setdefault(split, {})["greedy" if greedy else "sampled"] = _first_learner(ev)
    return out


def _first_learner(tree: Any) -> Any:
    """Learner 0's values of an evaluation (lists of numbers become numbers)."""
    if isinstance(tree, dict):
        return {k: _first_learner(v) for k, v in tree.items()}
    if isinstance(tree, list) and tree and not isinstance(tree[0], str):
        return tree[0]
    return tree
