"""The providers that need no LLM: replay of a recorded run, and the template search.

* :class:`ReplayProvider` serves the responses recorded in an earlier run directory, keyed by
  (iteration, slot, role, round), and warns about prompt drift.
* :class:`TemplateProvider` renders parametric mask templates under an evolutionary search
  (:mod:`espark_jax.llm.templates`): the paper's "w/o LLM" ablation, labelled so everywhere.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from espark_jax.llm.base import LLMRequest, LLMResponse, ReplayError, SlotResult
from espark_jax.llm.env_info import EnvPromptInfo
from espark_jax.llm.recording import read_record
from espark_jax.llm.templates import Genome, TemplateSearch, prepare_families, render_genome


class ReplayProvider:
    """Serves the responses recorded in an earlier run directory.

    Training and selection stay real, but the replies do not react to this run's feedback, which
    the label says ("replay of run X"). A record whose prompt hash differs from the request's is
    served anyway with ``prompt_drift=True`` and one warning per :meth:`generate` call.
    """

    name = "replay"

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ReplayError(
                f"replay directory {self.run_dir} does not exist; "
                "pass replay:<an earlier run directory>"
            )
        if not any(self.run_dir.glob("iter_*/cand_*/*.json")):
            raise ReplayError(
                f"replay directory {self.run_dir} holds no iter_XX/cand_KK/*.json records"
            )
        self.label = f"replay of run {self.run_dir.resolve().name}"

    def describe(self) -> dict:
        """Manifest entry."""
        return {"name": self.name, "label": self.label, "run_dir": str(self.run_dir.resolve())}

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """The recorded responses, in request order.

        Raises:
            ReplayError: a needed record is missing or unreadable.
        """
        out, drifted = [], []
        for req in requests:
            rec = read_record(self.run_dir, req.iteration, req.slot, req.role, req.round)
            drift = rec.get("prompt_hash") != req.prompt_hash()
            if drift:
                suffix = f"_r{req.round}" if req.round else ""
                drifted.append(f"it{req.iteration}/k{req.slot}/{req.role}{suffix}")
            out.append(
                LLMResponse(
                    str(rec["text"]),
                    str(rec.get("model", "?")),
                    dict(rec.get("usage") or {}),
                    0.0,
                    rec.get("error"),
                    dict(rec.get("raw") or {}),
                    drift,
                )
            )
        if drifted:
            warnings.warn(
                f"{self.label}: {len(drifted)} prompt(s) differ from the recorded ones "
                f"({', '.join(drifted[:4])}"
                f"{', ...' if len(drifted) > 4 else ''}); serving the recorded replies anyway",
                stacklevel=2,
            )
        return out

    def tell(self, iteration: int, results: Sequence[SlotResult]) -> None:
        """No-op: recorded replies do not change."""


STATIC_VERDICT = json.dumps(
    {
        "pass": True,
        "reasons": [
            "static-only: the template provider has no LLM checker; "
            "the static compiler checks the code"
        ],
        "suggestion": "",
    }
)


class TemplateProvider:
    """No LLM: hand-written parametric mask templates under an evolutionary search.

    Generator requests get the search's genome for (iteration, slot), rendered to source and
    wrapped in a ```python fence; a repair request gets a random restart for that slot; a checker
    request gets a static pass verdict (model ``"static-only"``). :meth:`tell` feeds the selection
    scores back into the search. Deterministic for a seed and the told scores. On resume, call
    :meth:`tell` for every finished iteration (in order) before generating the next one.
    """

    name = "template"
    label = "template-mutation (no LLM)"

    def __init__(
        self,
        env_family: str,
        seed: int = 0,
        env_info: EnvPromptInfo | None = None,
        **search_kw: Any,
    ) -> None:
        self.env_family = env_family
        self.families, self.roles = prepare_families(env_family, env_info)
        self.search = TemplateSearch(self.families, seed, **search_kw)
        self._by_name = {f.name: f for f in self.families}
        self._issued: dict[tuple[int, int], Genome] = {}

    def describe(self) -> dict:
        """Manifest entry."""
        return {
            "name": self.name,
            "label": self.label,
            "env_family": self.env_family,
            "seed": self.search.seed,
            "families": [f.name for f in self.families],
            "checker": "static-only",
        }

    def source(self, genome: Genome) -> str:
        """The rendered source of ``genome`` for this environment."""
        return render_genome(genome, self._by_name, self.roles)

    def _reply(self, genome: Genome) -> str:
        fam = self._by_name[genome.family]
        idea = fam.summary + (
            f"; combined (AND) with: {self._by_name[genome.partner.family].summary}"
            if genome.partner is not None
            else ""
        )
        return (
            f"Template-mutation candidate (no LLM): {genome.describe()}.\nIdea: {idea}.\n\n"
            f"```python\n{self.source(genome)}```\n"
        )

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """Rendered template candidates (generator / repair) or static verdicts (checker)."""
        out = []
        for req in requests:
            start = time.perf_counter()
            if req.role == "checker":
                out.append(
                    LLMResponse(
                        STATIC_VERDICT, "static-only", {}, 0.0, None, {"checker": "static-only"}
                    )
                )
                continue
            if req.role == "repair":
                genome = self.search.restart(req.iteration, req.slot, req.round)
            else:
                genome = self.search.propose(req.iteration, req.slot)
            self._issued[(req.iteration, req.slot)] = genome
            text = self._reply(genome)
            out.append(
                LLMResponse(
                    text,
                    "template-mutation",
                    {},
                    time.perf_counter() - start,
                    None,
                    {"genome": genome.to_dict()},
                )
            )
        return out

    def _genome_for(self, iteration: int, slot: int, code: str) -> Genome | None:
        """The genome whose source is ``code``: the one issued for the slot, else (after a resume)
        the search's proposal or one of its repair restarts."""
        want = _normalise(code)
        candidates = [self._issued.get((iteration, slot)), self.search.propose(iteration, slot)]
        candidates += [self.search.restart(iteration, slot, r) for r in range(1, 4)]
        return next(
            (g for g in candidates if g is not None and _normalise(self.source(g)) == want), None
        )

    def tell(self, iteration: int, results: Sequence[SlotResult]) -> None:
        """Feed one generation's selection scores to the search.

        A slot counts when its reported code is a source this provider issued for it; fallback
        slots report ``code=None`` and count as failures. Unrecognised code is ignored with a
        warning.
        """
        scores: dict[int, tuple[Genome, float | None]] = {}
        unknown = []
        for res in results:
            if res.code is None:
                continue
            genome = self._genome_for(iteration, res.slot, res.code)
            if genome is None:
                unknown.append(res.slot)
                continue
            ok = res.score is not None and math.isfinite(float(res.score))
            scores[res.slot] = (genome, float(res.score) if ok else None)
        if unknown:
            warnings.warn(
                f"template provider: iteration {iteration} slots {unknown} "
                "report code it did not issue; "
                "their scores are ignored",
                stacklevel=2,
            )
        self.search.tell(iteration, scores)


def _normalise(code: str) -> str:
    lines = (ln.rstrip() for ln in code.strip().splitlines())
    return "\n".join(ln for ln in lines if ln and not ln.lstrip().startswith("#"))
