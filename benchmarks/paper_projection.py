"""Project a paper-scale eSpark run (K = 16, 10 iterations, 5.02 M steps) onto an H100 / H200.

For each scenario, the training programs are built at the GPU sizes (K learners x E
environments) and analysed by XLA on this machine, without running them:

* FLOPs and bytes per agent-step from XLA's cost analysis of one rollout step and one full-batch
  PPO pass (programs with a trip count of one, so no loop body is counted once for many trips);
* peak device memory from XLA's memory analysis of the real programs (rollout of a whole
  episode, the update with its epochs and minibatches): arguments + outputs + temporaries;
* compile seconds of those programs on this CPU.

The projected time of one update is the roofline ``max(FLOPs / peak FLOP/s, bytes / bandwidth)``
of the rollout plus the update, with published peaks (H100 SXM: 67 TFLOP/s FP32 on CUDA cores,
3.35 TB/s HBM3; H200: 67 TFLOP/s, 4.8 TB/s). Stated assumptions: FP32 arithmetic without tensor
cores (an upper bound on compute time), CPU-HLO byte counts as the GPU's memory traffic (XLA's
GPU fusion usually moves fewer bytes), no kernel-launch or host overhead, evaluation and mask
checks excluded. ``benchmarks/gpu_suite.sh`` runs the same programs on a lent GPU so that the
projection can be checked.

    python benchmarks/paper_projection.py            # a few minutes on a CPU
    python benchmarks/paper_projection.py --scenarios mabim/standard-100 --num-envs 32

Writes ``benchmarks/results/paper_projection.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_sections import write_readme_section  # noqa: E402

import envs_jax  # noqa: E402
from espark_jax import ippo  # noqa: E402
from espark_jax.ippo.jax_source import make_rollout, reset_envs  # noqa: E402
from espark_jax.ippo.ppo import make_update  # noqa: E402
from espark_jax.masks.builtin import get_builtin_mask  # noqa: E402
from espark_jax.runs import device_info, package_versions  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "paper_projection.json"
GPUS = {
    "H100 SXM": {"flops": 67e12, "bandwidth": 3.35e12, "memory_gb": 80},
    "H200": {"flops": 67e12, "bandwidth": 4.8e12, "memory_gb": 141},
}
PAPER = {"k": 16, "iterations": 10, "steps": 5_020_000}


def _abstract(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _analyse(fn: Any, *args: Any, donate: tuple[int, ...] = ()) -> dict[str, float]:
    lowered = jax.jit(fn, donate_argnums=donate).lower(*args)
    t0 = time.perf_counter()
    compiled = lowered.compile()
    seconds = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    mem = compiled.memory_analysis()
    peak = sum(
        getattr(mem, f, 0) or 0
        for f in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    )
    return {
        "flops": float(cost.get("flops", 0.0)),
        "bytes": float(cost.get("bytes accessed", 0.0)),
        "peak_bytes": float(peak),
        "compile_s": seconds,
    }


def analyse(
    scenario: str,
    k: int,
    num_envs: int,
    hidden: tuple[int, ...],
    ppo: ippo.PPOConfig | None = None,
) -> dict[str, Any]:
    """Cost and memory of the programs of one update at K learners x E environments (PPO
    settings ``ppo``, default the paper's)."""
    env = envs_jax.make(scenario)
    spec = env.spec
    grid = [(S, s) for S in (4.0, 6.0, 8.0, 10.0) for s in (1.0, 2.0, 3.0, 4.0)]
    masks = [get_builtin_mask("ss-pruning", spec, S=S, s=s) for S, s in grid[:k]]
    cfg = ippo.TrainConfig(
        num_envs=num_envs,
        hidden=hidden,
        reward_scale=1e-3,
        shard=False,
        ppo=ppo or ippo.PPOConfig(),
    )
    # a trainer with one environment per learner gives the state's structure cheaply
    small = ippo.make(env, dataclasses.replace(cfg, num_envs=1), masks)
    state = small.init(jax.random.PRNGKey(0))
    params, opt_state = _abstract(state.params), _abstract(state.opt_state)
    keys = jax.ShapeDtypeStruct((k, 2), jnp.uint32)
    env_keys = jax.random.split(jax.random.PRNGKey(1), k * num_envs).reshape(k, num_envs, 2)
    envs = jax.eval_shape(lambda kk: reset_envs(env, kk, small.source.train_params), env_keys)
    episode = int(spec.episode_length["train"])
    train_params = small.source.train_params

    def rollout_program(length: int) -> Any:
        roll = make_rollout(env, small.apply_fn, masks, length, 1e-3, reset_at_end=True)
        return lambda p, e, key: roll(p, e, key, train_params)

    step = _analyse(rollout_program(1), params, envs, keys)
    whole = _analyse(rollout_program(episode), params, envs, keys)
    traj_shape = jax.eval_shape(rollout_program(episode), params, envs, keys)
    _, traj, last_value, _, _ = traj_shape
    one_pass = dataclasses.replace(cfg.ppo, update_epochs=1, num_minibatches=1)
    sgd = _analyse(
        make_update(small.apply_fn, small.optimizer, one_pass),
        params,
        opt_state,
        traj,
        last_value,
        keys,
    )
    update = _analyse(
        make_update(small.apply_fn, small.optimizer, cfg.ppo),
        params,
        opt_state,
        traj,
        last_value,
        keys,
        donate=(0, 1),
    )
    agent_steps = episode * num_envs * spec.n_agents * k  # all learners, one update
    passes = cfg.ppo.update_epochs
    flops = step["flops"] * episode + sgd["flops"] * passes
    bytes_ = step["bytes"] * episode + sgd["bytes"] * passes
    out: dict[str, Any] = {
        "scenario": scenario,
        "k": k,
        "num_envs": num_envs,
        "n_agents": spec.n_agents,
        "episode": episode,
        "hidden": list(hidden),
        "update_epochs": cfg.ppo.update_epochs,
        "num_minibatches": cfg.ppo.num_minibatches,
        "flops_per_agent_step": flops / agent_steps,
        "bytes_per_agent_step": bytes_ / agent_steps,
        "rollout_step": step,
        "rollout_episode": whole,
        "one_pass_update": sgd,
        "update": update,
        "peak_memory_gb": max(whole["peak_bytes"], update["peak_bytes"]) / 1e9,
    }
    updates = math.ceil(PAPER["steps"] / (episode * num_envs))  # per candidate, whole run
    out["updates_per_run"] = updates
    out["projection"] = {}
    for name, gpu in GPUS.items():
        per_update = max(flops / gpu["flops"], bytes_ / gpu["bandwidth"])
        out["projection"][name] = {
            "seconds_per_update": per_update,
            "train_minutes": per_update * updates / 60,
            "bound": "compute" if flops / gpu["flops"] > bytes_ / gpu["bandwidth"] else "memory",
            "agent_steps_per_s": agent_steps / per_update,
            "fits_memory": out["peak_memory_gb"] < gpu["memory_gb"],
        }
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the projection."""
    lines = [
        "| scenario | K x E | agents | kFLOP / agent-step | kB / agent-step | peak GB "
        "| compile s (CPU) | H100 min | H200 min | bound |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        h100, h200 = r["projection"]["H100 SXM"], r["projection"]["H200"]
        compile_s = r["rollout_episode"]["compile_s"] + r["update"]["compile_s"]
        lines.append(
            f"| {r['scenario']} | {r['k']} x {r['num_envs']} | {r['n_agents']} "
            f"| {r['flops_per_agent_step'] / 1e3:,.1f} | {r['bytes_per_agent_step'] / 1e3:,.1f} "
            f"| {r['peak_memory_gb']:.1f} | {compile_s:.1f} | {h100['train_minutes']:.1f} "
            f"| {h200['train_minutes']:.1f} | {h100['bound']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--scenarios",
        default="mabim/standard-100,mabim/standard-500,mabim/3-echelons-500",
        help="comma-separated scenarios (default %(default)s)",
    )
    ap.add_argument("--k", type=int, default=PAPER["k"])
    ap.add_argument(
        "--num-envs",
        default="32,16,8",
        help="environments per learner, one per scenario (default %(default)s: about 50 k "
        "agents per learner and step, so that K = 16 fits in 40 GB)",
    )
    ap.add_argument("--hidden", default="64,64")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    args = ap.parse_args()
    hidden = tuple(int(h) for h in args.hidden.split(","))
    scenarios = [x.strip() for x in args.scenarios.split(",")]
    envs = [int(e) for e in args.num_envs.split(",")]
    if len(envs) == 1:
        envs = envs * len(scenarios)
    if len(envs) != len(scenarios):
        raise SystemExit("paper_projection: give one --num-envs value, or one per scenario")
    rows = []
    for scenario, num_envs in zip(scenarios, envs):
        rows.append(analyse(scenario, args.k, num_envs, hidden))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    print("\n" + text)
    record = {
        "benchmark": "paper_projection",
        "command": "python " + " ".join(sys.argv),
        "device": device_info(),
        "versions": package_versions(),
        "gpus": GPUS,
        "paper": PAPER,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    if not args.no_readme:
        write_readme_section("## Paper-scale projection", _readme(text))
    print(f"wrote {args.out}")


def _readme(text: str) -> str:
    return (
        "`python benchmarks/paper_projection.py`: the training programs of a paper-scale run "
        "(K = 16 learners, 10 iterations, 5.02 M environment steps per candidate, 4 PPO epochs) "
        "built at GPU sizes and analysed by XLA on this CPU (cost and memory analysis; nothing "
        "runs at that size here). Projected training minutes per run = updates x roofline time "
        "per update (rollout + update), assuming FP32 without tensor cores (67 TFLOP/s), HBM "
        "bandwidth 3.35 TB/s (H100 SXM) / 4.8 TB/s (H200), CPU-HLO bytes as GPU memory traffic, "
        "no launch or host overhead, evaluation and mask checks excluded. Peak memory = "
        "arguments + outputs + temporaries of the larger program. Compile seconds are this "
        "CPU's. Not measured on a GPU (none lent); `benchmarks/gpu_suite.sh` runs the same "
        "programs when one is.\n\n" + text + "\n\nRaw: `results/paper_projection.json`."
    )


if __name__ == "__main__":
    main()
