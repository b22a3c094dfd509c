"""IPPO vs the pruning baselines vs base stock / (S, s) on the five 100-SKU MABIM scenarios.

For each scenario and seed, the four learners (plain IPPO = mask ``none``, random pruning,
(S, s) pruning, upbound pruning) train together as K = 4 parallel learners for ``--steps``
environment steps each, then each learner's final parameters are evaluated without masks on the
test split (greedy and sampled). The operations-research rows come from
``results/mabim_baselines.json`` (``benchmarks/mabim_baselines.py``) when it is there.

    python benchmarks/ippo_pruning.py --steps 4e4 --seeds 0,1

Writes ``benchmarks/results/ippo_pruning.json`` and prints a Markdown table (mean +- std over
seeds of the greedy test return). Returns on synthetic data are not comparable with the papers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SCENARIOS = (
    "mabim/standard-100",
    "mabim/2-echelons-100",
    "mabim/3-echelons-100",
    "mabim/lower-100",
    "mabim/lowest-100",
)
MASKS = ("none", "random", "ss-pruning", "upbound")
LABELS = {
    "none": "IPPO",
    "random": "random pruning",
    "ss-pruning": "(S,s) pruning",
    "upbound": "upbound pruning",
}
OR_ROWS = {
    "base_stock_static": "base stock (static)",
    "sS_static": "(S,s) static",
    "constant": "constant 1.0",
    "zero": "zero order",
}
RESULTS = Path(__file__).parent / "results"


def run_scenario(scenario: str, seed: int, args: argparse.Namespace) -> dict:
    """Train the four masked learners on one scenario and evaluate them on the test split."""
    import jax

    import envs_jax
    from espark_jax.ippo import PPOConfig, TrainConfig, make, train
    from espark_jax.masks.builtin import get_builtin_mask

    env = envs_jax.make(scenario)
    episode = int(env.spec.episode_length["train"])
    updates = max(1, math.ceil(args.steps / (episode * args.num_envs)))
    cfg = TrainConfig(
        num_envs=args.num_envs,
        num_updates=updates,
        updates_per_chunk=min(10, updates),
        eval_every=updates,
        ppo=PPOConfig(lr=args.lr),
    )
    trainer = make(env, cfg, [get_builtin_mask(m, env.spec) for m in MASKS])
    key = jax.random.PRNGKey(seed)
    result = train(
        trainer,
        trainer.init(key),
        jax.random.fold_in(key, 1),
        progress=not args.no_progress,
        desc=f"{scenario} seed {seed}",
    )
    test = {
        mode: trainer.evaluate(
            result.state.params,
            jax.random.fold_in(key, 2),
            split="test",
            greedy=mode == "greedy",
            num_envs=4,
        )
        for mode in ("greedy", "sampled")
    }
    masked = trainer.evaluate(
        result.state.params,
        jax.random.fold_in(key, 2),
        split="test",
        greedy=True,
        num_envs=4,
        masked=True,
    )
    return {
        "scenario": scenario,
        "seed": seed,
        "updates": updates,
        "env_steps": updates * episode * args.num_envs,
        "train_seconds": result.seconds,
        "data_source": env.spec.data_source,
        "test": {
            m: {
                "greedy": test["greedy"]["return"][i],
                "sampled": test["sampled"]["return"][i],
                "greedy_under_mask": masked["return"][i],
                "components_greedy": {
                    n: sum(g[i] for g in v.values())
                    for n, v in test["greedy"]["components"].items()
                },
            }
            for i, m in enumerate(MASKS)
        },
    }


def table(runs: list[dict], baselines: dict, field: str = "greedy") -> str:
    """Markdown table: scenarios as rows, methods as columns.

    Each cell is the mean +- std over seeds of ``field``."""
    cols = [LABELS[m] for m in MASKS] + [OR_ROWS[b] for b in OR_ROWS] + ["seeds"]
    lines = ["| scenario | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for scenario in dict.fromkeys(r["scenario"] for r in runs):
        cells = []
        for m in MASKS:
            vals = [r["test"][m][field] for r in runs if r["scenario"] == scenario]
            cells.append(f"{np.mean(vals) / 1e3:,.0f}k ± {np.std(vals) / 1e3:,.0f}k")
        for b in OR_ROWS:
            val = baselines.get(scenario, {}).get(b, {}).get("return")
            cells.append("-" if val is None else f"{val / 1e3:,.0f}k")
        cells.append(",".join(str(r["seed"]) for r in runs if r["scenario"] == scenario))
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=float, default=4e4, help="environment steps per learner")
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "ippo_pruning.json"))
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in --out that were made with the same settings, run the rest",
    )
    args = p.parse_args()
    import jax

    start = time.perf_counter()
    load_before = list(os.getloadavg())
    base_path = RESULTS / "mabim_baselines.json"
    baselines = json.loads(base_path.read_text())["results"] if base_path.exists() else {}
    dev = jax.devices()[0]
    runs: list[dict] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"steps": args.steps, "num_envs": args.num_envs, "lr": args.lr, "masks": list(MASKS)}
    if args.resume and out.exists():
        old = json.loads(out.read_text())
        if {k: old["settings"].get(k) for k in settings} == settings:
            runs = old["runs"]
            print(f"resuming: {len(runs)} runs kept from {out}", flush=True)
        else:
            print(f"not resuming: {out} was made with other settings", flush=True)
    for seed in (
        int(s) for s in args.seeds.split(",")
    ):  # seed-major: a stopped run still covers every scenario
        for scenario in args.scenarios.split(","):
            if any(r["scenario"] == scenario and r["seed"] == seed for r in runs):
                continue
            runs.append(run_scenario(scenario, seed, args))
            print(
                json.dumps({k: runs[-1][k] for k in ("scenario", "seed", "train_seconds")}),
                flush=True,
            )
            md = (
                table(runs, baselines)
                + "\n\nEach learner greedy under its own training mask:\n\n"
                + table(runs, baselines, "greedy_under_mask")
            )
            record = {
                "benchmark": "ippo_pruning",
                "command": " ".join(["python"] + sys.argv),
                "device": {
                    "platform": dev.platform,
                    "device_kind": dev.device_kind,
                    "cpu_count": os.cpu_count(),
                    "jax": jax.__version__,
                    "python": platform.python_version(),
                },
                "load_average_before": load_before,
                "load_average_now": list(os.getloadavg()),
                "settings": {**settings, "seeds": args.seeds, "k_parallel": len(MASKS)},
                "total_seconds": time.perf_counter() - start,
                "runs": runs,
                "table_markdown": md,
            }
            out.write_text(
                json.dumps(record, indent=2) + "\n"
            )  # after every run (partial results survive)
    print(md)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
