"""The eSpark loop: generate K exploration functions, check them, train K learners, select, reflect.

One iteration::

    prompts --provider--> K replies --extract + sandboxed compile--> K mask functions
        (a failed slot gets repair prompts with the compiler's one-line reason; an LLM checker
         reviews compiled code and can send it back; a slot that still fails trains with the
         all-ones mask and is recorded as a fallback)
    K learners (retention: all start from the previous best) train in ONE jitted program
    selection score = mean evaluation return (no masks) over the last checkpoints -> best slot
    feedback (reward components per agent group, mask statistics) -> next iteration's prompts

Everything is recorded in a :class:`~espark_jax.runs.RunDir`; :func:`run_search` on an existing
directory continues after the last finished iteration without repeating recorded LLM calls.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.core import MaskContext
from espark_jax.feedback import build_feedback
from espark_jax.ippo.host import REWARD_SCALE as HOST_REWARD_SCALE
from espark_jax.ippo.host import is_host_env, make_env, make_trainer, record_host_contexts
from espark_jax.ippo.ppo import PPOConfig
from espark_jax.ippo.train import TrainConfig, _slot, train
from espark_jax.llm.extract import parse_verdict
from espark_jax.llm.prompts import (
    EnvPromptInfo,
    Prompt,
    checker_messages,
    generator_messages,
    repair_messages,
)
from espark_jax.llm.providers import (
    LLMRequest,
    LLMResponse,
    Provider,
    SlotResult,
)
from espark_jax.llm.recording import RecordingProvider
from espark_jax.masks.builtin import all_ones
from espark_jax.masks.sandbox import check_candidates
from espark_jax.masks.task import MaskTask
from espark_jax.runs import RunDir, read_json, write_json, write_text

PRESETS: dict[str, dict[str, Any]] = {
    # a few minutes on a 2-core CPU: small K, few iterations, a short budget
    # (lr 1e-3: the budget is about 0.2 % of the paper's, twice the paper's rate learns faster in it)
    "quick": dict(
        k=4,
        iterations=3,
        steps=9_000,
        num_envs=2,
        eval_checkpoints=3,
        eval_envs=2,
        updates_per_chunk=5,
        hidden=(64, 64),
        lr=1e-3,
        repair_rounds=1,
        check_rounds=1,
    ),
    # the paper: K = 16, ten iterations over 5.02 M environment steps per candidate (MABIM)
    "paper": dict(
        k=16,
        iterations=10,
        steps=5_020_000,
        num_envs=32,
        eval_checkpoints=5,
        eval_envs=8,
        updates_per_chunk=10,
        hidden=(64, 64),
        repair_rounds=2,
        check_rounds=1,
    ),
}
# Per scenario family, what changes in a preset. SUMO: one update is one 240-decision episode of
# k x num_envs simulations on the host's CPU cores (seconds each), so the quick preset trains 2
# episodes per candidate and iteration; the paper's SUMO budget is 2.4 M steps.
FAMILY_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "sumo": {
        "quick": dict(
            steps=1_440,
            num_envs=1,
            eval_checkpoints=2,
            select_last=2,
            eval_envs=1,
            updates_per_chunk=1,
        ),
        "paper": dict(steps=2_400_000, num_envs=2, eval_envs=2, updates_per_chunk=1),
    },
}


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
        hidden: MLP widths.
        lr: Adam learning rate of the learners (paper: 5e-4).
        seed: seed of the learners, environments and the template search.
        provider: ``auto``, ``anthropic``, ``replay:DIR`` or ``template``.
        generator_model / checker_model: anthropic models.
        checker: run the LLM checker (``--no-checker`` ablation when False).
        retention: start every slot from the previous best learner (``--no-retention`` when False).
        reward_factors: per-component feedback (``--no-reward-factors`` when False).
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
    lr: float = 5e-4
    seed: int = 0
    provider: str = "auto"
    generator_model: str = "claude-sonnet-4-6"
    checker_model: str = "claude-haiku-4-5"
    checker: bool = True
    retention: bool = True
    reward_factors: bool = True
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
            "check_workers",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.formulation not in ("code", "lang"):
            raise ValueError(f"--formulation must be 'code' or 'lang', got {self.formulation!r}")
        if self.repair_rounds < 0 or self.check_rounds < 0:
            raise ValueError("repair and check rounds must be >= 0")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> "SearchConfig":
        """A preset (``quick`` or ``paper``), adjusted for the scenario's family (:data:`FAMILY_PRESETS`),
        with explicit overrides (None values are ignored)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
        explicit = {k: v for k, v in overrides.items() if v is not None}
        family = str(explicit.get("scenario", cls.scenario)).split("/", 1)[0]
        values = {**PRESETS[preset], **FAMILY_PRESETS.get(family, {}).get(preset, {}), **explicit}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``SearchConfig(**d)`` inverts it."""
        return dataclasses.asdict(self)

    def steps_per_iteration(self) -> int:
        """Environment steps per candidate per iteration (3x without retention, as in the paper)."""
        per = int(math.ceil(self.steps / self.iterations))
        return per if self.retention else 3 * per


# ----------------------------------------------------------------------------------------------
# Recorded contexts (realistic states for the compiler's value checks)
# ----------------------------------------------------------------------------------------------


def record_contexts(
    env: Any, key: jax.Array, n_envs: int = 4, every: int = 7
) -> dict[str, np.ndarray]:
    """Mask contexts visited by a constant order-the-mean policy on the train split.

    Returns field -> ``[batch, *shape]`` numpy arrays (``n_envs`` x every ``every``-th day).
    """
    params = env.default_params("train")
    spec = env.spec
    values = np.asarray(spec.action_values)
    steady = int(np.argmin(np.abs(values - 1.0)))  # the "order the mean demand" action
    actions = jnp.full((spec.n_agents,), steady, jnp.int32)
    length = int(spec.episode_length["train"])

    def episode(k: jax.Array) -> MaskContext:
        _, state = env.reset(k, params)

        def day(s: Any, _: Any) -> tuple[Any, MaskContext]:
            ctx = env.mask_context(s, params)
            _, s, _, _, _ = env.step(None, s, actions, params)
            return s, ctx

        _, ctxs = jax.lax.scan(day, state, None, length=length)
        return jax.tree_util.tree_map(lambda x: x[::every], ctxs)

    ctxs = jax.jit(jax.vmap(episode))(jax.random.split(key, n_envs))
    return {
        name: np.asarray(v).reshape((-1,) + np.shape(v)[2:]) for name, v in ctxs.as_dict().items()
    }


# ----------------------------------------------------------------------------------------------
# Candidate generation: generate -> compile -> (repair | check) waves over all K slots
# ----------------------------------------------------------------------------------------------


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
) -> list[Candidate]:
    """Run the generate / compile / repair / check waves for all K slots of one iteration."""
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


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def _argmax(scores: Sequence[float | None]) -> int:
    vals = np.array(
        [-np.inf if s is None or math.isnan(s) else s for s in scores], dtype=np.float64
    )
    return int(np.argmax(vals))


def _train_config(cfg: SearchConfig, env: Any) -> tuple[TrainConfig, int]:
    episode = int(env.spec.episode_length["train"])
    updates = max(1, int(math.ceil(cfg.steps_per_iteration() / (episode * cfg.num_envs))))
    eval_every = max(1, updates // cfg.eval_checkpoints)
    scale = {"reward_scale": HOST_REWARD_SCALE} if is_host_env(env) else {}
    tc = TrainConfig(
        num_envs=cfg.num_envs,
        num_updates=updates,
        updates_per_chunk=min(cfg.updates_per_chunk, eval_every),
        hidden=cfg.hidden,
        eval_every=eval_every,
        eval_envs=cfg.eval_envs,
        select_last=cfg.select_last,
        ppo=PPOConfig(lr=cfg.lr),
        **scale,
    )
    return tc, updates


class Search:
    """One eSpark run bound to a run directory (see :func:`run_search`).

    A host (SUMO) scenario gets one environment of ``k x num_envs`` simulations and the
    :class:`~espark_jax.ippo.host.HostTrainer`; :meth:`close` stops its worker processes.
    """

    def __init__(
        self,
        cfg: SearchConfig,
        run: RunDir,
        provider: Provider,
        *,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.cfg, self.run, self.progress, self.log = cfg, run, progress, log
        self.provider = RecordingProvider(provider, run.path)
        self.env = make_env(cfg.scenario, cfg.k, cfg.num_envs, **cfg.env_kwargs)
        try:
            self.spec = self.env.spec
            self.task = MaskTask.from_env_spec(self.spec)
            self.info = EnvPromptInfo.from_env(self.env)
            self.train_config, self.updates = _train_config(cfg, self.env)
            self.fallback = all_ones(self.spec)
            self.trainer = make_trainer(
                self.env, self.train_config, [self.fallback] * cfg.k, progress=progress
            )
            self.root = jax.random.PRNGKey(cfg.seed)
            if is_host_env(self.env):
                self.samples = record_host_contexts(self.env, seed=cfg.seed)
            else:
                self.samples = record_contexts(self.env, jax.random.fold_in(self.root, 10_000))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the environment (a host environment's worker processes); idempotent."""
        close = getattr(self.env, "close", None)
        if close is not None:
            close()

    # ------------------------------------------------------------------ one iteration
    def iteration(
        self, it: int, feedback: str | None, best_code: str | None, best: Any
    ) -> dict[str, Any]:
        """Run iteration ``it`` (1-based) and write its records; returns its summary."""
        cfg, run = self.cfg, self.run
        run.discard_unfinished(it)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        cands = generate_candidates(
            provider=self.provider,
            info=self.info,
            task=self.task,
            cfg=cfg,
            iteration=it,
            feedback=feedback,
            best_code=best_code,
            samples=self.samples,
        )
        timings["generate_and_check_s"] = time.perf_counter() - t0
        fallbacks = [c.slot for c in cands if not c.ok]
        for c in cands:
            d = run.cand_dir(it, c.slot)
            if c.code:
                write_text(d / "code.py", c.code + "\n")
            write_json(
                d / "check.json",
                {
                    "status": "ok" if c.ok else "fallback",
                    "reason": c.reason,
                    "repairs": c.repairs,
                    "verdict": c.verdict,
                    "compile": c.check,
                },
            )
        if fallbacks:
            self.log(
                f"iteration {it}: {len(fallbacks)} of {cfg.k} slots fall back to the all-ones mask "
                f"(slots {', '.join(map(str, fallbacks))})"
            )
        self.trainer.set_masks([c.fn if c.ok else self.fallback for c in cands])

        key = jax.random.fold_in(self.root, it)
        k_init, k_train = jax.random.split(key)
        if best is None or not cfg.retention:
            state = self.trainer.init(k_init)
        else:
            state = self.trainer.init(k_init, params=best["params"], opt_state=best["opt_state"])
        retained = (
            jax.device_get(_slot(state.params, 0)) if best is not None and cfg.retention else None
        )
        t1 = time.perf_counter()
        result = train(
            self.trainer,
            state,
            k_train,
            num_updates=self.updates,
            metrics_path=str(run.iter_dir(it) / "metrics.jsonl"),
            progress=self.progress,
            desc=f"iter {it}/{cfg.iterations}",
        )
        timings["train_s"] = time.perf_counter() - t1
        scores = result.scores
        best_slot = _argmax(scores)
        learner = {
            "params": _slot(result.state.params, best_slot),
            "opt_state": _slot(result.state.opt_state, best_slot),
        }
        run.save_learner(it, learner)

        train_returns = _train_curves(run.iter_dir(it) / "metrics.jsonl", cfg.k)
        for c in cands:
            write_json(
                run.cand_dir(it, c.slot) / "metrics.json",
                {
                    "slot": c.slot,
                    "status": "ok" if c.ok else "fallback",
                    "score": scores[c.slot],
                    "eval_return": [e["return"][c.slot] for e in result.evals],
                    "eval_update": [e["update"] for e in result.evals],
                    "train_return": train_returns[c.slot],
                    "mask_stats": c.stats,
                },
            )
        others = [_other_line(c, scores[c.slot]) for c in cands if c.slot != best_slot]
        best_c = cands[best_slot]
        text = build_feedback(
            iteration=it,
            best_slot=best_slot,
            evals=result.evals,
            train_returns=train_returns[best_slot],
            mask_stats=best_c.stats,
            action_names=self.spec.action_names,
            others=others,
            reward_factors=cfg.reward_factors,
            env_steps=self.updates * self.train_config.num_envs * self.trainer.num_steps,
            split=self.train_config.eval_split,
        )
        summary = {
            "iteration": it,
            "best_slot": best_slot,
            "best_score": scores[best_slot],
            "scores": scores,
            "best_code": best_c.code if best_c.ok else None,
            "feedback": text,
            "fallbacks": fallbacks,
            "statuses": ["ok" if c.ok else "fallback" for c in cands],
            "reasons": [c.reason for c in cands],
            "timings": timings,
            "compile_seconds": {k: list(v) for k, v in self.trainer.compile_seconds.items()},
            "llm_latency_s": None,
            "env_steps_per_candidate": self.updates
            * self.train_config.num_envs
            * self.trainer.num_steps,
            "retention_check": None
            if retained is None
            else _same_tree(retained, jax.device_get(best["params"])),
        }
        write_json(run.iter_dir(it) / "summary.json", summary)
        run.log(
            {
                "event": "iteration",
                **{
                    k: summary[k]
                    for k in ("iteration", "best_slot", "best_score", "fallbacks", "timings")
                },
            }
        )
        self.provider.tell(
            it,
            [
                SlotResult(c.slot, c.code if c.ok else None, scores[c.slot] if c.ok else None)
                for c in cands
            ],
        )
        return summary

    # ------------------------------------------------------------------ whole run
    def run_all(self) -> dict[str, Any]:
        """All iterations (skipping finished ones), then the final test evaluation."""
        cfg, run = self.cfg, self.run
        feedback = best_code = best = None
        history = []
        for it in range(1, cfg.iterations + 1):
            summary = run.iteration_summary(it)
            if summary is not None:
                self.log(
                    f"iteration {it}: already finished (best slot {summary['best_slot']}), resuming after it"
                )
                self._replay_tell(it, summary)
            else:
                summary = self.iteration(it, feedback, best_code, best)
                self.log(_iteration_line(summary, cfg.k))
            # the next iteration always starts from the checkpoint on disk, resumed or not
            best = self._best_from_disk(it)
            history.append(summary)
            feedback = summary["feedback"]
            best_code = summary["best_code"] or best_code
        results = self.final_evaluation(best, history)
        return results

    def _best_from_disk(self, it: int) -> Any:
        init = self.trainer.init(jax.random.PRNGKey(0))
        like = {"params": _slot(init.params, 0), "opt_state": _slot(init.opt_state, 0)}
        return self.run.load_learner(it, like)

    def _replay_tell(self, it: int, summary: dict[str, Any]) -> None:
        results = []
        for slot, status in enumerate(summary["statuses"]):
            code_path = self.run.cand_dir(it, slot) / "code.py"
            code = code_path.read_text() if status == "ok" and code_path.exists() else None
            results.append(
                SlotResult(
                    slot,
                    code.rstrip("\n") if code else None,
                    summary["scores"][slot] if status == "ok" else None,
                )
            )
        self.provider.tell(it, results)

    def final_evaluation(self, best: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Evaluate the surviving learner on the test split (no masks) and write ``results.json``."""
        params = jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(x, (1,) + jnp.shape(x)), best["params"]
        )
        key = jax.random.fold_in(self.root, 20_000)
        test = {}
        for greedy in (True, False):
            ev = self.trainer.evaluate(
                params, key, split="test", greedy=greedy, num_envs=self.cfg.eval_envs
            )
            test["greedy" if greedy else "sampled"] = _first_learner(ev)
        results = {
            "scenario": self.cfg.scenario,
            "data_source": self.spec.data_source,
            "provider": self.provider.label,
            "provider_name": self.provider.name,
            "config": self.cfg.to_dict(),
            "test": test,
            "iterations": [
                {
                    "iteration": h["iteration"],
                    "best_slot": h["best_slot"],
                    "best_score": h["best_score"],
                    "scores": h["scores"],
                    "fallbacks": h["fallbacks"],
                    "timings": h["timings"],
                }
                for h in history
            ],
        }
        write_json(self.run.path / "results.json", results)
        try:
            from espark_jax.report import loop_figure

            loop_figure(self.run.path, results)
        except ImportError:  # pragma: no cover - matplotlib is a core dependency
            pass
        return results


def _first_learner(ev: dict[str, Any]) -> dict[str, Any]:
    """An evaluation of K=1 learners as plain numbers."""

    def first(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: first(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)) and x and not isinstance(x[0], str):
            return x[0]
        return x

    return first(ev)


def _train_curves(path: Any, k: int) -> list[list[float | None]]:
    curves: list[list[float | None]] = [[] for _ in range(k)]
    if not path.exists():
        return curves
    import json

    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train" and rec.get("train_return") is not None:
            for slot, v in enumerate(rec["train_return"]):
                curves[slot].append(v)
    return curves


def _other_line(c: Candidate, score: float | None) -> str:
    if c.ok:
        return (
            f"slot {c.slot}: score {score:,.1f}"
            if score is not None
            else f"slot {c.slot}: no score"
        )
    return f"slot {c.slot}: fallback to the all-ones mask ({c.reason})"


def _same_tree(a: Any, b: Any) -> bool:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)
    )


def _iteration_line(summary: dict[str, Any], k: int) -> str:
    t = summary["timings"]
    return (
        f"iteration {summary['iteration']}: best slot {summary['best_slot']} score {summary['best_score']:,.1f}; "
        f"{k - len(summary['fallbacks'])}/{k} candidates compiled; generate+check {t['generate_and_check_s']:.1f} s, "
        f"train {t['train_s']:.1f} s"
    )


def run_search(
    cfg: SearchConfig,
    run: RunDir,
    provider: Provider,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or continue) an eSpark search in ``run`` and return the final results."""
    search = Search(cfg, run, provider, progress=progress, log=log)
    try:
        return search.run_all()
    finally:
        search.close()


def load_config(run: RunDir) -> SearchConfig:
    """The configuration recorded in a run's manifest."""
    raw = dict(run.manifest["config"])
    try:
        return SearchConfig(**raw)
    except TypeError as err:
        raise ValueError(
            f"{run.path}: the manifest's config does not match this version of espark ({err})"
        ) from None


__all__ = [
    "PRESETS",
    "SearchConfig",
    "Search",
    "run_search",
    "load_config",
    "record_contexts",
    "generate_candidates",
    "read_json",
]
