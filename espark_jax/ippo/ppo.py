"""PPO for K learners at once: GAE, the clipped loss, and the epochs x minibatches update.

The update reads only the rollout buffer (:class:`~espark_jax.ippo.rollout.Transition`, masks
included), so it is compiled once per run whatever the mask functions are.

Memory: minibatches are gathered by index from the buffer (``x[t, k, e, i]`` with index arrays),
so an epoch never materialises a permuted copy of the whole batch (only ``int32`` indices); the
buffer keeps its rollout layout ``[T, K, E, n_agents, ...]`` and no transposed copy is made either.
The buffer holds ``4 * obs_dim + n_actions + 21`` bytes per agent-step; the update's temporary
memory is dominated by one minibatch's activations (measured in ``benchmarks/README.md``), so
raise ``num_minibatches`` to fit larger batches.

Defaults follow the eSpark paper's Table 13 (Adam lr 5e-4, eps 1e-5, discount 0.985, clip 0.2,
critic coefficient 0.5, entropy 0, global-norm clip 10). GAE lambda is 0.95 (the common PPO
default; the paper does not state one). The value loss is clipped like the policy ratio
(PureJaxRL / MAPPO style), and advantages are normalised per minibatch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from espark_jax.ippo import distributions as dist
from espark_jax.ippo.batching import invariant_mean, invariant_sum, kmap
from espark_jax.ippo.recurrent import Sequences, is_recurrent, sequence_starts
from espark_jax.ippo.rollout import Transition
from espark_jax.presets import REWARD_NORMS


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters (defaults: the paper's Table 13; ``gae_lambda`` our choice).

    ``mask_distill_coef`` weighs a term that pulls the *unmasked* policy's probability mass into
    the behaviour mask (``-log sum_{a in mask} pi(a)``): masks act in training only, and actions
    a mask never let the learner try keep untrained logits, which the raw policy evaluated
    without masks may then pick. 0 (the paper) leaves them alone; the term is zero for the
    all-ones mask, so plain IPPO is unchanged.

    ``anneal_updates`` > 0 decays the learning rate linearly to zero over that many PPO updates
    (CleanRL's ``anneal_lr``): during update ``u`` (counted from 0 by the optimizer, over every
    epoch and minibatch of the update) the rate is ``lr * max(0, 1 - u / anneal_updates)``.
    0 (the paper) keeps it constant.

    ``reward_norm``: ``"none"`` (the paper) feeds the rewards as the rollout stored them;
    ``"agent"`` divides each agent's rewards, per learner and update, by the root mean square of
    that agent's discounted reward-to-go over the rollout (:func:`agent_return_scale`), so that
    every agent's value targets are O(1) whatever its reward magnitude (a shared critic reading
    scale-free observations cannot tell a 10-unit SKU from a 10,000-unit one).
    ``clip_value``: clip the value loss like the ratio (True, PureJaxRL / MAPPO) or not.
    """

    lr: float = 5e-4
    adam_eps: float = 1e-5
    gamma: float = 0.985
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 10.0
    update_epochs: int = 4
    num_minibatches: int = 4
    mask_distill_coef: float = 0.0
    anneal_updates: int = 0
    reward_norm: str = "none"
    clip_value: bool = True

    def __post_init__(self) -> None:
        if self.reward_norm not in REWARD_NORMS:
            raise ValueError(
                f"unknown reward_norm {self.reward_norm!r}; use one of {', '.join(REWARD_NORMS)}"
            )
        if self.mask_distill_coef < 0:
            raise ValueError("mask_distill_coef must be >= 0")
        if self.anneal_updates < 0:
            raise ValueError("anneal_updates must be >= 0 (0 keeps the learning rate constant)")
        if self.update_epochs < 1 or self.num_minibatches < 1:
            raise ValueError("update_epochs and num_minibatches must be >= 1")
        if not (0.0 < self.gamma <= 1.0 and 0.0 <= self.gae_lambda <= 1.0):
            raise ValueError("need 0 < gamma <= 1 and 0 <= gae_lambda <= 1")


# The optimizer below is Adam with global-norm clipping, written out so that every per-learner
# scalar (bias corrections, clipping factor) is applied as ``x * (1 / c)``. On CPU, XLA compiles
# ``x / c`` for a scalar ``c`` shared by several parameter leaves differently for one learner and
# for K vmapped learners (a reciprocal in one case, a division in the other), which breaks the
# bitwise equality of K-vmapped and one-learner runs; an explicit reciprocal rounds the same in
# both. The running powers ``b**t`` also avoid a transcendental ``pow`` (optax's ``b**count``).


