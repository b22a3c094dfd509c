"""The eSpark loop end to end on a small MABIM scenario: template provider, resume, bad inputs,
replay."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from espark_jax.llm.providers import LLMConfigError, LLMResponse, ReplayProvider, TemplateProvider
from espark_jax.masks import compile as compile_mod
from espark_jax.runs import RunDir, RunDirError
from espark_jax.search import Search, SearchConfig, run_search

REPLAY_RUN = Path(__file__).parent / "data" / "replay_run"
REPLAY_K = 2  # candidates per iteration in the recorded run (tests/data/make_replay_run.py)
COMPONENTS = ("profit", "excess_cost", "order_cost", "holding_cost", "backlog_cost")


def tiny_config(**overrides) -> SearchConfig:
    base = dict(
        scenario="mabim/tiny",
        k=4,
        iterations=2,
        steps=800,
        num_envs=2,
        eval_checkpoints=2,
        select_last=2,
        eval_envs=2,
        updates_per_chunk=1,
        hidden=(16, 16),
        repair_rounds=1,
        check_rounds=1,
        provider="template",
        seed=0,
    )
    base.update(overrides)
    return SearchConfig(**base)


def new_run(path: Path, cfg: SearchConfig) -> RunDir:
    if path.exists():
        shutil.rmtree(path)
    return RunDir.create(path, {"config": cfg.to_dict()})


class Interrupt(Exception):
    """Stands in for a killed process."""


class ScriptedProvider:
    """Replies chosen by a function of the request (an LLM stand-in for bad-input tests)."""

    name, label = "scripted", "scripted test replies"

    def __init__(self, reply):
        self.reply = reply
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        out = []
        for r in requests:
            value = self.reply(r)
            out.append(value if isinstance(value, LLMResponse) else LLMResponse(value, "scripted"))
        return out

    def tell(self, iteration, results):
        pass

    def describe(self):
        return {"name": self.name}


class InterruptingProvider(TemplateProvider):
    """The template provider, killed when iteration ``at`` asks for candidates."""

    def __init__(self, at: int, **kw):
        super().__init__("mabim", **kw)
        self.at = at

    def generate(self, requests):
        if any(r.iteration == self.at for r in requests):
            raise Interrupt(f"killed at iteration {self.at}")
        return super().generate(requests)


@pytest.fixture(scope="module")
def template_run(tmp_path_factory):
    cfg = tiny_config()
    path = tmp_path_factory.mktemp("runs") / "template"
    run = new_run(path, cfg)
    results = run_search(
        cfg, run, TemplateProvider("mabim", seed=0), progress=False, log=lambda s: None
    )
    return cfg, run, results


def test_template_run_end_to_end(template_run):
    cfg, run, results = template_run
    assert results["provider"] == "template-mutation (no LLM)"
    test = results["test"]["greedy"]
    assert np.isfinite(test["return"])
    assert set(test["components"]) == set(COMPONENTS)
    assert (run.path / "summary.png").is_file() and (run.path / "results.json").is_file()
    for it in (1, 2):
        summary = json.loads((run.iter_dir(it) / "summary.json").read_text())
        scores = [s if s is not None else -np.inf for s in summary["scores"]]
        assert summary["best_slot"] == int(np.argmax(scores))
        assert summary["statuses"] == ["ok"] * cfg.k  # every template candidate compiles
        for k in range(cfg.k):
            cand = run.cand_dir(it, k)
            assert (cand / "code.py").read_text().lstrip().startswith("#")
            assert json.loads((cand / "check.json").read_text())["status"] == "ok"
            assert json.loads((cand / "generator.json").read_text())["model"] == "template-mutation"
            metrics = json.loads((cand / "metrics.json").read_text())
            assert metrics["score"] == summary["scores"][k]
            assert len(metrics["eval_return"]) == cfg.eval_checkpoints
        for name in COMPONENTS:
            assert name in summary["feedback"]
        assert (run.iter_dir(it) / "best").is_dir()
    # retention: at the start of iteration 2 every slot held the parameters saved for
    # iteration 1's best
    assert json.loads((run.iter_dir(2) / "summary.json").read_text())["retention_check"] is True
    assert json.loads((run.iter_dir(1) / "summary.json").read_text())["retention_check"] is None


def test_iteration_two_prompts_carry_feedback_and_best_code(template_run):
    _, run, _ = template_run
    s1 = json.loads((run.iter_dir(1) / "summary.json").read_text())
    record = json.loads((run.cand_dir(2, 0) / "generator.json").read_text())
    texts = json.dumps(record["messages"])
    assert "Iteration 1: the best exploration function was slot" in texts
    assert s1["best_code"].splitlines()[-1].strip() in texts


def test_resume_after_interruption_matches_uninterrupted_run(template_run, tmp_path):
    cfg, _, uninterrupted = template_run
    run = new_run(tmp_path / "resumed", cfg)
    with pytest.raises(Interrupt):
        run_search(cfg, run, InterruptingProvider(2, seed=0), progress=False, log=lambda s: None)
    assert run.finished_iterations() == [1]
    assert not (run.path / "results.json").exists()
    resumed = run_search(
        cfg,
        RunDir.open(run.path),
        TemplateProvider("mabim", seed=0),
        progress=False,
        log=lambda s: None,
    )
    assert resumed["test"] == uninterrupted["test"]
    assert [h["scores"] for h in resumed["iterations"]] == [
        h["scores"] for h in uninterrupted["iterations"]
    ]


def count_checks(monkeypatch) -> list[str]:
    """The texts sent to the sandbox from now on."""
    checked: list[str] = []
    real = compile_mod.check_in_children

    def counting(texts, *args):
        checked.extend(texts)
        return real(texts, *args)

    monkeypatch.setattr(compile_mod, "check_in_children", counting)
    return checked


@pytest.mark.slow
def test_resume_reuses_the_recorded_artefacts(template_run, tmp_path, monkeypatch):
    cfg, _, uninterrupted = template_run
    run = new_run(tmp_path / "killed-in-training", cfg)
    real_train = Search.train

    def train(self, it, masks, carry):
        if it == 2:
            raise Interrupt("killed while training iteration 2")
        return real_train(self, it, masks, carry)

    monkeypatch.setattr(Search, "train", train)
    with pytest.raises(Interrupt):
        run_search(cfg, run, TemplateProvider("mabim", seed=0), progress=False, log=lambda s: None)
    monkeypatch.setattr(Search, "train", real_train)
    assert all((run.cand_dir(2, k) / "mask.jaxexport").is_file() for k in range(cfg.k))
    checked = count_checks(monkeypatch)
    resumed = run_search(
        cfg,
        RunDir.open(run.path),
        TemplateProvider("mabim", seed=0),
        progress=False,
        log=lambda s: None,
    )
    assert checked == []  # iteration 2's replies were checked before: nothing is checked again
    for k in range(cfg.k):
        record = json.loads((run.cand_dir(2, k) / "check.json").read_text())["compile"]
        assert record["stats"]["export"]["reused"] is True
    assert resumed["test"] == uninterrupted["test"]
    assert [h["scores"] for h in resumed["iterations"]] == [
        h["scores"] for h in uninterrupted["iterations"]
    ]


@pytest.mark.slow
def test_replay_reuses_the_replayed_runs_artefacts(template_run, tmp_path, monkeypatch):
    cfg, source, original = template_run
    replay_cfg = dataclasses.replace(cfg, provider=f"replay:{source.path}")
    checked = count_checks(monkeypatch)
    results = run_search(
        replay_cfg,
        new_run(tmp_path / "replay-of-template", replay_cfg),
        ReplayProvider(source.path),
        progress=False,
        log=lambda s: None,
    )
    assert checked == []  # every replayed reply was checked in the source run
    assert [h["scores"] for h in results["iterations"]] == [
        h["scores"] for h in original["iterations"]
    ]


def test_bad_replies_fall_back_and_the_iteration_completes(tmp_path):
    good = (
        "```python\ndef compute_mask(ctx, action_space):\n"
        "    return ctx.demand_mean[..., None] * action_space >= 0\n```"
    )

    def reply(req):
        if req.role == "checker":
            return '{"pass": true, "reasons": []}'
        if req.slot == 0:
            return "I would simply order the mean demand every day."  # no code at all
        if req.slot == 1:
            # never compiles
            return (
                "```python\ndef compute_mask(ctx, action_space):\n    import os\n    return 1\n```"
            )
        if req.slot == 2:
            return LLMResponse(
                "", "scripted", error="RateLimitError: 429 after retries"
            )  # LLM error mid-iteration
        return good

    logs = []
    cfg = tiny_config(iterations=1, provider="scripted")
    run = new_run(tmp_path / "bad", cfg)
    provider = ScriptedProvider(reply)
    results = run_search(cfg, run, provider, progress=False, log=logs.append)
    summary = json.loads((run.iter_dir(1) / "summary.json").read_text())
    assert summary["statuses"] == ["fallback", "fallback", "fallback", "ok"]
    no_code = json.loads((run.cand_dir(1, 0) / "check.json").read_text())["compile"]
    assert no_code["stage"] in ("extract", "syntax"), no_code
    assert "import" in summary["reasons"][1]
    assert summary["reasons"][2].startswith("llm_error")
    assert any("3 of 4 slots fall back" in line for line in logs)
    # the failing slots were sent back for repair once (repair_rounds=1) with the compiler's reason
    repairs = [r for r in provider.requests if r.role == "repair"]
    assert sorted(r.slot for r in repairs) == [0, 1]
    assert all(r.history for r in repairs)
    assert np.isfinite(results["test"]["greedy"]["return"])


def test_config_errors_abort_the_run(tmp_path):
    def reply(req):
        raise LLMConfigError("authentication failed: check ANTHROPIC_API_KEY")

    cfg = tiny_config(iterations=1)
    with pytest.raises(LLMConfigError, match="ANTHROPIC_API_KEY"):
        run_search(
            cfg,
            new_run(tmp_path / "auth", cfg),
            ScriptedProvider(reply),
            progress=False,
            log=lambda s: None,
        )


def test_corrupt_run_directories_are_clear_errors(template_run, tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        RunDir.open(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(RunDirError, match="unreadable"):
        RunDir.open(broken)
    _, run, _ = template_run
    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy)
    shutil.rmtree(copy / "iter_01" / "best")
    with pytest.raises(RunDirError, match="no 'best' checkpoint"):
        RunDir.open(copy).finished_iterations()
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDir.create(run.path, {"config": {}})


def test_replay_of_the_recorded_run(tmp_path):
    cfg = tiny_config(provider=f"replay:{REPLAY_RUN}", k=REPLAY_K)
    run = new_run(tmp_path / "replayed", cfg)
    # (a prompt that drifted from the recording, e.g. other feedback numbers, only warns)
    results = run_search(cfg, run, ReplayProvider(REPLAY_RUN), progress=False, log=lambda s: None)
    for it in (1, 2):
        for k in range(REPLAY_K):
            recorded = json.loads(
                (REPLAY_RUN / f"iter_{it:02d}" / f"cand_{k:02d}" / "generator.json").read_text()
            )
            ours = json.loads((run.cand_dir(it, k) / "generator.json").read_text())
            assert ours["text"] == recorded["text"]
    assert results["provider"].startswith("replay of")
    assert jax.tree_util.tree_leaves(results["test"])


def test_presets_and_learning_rate_reach_the_trainer():
    import envs_jax
    from espark_jax.search_config import train_config

    env = envs_jax.make("mabim/tiny")
    quick = SearchConfig.from_preset("quick", scenario="mabim/tiny")
    assert (quick.k, quick.iterations, quick.lr) == (4, 3, 3e-3)
    paper = SearchConfig.from_preset("paper", scenario="mabim/tiny", lr=2e-4)
    assert (paper.k, paper.iterations, paper.steps, paper.lr) == (16, 10, 5_020_000, 2e-4)
    tc, updates = train_config(quick, env)
    assert tc.ppo.lr == 3e-3 and tc.num_envs == quick.num_envs
    assert (tc.ppo.update_epochs, tc.ppo.num_minibatches, tc.ppo.mask_distill_coef) == (1, 16, 0.3)
    episode = int(env.spec.episode_length["train"])
    assert updates == -(-quick.steps_per_iteration() // (episode * quick.num_envs))
    assert SearchConfig(**quick.to_dict()) == quick  # manifests round-trip, lr included
    with pytest.raises(ValueError, match="unknown preset"):
        SearchConfig.from_preset("huge")
