"""Training throughput at K = 16, side by side with an earlier commit, and the share of CPU peak.

Arms (each repeat a fresh process; arms interleaved round by round, so load hits all alike):

* ``BASE (4x4)``: ``--baseline`` (default ``a5ab919``, this round's starting point) with its
  quick preset's PPO settings (4 epochs of 4 minibatches, PPOConfig's defaults there);
* ``this tree (4x4)``: today's code with the same settings (the engineering changes alone);
* ``this tree (quick)``: today's quick preset (one epoch of 16 minibatches, chosen on the
  validation split by ``benchmarks/ippo_tuning.py``): what a user of ``--preset quick`` gets.

Each arm runs ``benchmarks/train_throughput.py --worker`` of its tree (vmapped, K masks, E
environments per learner, split rollout/update programs): median training agent-steps/s over
its timed chunks, then the median over rounds. FLOPs per agent-step come from XLA's cost
analysis of this tree's compiled rollout step and PPO pass (``paper_projection.analyse``); the
share of peak divides the achieved FLOP/s by (a) a nominal peak (cores x clock x 32 FP32 FLOP per
cycle: two 256-bit FMA pipes, as on AMD Zen 4; stated in the JSON) and (b) the FLOP/s of a large
FP32 matmul measured in the same run.

    python benchmarks/train_ab.py [--baseline a5ab919] [--rounds 3] [--k 16] [--num-envs 2]

Writes ``benchmarks/results/train_ab.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ab import ROOT, baseline_tree, interleave  # noqa: E402
from train_throughput import worker_argv  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "train_ab.json"
QUICK = {"update_epochs": 1, "num_minibatches": 16}


def worker_run(tree: Path, args: argparse.Namespace, ppo: dict[str, int]) -> dict:
    """One ``train_throughput.py --worker`` run of ``tree``; its RESULT record."""
    script = tree / "benchmarks" / "train_throughput.py"
    cmd = worker_argv(script, args.scenario, "vmapped", args, ppo)
    env = {**os.environ, "PYTHONPATH": str(tree), "ESPARK_COMPILE_CACHE": "0"}
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    """FP32 FLOP/s of an ``n x n`` matmul in this process (median of ``repeats``)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def nominal_peak() -> dict:
    """Cores x clock (from /proc/cpuinfo) x 32 FP32 FLOP per cycle per core."""
    mhz = [
        float(line.split(":")[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("cpu MHz")
    ]
    cores = os.cpu_count() or 1
    ghz = statistics.median(mhz) / 1e3 if mhz else float("nan")
    return {
        "cores": cores,
        "ghz": ghz,
        "flop_per_cycle": 32,
        "flops": cores * ghz * 1e9 * 32,
        "assumption": "two 256-bit FP32 FMA pipes per core (AMD Zen 4; AVX-512 double-pumped)",
    }


def flops_per_agent_step(args: argparse.Namespace, ppo: dict[str, int]) -> float:
    """XLA's FLOPs per agent-step (rollout + PPO passes) of this tree at the arm's settings."""
    from paper_projection import analyse

    from espark_jax.ippo import PPOConfig

    return analyse(args.scenario, args.k, args.num_envs, (64, 64), PPOConfig(**ppo))[
        "flops_per_agent_step"
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--baseline", default="a5ab919", help="commit to compare with")
    ap.add_argument("--scenario", default="mabim/standard-100")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--num-envs", type=int, default=2, help="environments per learner")
    ap.add_argument("--updates", type=int, default=1, help="updates per timed chunk")
    ap.add_argument("--repeats", type=int, default=2, help="timed chunks per process")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()

    base = baseline_tree(args.baseline)
    four = {"update_epochs": 4, "num_minibatches": 4}
    arms = {
        f"{args.baseline} (4x4)": lambda: worker_run(base, args, {}),
        "this tree (4x4)": lambda: worker_run(ROOT, args, four),
        "this tree (quick: 1x16)": lambda: worker_run(ROOT, args, QUICK),
    }
    got = interleave(args.rounds, arms)
    load = list(os.getloadavg())
    measured = matmul_flops()
    peak = nominal_peak()
    flops = {"4x4": flops_per_agent_step(args, four), "1x16": flops_per_agent_step(args, QUICK)}
    rows = {}
    for name, runs in got.items():
        rate = statistics.median(r["split_agent_steps_per_s"] for r in runs)
        f = flops["1x16" if "quick" in name else "4x4"]
        rows[name] = {
            "agent_steps_per_s": rate,
            "per_round": [r["split_agent_steps_per_s"] for r in runs],
            "seconds_per_update": statistics.median(r["split_seconds_per_update"] for r in runs),
            "compile_rollout_s": statistics.median(r["compile_rollout_s"] for r in runs),
            "compile_update_s": statistics.median(r["compile_update_s"] for r in runs),
            "flops_per_agent_step": f,
            "achieved_gflops": rate * f / 1e9,
            "share_of_nominal_peak": rate * f / peak["flops"],
            "share_of_measured_matmul": rate * f / measured,
        }
    first = rows[f"{args.baseline} (4x4)"]["agent_steps_per_s"]
    print(
        f"\n{args.scenario}, K = {args.k}, E = {args.num_envs}, {args.rounds} rounds, load {load}"
    )
    print(
        f"{'arm':<26} {'agent-steps/s':>14} {'vs base':>8} {'s/update':>9} {'kFLOP/step':>11} "
        f"{'GFLOP/s':>8} {'% nominal':>10} {'% matmul':>9} {'rollout c.s':>11}"
    )
    for name, r in rows.items():
        r["vs_baseline"] = r["agent_steps_per_s"] / first
        print(
            f"{name:<26} {r['agent_steps_per_s']:>14,.0f} {r['vs_baseline']:>7.2f}x "
            f"{r['seconds_per_update']:>9.2f} {r['flops_per_agent_step'] / 1e3:>11.1f} "
            f"{r['achieved_gflops']:>8.1f} {100 * r['share_of_nominal_peak']:>9.1f}% "
            f"{100 * r['share_of_measured_matmul']:>8.1f}% {r['compile_rollout_s']:>11.1f}"
        )
    print(
        f"nominal peak {peak['flops'] / 1e9:.0f} GFLOP/s; measured 2048^3 matmul "
        f"{measured / 1e9:.0f} GFLOP/s"
    )
    import jax

    record = {
        "benchmark": "train_ab",
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "baseline": args.baseline,
        "scenario": args.scenario,
        "k": args.k,
        "num_envs": args.num_envs,
        "rounds": args.rounds,
        "device": {
            "platform": jax.devices()[0].platform,
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "load_average_end": load,
        },
        "nominal_peak": peak,
        "measured_matmul_flops": measured,
        "arms": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