class AdamState(NamedTuple):
    """Adam moments plus the running powers ``b1**t`` and ``b2**t`` of the bias corrections."""

    mu: Any
    nu: Any
    b1_pow: jax.Array
    b2_pow: jax.Array


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """Scale gradients by ``min(1, max_norm / global_norm)`` (``optax.clip_by_global_norm``)."""

    def update(updates, state, params=None):
        del params
        norm = optax.tree.norm(updates)
        factor = jnp.where(norm > max_norm, max_norm * (1.0 / norm), 1.0)
        return jax.tree_util.tree_map(lambda g: g * factor, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def scale_by_adam_products(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam's direction (``optax.scale_by_adam``); bias corrections from running products."""

    def init(params):
        return AdamState(
            mu=jax.tree_util.tree_map(jnp.zeros_like, params),
            nu=jax.tree_util.tree_map(jnp.zeros_like, params),
            b1_pow=jnp.ones((), jnp.float32),
            b2_pow=jnp.ones((), jnp.float32),
        )

    def update(updates, state, params=None):
        del params
        mu = jax.tree_util.tree_map(lambda g, m: (1.0 - b1) * g + b1 * m, updates, state.mu)
        nu = jax.tree_util.tree_map(
            lambda g, v: (1.0 - b2) * jnp.square(g) + b2 * v, updates, state.nu
        )
        b1_pow, b2_pow = state.b1_pow * b1, state.b2_pow * b2
        inv_c1, inv_c2 = 1.0 / (1.0 - b1_pow), 1.0 / (1.0 - b2_pow)
        out = jax.tree_util.tree_map(
            lambda m, v: (m * inv_c1) / (jnp.sqrt(v * inv_c2) + eps), mu, nu
        )
        return out, AdamState(mu=mu, nu=nu, b1_pow=b1_pow, b2_pow=b2_pow)

    return optax.GradientTransformation(init, update)


class DecayState(NamedTuple):
    """Optimizer steps taken so far (for the learning-rate schedule)."""

    count: jax.Array


def scale_by_linear_decay(
    lr: float, steps_per_update: int, total_updates: int
) -> optax.GradientTransformation:
    """Multiply by ``-lr * max(0, 1 - u / total_updates)``, ``u = step // steps_per_update``
    (the PPO update the optimizer step belongs to): CleanRL's linear ``anneal_lr``."""

    def update(updates, state, params=None):
        del params
        u = (state.count // steps_per_update).astype(jnp.float32)
        rate = -lr * jnp.maximum(0.0, 1.0 - u * (1.0 / total_updates))
        scaled = jax.tree_util.tree_map(lambda g: g * rate.astype(g.dtype), updates)
        return scaled, DecayState(count=state.count + 1)

    return optax.GradientTransformation(lambda params: DecayState(jnp.zeros((), jnp.int32)), update)


def make_optimizer(cfg: PPOConfig) -> optax.GradientTransformation:
    """Adam (eps ``cfg.adam_eps``) after global-norm gradient clipping, at a constant lr or,
    with ``cfg.anneal_updates``, one decaying linearly to zero (:func:`scale_by_linear_decay`)."""
    if cfg.anneal_updates > 0:
        steps = cfg.update_epochs * cfg.num_minibatches
        scale = scale_by_linear_decay(cfg.lr, steps, cfg.anneal_updates)
    else:
        scale = optax.scale(-cfg.lr)
    return optax.chain(
        clip_by_global_norm(cfg.max_grad_norm),
        scale_by_adam_products(eps=cfg.adam_eps),
        scale,
    )


def compute_gae(
    rewards: jax.Array,
    values: jax.Array,
    dones: jax.Array,
    last_value: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over the leading time axis.

    ``dones[t]`` is True when the episode ended with transition ``t`` (no bootstrap through it).
    All inputs are ``[T, ...]`` except ``last_value`` (``[...]``, the value after the last step);
    ``dones`` may have fewer trailing axes (it is broadcast on the right).

    Returns:
        ``(advantages [T, ...], value targets [T, ...])`` with targets = advantages + values.
    """
    dones = dones.reshape(dones.shape + (1,) * (values.ndim - dones.ndim)).astype(values.dtype)

    def back(carry, xs):
        gae, next_value = carry
        reward, value, done = xs
        not_done = 1.0 - done
        delta = reward + gamma * next_value * not_done - value
        gae = delta + gamma * lam * not_done * gae
        return (gae, value), gae

    init = (jnp.zeros_like(last_value), last_value)
    _, adv = jax.lax.scan(back, init, (rewards, values, dones), reverse=True)
    return adv, adv + values


def agent_return_scale(
    reward: jax.Array, done: jax.Array, gamma: float, floor: float = 1e-8
) -> jax.Array:
    """Per-agent scale of one learner's rollout: ``sqrt(mean_{t, e} G[t, e, i]^2)`` with ``G``
    the discounted reward-to-go inside the rollout (no bootstrap; restarts at episode ends).

    ``reward [T, E, N]``, ``done [T, E]`` -> ``[N]``, at least ``floor``. Batch-invariant
    reductions, so a one-learner run equals its slot of a K-learner run bit for bit.
    """
    zeros = jnp.zeros_like(reward[0])
    returns, _ = compute_gae(reward, jnp.zeros_like(reward), done, zeros, gamma, 1.0)
    per_agent = jnp.moveaxis(returns, -1, 0).reshape(reward.shape[-1], -1)  # [N, T * E]
    ms = invariant_sum(jnp.square(per_agent), axis=-1) * (1.0 / per_agent.shape[-1])
    return jnp.maximum(jnp.sqrt(ms), floor)


def normalise_rewards(reward: jax.Array, done: jax.Array, cfg: PPOConfig) -> jax.Array:
    """Rewards ``[T, K, E, N]`` as PPO sees them under ``cfg.reward_norm``."""
    if cfg.reward_norm == "none":
        return reward

    def one(r, d):  # [T, E, N], [T, E]
        return r * (1.0 / agent_return_scale(r, d, cfg.gamma))

    return jnp.moveaxis(kmap(one)(jnp.moveaxis(reward, 1, 0), jnp.moveaxis(done, 1, 0)), 0, 1)


def ppo_loss(
    params: Any, apply_fn: Callable, batch: dict[str, jax.Array], cfg: PPOConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped PPO loss of one learner on one minibatch (leaves ``[B, ...]``).

    ``batch`` holds ``obs, action, log_prob, value, mask, advantage, target``; log-probabilities,
    entropy and KL are computed under the stored behaviour mask. With a recurrent ``apply_fn``
    (:class:`~espark_jax.ippo.recurrent.RecurrentPolicy`) the leaves are ``[T, B, ...]``
    sequences, replayed from ``batch["memory"]`` (``[B, ...]``) with resets at ``batch["start"]``.
    """
    mean = invariant_mean  # batch-invariant reductions: see espark_jax.ippo.batching
    if is_recurrent(apply_fn):
        logits, value = apply_fn.sequence(
            params, batch["memory"], batch["obs"], batch["start"], batch["action"]
        )
    else:
        logits, value = apply_fn(params, batch["obs"])
    mask = batch["mask"]
    log_prob = dist.log_prob(logits, mask, batch["action"])
    adv = batch["advantage"]
    adv_mean = mean(adv)
    adv = (adv - adv_mean) * (1.0 / (jnp.sqrt(mean(jnp.square(adv - adv_mean))) + 1e-8))
    log_ratio = log_prob - batch["log_prob"]
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)
    policy_loss = -mean(jnp.minimum(ratio * adv, clipped * adv))

    old_value = batch["value"]
    target = batch["target"]
    value_loss = jnp.square(value - target)
    if cfg.clip_value:
        value_clipped = old_value + jnp.clip(value - old_value, -cfg.clip_eps, cfg.clip_eps)
        value_loss = jnp.maximum(value_loss, jnp.square(value_clipped - target))
    value_loss = 0.5 * mean(value_loss)
    entropy = mean(dist.entropy(logits, mask))
    loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
    extra = {}
    if cfg.mask_distill_coef > 0:
        raw = dist.log_probs(logits, None)  # the policy evaluation uses: no mask
        inside = jax.nn.logsumexp(dist.masked_logits(raw, mask), axis=-1)  # log mass in mask
        loss = loss - cfg.mask_distill_coef * mean(inside)
        extra["raw_mass_in_mask"] = mean(jnp.exp(inside))
    aux = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": mean((ratio - 1.0) - log_ratio),
        "clip_fraction": mean((jnp.abs(ratio - 1.0) > cfg.clip_eps).astype(jnp.float32)),
        **extra,
    }
    return loss, aux


def make_update(
    apply_fn: Callable,
    optimizer: optax.GradientTransformation,
    cfg: PPOConfig,
    on_trace: Callable[[], None] | None = None,
) -> Callable:
    """Build ``update(params, opt_state, traj, last_value, key) -> (params, opt_state, metrics)``.

    Everything carries a leading K axis except ``traj`` (:class:`Transition` with leaves
    ``[T, K, E, n_agents, ...]``, straight from the rollout). Each learner's batch is its
    ``T x E x n_agents`` agent-steps; every epoch draws one permutation per learner and walks it in
    ``cfg.num_minibatches`` index-gathered minibatches. ``metrics`` leaves are ``[K]`` means over
    all minibatches. The function is pure; jit it.

    A recurrent policy's buffer (:class:`~espark_jax.ippo.recurrent.Sequences`) is minibatched
    by sequence: the items permuted are the ``E x n_agents`` (environment, agent) pairs, each
    with its whole time axis and its memory before the rollout's first step.
    """
    grad_fn = jax.value_and_grad(lambda p, b: ppo_loss(p, apply_fn, b, cfg), has_aux=True)

    def sgd_step(params, opt_state, batch):
        (loss, aux), grads = grad_fn(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}

    def update(
        params, opt_state, traj: Transition | Sequences, last_value: jax.Array, key: jax.Array
    ):
        if on_trace is not None:
            on_trace()
        sequences = isinstance(traj, Sequences)
        memory, traj = (traj.memory, traj.steps) if sequences else (None, traj)
        T, K, E, N = traj.action.shape
        batch_size = E * N if sequences else T * E * N
        mb_size = batch_size // cfg.num_minibatches
        if mb_size < 1:
            items = "(environment, agent) sequences" if sequences else "agent-steps"
            raise ValueError(
                f"num_minibatches={cfg.num_minibatches} exceeds the batch of {batch_size} {items}"
            )
        reward = normalise_rewards(traj.reward, traj.done, cfg)
        adv, target = compute_gae(
            reward, traj.value, traj.done, last_value, cfg.gamma, cfg.gae_lambda
        )
        data = {
            "obs": traj.obs,
            "action": traj.action,
            "log_prob": traj.log_prob,
            "value": traj.value,
            "mask": traj.mask,
            "advantage": adv,
            "target": target,
        }
        k_index = jnp.arange(K)[:, None]

        if sequences:
            starts = sequence_starts(traj.done)  # [T, K, E]
            data["start"] = jnp.broadcast_to(starts[..., None], traj.action.shape)

            def gather(flat_idx):  # [K, mb] sequences -> leaves [K, T, mb, ...]
                e, i = jnp.divmod(flat_idx, N)
                steps = {n: jnp.moveaxis(x[:, k_index, e, i], 0, 1) for n, x in data.items()}
                first = jax.tree_util.tree_map(lambda x: x[k_index, e, i], memory)
                return {**steps, "memory": first}

        else:

            def gather(flat_idx):  # [K, mb] -> leaves [K, mb, ...]
                t, rest = jnp.divmod(flat_idx, E * N)
                e, i = jnp.divmod(rest, N)
                return jax.tree_util.tree_map(lambda x: x[t, k_index, e, i], data)

        def epoch(carry, epoch_key):
            perm = jax.vmap(lambda k: jax.random.permutation(k, batch_size))(epoch_key)
            perm = perm[:, : mb_size * cfg.num_minibatches].reshape(K, cfg.num_minibatches, mb_size)

            def minibatch(carry, idx):
                params, opt_state = carry
                params, opt_state, m = kmap(sgd_step)(params, opt_state, gather(idx))
                return (params, opt_state), m

            carry, metrics = jax.lax.scan(minibatch, carry, jnp.moveaxis(perm, 1, 0))
            return carry, metrics

        epoch_keys = jnp.moveaxis(
            jax.vmap(lambda k: jax.random.split(k, cfg.update_epochs))(key), 1, 0
        )
        (params, opt_state), metrics = jax.lax.scan(epoch, (params, opt_state), epoch_keys)
        metrics = jax.tree_util.tree_map(
            lambda m: kmap(invariant_mean)(jnp.moveaxis(m, 2, 0)), metrics
        )  # -> [K]
        return params, opt_state, metrics

    return update
