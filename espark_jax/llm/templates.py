"""Parametric mask templates and the evolutionary search over them (the "w/o LLM" ablation).

A :class:`Family` is a hand-written mask program with numeric parameters, rendered to source text
that defines ``compute_mask(ctx, action_space)`` exactly like an LLM reply would, so it goes
through the same extraction and compiler. A :class:`Genome` is one family with concrete
parameters, optionally AND-combined with a second genome.

:class:`TemplateSearch` is a (1 + lambda) / elite search: iteration 1 samples the families (their
defaults first); later iterations keep the best genome of the last scored generation in slot 0
and fill the other slots with parameter mutations of the elites, recombinations (logical AND of
two elites) and a few random restarts. Every draw comes from a generator seeded by
``(seed, iteration, slot)``, so a search is deterministic for a seed and the results it is told.

The families themselves live in :mod:`espark_jax.llm.templates_mabim` and
:mod:`espark_jax.llm.templates_sumo`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from espark_jax.llm.env_info import EnvPromptInfo

__all__ = [
    "Family",
    "Genome",
    "Param",
    "TemplateSearch",
    "families_for",
    "prepare_families",
    "render_genome",
]


@dataclasses.dataclass(frozen=True)
class Param:
    """A numeric template parameter.

    Attributes:
        name: substitution name in the family's body (``$name``).
        low, high: bounds (inclusive).
        default: the hand-picked value used in the first generation.
        log: mutate multiplicatively (for scale-like parameters).
        integer: round to an integer.
    """

    name: str
    low: float
    high: float
    default: float
    log: bool = False
    integer: bool = False

    def clip(self, value: float) -> float:
        """``value`` clipped to the bounds and rounded (integers, or 3 significant decimals)."""
        value = min(max(float(value), self.low), self.high)
        return float(round(value)) if self.integer else float(round(value, 3))

    def sample(self, rng: np.random.Generator) -> float:
        """A uniform draw (log-uniform for ``log`` parameters)."""
        if self.log:
            return self.clip(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self.clip(rng.uniform(self.low, self.high))

    def mutate(self, value: float, rng: np.random.Generator) -> float:
        """A Gaussian step: x * exp(N(0, 0.35)) for ``log``, else x + N(0, 0.15 * range)."""
        if self.log:
            return self.clip(value * math.exp(rng.normal(0.0, 0.35)))
        step = rng.normal(0.0, 0.15 * (self.high - self.low))
        if self.integer and abs(step) < 0.5:
            step = math.copysign(1.0, step)
        return self.clip(value + step)


@dataclasses.dataclass(frozen=True)
class Family:
    """A parametric mask program.

    Attributes:
        name: identifier (``"cover_cap"``).
        summary: one sentence saying what the mask prunes (goes into the reply's prose).
        params: the tunable parameters.
        body: :class:`string.Template` source of one function; ``$fn`` is the function name,
            ``$<param>`` the parameter values and ``$<role>`` the context expressions it reads.
        roles: names of the context roles the body needs (resolved per environment).
    """

    name: str
    summary: str
    params: tuple[Param, ...]
    body: str
    roles: tuple[str, ...] = ()

    def default_genome(self) -> "Genome":
        """This family with its default parameters."""
        return Genome(self.name, tuple((p.name, p.clip(p.default)) for p in self.params))

    def random_genome(self, rng: np.random.Generator) -> "Genome":
        """This family with uniformly drawn parameters."""
        return Genome(self.name, tuple((p.name, p.sample(rng)) for p in self.params))


@dataclasses.dataclass(frozen=True)
class Genome:
    """One concrete mask program: a family, its parameter values and an optional AND partner."""

    family: str
    params: tuple[tuple[str, float], ...]
    partner: "Genome | None" = None

    def describe(self) -> str:
        """``family(a=1.0, b=2.0)``, ``AND``-joined for recombinations."""
        own = f"{self.family}({', '.join(f'{k}={v:g}' for k, v in self.params)})"
        return own if self.partner is None else f"{own} AND {self.partner.describe()}"

    def to_dict(self) -> dict:
        """JSON form (for records)."""
        return {
            "family": self.family,
            "params": dict(self.params),
            "partner": None if self.partner is None else self.partner.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Genome":
        """Inverse of :meth:`to_dict`."""
        partner = data.get("partner")
        return cls(
            str(data["family"]),
            tuple((str(k), float(v)) for k, v in dict(data["params"]).items()),
            None if partner is None else cls.from_dict(partner),
        )

    def base(self) -> "Genome":
        """This genome without its partner."""
        return dataclasses.replace(self, partner=None)


_COMBINE = """
def compute_mask(ctx, action_space):
    first = mask_part_a(ctx, action_space)
    both = first * mask_part_b(ctx, action_space)
    keep = np.sum(both, axis=-1, keepdims=True) > 0
    return np.where(keep, both, first)
"""


def _render_one(family: Family, genome: Genome, fn: str, roles: Mapping[str, str]) -> str:
    values: dict[str, Any] = {"fn": fn, **roles}
    values.update(
        {k: repr(float(v)) if not float(v).is_integer() else repr(int(v)) for k, v in genome.params}
    )
    try:
        return string.Template(family.body).substitute(values).strip() + "\n"
    except KeyError as err:
        raise ValueError(f"template {family.name} needs a value for {err.args[0]!r}") from None


def render_genome(
    genome: Genome, families: Mapping[str, Family], roles: Mapping[str, str] | None = None
) -> str:
    """Source text defining ``compute_mask(ctx, action_space)`` for ``genome``.

    ``roles`` maps the families' role names (``$pressure``, ``$queue``, ...) to context
    expressions (``"ctx.queue"``).
    A recombined genome becomes two helpers ``mask_part_a``/``mask_part_b`` and a
    ``compute_mask`` that ANDs them, keeping the first mask for agents the AND would leave empty.
    """
    roles = dict(roles or {})
    try:
        fam = families[genome.family]
    except KeyError:
        raise ValueError(
            f"unknown template family {genome.family!r}; known: {', '.join(sorted(families))}"
        ) from None
    header = f"# template-mutation (no LLM): {genome.describe()}\n"
    if genome.partner is None:
        return header + _render_one(fam, genome, "compute_mask", roles)
    partner = genome.partner
    if partner.family not in families:
        raise ValueError(f"unknown template family {partner.family!r}")
    return (
        header
        + _render_one(fam, genome.base(), "mask_part_a", roles)
        + "\n\n"
        + _render_one(families[partner.family], partner.base(), "mask_part_b", roles)
        + "\n"
        + _COMBINE.lstrip()
    )


def families_for(env_family: str) -> tuple[Family, ...]:
    """The template families of an environment family (``"mabim"`` or ``"sumo"``)."""
    if env_family == "mabim":
        from espark_jax.llm.templates_mabim import FAMILIES
    elif env_family == "sumo":
        from espark_jax.llm.templates_sumo import FAMILIES
    else:
        raise ValueError(
            f"no mask templates for environment family {env_family!r}; use 'mabim' or 'sumo'"
        )
    return FAMILIES


def prepare_families(
    env_family: str, env_info: "EnvPromptInfo | None" = None
) -> tuple[tuple[Family, ...], dict[str, str]]:
    """The families usable for one environment and the role expressions they read.

    With ``env_info``, a family is kept only if every ``ctx.<field>`` it reads exists (and, for
    SUMO, its roles resolve from the documented fields). MABIM without ``env_info`` uses the
    fields of ``envs_jax/mabim/features.py``; SUMO needs ``env_info``.

    Raises:
        ValueError: unknown family, SUMO without ``env_info``, or no usable family at all.
    """
    families = families_for(env_family)
    if env_info is None:
        if env_family != "mabim":
            raise ValueError(
                f"the {env_family} templates need the environment's context fields; "
                "pass env_info=EnvPromptInfo.from_env(env)"
            )
        from envs_jax.mabim.features import MASK_CONTEXT_FIELDS

        names = {f.name for f in MASK_CONTEXT_FIELDS}
        roles: dict[str, str] = {}
    else:
        names = {f.name for f in env_info.context_fields}
        roles = {}
        if env_family == "sumo":
            from espark_jax.llm.templates_sumo import resolve_roles

            roles = resolve_roles(
                env_info.context_fields,
                env_info.field_shapes(),
                env_info.agent_shape,
                env_info.n_actions,
            )
    usable = []
    for fam in families:
        if not all(r in roles for r in fam.roles):
            continue
        probe = fam.default_genome()
        source = _render_one(fam, probe, "compute_mask", roles)
        if set(re.findall(r"\bctx\.(\w+)", source)) <= names:
            usable.append(fam)
    if not usable:
        raise ValueError(
            f"no {env_family} mask template can run on this environment's context fields "
            f"({', '.join(sorted(names))}); use an LLM provider"
        )
    return tuple(usable), roles


class TemplateSearch:
    """Evolutionary search over template genomes, driven by told selection scores.

    Args:
        families: the usable families (their roles already resolvable).
        seed: seeds every random draw together with (iteration, slot).
        elite_frac: fraction of a scored generation kept as parents (at least 2).
        p_restart: probability that a non-elite slot is a random restart.
        p_recombine: probability that it is an AND of two elites (else a mutation).
    """

    def __init__(
        self,
        families: Sequence[Family],
        seed: int = 0,
        *,
        elite_frac: float = 0.25,
        p_restart: float = 0.15,
        p_recombine: float = 0.25,
    ) -> None:
        if not families:
            raise ValueError("TemplateSearch needs at least one template family")
        self.families = {f.name: f for f in families}
        self._order = [f.name for f in families]
        self.seed = int(seed)
        self.elite_frac = elite_frac
        self.p_restart = p_restart
        self.p_recombine = p_recombine
        self._proposals: dict[int, list[Genome]] = {}
        self._scores: dict[int, list[tuple[float, Genome]]] = {}
        self._replaced: dict[tuple[int, int, int], Genome] = {}

    # -- bookkeeping -------------------------------------------------------------------------

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *[int(k) for k in key]])

    def tell(self, iteration: int, scores: Mapping[int, tuple[Genome, float | None]]) -> None:
        """Record a generation's results: ``{slot: (genome, score or None for a failure)}``."""
        scored = [
            (float(s), g) for g, s in scores.values() if s is not None and math.isfinite(float(s))
        ]
        self._scores[int(iteration)] = sorted(scored, key=lambda t: -t[0])

    def elites(self, before: int | None = None) -> list[Genome]:
        """Parents: the best genomes of the latest scored generation before ``before``, best first.

        Scores are compared only within one generation: with retention training every learner of
        a generation starts from the same parameters, while later generations have trained longer.
        """
        its = [i for i, s in self._scores.items() if s and (before is None or i < before)]
        if not its:
            return []
        ranked, seen = [], set()
        for _, g in self._scores[max(its)]:
            if g not in seen:
                seen.add(g)
                ranked.append(g)
        n = max(2, math.ceil(self.elite_frac * len(ranked)))
        return ranked[:n]

    # -- proposals ---------------------------------------------------------------------------

    def _random(self, rng: np.random.Generator) -> Genome:
        return self.families[self._order[int(rng.integers(len(self._order)))]].random_genome(rng)

    def _mutate(self, genome: Genome, rng: np.random.Generator) -> Genome:
        if genome.partner is not None and rng.random() < 0.5:
            return dataclasses.replace(genome, partner=self._mutate(genome.partner, rng))
        fam = self.families[genome.family]
        values = dict(genome.params)
        params = list(fam.params)
        chosen = [p for p in params if rng.random() < 0.5] or [
            params[int(rng.integers(len(params)))]
        ]
        for p in chosen:
            values[p.name] = p.mutate(values[p.name], rng)
        return dataclasses.replace(genome, params=tuple((p.name, values[p.name]) for p in params))

    def _recombine(self, a: Genome, b: Genome) -> Genome:
        return dataclasses.replace(a.base(), partner=b.base())

    def _offspring(self, elites: list[Genome], rng: np.random.Generator) -> Genome:
        u = rng.random()
        if u < self.p_restart:
            return self._random(rng)
        weights = np.array([1.0 / (i + 1) for i in range(len(elites))])

        def pick() -> Genome:
            return elites[int(rng.choice(len(elites), p=weights / weights.sum()))]

        if u < self.p_restart + self.p_recombine and len(elites) >= 2:
            a = pick()
            others = [
                e for e in elites if e.base() != a.base() and e.base().family != a.family
            ] or [e for e in elites if e.base() != a.base()]
            if others:
                return self._recombine(a, others[int(rng.integers(len(others)))])
        return self._mutate(pick(), rng)

    def _propose_new(self, iteration: int, slot: int, taken: set[Genome]) -> Genome:
        elites = self.elites(before=iteration)
        if not elites:
            if slot < len(self._order) and iteration <= 1:
                return self.families[self._order[slot]].default_genome()
            rng = self._rng(iteration, slot)
            genome = self._random(rng)
            for _ in range(10):
                if genome not in taken:
                    break
                genome = self._random(rng)
            return genome
        if slot == 0:
            return elites[0]
        rng = self._rng(iteration, slot)
        genome = self._offspring(elites, rng)
        for _ in range(10):
            if genome not in taken:
                break
            genome = self._offspring(elites, rng)
        return genome

    def propose(self, iteration: int, slot: int) -> Genome:
        """The genome for ``slot`` of ``iteration`` (memoised; slots are filled in order)."""
        gen = self._proposals.setdefault(int(iteration), [])
        while len(gen) <= slot:
            gen.append(self._propose_new(int(iteration), len(gen), set(gen)))
        return gen[slot]

    def restart(self, iteration: int, slot: int, round_: int) -> Genome:
        """A random genome replacing a slot whose code failed (repair round ``round_``)."""
        key = (int(iteration), int(slot), int(round_))
        if key not in self._replaced:
            self._replaced[key] = self._random(self._rng(iteration, slot, 1000 + round_))
        return self._replaced[key]
