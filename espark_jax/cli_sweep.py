"""``espark sweep``: the paper's ablations over seeds, one run directory each, resumable.

Every (variant, seed) pair is one ``espark run`` in ``<sweep-dir>/<variant>-s<seed>``. Running the
same command again skips finished runs and resumes interrupted ones, so a killed sweep loses
nothing. At the end the runs are compared (``espark report``) and summarised per variant in
``<sweep-dir>/summary.md``.

    espark sweep --preset quick --variants full,no-retention,no-reward-factors --seeds 0,1
    espark sweep --scenario mabim/lower-100 --preset paper --variants full,template,lang --seeds 0,1
    espark sweep --executor ray --address HEAD:6379 --gpus-per-run 1 --seeds 0,1,2

With ``--executor ray`` every run is a Ray task with its resource request, retried from its run
directory when its worker dies (:mod:`espark_jax.sweep_executors`); the sweep directory and the
summary are the same.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from espark_jax.cli_args import add_mabim_options, mabim_env_kwargs, pick_names, require_scenario

# variant name -> SearchConfig overrides (the paper's ablations)
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no-retention": {"retention": False},
    "no-reward-factors": {"reward_factors": False},
    "no-checker": {"checker": False},
    "lang": {"formulation": "lang"},
    "template": {"provider": "template"},
}


def add_sweep_parser(sub: Any) -> None:
    """Register ``espark sweep``."""
    p = sub.add_parser(
        "sweep",
        help="run ablation variants over seeds and compare them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scenario", default="mabim/standard-100", help="registered scenario (default %(default)s)"
    )
    p.add_argument(
        "--preset",
        default="quick",
        choices=["quick", "paper"],
        help="sizes and budget (default %(default)s)",
    )
    p.add_argument(
        "--variants",
        default="full,no-retention,no-reward-factors",
        help=f"comma-separated, from: {', '.join(VARIANTS)} (default %(default)s)",
    )
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default %(default)s)")
    p.add_argument(
        "--provider",
        default="auto",
        help="provider of the non-template variants (default %(default)s)",
    )
    p.add_argument("--k", type=int, help="candidates per iteration")
    p.add_argument("--iterations", type=int, help="eSpark iterations")
    p.add_argument("--steps", type=float, help="environment steps per candidate over the whole run")
    p.add_argument("--num-envs", type=int, help="parallel environments per learner")
    p.add_argument("--lr", type=float, help="Adam learning rate of the learners")
    p.add_argument("--sweep-dir", help="where the runs go (default runs/sweep-<scenario>-<preset>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_mabim_options(p)
    p.add_argument("--prices", metavar="FILE", help="price table JSON for the LLM cost column")
    g = p.add_argument_group("executor (default: one run after another in this process)")
    g.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray"],
        help="local, or ray: each run as a Ray task (pip install -e '.[cluster]')",
    )
    g.add_argument(
        "--address",
        help="Ray cluster address (default: RAY_ADDRESS, a 'ray start' cluster here, or a new one)",
    )
    g.add_argument("--cpus-per-run", type=float, help="CPUs each run's task asks for (default 1)")
    g.add_argument("--gpus-per-run", type=float, help="GPUs each run's task asks for (default 0)")
    g.add_argument(
        "--retries",
        type=int,
        help="retries of a run after its task or worker failed; a retry resumes (default 2)",
    )
    p.set_defaults(func=cmd_sweep)


def plan(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """``[(run directory name, SearchConfig)]`` for every (variant, seed), with one-line errors."""
    from espark_jax.search import SearchConfig

    variants = pick_names(args.variants, VARIANTS, "variant", "espark sweep")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(
            f"espark sweep: --seeds expects integers separated by commas, got {args.seeds!r}"
        ) from None
    common = dict(
        scenario=args.scenario,
        provider=args.provider,
        k=args.k,
        iterations=args.iterations,
        steps=int(args.steps) if args.steps is not None else None,
        num_envs=args.num_envs,
        lr=args.lr,
        env_kwargs=mabim_env_kwargs(args, "espark sweep"),
    )
    try:
        return [
            (
                f"{v}-s{seed}",
                SearchConfig.from_preset(args.preset, **{**common, **VARIANTS[v], "seed": seed}),
            )
            for v in variants
            for seed in seeds
        ]
    except ValueError as err:
        raise SystemExit(f"espark sweep: {err}") from None


def _differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    return [f"{k} {recorded.get(k)!r} vs {v!r}" for k, v in wanted.items() if recorded.get(k) != v]


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run (or resume) every run of the sweep, then print and save the comparison tables."""
    from espark_jax.cli_llm import read_prices
    from espark_jax.llm.usage import total_line
    from espark_jax.report import results_table, variant_table
    from espark_jax.runs import RunDir
    from espark_jax.sweep_executors import SweepError, SweepRun, make_executor

    require_scenario("espark sweep", args.scenario)
    prices = read_prices(args.prices, "espark sweep")
    runs = plan(args)
    executor = make_executor(
        args.executor, args.address, args.cpus_per_run, args.gpus_per_run, args.retries
    )
    root = Path(
        args.sweep_dir
        or f"runs/sweep-{re.sub(r'[^A-Za-z0-9._-]+', '-', args.scenario)}-{args.preset}"
    )
    todo = []
    for i, (name, cfg) in enumerate(runs, 1):
        path = root / name
        if (path / "results.json").is_file():
            print(f"sweep {i}/{len(runs)}: {name}: finished earlier: skipped")
            continue
        wanted = json.loads(json.dumps(cfg.to_dict()))  # as the manifest stores it
        if (path / "manifest.json").is_file():
            recorded = RunDir.open(path).manifest.get("config", {})
            diff = _differences(recorded, wanted)
            if diff:
                raise SystemExit(
                    f"espark sweep: {path} was made with another configuration "
                    f"({'; '.join(diff)}); "
                    "use another --sweep-dir or the same options"
                )
        todo.append(SweepRun(i, name, path, wanted))
    try:
        executor.run(todo, root, len(runs), progress=not args.no_progress)
    except SweepError as err:
        raise SystemExit(f"espark sweep: {err}") from None
    dirs = [root / name for name, _ in runs]
    text = (
        "## Runs\n\n" + results_table(dirs, prices) + "\n\n" + total_line(dirs, prices) + "\n\n"
        "## Per variant\n\n" + variant_table(dirs) + "\n"
    )
    (root / "summary.md").write_text(text)
    print("\n" + text)
    print(f"summary: {root / 'summary.md'}")
    return 0
