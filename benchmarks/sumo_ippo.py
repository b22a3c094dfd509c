"""IPPO on the SUMO bridge next to fixed-time and MaxPressure: delay, trip time, waiting time.

For every scenario (default Grid 4x4 and Cologne8) and training seed, one IPPO learner (plain
IPPO: no exploration mask, availability masks only) trains with
the trainer of :func:`espark_jax.ippo.make` for ``--updates`` PPO updates, each on one 3600-s
episode of ``--num-envs`` simulations (so ``updates x num_envs`` training episodes per seed).
The final learner is then evaluated without exploration masks, greedy and sampled, on the SUMO
seeds ``--eval-seeds`` (default 0 1 2: the seeds of the fixed-time / MaxPressure table in
``benchmarks/README.md``; training draws its seeds from [0, 1e6), so the route file is the same
and only SUMO's randomness differs). Fixed-time and MaxPressure run again on the same seeds (SUMO
is deterministic: they reproduce ``results/sumo_baselines.json``).

IPPO's mean ± std is over training seeds (each the mean of its evaluation episodes); the
baselines' is over evaluation seeds. Writes ``benchmarks/results/sumo_ippo.json`` (per-update
training curves, timings, every evaluation) and refreshes the ``## SUMO`` section of
``benchmarks/README.md`` through :mod:`sumo_bridge`.

Usage: ``python benchmarks/sumo_ippo.py [--scenarios sumo/grid4x4 sumo/cologne8] [--seeds 0 1 2]
[--updates 10] [--num-envs 3] [--eval-seeds 0 1 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sumo_bridge  # noqa: E402  (sibling script: machine info and the README section)

from envs_jax.sumo.baselines import FixedTime, MaxPressure, evaluate  # noqa: E402
from espark_jax.families import family_of, make_env  # noqa: E402
from espark_jax.ippo import TrainConfig, Trainer, make  # noqa: E402
from espark_jax.ippo.host_source import EPISODE_METRICS  # noqa: E402
from espark_jax.masks.builtin import get_builtin_mask  # noqa: E402

RESULT_FILE = sumo_bridge.RESULTS / "sumo_ippo.json"
EPISODE_DECISIONS = 240  # a 3600-s episode of 15-s decisions


def train_seed(trainer: Trainer, seed: int, updates: int, eval_seeds: list[int]) -> dict[str, Any]:
    """Train one learner from ``seed`` and evaluate it greedy and sampled on ``eval_seeds``."""
    state = trainer.init(jax.random.PRNGKey(seed))
    curve: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for u in range(updates):
        state, metrics = trainer.train_chunk(state, 1)
        row = {k: float(np.asarray(v)[0, 0]) for k, v in jax.device_get(metrics).items()}
        curve.append(row)
        print(
            f"  seed {seed} update {u + 1}/{updates}: train return {row['train_return']:.0f}, "
            f"delay {row['avg_delay']:.1f} s ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    train_s = time.perf_counter() - t0
    evals = {}
    for greedy in (True, False):
        ev = trainer.evaluate(
            state.params,
            jax.random.PRNGKey(10_000 + seed),
            split="test",
            greedy=greedy,
            num_envs=len(eval_seeds),
            first_seed=eval_seeds[0],
        )
        evals["greedy" if greedy else "sampled"] = {
            "return": ev["return"][0],
            **{m: ev["metrics"][m][0] for m in EPISODE_METRICS},
            "episodes": ev["episodes"],
        }
    return {"seed": seed, "train_seconds": train_s, "curve": curve, "test": evals}


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and population std over training seeds, per evaluation mode and metric."""
    out: dict[str, Any] = {}
    for mode in ("greedy", "sampled"):
        vals = {m: [r["test"][mode][m] for r in runs] for m in (*EPISODE_METRICS, "return")}
        out[mode] = {
            "mean": {m: float(np.mean(v)) for m, v in vals.items()},
            "std": {m: float(np.std(v)) for m, v in vals.items()},
        }
    return out


def bench_scenario(
    scenario: str, seeds: list[int], updates: int, num_envs: int, eval_seeds: list[int]
) -> dict:
    """Baselines and IPPO on one scenario, with one environment of ``num_envs`` simulations."""
    if len(eval_seeds) % num_envs or eval_seeds != list(
        range(eval_seeds[0], eval_seeds[0] + len(eval_seeds))
    ):
        raise SystemExit(
            f"--eval-seeds must be consecutive and a multiple of --num-envs ({num_envs}) long"
        )
    env = make_env(scenario, 1, num_envs)
    try:
        baselines = {}
        for ctrl in (FixedTime(), MaxPressure()):
            t0 = time.perf_counter()
            res = evaluate(env, ctrl, eval_seeds)
            baselines[ctrl.name] = {**res, "wall_s": time.perf_counter() - t0}
            print(f"{scenario} {ctrl.name}: delay {res['mean']['avg_delay']:.1f} s", flush=True)
        cfg = TrainConfig(num_envs=num_envs, eval_envs=len(eval_seeds))
        trainer = make(env, cfg, [get_builtin_mask("none", env.spec)])
        cfg = trainer.config  # the family's reward scale filled in
        runs = [train_seed(trainer, s, updates, eval_seeds) for s in seeds]
        timings = {k: round(v, 2) for k, v in trainer.timings.items()}
        compile_s = {k: [round(x, 2) for x in v] for k, v in trainer.compile_seconds.items()}
    finally:
        env.close()
    return {
        "baselines": baselines,
        "ippo": {
            "runs": runs,
            "summary": summarize_runs(runs),
            "timings": timings,
            "compile_seconds": compile_s,
            "train_config": cfg.to_dict(),
        },
    }


