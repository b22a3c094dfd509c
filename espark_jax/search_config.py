"""What one eSpark run is: :class:`SearchConfig`, the presets, and the training schedule it implies.

Presets (``quick``, ``paper``) are adjusted per scenario family (:mod:`espark_jax.families`);
:func:`train_config` turns a run's configuration into the trainer's :class:`TrainConfig` and the
number of PPO updates per candidate and iteration.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from espark_jax.families import family_of
from espark_jax.ippo import PPOConfig, TrainConfig
from espark_jax.ippo.core import check_network
from espark_jax.presets import (
    BUDGET_FAMILIES,
    FALLBACK_RULES,
    FEEDBACK_FORMS,
    PRESET_FAMILIES,
    PRESETS,
    REWARD_NORMS,
    budget_settings,
)
from espark_jax.runs import RunDir


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Configuration of one eSpark run (everything that changes results goes in the manifest).

    Attributes:
        scenario: registry name, e.g. ``"mabim/standard-100"``.
        k: candidates (learners) per iteration.
        iterations: eSpark iterations.
        steps: environment steps per candidate over the whole run (spread evenly over the
            iterations; the ``no_retention`` ablation trains 3x that per iteration).
        num_envs: parallel environments per learner.
        eval_checkpoints: evaluation checkpoints per iteration (the selection score averages the
            last ``select_last`` of them).
        select_last: checkpoints averaged by the selection score.
        eval_envs: environments per evaluation checkpoint.
        updates_per_chunk: PPO updates per jitted chunk.
        hidden: MLP widths (``network="gru"``: one width, the FC and GRU width).
        network, layer_norm, last_action: the learners' policy network (``"mlp"`` or ``"gru"``)
            and the GRU options (:class:`~espark_jax.ippo.core.TrainConfig`).
        lr: Adam learning rate of the learners (paper: 5e-4).
        update_epochs, num_minibatches: PPO passes over each batch and minibatches per pass.
        mask_distill: weight of the term pulling the unmasked policy into the behaviour mask
            (:class:`~espark_jax.ippo.ppo.PPOConfig` ``mask_distill_coef``; paper: 0).
        adam_eps: Adam's epsilon (paper: 1e-5; the released code: PyTorch's default 1e-8).
        anneal_lr: decay the learning rate linearly to zero over the run's planned updates of
            a learner that continues through every iteration (``iterations`` x the updates
            per iteration; CleanRL's ``anneal_lr``); False (the paper) keeps it constant.
        reward_norm: ``none`` (the paper) or ``agent``: each agent's rewards divided by the
            RMS of its discounted reward-to-go in every rollout
            (:class:`~espark_jax.ippo.ppo.PPOConfig`).
        clip_value: clip the value loss like the policy ratio (True: the paper's PPO).
        reward_scale: reward multiplier before PPO (None: the family's, MABIM 1e-3; the
            released code: 1e-2).
        mask_fallback: ``per_agent`` (an agent whose mask allows nothing acts unmasked; ours)
            or ``per_env`` (any such agent unmasks its whole environment for that step; the
            released code), :mod:`espark_jax.masks.fallback`.
        mask_first_step: mask the first decision of an episode (ours) or not (False: the
            released code, which computes masks only after a step).
        feedback: ``ours`` or ``released`` (the released code's statistics, :data:`FEEDBACK_FORMS`).
        seed: seed of the learners, environments and the template search.
        provider: ``auto``, ``anthropic``, ``openai``, ``replay:DIR`` or ``template``.
        generator_model / checker_model: models (None: the provider's defaults).
        checker_provider: the checker's provider when it differs (None: the same).
        base_url / checker_base_url: API roots of the generator's / checker's provider (None:
            the SDK's default or OPENAI_BASE_URL / ANTHROPIC_BASE_URL).
        max_concurrency: LLM requests in flight at once (None: 16).
        checker: run the LLM checker (``--no-checker`` ablation when False).
        retention: start every slot from the previous best learner (``--no-retention`` when False).
        reward_factors: per-component feedback (``--no-reward-factors`` when False).
        control: train a plain IPPO learner (all-ones mask, continuing itself across
            iterations) beside the K candidates in the same program (``--no-control``).
        formulation: ``code`` (environment source) or ``lang`` (natural language) in the prompts.
        repair_rounds: repair prompts per slot after a compile failure.
        check_rounds: checker reviews per slot.
        check_workers: sandboxed compile checks running at once.
        check_timeout_s: wall-clock limit of one compile check.
        env_kwargs: options for :func:`envs_jax.make` (e.g. ``data_dir``).
    """

    scenario: str = "mabim/standard-100"
    k: int = 16
    iterations: int = 10
    steps: int = 5_020_000
    num_envs: int = 32
    eval_checkpoints: int = 5
    select_last: int = 3
    eval_envs: int = 8
    updates_per_chunk: int = 10
    hidden: tuple[int, ...] = (64, 64)
    network: str = "mlp"
    layer_norm: bool = False
    last_action: bool = False
    lr: float = 5e-4
    update_epochs: int = 4
    num_minibatches: int = 4
    mask_distill: float = 0.0
    adam_eps: float = 1e-5
    anneal_lr: bool = False
    reward_norm: str = "none"
    clip_value: bool = True
    reward_scale: float | None = None
    mask_fallback: str = "per_agent"
    mask_first_step: bool = True
    feedback: str = "ours"
    seed: int = 0
    provider: str = "auto"
    generator_model: str | None = None
    checker_model: str | None = None
    checker_provider: str | None = None
    base_url: str | None = None
    checker_base_url: str | None = None
    max_concurrency: int | None = None
    checker: bool = True
    retention: bool = True
    reward_factors: bool = True
    control: bool = True
    formulation: str = "code"
    repair_rounds: int = 2
    check_rounds: int = 1
    check_workers: int = 2
    check_timeout_s: float = 60.0
    env_kwargs: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (
            "k",
            "iterations",
            "steps",
            "num_envs",
            "eval_checkpoints",
            "select_last",
            "eval_envs",
            "updates_per_chunk",
            "update_epochs",
            "num_minibatches",
            "check_workers",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.formulation not in ("code", "lang"):
            raise ValueError(f"--formulation must be 'code' or 'lang', got {self.formulation!r}")
        if self.feedback not in FEEDBACK_FORMS:
            raise ValueError(f"--feedback must be 'ours' or 'released', got {self.feedback!r}")
        if self.mask_fallback not in FALLBACK_RULES:
            raise ValueError(
                f"--mask-fallback must be 'per_agent' or 'per_env', got {self.mask_fallback!r}"
            )
        if self.reward_norm not in REWARD_NORMS:
            raise ValueError(
                f"--reward-norm must be one of {', '.join(REWARD_NORMS)}, got {self.reward_norm!r}"
            )
        if self.reward_scale is not None and not float(self.reward_scale) > 0:
            raise ValueError(f"--reward-scale must be > 0, got {self.reward_scale}")
        if self.repair_rounds < 0 or self.check_rounds < 0:
            raise ValueError("repair and check rounds must be >= 0")
        if self.max_concurrency is not None and int(self.max_concurrency) < 1:
            raise ValueError(f"--max-concurrency must be >= 1, got {self.max_concurrency}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        check_network(self.network, self.hidden, self.layer_norm, self.last_action)

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> "SearchConfig":
        """A preset (``quick``, ``paper`` or ``authors``), adjusted for the scenario's family
        (:mod:`espark_jax.families`) and for the budget (:data:`~espark_jax.presets.
        BUDGET_SETTINGS`), with explicit overrides (None values are ignored)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
        explicit = {k: v for k, v in overrides.items() if v is not None}
        family = family_of(str(explicit.get("scenario", cls.scenario)))
        allowed = PRESET_FAMILIES.get(preset)
        if allowed is not None and family.name not in allowed:
            raise ValueError(
                f"the {preset} preset is made for {'/'.join(allowed)} scenarios (the released "
                f"code has no {family.name}); use --preset quick or paper"
            )
        values = {**PRESETS[preset], **family.presets.get(preset, {})}
        if family.name in BUDGET_FAMILIES:
            values.update(budget_settings(preset, int(explicit.get("steps", values["steps"]))))
        return cls(**{**values, **explicit})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``SearchConfig(**d)`` inverts it."""
        return dataclasses.asdict(self)

    @property
    def n_learners(self) -> int:
        """Learners the trainer holds: the K candidates, plus the control learner."""
        return self.k + int(self.control)

    def steps_per_iteration(self) -> int:
        """Environment steps per candidate per iteration (3x without retention, as in the paper)."""
        per = int(math.ceil(self.steps / self.iterations))
        return per if self.retention else 3 * per


def train_config(cfg: SearchConfig, env: Any) -> tuple[TrainConfig, int]:
    """The trainer configuration of a run and its PPO updates per candidate and iteration
    (whole train episodes of ``num_envs`` environments; ``eval_checkpoints`` evaluations)."""
    episode = int(env.spec.episode_length["train"])
    updates = max(1, int(math.ceil(cfg.steps_per_iteration() / (episode * cfg.num_envs))))
    eval_every = max(1, updates // cfg.eval_checkpoints)
    tc = TrainConfig(
        num_envs=cfg.num_envs,
        num_updates=updates,
        updates_per_chunk=min(cfg.updates_per_chunk, eval_every),
        hidden=cfg.hidden,
        reward_scale=cfg.reward_scale,
        network=cfg.network,
        layer_norm=cfg.layer_norm,
        last_action=cfg.last_action,
        eval_every=eval_every,
        eval_envs=cfg.eval_envs,
        select_last=cfg.select_last,
        ppo=PPOConfig(
            lr=cfg.lr,
            adam_eps=cfg.adam_eps,
            update_epochs=cfg.update_epochs,
            num_minibatches=cfg.num_minibatches,
            mask_distill_coef=cfg.mask_distill,
            anneal_updates=updates * cfg.iterations if cfg.anneal_lr else 0,
            reward_norm=cfg.reward_norm,
            clip_value=cfg.clip_value,
        ),
    )
    return tc, updates


def load_config(run: RunDir) -> SearchConfig:
    """The configuration recorded in a run's manifest."""
    raw = dict(run.manifest["config"])
    raw.setdefault("control", False)  # runs recorded before the control learner existed
    try:
        return SearchConfig(**raw)
    except TypeError as err:
        raise ValueError(
            f"{run.path}: the manifest's config does not match this version of espark ({err})"
        ) from None
