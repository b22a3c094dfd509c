"""``espark sweep``: the paper's ablations and pruning baselines over scenarios and seeds.

Every (variant, seed) pair is one ``espark run`` in ``<sweep-dir>/<variant>-s<seed>`` (with
``--scenarios``: ``<sweep-dir>/<scenario>-<variant>-s<seed>``). The pruning-baseline variants
(``random``, ``ss-pruning``, ``upbound``; SUMO: ``random``, ``maxpressure-pruning``) train plain
IPPO under that built-in mask for the steps of one eSpark candidate
(:mod:`espark_jax.pruning_run`); a variant that does not apply to a scenario's family is skipped
there. Running the same command again skips finished runs and resumes interrupted ones, so a
killed sweep loses nothing. At the end the runs are compared (``espark report``) and summarised
per variant in ``<sweep-dir>/summary.md``, and the paper's tables and figures are written into
the sweep directory (``espark table``).

    espark sweep --preset quick --variants full,no-retention,no-reward-factors --seeds 0,1
    espark sweep --scenario mabim/lower-100 --preset paper --variants full,template,lang --seeds 0,1
    espark sweep --scenarios mabim/standard-100,mabim/lowest-100 \\
        --variants template,random,ss-pruning,upbound --seeds 0,1
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
from espark_jax.presets import PRESETS
from espark_jax.pruning_run import PRUNING_VARIANTS, builtin_mask_name

DEFAULT_SCENARIO = "mabim/standard-100"

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
    p.add_argument("--scenario", help=f"registered scenario (default {DEFAULT_SCENARIO})")
    p.add_argument(
        "--scenarios",
        metavar="A,B,...",
        help="several scenarios, comma-separated; run directories are named after the scenario",
    )
    p.add_argument(
        "--preset",
        default="quick",
        choices=list(PRESETS),
        help="sizes and budget (default %(default)s)",
    )
    p.add_argument(
        "--variants",
        default="full,no-retention,no-reward-factors",
        help=f"comma-separated, from: {', '.join(VARIANTS)}; pruning baselines: "
        f"{', '.join(PRUNING_VARIANTS)} (default %(default)s)",
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


def scenarios(args: argparse.Namespace) -> list[str]:
    """The sweep's scenarios (``--scenarios``, else ``--scenario``), each checked."""
    if args.scenarios is not None and args.scenario is not None:
        raise SystemExit("espark sweep: give --scenario or --scenarios, not both")
    if args.scenarios is None:
        names = [args.scenario or DEFAULT_SCENARIO]
    else:
        names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
        if not names:
            raise SystemExit(
                "espark sweep: --scenarios names no scenario; e.g. mabim/tiny,mabim/small-20"
            )
    for name in names:
        require_scenario("espark sweep", name)
    return names


def _slug(scenario: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", scenario.split("/", 1)[-1])


def plan(args: argparse.Namespace) -> list[tuple[str, Any, str | None]]:
    """``[(run directory name, SearchConfig, pruning variant or None)]`` for every (scenario,
    variant, seed), with one-line errors; prints the pruning variants a scenario skips."""
    from espark_jax.search import SearchConfig

    variants = pick_names(args.variants, [*VARIANTS, *PRUNING_VARIANTS], "variant", "espark sweep")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(
            f"espark sweep: --seeds expects integers separated by commas, got {args.seeds!r}"
        ) from None
    names = scenarios(args)
    for v in (v for v in variants if v in PRUNING_VARIANTS):
        if not any(builtin_mask_name(v, scen) for scen in names):
            families = ", ".join(PRUNING_VARIANTS[v])
            raise SystemExit(
                f"espark sweep: pruning variant {v} applies to {families} scenarios only, "
                f"none of {', '.join(names)}"
            )
    out = []
    for scen in names:
        common = dict(
            scenario=scen,
            provider=args.provider,
            k=args.k,
            iterations=args.iterations,
            steps=int(args.steps) if args.steps is not None else None,
            num_envs=args.num_envs,
            lr=args.lr,
            env_kwargs=mabim_env_kwargs(
                argparse.Namespace(**{**vars(args), "scenario": scen}), "espark sweep"
            ),
        )
        prefix = f"{_slug(scen)}-" if args.scenarios is not None else ""
        for v in variants:
            if v in PRUNING_VARIANTS and not builtin_mask_name(v, scen):
                print(f"sweep: {v} does not apply to {scen}: skipped there")
                continue
            # a pruning baseline has no LLM and no control learner
            over = VARIANTS.get(v, {"provider": "none", "control": False})
            for seed in seeds:
                try:
                    cfg = SearchConfig.from_preset(args.preset, **{**common, **over, "seed": seed})
                except ValueError as err:
                    raise SystemExit(f"espark sweep: {err}") from None
                out.append((f"{prefix}{v}-s{seed}", cfg, v if v in PRUNING_VARIANTS else None))
    return out


def _default_dir(names: list[str], preset: str) -> Path:
    joined = "+".join(_slug(n) for n in names)
    return Path(f"runs/sweep-{joined if len(joined) <= 60 else f'{len(names)}-scenarios'}-{preset}")


def _differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    return [f"{k} {recorded.get(k)!r} vs {v!r}" for k, v in wanted.items() if recorded.get(k) != v]


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run (or resume) every run of the sweep, then print and save the comparison tables."""
    from espark_jax.cli_llm import read_prices
    from espark_jax.llm.usage import total_line
    from espark_jax.report import results_table, variant_table
    from espark_jax.runs import RunDir
    from espark_jax.sweep_executors import SweepError, SweepRun, make_executor

    prices = read_prices(args.prices, "espark sweep")
    runs = plan(args)
    executor = make_executor(
        args.executor, args.address, args.cpus_per_run, args.gpus_per_run, args.retries
    )
    root = Path(args.sweep_dir) if args.sweep_dir else _default_dir(scenarios(args), args.preset)
    todo = []
    for i, (name, cfg, pruning) in enumerate(runs, 1):
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
        todo.append(SweepRun(i, name, path, wanted, pruning))
    try:
        executor.run(todo, root, len(runs), progress=not args.no_progress)
    except SweepError as err:
        raise SystemExit(f"espark sweep: {err}") from None
    dirs = [root / name for name, _, _ in runs]
    text = (
        "## Runs\n\n" + results_table(dirs, prices) + "\n\n" + total_line(dirs, prices) + "\n\n"
        "## Per variant\n\n" + variant_table(dirs) + "\n"
    )
    (root / "summary.md").write_text(text)
    print("\n" + text)
    print(f"summary: {root / 'summary.md'}")
    _paper_tables(root)
    return 0


def _paper_tables(root: Path) -> None:
    """Write the paper's tables and figures of the sweep (``espark table``) and print Table 1."""
    from espark_jax.cli_table import write_paper
    from espark_jax.report_tables import to_markdown

    tables, paths = write_paper(root)
    print("\n" + to_markdown(tables[0]))
    print(
        f"paper tables and figures ({len(paths)} files): {root / 'tables.md'}; espark table {root}"
    )
