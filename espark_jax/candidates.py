"""Candidate generation for one eSpark iteration: generate -> compile -> (repair | check) waves.

All K slots advance together: one provider call for every slot that needs the LLM (generation,
repair or review), then one sandboxed compile call for every reply waiting for it. A slot whose
reply fails to compile gets repair prompts with the compiler's one-line reason; an LLM checker
reviews compiled code and can send it back; a slot that still fails is ``failed`` (the loop
trains it with the all-ones mask and records it as a fallback). A compiled slot's ``fn`` is the
exported artefact the sandbox checked; checks recorded before (``recorded``) are reused.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from espark_jax.llm.extract import parse_verdict
from espark_jax.llm.prompts import (
    EnvPromptInfo,
    Prompt,
    checker_messages,
    generator_messages,
    repair_messages,
)
from espark_jax.llm.providers import LLMRequest, LLMResponse, Provider
from espark_jax.masks.compile import Recorded, check_candidates
from espark_jax.masks.result import CheckLimits
from espark_jax.masks.sandbox import Zygote
from espark_jax.masks.task import MaskTask
from espark_jax.search_config import SearchConfig


@dataclasses.dataclass
class Candidate:
    """One slot of an iteration while it is being generated and checked."""

    slot: int
    prompt: Prompt
    role: str = "generator"
    round: int = 0
    reply: str = ""
    code: str | None = None
    fn: Callable | None = None
    check: dict | None = None
    stats: dict | None = None
    verdict: dict | None = None
    repairs: int = 0
    checks: int = 0
    history: list = dataclasses.field(default_factory=list)
    previous: tuple | None = None  # last compiled version while a checker-requested repair runs
    state: str = "ask"  # ask -> compile -> (review ->) done | failed
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.fn is not None and self.state == "done"


def generate_candidates(
    *,
    provider: Provider,
    info: EnvPromptInfo,
    task: MaskTask,
    cfg: SearchConfig,
    iteration: int,
    feedback: str | None,
    best_code: str | None,
    samples: dict[str, np.ndarray] | None,
    recorded: Recorded | None = None,
    zygote: Zygote | None = None,
) -> list[Candidate]:
    """Run the generate / compile / repair / check waves for all K slots of one iteration
    (``recorded``: earlier checks to reuse, ``zygote``: the sandbox process to check in, see
    :func:`~espark_jax.masks.check_candidates`)."""
    cands = [
        Candidate(
            k,
            generator_messages(
                info, iteration, k, feedback, best_code, cfg.formulation, n_slots=cfg.k
            ),
        )
        for k in range(cfg.k)
    ]
    rounds: dict[tuple[int, str], int] = {}
    while any(c.state in ("ask", "review") for c in cands):
        # 1. one provider call for every slot that needs the LLM (generation, repair or review)
        asking = [c for c in cands if c.state in ("ask", "review")]
        requests = []
        for c in asking:
            role = "checker" if c.state == "review" else c.role
            n = rounds.get((c.slot, role), 0)
            prompt = (
                checker_messages(info, c.code or "", cfg.formulation)
                if role == "checker"
                else c.prompt
            )
            requests.append(
                LLMRequest.from_prompt(
                    prompt, iteration, c.slot, role, round=n, history=[tuple(h) for h in c.history]
                )
            )
            rounds[(c.slot, role)] = n + 1
        for c, resp in zip(asking, provider.generate(requests)):
            if c.state == "review":
                _after_review(c, resp, cfg)
            elif resp.error:
                c.state, c.reason = "failed", f"llm_error: {resp.error}"
            else:
                c.reply, c.state = resp.text, "compile"
        # 2. one sandboxed compile call for every reply waiting for it
        pending = [c for c in cands if c.state == "compile"]
        if pending:
            results = check_candidates(
                [c.reply for c in pending],
                task,
                max_workers=cfg.check_workers,
                samples=samples,
                timeout_s=cfg.check_timeout_s,
                limits=CheckLimits(learners=cfg.k, envs=cfg.num_envs),
                recorded=recorded,
                zygote=zygote,
            )
            for c, res in zip(pending, results):
                _after_compile(c, res, cfg)
    return cands


def _after_compile(c: Candidate, res: Any, cfg: SearchConfig) -> None:
    c.check = res.to_dict()
    if res.ok:
        c.code, c.fn, c.stats = res.code, res.fn, res.stats
        c.state = "review" if cfg.checker and c.checks < cfg.check_rounds else "done"
        return
    c.history.append((c.reply, res.reason))
    if c.repairs < cfg.repair_rounds:
        c.repairs += 1
        c.prompt = repair_messages(c.prompt, c.reply, res.reason, "compile")
        c.role, c.state = "repair", "ask"
    elif c.previous is not None:  # the checker's repair broke compiled code: keep the compiled one
        c.code, c.fn, c.stats, c.check = c.previous
        c.state, c.reason = (
            "done",
            f"checker-requested repair failed ({res.reason}); kept the compiled version",
        )
    else:
        c.code = res.code or None
        c.fn, c.state, c.reason = None, "failed", res.reason


def _after_review(c: Candidate, resp: LLMResponse, cfg: SearchConfig) -> None:
    c.checks += 1
    if resp.error:  # the checker is advisory: an unavailable checker does not fail the slot
        c.verdict = {"passed": None, "reasons": [f"checker unavailable: {resp.error}"]}
        c.state = "done"
        return
    verdict = parse_verdict(resp.text)
    c.verdict = {
        "passed": verdict.passed,
        "reasons": list(verdict.reasons),
        "suggestion": verdict.suggestion,
    }
    if verdict.passed:
        c.state = "done"
        return
    c.history.append((c.reply, "; ".join(verdict.reasons)))
    c.prompt = repair_messages(
        c.prompt, c.reply, list(verdict.reasons) or ["the checker rejected the code"], "check"
    )
    c.previous = (c.code, c.fn, c.stats, c.check)
    c.role, c.state = "repair", "ask"
