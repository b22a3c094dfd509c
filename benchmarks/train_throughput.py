"""Training throughput of K-parallel IPPO: K = 1, K = 16 vmapped, K = 16 one after another.

For each scenario and mode, one fresh subprocess builds a trainer, compiles it, runs a warm-up
chunk, then times ``--repeats`` chunks of ``--updates`` PPO updates (rollout of one whole episode
of E environments per learner + update). Reported per configuration:

* training agent-steps/s (all learners together: K x T x E x n_agents per update), median;
* compile seconds of the rollout and of the update (two programs, ``fuse_chunk=False``) and of
  the fused chunk (``fuse_chunk=True``, one program);
* peak memory: device ``peak_bytes_in_use`` on GPU, peak RSS of the process on CPU.

The K = 16 vmapped learners use 16 distinct mask functions ((S, s) pruning with different S/s),
so the rollout runs the per-slot mask path; "sequential" runs one K = 1 program (one (S, s) mask)
16 times per round.

    python benchmarks/train_throughput.py --quick            # this 2-core CPU, minutes
    python benchmarks/train_throughput.py --num-envs 64      # GPU

Writes ``benchmarks/results/train_throughput.json`` (``--out`` to change) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import write_record  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"


def worker(args: argparse.Namespace) -> dict:
    """One configuration in this process; returns its measurements."""
    import jax

    import envs_jax
    from espark_jax.ippo import PPOConfig, TrainConfig, make
    from espark_jax.masks.builtin import get_builtin_mask

    env = envs_jax.make(args.scenario)
    spec = env.spec
    k = 1 if args.mode == "k1" else args.k
    grid = [(S, s) for S in (4.0, 6.0, 8.0, 10.0) for s in (1.0, 2.0, 3.0, 4.0)]
    masks = (
        [get_builtin_mask("ss-pruning", spec, S=S, s=s) for S, s in grid[:k]]
        if args.mode == "vmapped"
        else [get_builtin_mask("ss-pruning", spec)]
    )
    result: dict = {
        "scenario": args.scenario,
        "mode": args.mode,
        "k": k,
        "num_envs": args.num_envs,
        "n_agents": spec.n_agents,
        "ppo": ppo_overrides(args),
    }
    for fused in (False, True):
        cfg = TrainConfig(
            num_envs=args.num_envs,
            updates_per_chunk=args.updates,
            fuse_chunk=fused,
            ppo=PPOConfig(**ppo_overrides(args)),
        )
        trainer = make(env, cfg, masks)
        learners = [
            trainer.init(jax.random.PRNGKey(i))
            for i in range(args.k if args.mode == "sequential" else 1)
        ]
        t0 = time.perf_counter()
        learners = [trainer.train_chunk(s, args.updates)[0] for s in learners]  # compile + warm-up
        jax.block_until_ready(learners)
        warm = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            learners = [trainer.train_chunk(s, args.updates)[0] for s in learners]
            jax.block_until_ready(learners)
            times.append(time.perf_counter() - t0)
        learners_total = trainer.num_learners * len(learners)  # K vmapped, or 1 x K sequential
        steps = trainer.agent_steps_per_update() * args.updates * learners_total
        tag = "fused" if fused else "split"
        result[f"{tag}_agent_steps_per_s"] = steps / statistics.median(times)
        result[f"{tag}_seconds_per_update"] = statistics.median(times) / args.updates
        result[f"{tag}_warmup_seconds"] = warm
        if fused:
            result["compile_chunk_s"] = trainer.compile_seconds["chunk"][0]
        else:
            result["compile_rollout_s"] = trainer.compile_seconds["rollout"][0]
            result["compile_update_s"] = trainer.compile_seconds["update"][0]
        result["agent_steps_per_update"] = trainer.agent_steps_per_update() * learners_total
    result["peak_memory_bytes"], result["memory_kind"] = _peak_memory()
    return result


def worker_argv(
    script: str | Path, scenario: str, mode: str, args: argparse.Namespace, ppo: dict
) -> list[str]:
    """The command of one ``--worker`` run of ``script`` (this tree's or an earlier commit's)."""
    return [
        sys.executable,
        str(script),
        "--worker",
        "--scenario",
        scenario,
        "--mode",
        mode,
        "--k",
        str(args.k),
        "--num-envs",
        str(args.num_envs),
        "--updates",
        str(args.updates),
        "--repeats",
        str(args.repeats),
        *[f"--{k.replace('_', '-')}={v}" for k, v in ppo.items()],
    ]


def ppo_overrides(args: argparse.Namespace) -> dict:
    """The PPO settings given on the command line (the rest stay PPOConfig's defaults)."""
    pairs = (("update_epochs", args.update_epochs), ("num_minibatches", args.num_minibatches))
    return {name: value for name, value in pairs if value is not None}


def _peak_memory() -> tuple[int, str]:
    import jax

    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scenarios", default="mabim/standard-100,mabim/standard-500")
    p.add_argument("--modes", default="k1,vmapped,sequential")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--num-envs", type=int, default=64, help="environments per learner")
    p.add_argument("--updates", type=int, default=2, help="updates per timed chunk")
    p.add_argument("--repeats", type=int, default=3, help="timed chunks (median reported)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="CPU-sized: 2 envs per learner, 1 update per chunk, 2 repeats",
    )
    p.add_argument("--update-epochs", type=int, help="PPO epochs (default PPOConfig's)")
    p.add_argument("--num-minibatches", type=int, help="PPO minibatches (default PPOConfig's)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scenario", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.num_envs, args.updates, args.repeats = 2, 1, 2
    if args.worker:
        print("RESULT " + json.dumps(worker(args)))
        return 0

    rows = []
    for scenario in args.scenarios.split(","):
        for mode in args.modes.split(","):
            cmd = worker_argv(__file__, scenario, mode, args, ppo_overrides(args))
            print(f"running {scenario} {mode} ...", flush=True)
            out = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            rows.append(json.loads(lines[-1][len("RESULT ") :]))

    print(
        f"\n{'scenario':<20} {'mode':<11} {'K':>3} {'E':>4} {'agent-steps/s':>14} {'(fused)':>12} "
        f"{'s/update':>9} {'rollout c.s':>11} {'update c.s':>10} {'chunk c.s':>9} {'peak MB':>9}"
    )
    for r in rows:
        print(
            f"{r['scenario']:<20} {r['mode']:<11} {r['k']:>3} {r['num_envs']:>4} "
            f"{r['split_agent_steps_per_s']:>14,.0f} "
            f"{r['fused_agent_steps_per_s']:>12,.0f} {r['split_seconds_per_update']:>9.3f} "
            f"{r['compile_rollout_s']:>11.1f} {r['compile_update_s']:>10.1f} "
            f"{r['compile_chunk_s']:>9.1f} {r['peak_memory_bytes'] / 2**20:>9.0f}"
        )
    ratios = {}
    for scenario in args.scenarios.split(","):
        by = {r["mode"]: r for r in rows if r["scenario"] == scenario}
        if "vmapped" in by and "sequential" in by:
            ratios[scenario] = (
                by["vmapped"]["split_agent_steps_per_s"]
                / by["sequential"]["split_agent_steps_per_s"]
            )
            print(f"{scenario}: K={args.k} vmapped / sequential = {ratios[scenario]:.2f}x")

    write_record(
        args.out,
        "train_throughput",
        {k: getattr(args, k) for k in ("k", "num_envs", "updates", "repeats", "quick")},
        "medians over repeats; agent-steps/s counts all learners; split = rollout and update as "
        "two programs (fuse_chunk=False), fused = one program per chunk",
        rows,
        vmapped_over_sequential=ratios,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
