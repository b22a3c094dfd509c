"""The LLM options of ``espark run``: models, endpoints, concurrency, prices, ``--dry-run``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

PROVIDER_HELP = (
    "auto (anthropic if ANTHROPIC_API_KEY is set, else openai if --base-url, OPENAI_BASE_URL or "
    "OPENAI_API_KEY is set, else template), anthropic, openai (any OpenAI-compatible server: the "
    "OpenAI API, vLLM, Ollama, llama.cpp, LM Studio, SGLang), replay:DIR, template"
)


def add_llm_args(p: argparse.ArgumentParser) -> None:
    """Register the model, endpoint, concurrency, price and dry-run options of ``espark run``."""
    g = p.add_argument_group("LLM")
    g.add_argument(
        "--generator-model",
        help="generator model (default: anthropic claude-sonnet-4-6; openai gpt-4.1, or the one "
        "model a --base-url server lists)",
    )
    g.add_argument(
        "--checker-model",
        help="checker model (default: anthropic claude-haiku-4-5; openai gpt-4.1-mini, or the "
        "generator's model at a --base-url server)",
    )
    g.add_argument(
        "--checker-provider",
        help="the checker's provider when it differs from --provider (same values)",
    )
    g.add_argument(
        "--base-url",
        help="API root of the provider, e.g. http://127.0.0.1:8000/v1 (vLLM) or "
        "http://127.0.0.1:11434/v1 (Ollama); default: the SDK's, OPENAI_BASE_URL or "
        "ANTHROPIC_BASE_URL",
    )
    g.add_argument("--checker-base-url", help="API root of the checker's provider")
    g.add_argument(
        "--max-concurrency", type=int, help="LLM requests in flight at once (default 16)"
    )
    g.add_argument(
        "--prices",
        metavar="FILE",
        help='price table JSON {"model": {"input": USD, "output": USD, "cache_read": USD}} per '
        "million tokens, over the built-in list prices; kept in the run directory",
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="print the number of LLM requests and an estimate of tokens and cost, then exit",
    )


def llm_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The SearchConfig fields set by the LLM options."""
    return {
        "generator_model": args.generator_model,
        "checker_model": args.checker_model,
        "checker_provider": args.checker_provider,
        "base_url": args.base_url,
        "checker_base_url": args.checker_base_url,
        "max_concurrency": args.max_concurrency,
    }


def read_prices(path: str | None, command: str) -> dict[str, dict[str, float]]:
    """The ``--prices`` table, or ``{}``; a bad file is a one-line SystemExit."""
    from espark_jax.llm.usage import PriceTableError, load_prices

    try:
        return load_prices(path)
    except PriceTableError as err:
        raise SystemExit(f"{command}: {err}") from None


def save_prices(run_path: Path, prices: dict[str, dict[str, float]]) -> None:
    """Keep a ``--prices`` table in the run directory (merged over an earlier one)."""
    from espark_jax.llm.usage import PRICES_FILE
    from espark_jax.runs import read_json, write_json

    path = Path(run_path) / PRICES_FILE
    old = read_json(path) if path.is_file() else {}
    write_json(path, {**old, **prices})


def dry_run(cfg: Any, prices: dict[str, dict[str, float]]) -> int:
    """Print what a run of ``cfg`` would ask of its LLM (no request, no training)."""
    from espark_jax.families import make_env
    from espark_jax.llm.base import LLMConfigError, ReplayError
    from espark_jax.llm.estimate import estimate, format_estimate
    from espark_jax.llm.prompts import EnvPromptInfo
    from espark_jax.llm.providers import provider_from_config
    from espark_jax.llm.usage import price_table

    env = make_env(cfg.scenario, cfg.n_learners, cfg.num_envs, **cfg.env_kwargs)
    try:
        info = EnvPromptInfo.from_env(env)
        try:
            provider, announcement = provider_from_config(cfg, info)
        except (LLMConfigError, ReplayError) as err:
            raise SystemExit(f"espark run --dry-run: {err}") from None
        est = estimate(cfg, info)
        print(format_estimate(cfg, est, provider, announcement, price_table(None, prices)))
    finally:
        close = getattr(env, "close", None)
        if close is not None:
            close()
    return 0
