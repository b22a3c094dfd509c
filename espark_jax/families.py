"""Training defaults registered per scenario family, and the one way to build a run's environment.

A scenario's family is the part of its name before the slash (``mabim/standard-100`` ->
``mabim``). What depends on the family and not on the kind of environment code lives here:

* ``reward_scale``: rewards enter PPO multiplied by it. MABIM rewards are 1e0-1e3 per agent and
  day, so 1e-3 keeps scaled returns O(0.01-10). The SUMO reward is minus the stopped vehicles on
  an intersection's incoming lanes (a few units, tens in a jam): 1e-2 keeps discounted returns
  (gamma 0.985) at a few units, so the clipped value loss can follow them.
* ``num_envs``: environments per learner when none is given (SUMO: one worker process each, so
  small on a 2-core machine).
* ``eval_envs``: evaluation episodes of ``espark train`` (None: as many as ``num_envs``).
* ``presets``: what a family changes in the eSpark presets (SUMO: one update is one 240-decision
  episode, seconds each, so the quick preset trains two per candidate and iteration; the paper's
  SUMO budget is 2.4 M steps).
* ``sims_per_learner``: the environment itself holds ``K x E`` simulations (host environments),
  so :func:`make_env` asks the factory for ``n_envs = K x E``.
* ``fixed_episodes``: every episode lasts exactly its split's episode length (MABIM), so a
  rollout of one episode can leave the resets to a program compiled once per run.

Families not registered (tests' toy environments) get :data:`DEFAULT`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class Family:
    """Training defaults of one scenario family (see the module doc)."""

    name: str
    reward_scale: float = 1e-3
    num_envs: int = 16
    eval_envs: int | None = 4
    presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    sims_per_learner: bool = False
    fixed_episodes: bool = False

    def env_kwargs(self, n_learners: int, num_envs: int) -> dict[str, Any]:
        """Factory keyword arguments that size the environment for K learners x E envs."""
        return {"n_envs": int(n_learners) * int(num_envs)} if self.sims_per_learner else {}


DEFAULT = Family("default")
_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    """Register (or replace) the training defaults of a scenario family."""
    _FAMILIES[family.name] = family


def family_of(name: str) -> Family:
    """The family of a scenario name (``"mabim/standard-100"``) or :data:`DEFAULT`."""
    return _FAMILIES.get(str(name).split("/", 1)[0], DEFAULT)


def make_env(name: str, n_learners: int = 1, num_envs: int = 1, **kwargs: Any) -> Any:
    """Build scenario ``name`` once, sized for ``n_learners`` x ``num_envs`` (host families hold
    that many simulations; JAX environments are batched by the trainer and ignore the sizes)."""
    import envs_jax

    return envs_jax.make(name, **{**kwargs, **family_of(name).env_kwargs(n_learners, num_envs)})


register_family(Family("mabim", reward_scale=1e-3, num_envs=16, eval_envs=4, fixed_episodes=True))
register_family(
    Family(
        "sumo",
        reward_scale=1e-2,
        num_envs=2,
        eval_envs=None,
        sims_per_learner=True,
        presets={
            "quick": dict(
                steps=1_440,
                num_envs=1,
                eval_checkpoints=2,
                select_last=2,
                eval_envs=1,
                updates_per_chunk=1,
                reward_norm="none",  # per-agent normalisation is measured on MABIM only
            ),
            "paper": dict(steps=2_400_000, num_envs=2, eval_envs=2, updates_per_chunk=1),
        },
    )
)