def table_rows(res: dict[str, Any]) -> list[str]:
    """IPPO rows in the format of :func:`sumo_bridge.baselines_table`."""
    rows = []
    b = res["budget"]
    for scenario, r in res["results"].items():
        for mode in ("greedy", "sampled"):
            s = r["ippo"]["summary"][mode]
            cell = lambda k: f"{s['mean'][k]:.1f} ± {s['std'][k]:.1f}"  # noqa: E731
            rows.append(
                f"| {scenario} | IPPO, {b['episodes_per_seed']} training episodes ({mode}) | "
                f"{cell('avg_delay')} | {cell('avg_trip_time')} | {cell('avg_waiting_time')} | "
                f"{len(r['ippo']['runs'])} seeds x {len(res['eval_seeds'])} |"
            )
    return rows


def _time_split(r: dict[str, Any], decisions: int) -> str:
    """Milliseconds per decision in the simulations, the policy step and the PPO update
    (compilation out)."""
    t, c = r["ippo"]["timings"], r["ippo"]["compile_seconds"]
    env = t["env_s"] * 1e3 / decisions
    policy = (t["policy_s"] - sum(c.get("rollout", []))) * 1e3 / decisions
    update = (t["update_s"] - sum(c.get("update", []))) * 1e3 / decisions
    return f"simulations {env:.0f} ms, policy step {policy:.1f} ms, PPO update {update:.1f} ms"


def note(res: dict[str, Any]) -> str:
    """The paragraph under the table that explains the IPPO rows."""
    b = res["budget"]
    secs = {
        s: float(np.mean([x["train_seconds"] for x in r["ippo"]["runs"]]))
        for s, r in res["results"].items()
    }
    per = ", ".join(f"{s} {v / 60:.1f} min" for s, v in secs.items())
    decisions = (
        b["updates"] * EPISODE_DECISIONS * len(res["seeds"])
    )  # decisions of the batch, all seeds
    split = "; ".join(f"{s}: {_time_split(r, decisions)}" for s, r in res["results"].items())
    fixed = {
        s: r["baselines"]["fixed-time"]["mean"]["avg_delay"] for s, r in res["results"].items()
    }
    ippo = {
        (s, mode): r["ippo"]["summary"][mode]["mean"]["avg_delay"]
        for s, r in res["results"].items()
        for mode in ("greedy", "sampled")
    }
    jammed = [s for s in fixed if ippo[s, "greedy"] > fixed[s]]
    sampled_ok = all(ippo[s, "sampled"] < fixed[s] for s in jammed)
    greedy = (
        f" On {', '.join(jammed)} the greedy policy is worse than fixed-time: the argmax of a "
        "barely trained policy holds a single phase at most intersections and the network jams"
        + (", while sampling from the same policy beats fixed-time." if sampled_ok else ".")
        if jammed
        else ""
    )
    return (
        "IPPO rows: plain IPPO (availability masks only, paper PPO settings, reward scale "
        f"{family_of('sumo/grid4x4').reward_scale}) trained from seeds {res['seeds']} for "
        f"{b['updates']} updates of {b['num_envs']} simulations each "
        f"({b['episodes_per_seed']} episodes = {b['decisions_per_seed']:,} decisions per seed, "
        f"about {b['fraction_of_paper']:.2%} of the paper's 2.4 M steps), then evaluated without "
        f"exploration masks on SUMO seeds {res['eval_seeds']}, greedy (argmax) and sampled; "
        f"mean ± std over training seeds.{greedy} This is a deliberately small CPU budget "
        f"(training time per seed: {per}; the 2-core machine was shared, load "
        f"{res['load_avg_1_5_15']} before and {res['load_avg_after']} after), so these rows "
        "show the trainer working on the bridge, not IPPO's converged quality. Host time per "
        f"training decision of the {b['num_envs']} simulations: {split}. "
        f"Command: `{res['command']}`. "
        "Raw (with per-update training curves): `results/sumo_ippo.json`."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", nargs="+", default=["sumo/grid4x4", "sumo/cologne8"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    ap.add_argument(
        "--updates",
        type=int,
        default=10,
        help="PPO updates (= episodes of all simulations) per seed",
    )
    ap.add_argument(
        "--num-envs", type=int, default=3, help="simulations per learner (evaluation: one round)"
    )
    ap.add_argument(
        "--eval-seeds", type=int, nargs="+", default=[0, 1, 2], help="SUMO seeds of the evaluation"
    )
    ap.add_argument("--no-readme", action="store_true", help="do not touch benchmarks/README.md")
    args = ap.parse_args()
    info = sumo_bridge.machine_info()
    decisions = EPISODE_DECISIONS * args.updates * args.num_envs
    res: dict[str, Any] = {
        **info,
        "seeds": args.seeds,
        "eval_seeds": args.eval_seeds,
        "budget": {
            "updates": args.updates,
            "num_envs": args.num_envs,
            "episodes_per_seed": args.updates * args.num_envs,
            "decisions_per_seed": decisions,
            "fraction_of_paper": decisions / 2.4e6,
        },
        "results": {},
    }
    t0 = time.perf_counter()
    for scenario in args.scenarios:
        res["results"][scenario] = bench_scenario(
            scenario, args.seeds, args.updates, args.num_envs, args.eval_seeds
        )
    res["wall_s"] = time.perf_counter() - t0
    res["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    sumo_bridge.RESULTS.mkdir(parents=True, exist_ok=True)
    RESULT_FILE.write_text(json.dumps(res, indent=2) + "\n")
    print("\n".join(table_rows(res)))
    if not args.no_readme:
        sumo_bridge.write_readme_section("## SUMO", sumo_bridge.readme_section())


if __name__ == "__main__":
    main()
