"""PPO settings for CPU budgets, measured on the validation split: which IPPO learns in 9 k steps.

Each configuration trains ``--seeds`` plain IPPO learners (all-ones mask, K-parallel: one slot
per seed) for ``--steps`` environment steps on one scenario, then evaluates every learner on the
validation split, greedy and sampled (no masks). The test split is not used, so it stays clean
for the results that quote it. Prints a table (mean and min over seeds) and writes
``benchmarks/results/ippo_tuning.json``; the ``## IPPO settings for CPU budgets`` section of
``benchmarks/README.md`` is refreshed.

    python benchmarks/ippo_tuning.py                       # the default grid, Standard-100
    python benchmarks/ippo_tuning.py --configs "lr=3e-3,epochs=1,mb=16" "lr=1e-3"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_sections import write_readme_section  # noqa: E402

import envs_jax  # noqa: E402
from espark_jax import ippo  # noqa: E402
from espark_jax.masks.safe import all_ones  # noqa: E402
from espark_jax.runs import device_info, package_versions  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "ippo_tuning.json"
HEADING = "## IPPO settings for CPU budgets"
GRID = (
    "lr=1e-3,epochs=4,mb=4",  # the quick preset before this measurement
    "lr=3e-3,epochs=4,mb=4",
    "lr=1e-2,epochs=4,mb=4",
    "lr=3e-3,epochs=2,mb=8",
    "lr=3e-3,epochs=1,mb=16",
    "lr=1e-2,epochs=1,mb=16",
    "lr=3e-3,epochs=1,mb=16,envs=4",
)
KEYS = {
    "lr": float,
    "epochs": int,
    "mb": int,
    "envs": int,
    "ent": float,
    "scale": float,
    "anneal": int,  # 1: the learning rate decays linearly to zero over the run's updates
    "gae": float,
    "rnorm": int,  # 1: per-agent return normalisation (PPOConfig.reward_norm = "agent")
    "vclip": int,  # 0: no value-loss clipping
}


def parse(text: str) -> dict[str, Any]:
    """``"lr=3e-3,epochs=1"`` -> ``{"lr": 0.003, "epochs": 1}``; one-line error otherwise."""
    out: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, _, value = item.partition("=")
        if name not in KEYS or not value:
            raise SystemExit(f"ippo_tuning: bad setting {item!r}; use {', '.join(KEYS)}=VALUE")
        out[name] = KEYS[name](value)
    return out


def run(scenario: str, setting: dict[str, Any], steps: float, seeds: int) -> dict[str, Any]:
    """Train ``seeds`` learners under one setting; validation returns of each."""
    env = envs_jax.make(scenario)
    envs = setting.get("envs", 2)
    episode = int(env.spec.episode_length["train"])
    updates = max(1, int(-(-steps // (episode * envs))))
    cfg = ippo.TrainConfig(
        num_envs=envs,
        num_updates=updates,
        updates_per_chunk=min(5, updates),
        eval_every=updates,
        eval_envs=1,
        reward_scale=setting.get("scale"),
        ppo=ippo.PPOConfig(
            lr=setting.get("lr", 5e-4),
            update_epochs=setting.get("epochs", 4),
            num_minibatches=setting.get("mb", 4),
            ent_coef=setting.get("ent", 0.0),
            gae_lambda=setting.get("gae", 0.95),
            anneal_updates=updates if setting.get("anneal") else 0,
            reward_norm="agent" if setting.get("rnorm") else "none",
            clip_value=bool(setting.get("vclip", 1)),
        ),
    )
    trainer = ippo.make(env, cfg, [all_ones(env.spec)] * seeds)
    t0 = time.perf_counter()
    result = ippo.train(
        trainer, trainer.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), progress=False
    )
    seconds = time.perf_counter() - t0
    key = jax.random.PRNGKey(2)
    ev = {
        mode: trainer.evaluate(
            result.state.params,
            key,
            "validation",
            greedy=mode == "greedy",
            num_envs=1 if mode == "greedy" else 2,
        )["return"]
        for mode in ("greedy", "sampled")
    }
    return {"setting": setting, "updates": updates, "train_s": seconds, "validation": ev}


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per setting, mean and min over seeds."""
    lines = [
        "| setting | updates | greedy mean | greedy min | sampled mean | sampled min | train s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        g, s = r["validation"]["greedy"], r["validation"]["sampled"]
        name = ", ".join(f"{k} {v:g}" for k, v in r["setting"].items())
        lines.append(
            f"| {name} | {r['updates']} | {statistics.mean(g):,.0f} | {min(g):,.0f} "
            f"| {statistics.mean(s):,.0f} | {min(s):,.0f} | {r['train_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenario", default="mabim/standard-100")
    ap.add_argument("--steps", type=float, default=9000, help="environment steps per learner")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--configs", nargs="+", default=list(GRID), help="settings, e.g. lr=3e-3,mb=8")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--heading", default=HEADING, help="the benchmarks/README.md section")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    for text in args.configs:
        rows.append(run(args.scenario, parse(text), args.steps, args.seeds))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
        write(args, rows)  # after every setting: an interrupted study keeps what it measured
    text = table(rows)
    print("\n" + text)
    if not args.no_readme:
        write_readme_section(
            args.heading,
            (
                f"`python {' '.join(sys.argv)}`: plain IPPO on {args.scenario}, "
                f"{args.steps:,.0f} environment steps per learner, "
                f"{args.seeds} seeds trained in parallel, returns on the validation split (no "
                "masks; greedy: one episode, sampled: two). Unlisted settings are the paper's "
                "(Table 13), 2 environments per learner, reward scale 1e-3, GAE lambda 0.95, "
                "constant lr (anneal 1: linear decay to zero over the run's updates). Train "
                "seconds on this 2-core CPU, beside other jobs.\n\n"
                + text
                + f"\n\nRaw: `results/{Path(args.out).name}`."
            ),
        )
    print(f"wrote {args.out}")


def write(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """The study's JSON (settings, per-seed validation returns, device, versions)."""
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "benchmark": "ippo_tuning",
                "command": "python " + " ".join(sys.argv),
                "scenario": args.scenario,
                "steps": args.steps,
                "seeds": args.seeds,
                "rows": rows,
                "device": device_info(),
                "versions": package_versions(),
                "load_avg": os.getloadavg(),
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
