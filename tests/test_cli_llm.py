"""``espark run`` with an OpenAI-compatible server: the real CLI main() against the loopback test
server (tests/llm_server.py), then ``espark report`` with its tokens and cost; ``--dry-run``;
one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llm_server import LLMTestServer, clear_llm_env, error

from espark_jax.cli import build_parser, main
from espark_jax.cli_search import _config_from_args
from espark_jax.llm.estimate import estimate
from espark_jax.llm.prompts import EnvPromptInfo

REPLAY = Path(__file__).parent / "data" / "replay_run"
CODE_REPLY = json.loads((REPLAY / "iter_01" / "cand_00" / "generator.json").read_text())["text"]
PASS = '{"pass": true, "reasons": ["allowed actions stay non-empty"], "suggestion": ""}'
PRICES = {"test-model": {"input": 2.0, "output": 10.0}}  # USD per million tokens
TINY = ["--scenario", "mabim/tiny", "--k", "2", "--iterations", "2", "--steps", "800"]
TINY += ["--num-envs", "2", "--no-control", "--no-progress"]


@pytest.fixture
def no_keys(monkeypatch):
    return clear_llm_env(monkeypatch)


def respond(seen):
    """Valid mask code for generators, a pass verdict for the checker; iteration 1's slot 1
    generator always gets a server error (the slot falls back to the all-ones mask)."""
    if seen.is_checker():
        return PASS
    if seen.slot() == 1 and seen.first_generation():
        return error(500, "server_error")
    return CODE_REPLY


@pytest.mark.slow
def test_espark_run_against_an_openai_compatible_server_then_report(no_keys, tmp_path, capsys):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    with LLMTestServer(respond) as server:
        argv = ["run", "--provider", "openai", "--base-url", server.openai_url]
        argv += ["--preset", "quick", *TINY, "--runs-dir", str(tmp_path), "--name", "oai"]
        assert main([*argv, "--prices", str(prices)]) == 0
        seen = server.requests
    out = capsys.readouterr().out
    run = tmp_path / "oai"
    assert f"provider: LLM (test-model at {server.openai_url}) (requested;" in out
    assert {s.body["model"] for s in seen} == {"test-model"}
    # every answered request is one record with the usage of the server's body
    answered = [s for s in seen if s.usage is not None]
    tokens_in = sum(s.usage["prompt_tokens"] for s in answered)
    tokens_out = sum(s.usage["completion_tokens"] for s in answered)
    usage = json.loads((run / "usage.json").read_text())
    assert usage["requests"] == len(answered) and usage["failed"] == 1
    assert usage["tokens"]["input_tokens"] == tokens_in
    assert usage["tokens"]["output_tokens"] == tokens_out
    cost = (2.0 * tokens_in + 10.0 * tokens_out) / 1e6
    assert usage["cost_usd"] == pytest.approx(cost)
    assert set(usage["iterations"]) == {"1", "2"}
    per_iter = [usage["iterations"][i]["tokens"]["input_tokens"] for i in ("1", "2")]
    assert sum(per_iter) == tokens_in
    # iteration 1, slot 1: the server failed it (after the SDK's retries) -> all-ones fallback
    summary = json.loads((run / "iter_01" / "summary.json").read_text())
    assert summary["fallbacks"] == [1]
    check = json.loads((run / "iter_01" / "cand_01" / "check.json").read_text())
    assert check["reason"].startswith("llm_error: InternalServerError")
    assert json.loads((run / "iter_02" / "summary.json").read_text())["fallbacks"] == []
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["base_url"] == server.openai_url
    assert manifest["provider"]["base_url"] == server.openai_url

    assert main(["report", str(run)]) == 0
    table = capsys.readouterr().out
    assert "LLM tokens in / out" in table and "LLM cost" in table
    assert f"| {tokens_in:,} / {tokens_out:,} | ${cost:,.4f} |" in table


def test_quick_preset_with_openai_base_url_reaches_the_provider_unchanged(no_keys, capsys):
    with LLMTestServer(models=("served-model",)) as server:
        argv = ["run", "--preset", "quick", "--provider", "openai", "--base-url"]
        argv += [server.openai_url, "--max-concurrency", "3", "--dry-run"]
        args = build_parser().parse_args(argv)
        cfg = _config_from_args(args)
        assert (cfg.provider, cfg.base_url, cfg.max_concurrency) == ("openai", server.openai_url, 3)
        assert (cfg.k, cfg.iterations, cfg.repair_rounds, cfg.check_rounds) == (4, 3, 1, 1)
        assert main(argv) == 0
        assert server.requests == []  # a dry run sends nothing (only the model listing)
    out = capsys.readouterr().out
    assert f"provider: LLM (served-model at {server.openai_url}) (requested;" in out
    # quick: K 4 x 3 iterations; each slot 1 generator + 1 review, at most 1 compile repair and
    # 1 checker-requested repair: 24 to 48 requests
    assert "LLM requests: 24 to 48 (generator and repairs 12 to 36, checker 12)" in out
    assert "cost: unknown (no price for served-model / served-model" in out


def test_dry_run_estimate_uses_the_prompts_and_the_price_table(no_keys, capsys):
    from espark_jax.families import make_env

    no_keys.setenv("ANTHROPIC_API_KEY", "sk-never-used")
    argv = ["run", "--preset", "quick", *TINY[:2], "--k", "2", "--iterations", "2", "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    cfg = _config_from_args(build_parser().parse_args(argv))
    est = estimate(cfg, EnvPromptInfo.from_env(make_env("mabim/tiny", 3, 2)))
    g, c = est["generator"], est["checker"]
    lo = 3.0 * g["input"][0] + 15.0 * g["output"][0] + 1.0 * c["input"][0] + 5.0 * c["output"][0]
    hi = 3.0 * g["input"][1] + 15.0 * g["output"][1] + 1.0 * c["input"][1] + 5.0 * c["output"][1]
    assert f"cost: about ${lo / 1e6:,.2f} to ${hi / 1e6:,.2f} without prompt caching" in out
    assert "provider: LLM (claude-sonnet-4-6) (requested" not in out  # auto picked it
    assert "an Anthropic key is set" in out and "LLM requests: 8 to 16" in out
    assert f"input tokens: about {g['input'][0] + c['input'][0]:,} to" in out


def test_template_dry_run_costs_nothing(no_keys, capsys):
    assert main(["run", "--provider", "template", *TINY[:2], "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "cost: none (template-mutation (no LLM) sends no API request)" in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--provider", "openai"], "espark run: --provider openai needs OPENAI_API_KEY"),
        (["--prices", "/nonexistent/p.json"], "espark run: --prices /nonexistent/p.json: cannot"),
    ],
)
def test_bad_llm_settings_are_one_line(no_keys, tmp_path, extra, message):
    with pytest.raises(SystemExit) as exc:
        main(["run", *TINY, "--runs-dir", str(tmp_path), *extra])
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_bad_price_rows_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"m": {"input": "cheap"}}))
    with pytest.raises(SystemExit, match="model 'm' needs numeric 'input' and 'output' prices"):
        main(["report", str(tmp_path), "--prices", str(bad)])
