"""``espark run`` and ``espark report``: the eSpark loop and its reports from the command line."""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path
from typing import Any

from espark_jax.cli_args import (
    add_distributed_args,
    add_mabim_options,
    add_network_args,
    join_job,
    mabim_env_kwargs,
    network_overrides,
    use_precision,
)
from espark_jax.cli_llm import (
    PROVIDER_HELP,
    add_llm_args,
    dry_run,
    llm_overrides,
    read_prices,
    save_prices,
)
from espark_jax.presets import FALLBACK_RULES, FEEDBACK_FORMS, PRESETS, REWARD_NORMS

RUN_EPILOG = """examples:
  espark run --preset quick                                  # a few minutes on a laptop CPU
  espark run --scenario mabim/3-echelons-100 --preset paper   # the paper's budget (use a GPU)
  espark run --provider template --no-retention --name ablation-noret
  espark run --provider openai --base-url http://127.0.0.1:11434/v1 --generator-model qwen3:8b
  espark run --preset paper --dry-run                        # requests, tokens, cost; then exit
  espark run --resume runs/standard-100-template-20261126-1200
"""


def enable_compile_cache() -> None:
    """Keep compiled XLA programs on disk between runs (``ESPARK_COMPILE_CACHE=0`` disables it)."""
    import jax

    setting = os.environ.get("ESPARK_COMPILE_CACHE", "")
    if setting == "0" or jax.config.jax_compilation_cache_dir:
        return
    path = setting or os.path.join(os.path.expanduser("~"), ".cache", "espark-jax", "xla")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def add_run_parser(sub: Any) -> None:
    """Register ``espark run``."""
    p = sub.add_parser(
        "run",
        help="run the eSpark loop (LLM exploration functions + K-parallel IPPO)",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scenario", default="mabim/standard-100", help="registered scenario (default %(default)s)"
    )
    p.add_argument(
        "--preset",
        default="quick",
        choices=list(PRESETS),
        help="sizes and budget: quick = a few minutes on a CPU, paper = K 16, 10 iterations, "
        "5.02 M steps, authors = the settings of the authors' released code (MABIM; README: "
        "where we follow the released code)",
    )
    p.add_argument(
        "--provider",
        default="auto",
        help=PROVIDER_HELP,
    )
    p.add_argument("--k", type=int, help="candidates per iteration")
    p.add_argument("--iterations", type=int, help="eSpark iterations")
    p.add_argument(
        "--steps",
        type=float,
        help="environment steps per candidate over the whole run (e.g. 5.02e6)",
    )
    p.add_argument("--num-envs", type=int, help="parallel environments per learner")
    p.add_argument(
        "--lr",
        type=float,
        help="Adam learning rate of the learners (paper and --preset paper: 5e-4; "
        "--preset quick: 3e-3)",
    )
    p.add_argument(
        "--mask-distill",
        type=float,
        help="weight pulling the unmasked policy into each candidate's mask (paper: 0)",
    )
    p.add_argument(
        "--anneal-lr",
        action=argparse.BooleanOptionalAction,
        help="decay the learning rate linearly to zero over the run (default: the preset's; "
        "--preset quick from 1e5 steps on, espark_jax.presets.BUDGET_SETTINGS)",
    )
    p.add_argument(
        "--reward-norm",
        choices=list(REWARD_NORMS),
        help="none = rewards as scaled (the paper); agent = each agent's rewards divided by the "
        "RMS of its discounted return in every rollout; default: the preset's (quick: agent)",
    )
    p.add_argument(
        "--clip-value",
        action=argparse.BooleanOptionalAction,
        help="clip the value loss like the policy ratio (the paper); default: the preset's",
    )
    add_network_args(p, preset_defaults=True)
    p.add_argument(
        "--mask-fallback",
        choices=list(FALLBACK_RULES),
        help="an agent whose mask allows nothing: per_agent = that agent acts unmasked (ours), "
        "per_env = its whole environment acts unmasked that step (the released code); "
        "default: the preset's",
    )
    p.add_argument(
        "--mask-first-step",
        action=argparse.BooleanOptionalAction,
        help="mask an episode's first decision (ours) or not (--no-mask-first-step: the "
        "released code); default: the preset's",
    )
    p.add_argument(
        "--feedback",
        choices=list(FEEDBACK_FORMS),
        help="policy feedback for reflection: ours or the released code's statistics; "
        "default: the preset's",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="run name (default: scenario-provider-time)")
    p.add_argument(
        "--runs-dir", default="runs", help="where run directories go (default %(default)s)"
    )
    p.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a killed run; its recorded config is used"
    )
    p.add_argument("--no-checker", action="store_true", help="ablation: no LLM checker")
    p.add_argument(
        "--no-retention",
        action="store_true",
        help="ablation: fresh learners every iteration (3x steps)",
    )
    p.add_argument(
        "--no-reward-factors",
        action="store_true",
        help="ablation: feedback with the total reward only",
    )
    p.add_argument(
        "--no-control",
        action="store_true",
        help="do not train the plain IPPO control learner beside the candidates",
    )
    p.add_argument(
        "--formulation",
        choices=["code", "lang"],
        default="code",
        help="RL formulation in the prompts: environment source code or natural language",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_mabim_options(p)
    add_llm_args(p)
    add_distributed_args(p)
    p.set_defaults(func=cmd_run)


def add_report_parser(sub: Any) -> None:
    """Register ``espark report``."""
    p = sub.add_parser("report", help="compare finished runs in a Markdown table")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", help="also write the table to this file")
    p.add_argument("--prices", metavar="FILE", help="price table JSON over the built-in one")
    p.set_defaults(func=cmd_report)


def _config_from_args(args: argparse.Namespace) -> Any:
    from espark_jax.search_config import SearchConfig

    env_kwargs = mabim_env_kwargs(args, "espark run")
    overrides = dict(
        scenario=args.scenario,
        k=args.k,
        iterations=args.iterations,
        steps=int(args.steps) if args.steps is not None else None,
        num_envs=args.num_envs,
        lr=args.lr,
        mask_distill=args.mask_distill,
        anneal_lr=args.anneal_lr,
        reward_norm=args.reward_norm,
        clip_value=args.clip_value,
        **network_overrides(args),
        mask_fallback=args.mask_fallback,
        mask_first_step=args.mask_first_step,
        feedback=args.feedback,
        seed=args.seed,
        provider=args.provider,
        checker=not args.no_checker,
        retention=not args.no_retention,
        reward_factors=not args.no_reward_factors,
        control=not args.no_control,
        formulation=args.formulation,
        env_kwargs=env_kwargs,
        **llm_overrides(args),
    )
    return SearchConfig.from_preset(args.preset, **overrides)


def _default_name(cfg: Any, provider_name: str) -> str:
    scen = re.sub(r"[^A-Za-z0-9._-]+", "-", cfg.scenario.split("/", 1)[-1])
    return f"{scen}-{provider_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def execute_run(
    cfg: Any | None,
    run_path: Path | None,
    resume: bool,
    progress: bool = True,
    runs_dir: str | Path = "runs",
    prices: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Start a run of ``cfg`` in ``run_path`` (``resume=False``; None: a new directory under
    ``runs_dir`` named after scenario, provider and time) or continue the run in ``run_path`` (its
    recorded config is used). Prints the provider announcement and the final table; returns the
    results dict (``prices``: a ``--prices`` table kept in the run directory). In a multi-process
    job every process calls it (:mod:`espark_jax.distributed`): process 0 opens or creates the
    run directory, asks the provider and prints."""
    from espark_jax.distributed import FollowerProvider, Job, check_env
    from espark_jax.families import make_env
    from espark_jax.llm.prompts import EnvPromptInfo, prompt_hashes
    from espark_jax.llm.providers import provider_from_config
    from espark_jax.report import final_table
    from espark_jax.runs import RunDir
    from espark_jax.search import run_search
    from espark_jax.search_config import SearchConfig, load_config

    enable_compile_cache()
    job = Job.current()  # several processes: process 0 opens and writes the run, others follow
    run = None

    def resume_config() -> Any:
        nonlocal run
        run = RunDir.open(run_path)
        print(f"resuming {run.path} (finished iterations: {run.finished_iterations() or 'none'})")
        return load_config(run)

    cfg = job.lead(resume_config if resume else lambda: cfg, encode=lambda c: c.to_dict())
    if not job.primary:
        cfg = SearchConfig(**cfg)
    # built once for the whole run; fails fast on an unknown scenario or bad data
    use_precision(cfg.env_kwargs)  # a resumed or swept run: 64-bit JAX before any array
    env = make_env(cfg.scenario, cfg.n_learners, cfg.num_envs, **cfg.env_kwargs)
    try:
        check_env(env.spec)

        def start() -> Any:  # the provider and the run directory (process 0)
            nonlocal run, run_path
            provider, announcement = provider_from_config(cfg, EnvPromptInfo.from_env(env))
            print(announcement)
            if run is None:
                run_path = run_path or Path(runs_dir) / _default_name(cfg, provider.name)
                run = RunDir.create(
                    run_path,
                    {
                        "config": cfg.to_dict(),
                        "provider": provider.describe(),
                        "provider_label": provider.label,
                        "announcement": announcement,
                        "scenario": cfg.scenario,
                        "data_source": env.spec.data_source,
                        "data_files": getattr(env, "data_files", []),
                        "prompt_hashes": prompt_hashes(),
                        "processes": job.count,
                    },
                )
                print(f"run directory: {run.path}")
            if prices:
                save_prices(run.path, prices)
            return provider

        provider = job.lead(start, encode=lambda _: None)
        if not job.primary:
            provider = FollowerProvider(job.index)
        log = print if job.primary else (lambda line: None)
        results = run_search(
            cfg, run, provider, env=env, progress=progress and job.primary, log=log
        )
    finally:
        close = getattr(env, "close", None)
        if close is not None:  # a host (SUMO) environment: stop its workers
            close()
    if job.primary:
        from espark_jax.llm.usage import format_cost, format_tokens, run_usage

        usage = run_usage(run.path)
        print(final_table(results))
        print(f"LLM tokens in / out: {format_tokens(usage)}; cost: {format_cost(usage)}")
        print(f"results: {run.path / 'results.json'}  figure: {run.path / 'summary.png'}")
    return results


def cmd_run(args: argparse.Namespace) -> int:
    """``espark run``: start or resume a run, print the final table (``--dry-run``: the
    estimate of its LLM requests only)."""
    from espark_jax.llm.base import LLMConfigError, ReplayError

    prices = read_prices(args.prices, "espark run")
    if args.dry_run:
        if args.resume:
            from espark_jax.runs import RunDir
            from espark_jax.search_config import load_config

            return dry_run(load_config(RunDir.open(args.resume)), prices)
        return dry_run(_config_from_args(args), prices)
    join_job(args, "espark run")
    progress = not args.no_progress
    try:
        if args.resume:
            execute_run(None, Path(args.resume), resume=True, progress=progress, prices=prices)
            return 0
        run_path = Path(args.runs_dir) / args.name if args.name else None
        cfg = _config_from_args(args)
        execute_run(cfg, run_path, False, progress, runs_dir=args.runs_dir, prices=prices)
    except (LLMConfigError, ReplayError) as err:
        raise SystemExit(f"espark run: {err}") from None
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``espark report``: a Markdown table of finished runs."""
    from espark_jax.report import results_table

    table = results_table(args.runs, prices=read_prices(args.prices, "espark report"))
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0
