"""Token usage, prices and the dry-run estimate, against hand-computed cases."""

from __future__ import annotations

import json

import pytest
from llm_helpers import mabim_spec

from espark_jax.llm import prompts as P
from espark_jax.llm.estimate import estimate, prompt_tokens
from espark_jax.llm.usage import (
    DEFAULT_PRICES,
    PriceTableError,
    chat_tokens,
    cost,
    format_cost,
    format_tokens,
    load_prices,
    price_for,
    price_table,
    reported_tokens,
    run_usage,
    tally,
    total_line,
    write_usage,
)
from espark_jax.search_config import SearchConfig


def record(role: str, model: str, usage: dict | None, error: str | None = None) -> dict:
    return {"role": role, "model": model, "usage": usage or {}, "error": error, "text": "t"}


def usage(i: int, o: int, read: int = 0, write: int = 0) -> dict:
    return {
        "input_tokens": i,
        "output_tokens": o,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }


def test_price_for_matches_exact_names_then_the_longest_prefix():
    table = {"gpt-4o": {"input": 1}, "gpt-4o-mini": {"input": 2}, "claude-sonnet-4": {"input": 3}}
    assert price_for("gpt-4o", table)["input"] == 1
    assert price_for("gpt-4o-mini-2024-07-18", table)["input"] == 2  # longest prefix wins
    assert price_for("gpt-4o-2024-08-06", table)["input"] == 1
    assert price_for("claude-sonnet-4-6", table)["input"] == 3
    assert price_for("gpt-4omni", table) is None  # a prefix must end at - : or @
    assert price_for("qwen2.5:7b", table) is None
    assert price_for("claude-haiku-4-5-20251001", DEFAULT_PRICES)["output"] == 5.0


def test_cost_of_every_token_kind_by_hand():
    summary = tally(
        [
            record("generator", "claude-sonnet-4-6", usage(1000, 2000, 10_000, 4000)),
            record("checker", "claude-haiku-4-5", usage(500, 100)),
            record("generator", "template-mutation", None),  # offline: no tokens, no price
        ]
    )
    usd, missing = cost(summary, DEFAULT_PRICES)
    # sonnet 3 / 15 / 0.30 / 3.75 and haiku 1 / 5 per million tokens
    want = (1000 * 3 + 2000 * 15 + 10_000 * 0.3 + 4000 * 3.75 + 500 * 1 + 100 * 5) / 1e6
    assert usd == pytest.approx(want) and missing == []
    assert cost(tally([record("generator", "my-local", usage(10, 1))]), DEFAULT_PRICES) == (
        None,
        ["my-local"],
    )


def test_tally_counts_requests_failures_and_offline_replies():
    summary = tally(
        [
            record("generator", "m", usage(10, 20)),
            record("repair", "m", usage(5, 6, 100)),
            record("generator", "m", None, error="RateLimitError: slow down"),
            record("checker", "static-only", None),
        ]
    )
    assert (summary["replies"], summary["requests"], summary["failed"], summary["offline"]) == (
        4,
        2,
        1,
        1,
    )
    assert summary["tokens"] == usage(15, 26, 100)
    assert summary["by_model"]["m"] == {"requests": 3, **usage(15, 26, 100)}
    assert summary["by_role"]["generator"]["requests"] == 2
    assert format_tokens(summary) == "15 / 26 (cache read 100, write 0)"
    assert format_tokens(None) == format_cost(None) == "-"


def test_user_price_tables(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps({"local": {"input": 0, "output": 0}, "x": {"input": 1, "output": 2}})
    )
    table = load_prices(path)
    assert table["x"] == {"input": 1.0, "output": 2.0, "cache_read": 1.0, "cache_write": 1.0}
    assert load_prices(None) == {}
    merged = price_table(None, {"gpt-4.1": table["x"]})
    assert merged["gpt-4.1"]["output"] == 2.0 and merged["gpt-4o"] == DEFAULT_PRICES["gpt-4o"]
    for text, match in [
        ("[1, 2]", "expected an object"),
        ('{"m": {"input": 1}}', "model 'm' needs numeric 'input' and 'output'"),
        ("{not json", "cannot read a JSON price table"),
    ]:
        path.write_text(text)
        with pytest.raises(PriceTableError, match=match):
            load_prices(path)


def write_record(run, it: int, slot: int, role: str, rec: dict) -> None:
    d = run / f"iter_{it:02d}" / f"cand_{slot:02d}"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{role}.json").write_text(json.dumps(rec))
    (d / "check.json").write_text(json.dumps({"status": "ok"}))  # not a record


