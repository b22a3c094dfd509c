"""The eSpark loop: generate K exploration functions, check them, train K learners, select, reflect.

One iteration is six named steps of :class:`Search`::

    generate  prompts -> provider -> K replies, compiled in the sandbox, repaired, reviewed
    check     K mask functions, the sandbox's exported artefacts (mask.jaxexport); a slot that
              failed trains with the all-ones mask: a fallback
    train     K learners (retention: all start from the previous best) in ONE jitted program
    select    selection score = mean evaluation return (no masks) over the last checkpoints
    record    checkpoint of the best learner, per-candidate metrics, feedback, summary.json
    reflect   the provider hears every slot's score (the template search evolves from them)

Everything is recorded in a :class:`~espark_jax.runs.RunDir`; :func:`run_search` on an existing
directory continues after the last finished iteration without repeating recorded LLM calls.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from espark_jax import ippo
from espark_jax.baselines import change_ratio, reference_baselines
from espark_jax.candidates import Candidate, generate_candidates
from espark_jax.distributed import Job
from espark_jax.families import make_env
from espark_jax.feedback import build_feedback
from espark_jax.feedback_released import build_released_feedback, mask_allowed_rate
from espark_jax.ippo.sharding import fetch
from espark_jax.llm.prompts import EnvPromptInfo
from espark_jax.llm.providers import Provider, SlotResult
from espark_jax.llm.recording import RecordingProvider
from espark_jax.masks.fallback import check_fallback, with_fallback
from espark_jax.masks.safe import MaskFn, all_ones
from espark_jax.masks.sandbox import Zygote
from espark_jax.masks.task import MaskTask
from espark_jax.runs import CONTROL, RunDir, recorded_checks, write_json
from espark_jax.search_config import PRESETS, SearchConfig, load_config, train_config
from espark_jax.traces import final_traces, write_traces

FINAL_EVAL_FOLD = 20_000  # the final test evaluation's key: fold_in(PRNGKey(seed), this)


@dataclasses.dataclass
class Carry:
    """What one iteration hands to the next: feedback, best code, best and control learners."""

    feedback: str | None = None
    best_code: str | None = None
    learner: dict[str, Any] | None = None
    control: dict[str, Any] | None = None


class Search:
    """One eSpark run bound to a run directory (see :func:`run_search`).

    Args:
        cfg: the run's configuration.
        run: its run directory.
        provider: the LLM (or offline) provider.
        env: the environment, built once per run (default: built here from ``cfg``, sized
            ``k x num_envs`` for host scenarios, and closed by :meth:`close`).
        progress: progress bars; ``log``: where the one-line messages go.
    """

    def __init__(
        self,
        cfg: SearchConfig,
        run: RunDir,
        provider: Provider,
        *,
        env: Any = None,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.job = Job.current()  # several processes: process 0 leads, the others follow
        run = self.job.share_run(run)
        self.cfg, self.run, self.progress, self.log = cfg, run, progress, log
        self.provider = RecordingProvider(provider, run.path)
        # checks recorded here (--resume) or in the replayed run are reused with their artefacts
        replayed = getattr(provider, "run_dir", None) if provider.name == "replay" else None
        self.check_roots = [run.path] + ([replayed] if replayed is not None else [])
        self._owns_env = env is None
        # the sandbox process of every check in this run: it boots while the trainer is built
        self.zygote = Zygote() if self.job.primary else None
        try:
            if env is None:
                env = make_env(cfg.scenario, cfg.n_learners, cfg.num_envs, **cfg.env_kwargs)
            self.env = env
            self.spec = self.env.spec
            self.task = MaskTask.from_env_spec(self.spec)
            self.info = EnvPromptInfo.from_env(self.env)
            self.train_config, self.updates = train_config(cfg, self.env)
            self.fallback = all_ones(self.spec)
            check_fallback(cfg.mask_fallback, cfg.mask_first_step, self.task.field_names)
            masks = [self.fallback] * cfg.n_learners  # slot k (when cfg.control): the control
            self.trainer = ippo.make(self.env, self.train_config, masks, progress=progress)
            self.root = jax.random.PRNGKey(cfg.seed)
            self.samples = self.trainer.record_contexts(jax.random.fold_in(self.root, 10_000))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the sandbox process and release an environment built here (a host
        environment's workers); idempotent."""
        if self.zygote is not None:
            self.zygote.close()
        close = getattr(getattr(self, "env", None), "close", None)
        if self._owns_env and close is not None:
            close()

    # ------------------------------------------------------------------ the six steps
    def generate(self, it: int, carry: Carry) -> list[Candidate]:
        """K candidates: LLM replies compiled in the sandbox, repaired and reviewed (by process 0
        of a multi-process job, which sends them to the others)."""
        make = functools.partial(
            generate_candidates,
            provider=self.provider,
            info=self.info,
            task=self.task,
            cfg=self.cfg,
            iteration=it,
            feedback=carry.feedback,
            best_code=carry.best_code,
            samples=self.samples,
            recorded=recorded_checks(self.check_roots),
            zygote=self.zygote,
        )
        return self.job.share_candidates(make, self.task)

    def check(self, it: int, cands: Sequence[Candidate]) -> list[MaskFn]:
        """Record every slot's check; the K mask functions (all-ones for failed slots)."""
        for c in cands:
            check = {
                "status": _status(c),
                "reason": c.reason,
                "repairs": c.repairs,
                "verdict": c.verdict,
                "compile": c.check,
            }
            artefact = c.fn.data if c.ok else None  # the exported mask the trainer runs
            self.run.write_check(it, c.slot, c.code, check, artefact)
        fallbacks = [c.slot for c in cands if not c.ok]
        if fallbacks:
            self.log(
                f"iteration {it}: {len(fallbacks)} of {self.cfg.k} slots fall back to the "
                f"all-ones mask (slots {', '.join(map(str, fallbacks))})"
            )
        control = [self.fallback] if self.cfg.control else []
        rule = (len(self.spec.agent_shape), self.cfg.mask_fallback, self.cfg.mask_first_step)
        return [with_fallback(c.fn, *rule) if c.ok else self.fallback for c in cands] + control

    def train(self, it: int, masks: Sequence[MaskFn], carry: Carry) -> tuple[Any, bool | None]:
        """Train the learners of iteration ``it`` (the K candidates, then the control, which
        continues itself); returns the result and, under retention, whether every candidate
        started from the previous best learner exactly."""
        cfg = self.cfg
        self.trainer.set_masks(masks)
        k_init, k_train = jax.random.split(jax.random.fold_in(self.root, it))
        best = carry.learner if cfg.retention else None
        starts = [best] * cfg.k + ([carry.control] if cfg.control else [])
        state = self.trainer.init_slots(k_init, starts)
        retained = None if best is None else fetch(state.params)
        result = ippo.train(
            self.trainer,
            state,
            k_train,
            num_updates=self.updates,
            metrics_path=str(self.run.iter_dir(it) / "metrics.jsonl") if self.job.primary else None,
            progress=self.progress,
            desc=f"iter {it}/{self.cfg.iterations}",
        )
        if retained is None:
            return result, None
        want = jax.device_get(best["params"])
        same = all(
            _same_tree(jax.tree_util.tree_map(lambda x, k=k: x[k], retained), want)
            for k in range(cfg.k)
        )
        return result, same

    @staticmethod
    def select(scores: Sequence[float | None]) -> int:
        """The slot with the best selection score (missing or NaN scores never win)."""
        vals = [-np.inf if s is None or math.isnan(s) else s for s in scores]
        return int(np.argmax(np.asarray(vals, dtype=np.float64)))

    def record(
        self,
        it: int,
        cands: Sequence[Candidate],
        result: Any,
        best_slot: int,
        timings: dict[str, float],
        retention_check: bool | None,
    ) -> dict[str, Any]:
        """Checkpoint, per-candidate metrics, feedback and ``summary.json`` (written last)."""
        run, k = self.run, self.cfg.k
        scores = result.scores[:k]
        run.save_learner(it, self.trainer.learner(result.state, best_slot))
        if self.cfg.control:
            run.save_learner(it, self.trainer.learner(result.state, k), name=CONTROL)
        train_returns = run.train_returns(it, self.cfg.n_learners)
        for c in cands:
            run.write_candidate_metrics(
                it,
                c.slot,
                {
                    "slot": c.slot,
                    "status": _status(c),
                    "score": scores[c.slot],
                    "eval_return": [e["return"][c.slot] for e in result.evals],
                    "eval_update": [e["update"] for e in result.evals],
                    "train_return": train_returns[c.slot],
                    "mask_stats": c.stats,
                },
            )
        best = cands[best_slot]
        env_steps = self.updates * self.train_config.num_envs * self.trainer.num_steps
        feedback = self._released_feedback(best, result.evals, best_slot) or build_feedback(
            iteration=it,
            best_slot=best_slot,
            evals=result.evals,
            train_returns=train_returns[best_slot],
            mask_stats=best.stats,
            action_names=self.spec.action_names,
            others=[_other_line(c, scores[c.slot]) for c in cands if c.slot != best_slot],
            reward_factors=self.cfg.reward_factors,
            env_steps=env_steps,
            split=self.train_config.eval_split,
        )
        summary = {
            "iteration": it,
            "best_slot": best_slot,
            "best_score": scores[best_slot],
            "scores": scores,
            "best_code": best.code if best.ok else None,
            "feedback": feedback,
            "fallbacks": [c.slot for c in cands if not c.ok],
            "statuses": [_status(c) for c in cands],
            "reasons": [c.reason for c in cands],
            "timings": timings,
            "compile_seconds": {k: list(v) for k, v in self.trainer.compile_seconds.items()},
            "llm_latency_s": None,
            "env_steps_per_candidate": env_steps,
            "retention_check": retention_check,
            "control_score": result.scores[k] if self.cfg.control else None,
            "control_eval_return": [e["return"][k] for e in result.evals]
            if self.cfg.control
            else None,
        }
        run.write_summary(it, summary)
        keys = ("iteration", "best_slot", "best_score", "fallbacks", "timings")
        run.log({"event": "iteration", **{k: summary[k] for k in keys}})
        return summary

    def _released_feedback(self, best: Candidate, evals: Any, slot: int) -> str | None:
        """The feedback in the released code's form (``cfg.feedback == "released"``), else None."""
        if self.cfg.feedback != "released":
            return None
        rate = mask_allowed_rate(best.fn, self.samples, self.spec) if best.ok else None
        return build_released_feedback(
            evals=evals,
            best_slot=slot,
            eval_every_episodes=self.train_config.eval_every * self.train_config.num_envs,
            allowed_rate=rate,
            action_values=self.spec.action_values,
            reward_factors=self.cfg.reward_factors,
        )

    def reflect(self, it: int, summary: dict[str, Any], codes: Sequence[str | None]) -> None:
        """Tell the provider every slot's code and score (failed slots: neither)."""
        results = []
        for slot, status in enumerate(summary["statuses"]):
            ok = status == "ok"
            code = codes[slot] if ok else None
            score = summary["scores"][slot] if ok else None
            results.append(SlotResult(slot, code.rstrip("\n") if code else None, score))
        self.provider.tell(it, results)

    # ------------------------------------------------------------------ one iteration
    def iteration(self, it: int, carry: Carry) -> dict[str, Any]:
        """Run iteration ``it`` (1-based) through the six steps; returns its summary."""
        self.run.discard_unfinished(it)
        t0 = time.perf_counter()
        cands = self.generate(it, carry)
        masks = self.check(it, cands)
        t1 = time.perf_counter()
        result, retention_check = self.train(it, masks, carry)
        timings = {"generate_and_check_s": t1 - t0, "train_s": time.perf_counter() - t1}
        best_slot = self.select(result.scores[: self.cfg.k])
        summary = self.record(it, cands, result, best_slot, timings, retention_check)
        self.reflect(it, summary, [c.code for c in cands])
        return summary

    # ------------------------------------------------------------------ whole run
    def run_all(self) -> dict[str, Any]:
        """All iterations (skipping finished ones), then the final test evaluation."""
        carry, history = Carry(), []
        for it in range(1, self.cfg.iterations + 1):
            summary = self.run.iteration_summary(it)
            if summary is not None:
                self.log(
                    f"iteration {it}: already finished (best slot {summary['best_slot']}), "
                    "resuming after it"
                )
                codes = [self.run.read_code(it, k) for k in range(len(summary["statuses"]))]
                self.reflect(it, summary, codes)
            else:
                summary = self.iteration(it, carry)
                self.log(_iteration_line(summary, self.cfg.k))
            # the next iteration always starts from the checkpoint on disk, resumed or not
            like = self.trainer.learner_template()
            learner = self.run.load_learner(it, like)
            control = self.run.load_learner(it, like, name=CONTROL) if self.cfg.control else None
            best_code = summary["best_code"] or carry.best_code
            carry = Carry(summary["feedback"], best_code, learner, control)
            history.append(summary)
        return self.final_evaluation(carry, history)

    def final_evaluation(self, carry: Carry, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Evaluate the surviving learner and the control on the test split (no masks) beside
        the family's reference baselines; write ``results.json``, ``traces.json`` (the test
        episode day by day, :mod:`espark_jax.traces`) and the summary figure."""
        cfg = self.cfg
        key = jax.random.fold_in(self.root, FINAL_EVAL_FOLD)

        def evaluate(learner: dict[str, Any]) -> dict[str, Any]:
            splits = ("test",)
            params = learner["params"]
            return ippo.evaluate_learner(self.trainer, params, key, splits, cfg.eval_envs)["test"]

        test = evaluate(carry.learner)
        control = evaluate(carry.control) if carry.control is not None else None
        refs = reference_baselines(self.env, "test", cfg.seed, cfg.eval_envs)
        learners = {"selected": carry.learner}
        if carry.control is not None:
            learners["control"] = carry.control
        traces, refs_validation = final_traces(
            self.trainer, learners, key, cfg.seed, cfg.eval_envs
        )  # for the figures: traces.json, the learning curves' reference lines
        keys = ("iteration", "best_slot", "best_score", "scores", "fallbacks", "timings")
        results = {
            "scenario": cfg.scenario,
            "data_source": self.spec.data_source,
            "provider": self.provider.label,
            "provider_name": self.provider.name,
            "config": cfg.to_dict(),
            "test": test,
            "control": control,
            "baselines": refs,
            "baselines_validation": refs_validation,
            "change_vs_ippo": None
            if control is None
            else {m: change_ratio(test[m]["return"], control[m]["return"]) for m in test},
            "iterations": [
                {**{k: h[k] for k in keys}, "control_score": h.get("control_score")}
                for h in history
            ],
        }
        if not self.job.primary:  # process 0 writes the results
            return results
        write_json(self.run.path / "results.json", results)
        write_traces(self.run.path, traces)
        from espark_jax.report import loop_figure

        loop_figure(self.run.path, results)
        return results


def _status(c: Candidate) -> str:
    return "ok" if c.ok else "fallback"


def _other_line(c: Candidate, score: float | None) -> str:
    if not c.ok:
        return f"slot {c.slot}: fallback to the all-ones mask ({c.reason})"
    return f"slot {c.slot}: " + (f"score {score:,.1f}" if score is not None else "no score")


def _same_tree(a: Any, b: Any) -> bool:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    same = (np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))
    return len(la) == len(lb) and all(same)


def _iteration_line(summary: dict[str, Any], k: int) -> str:
    t, ok = summary["timings"], k - len(summary["fallbacks"])
    return (
        f"iteration {summary['iteration']}: best slot {summary['best_slot']} "
        f"score {summary['best_score']:,.1f}; {ok}/{k} candidates compiled; "
        f"generate+check {t['generate_and_check_s']:.1f} s, train {t['train_s']:.1f} s"
    )


def run_search(
    cfg: SearchConfig,
    run: RunDir,
    provider: Provider,
    *,
    env: Any = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or continue) an eSpark search in ``run`` and return the final results
    (``env``: the run's environment when the caller built it already)."""
    search = Search(cfg, run, provider, env=env, progress=progress, log=log)
    try:
        return search.run_all()
    finally:
        search.close()


__all__ = ["PRESETS", "Carry", "Search", "SearchConfig", "load_config", "run_search"]
