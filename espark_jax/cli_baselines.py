"""``espark baselines``: the non-learning baselines of a scenario, as a table.

MABIM: zero order, constant 1.0, random, base stock (static / dynamic) and (S, s) (hindsight /
static), fitted where needed and evaluated on one split (``envs_jax.mabim.baselines``). SUMO:
fixed-time and MaxPressure, one 3600-s episode per seed (``envs_jax.sumo.baselines``).

    espark baselines --scenario mabim/lower-100
    espark baselines --scenario mabim/standard-100 --only base_stock_static,sS_static --json bs.json
    espark baselines --scenario sumo/grid4x4 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from espark_jax.cli_args import add_mabim_options, mabim_env_kwargs, pick_names, require_scenario

# the names of envs_jax.mabim.baselines.BASELINES (kept here so that `espark --help` does not
# import jax)
MABIM_BASELINES = (
    "zero",
    "constant",
    "random",
    "base_stock_static",
    "base_stock_dynamic",
    "sS_hindsight",
    "sS_static",
)
SUMO_BASELINES = ("fixed-time", "max-pressure")


def add_baselines_parser(sub: Any) -> None:
    """Register ``espark baselines``."""
    p = sub.add_parser(
        "baselines",
        help="evaluate the non-learning baselines of a scenario",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scenario", default="mabim/standard-100", help="registered scenario (default %(default)s)"
    )
    p.add_argument(
        "--only",
        help="comma-separated subset; MABIM: "
        + ", ".join(MABIM_BASELINES)
        + "; SUMO: "
        + ", ".join(SUMO_BASELINES),
    )
    p.add_argument(
        "--split", default="test", help="MABIM split: validation or test (default %(default)s)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="MABIM: key of the training windows and the random policy",
    )
    p.add_argument(
        "--seeds",
        default="0,1,2",
        help="SUMO: simulation seeds, one episode each (default %(default)s)",
    )
    p.add_argument(
        "--json", help="also write the full results (components per warehouse, fitted parameters)"
    )
    add_mabim_options(p)
    p.set_defaults(func=cmd_baselines)


def _selected(only: str | None, valid: tuple[str, ...]) -> list[str]:
    return pick_names(only, valid, "baseline", "espark baselines") if only else list(valid)


def mabim_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per baseline, the return and every reward component (summed over
    warehouses)."""
    comps = list(next(iter(results.values()))["components"])
    lines = [
        "| baseline | return | " + " | ".join(comps) + " | seconds |",
        "|---|" + "---:|" * (len(comps) + 2),
    ]
    for name, r in results.items():
        cells = (
            [f"{r['return']:,.0f}"]
            + [f"{r['components'][c]:,.0f}" for c in comps]
            + [f"{r['seconds']:.1f}"]
        )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sumo_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per controller, mean ± std over the seeds of every episode metric."""
    metrics = list(next(iter(results.values()))["mean"])
    lines = [
        "| controller | " + " | ".join(metrics) + " | episodes |",
        "|---|" + "---:|" * (len(metrics) + 1),
    ]
    for name, r in results.items():
        cells = [f"{r['mean'][m]:,.1f} ± {r['std'][m]:,.1f}" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(r['seeds'])} |")
    return "\n".join(lines)


def cmd_baselines(args: argparse.Namespace) -> int:
    """Run the selected baselines and print a Markdown table."""
    import jax

    import envs_jax

    family = args.scenario.split("/", 1)[0]
    require_scenario("espark baselines", args.scenario)
    env_kwargs = mabim_env_kwargs(args, "espark baselines")  # before any array is made
    if family == "sumo":
        from envs_jax.sumo.baselines import FixedTime, MaxPressure, evaluate

        names = _selected(args.only, SUMO_BASELINES)
        seeds = [int(s) for s in args.seeds.split(",")]
        controllers = {"fixed-time": FixedTime(), "max-pressure": MaxPressure()}
        with envs_jax.make(args.scenario, n_envs=min(len(seeds), 3)) as env:
            results = {n: evaluate(env, controllers[n], seeds) for n in names}
        table, about = sumo_table(results), {}
    elif family == "mabim":
        from envs_jax.mabim.baselines import run_baseline

        names = _selected(args.only, MABIM_BASELINES)
        env = envs_jax.make(args.scenario, **env_kwargs)
        about = {
            "precision": env.config.precision,
            "data_source": env.spec.data_source,
            "data_files": env.data_files,
        }
        print(f"{env.spec.name}: {env.config.precision}, data {env.spec.data_source}")
        results = {}
        for n in names:
            results[n] = run_baseline(env, n, key=jax.random.key(args.seed), split=args.split)
            print(
                f"{n:20s} return {results[n]['return']:16,.1f}  ({results[n]['seconds']:.1f} s)",
                flush=True,
            )
        table = mabim_table(results)
    else:
        raise SystemExit(
            f"espark baselines: no baselines for the {family!r} family; "
            "use a mabim/ or sumo/ scenario"
        )
    print(f"\n{args.scenario}" + (f", {args.split} split" if family == "mabim" else "") + "\n")
    print(table)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"scenario": args.scenario, **about, "results": results}, indent=2, default=str
            )
            + "\n"
        )
        print(f"wrote {args.json}")
    return 0