def test_usage_files_per_iteration_and_run(tmp_path):
    run = tmp_path / "run"
    write_record(run, 1, 0, "generator", record("generator", "gpt-4.1", usage(1000, 100)))
    write_record(run, 1, 1, "generator", record("generator", "gpt-4.1", usage(2000, 200, 500)))
    write_record(run, 2, 0, "generator", record("generator", "gpt-4.1", usage(3000, 300)))
    (run / "prices.json").write_text(json.dumps({"gpt-4.1": {"input": 1.0, "output": 10.0}}))
    total = write_usage(run, [1, 2])
    # the run's own table (input 1, output 10; cache read at the input price) overrides the default
    want = (6000 * 1.0 + 600 * 10.0 + 500 * 1.0) / 1e6
    assert total["cost_usd"] == pytest.approx(want)
    saved = json.loads((run / "usage.json").read_text())
    assert saved["requests"] == 3 and saved["tokens"]["input_tokens"] == 6000
    assert saved["iterations"]["1"]["tokens"]["input_tokens"] == 3000
    assert json.loads((run / "iter_02" / "usage.json").read_text())["requests"] == 1
    report = run_usage(run, {"gpt-4.1": {"input": 0.0, "output": 0.0, "cache_read": 2.0}})
    assert report["cost_usd"] == pytest.approx(500 * 2.0 / 1e6)  # --prices over the run's table
    (run / "usage.json").unlink()
    assert run_usage(run)["tokens"]["output_tokens"] == 600  # recomputed from the records
    assert run_usage(tmp_path / "empty") is None
    line = "LLM tokens in / out: 12,000 / 1,200 (cache read 1,000, write 0); cost: "
    assert total_line([run, run]) == line + f"${2 * want:,.4f}"


def test_estimate_counts_requests_and_tokens_by_hand():
    info = P.EnvPromptInfo.from_spec(mabim_spec(), "def step(state):\n    return state\n")
    cfg = SearchConfig(
        scenario="mabim/tiny", k=1, iterations=1, repair_rounds=1, check_rounds=1, provider="x"
    )
    est = estimate(cfg, info)
    base = prompt_tokens(P.generator_messages(info, 1, 0, n_slots=1))
    review = prompt_tokens(P.checker_messages(info, "")) + 1500
    # fewest: 1 generator + 1 review; most: + 1 compile repair + 1 checker-requested repair
    assert est["requests"] == (2, 4)
    assert est["generator"]["requests"] == (1, 3) and est["checker"]["requests"] == (1, 1)
    # repair r carries the prompt, r earlier replies (1,500) and r reasons (100)
    assert est["generator"]["input"] == (base, base + (base + 1600) + (base + 3200))
    assert est["generator"]["output"] == (1500, 4500)
    assert est["checker"]["input"] == (review, review) and est["checker"]["output"] == (300, 300)
    two = estimate(SearchConfig(**{**cfg.to_dict(), "iterations": 2, "checker": False}), info)
    later = base + 1500 + 800  # the best code and the feedback join the prompt
    assert two["requests"] == (2, 4) and two["checker"]["requests"] == (0, 0)
    assert two["generator"]["input"][0] == base + later


def test_sdk_usage_objects_become_the_four_token_counts():
    class Details:
        cached_tokens = 900

    class Chat:  # a Chat Completions usage object
        prompt_tokens, completion_tokens, prompt_tokens_details = 1000, 40, Details()

    assert chat_tokens(Chat()) == {
        "input_tokens": 100,  # 1000 prompt tokens, 900 of them read from the cache
        "output_tokens": 40,
        "cache_read_input_tokens": 900,
        "cache_creation_input_tokens": 0,
    }
    assert chat_tokens({"prompt_tokens": 7, "prompt_tokens_details": None}) == {
        "input_tokens": 7,
        "output_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }

    class Anthropic:  # an Anthropic usage object: cache writes reported, reads None
        input_tokens, output_tokens = 12, 5
        cache_read_input_tokens, cache_creation_input_tokens = None, 300

    assert reported_tokens(Anthropic()) == {
        "input_tokens": 12,
        "output_tokens": 5,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 300,
    }
    assert reported_tokens({"output_tokens": 3}) == {
        "input_tokens": 0,
        "output_tokens": 3,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    assert reported_tokens(None) == chat_tokens(None) == dict.fromkeys(reported_tokens({}), 0)
