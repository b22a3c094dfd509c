"""Training throughput of the GRU actor-critic beside the MLP, at K = 1 and K = 16 learners.

Four arms (network x K) in one process on one scenario: each arm's trainer is built and its two
programs (rollout, PPO update; ``fuse_chunk=False``) compiled and warmed up first, with their
compile seconds recorded; then ``--repeats`` rounds time one chunk of ``--updates`` updates of
every arm, the arms interleaved within each round so that the machine's load falls on all of
them alike. Reported per arm: training agent-steps/s (all K learners: K x T x E x n_agents per
update; compile excluded), median and spread over the rounds, and the compile seconds.

MLP: the default actor and critic (64, 64, tanh). GRU: the released eSpark agent's shape (FC ->
GRU -> FC, width 128, layer norm before the value head, previous action as input). Both use the
default PPO settings (4 epochs x 4 minibatches; the GRU's minibatches are (environment, agent)
sequences of the whole rollout). K = 1 trains under the all-ones mask, K = 16 under 16 distinct
(S, s) pruning masks.

    python benchmarks/gru_throughput.py                   # this CPU (about 10 minutes)
    python benchmarks/gru_throughput.py --num-envs 16     # a GPU

Writes ``benchmarks/results/gru_throughput.json`` (``--out`` to change) and prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import write_record  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "gru_throughput.json"
NETWORKS = {
    "mlp": dict(network="mlp", hidden=(64, 64)),
    "gru": dict(network="gru", hidden=(128,), layer_norm=True, last_action=True),
}


def build_arms(args: argparse.Namespace) -> list[dict]:
    """Every (network, K) arm: a trainer and its compiled, warmed-up learner state."""
    import jax

    import envs_jax
    from espark_jax.ippo import TrainConfig, make
    from espark_jax.masks.builtin import get_builtin_mask
    from espark_jax.masks.safe import all_ones

    env = envs_jax.make(args.scenario)
    grid = [(S, s) for S in (4.0, 6.0, 8.0, 10.0) for s in (1.0, 2.0, 3.0, 4.0)]
    arms = []
    for network in args.networks.split(","):
        for k in (int(x) for x in args.ks.split(",")):
            if k == 1:
                masks = [all_ones(env.spec)]
            else:
                masks = [get_builtin_mask("ss-pruning", env.spec, S=S, s=s) for S, s in grid[:k]]
            cfg = TrainConfig(
                num_envs=args.num_envs,
                updates_per_chunk=args.updates,
                fuse_chunk=False,
                **NETWORKS[network],
            )
            trainer = make(env, cfg, masks)
            print(f"compiling {network} K={k} ...", flush=True)
            t0 = time.perf_counter()
            state, _ = trainer.train_chunk(trainer.init(jax.random.PRNGKey(0)), args.updates)
            jax.block_until_ready(state)
            arms.append(
                {
                    "network": network,
                    "k": k,
                    "trainer": trainer,
                    "state": state,
                    "warmup_s": time.perf_counter() - t0,
                    "times": [],
                }
            )
    return arms


def run(args: argparse.Namespace) -> list[dict]:
    """Compile every arm, then time ``args.repeats`` interleaved rounds; one row per arm."""
    import jax

    arms = build_arms(args)
    for r in range(args.repeats):
        for arm in arms:
            t0 = time.perf_counter()
            arm["state"], _ = arm["trainer"].train_chunk(arm["state"], args.updates)
            jax.block_until_ready(arm["state"])
            arm["times"].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{args.repeats} done", flush=True)
    rows = []
    for arm in arms:
        trainer = arm["trainer"]
        steps = trainer.agent_steps_per_update() * trainer.num_learners * args.updates
        rates = [steps / t for t in arm["times"]]
        rows.append(
            {
                "network": arm["network"],
                "k": arm["k"],
                "num_envs": args.num_envs,
                "train_config": {
                    n: v
                    for n, v in trainer.config.to_dict().items()
                    if n in ("network", "hidden", "activation", "layer_norm", "last_action")
                },
                "agent_steps_per_update": steps // args.updates,
                "agent_steps_per_s": statistics.median(rates),
                "agent_steps_per_s_min": min(rates),
                "agent_steps_per_s_max": max(rates),
                "seconds_per_update": statistics.median(arm["times"]) / args.updates,
                "compile_rollout_s": trainer.compile_seconds["rollout"][0],
                "compile_update_s": trainer.compile_seconds["update"][0],
                "warmup_s": arm["warmup_s"],
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """A Markdown table of the rows, with GRU / MLP ratios per K."""
    lines = [
        "| network | K | E | agent-steps/s (median) | min - max | s/update | rollout compile s "
        "| update compile s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['k']} | {r['num_envs']} | {r['agent_steps_per_s']:,.0f} "
            f"| {r['agent_steps_per_s_min']:,.0f} - {r['agent_steps_per_s_max']:,.0f} "
            f"| {r['seconds_per_update']:.2f} | {r['compile_rollout_s']:.1f} "
            f"| {r['compile_update_s']:.1f} |"
        )
    by = {(r["network"], r["k"]): r for r in rows}
    for k in sorted({r["k"] for r in rows}):
        if ("gru", k) in by and ("mlp", k) in by:
            ratio = by[("gru", k)]["agent_steps_per_s"] / by[("mlp", k)]["agent_steps_per_s"]
            lines.append(f"\nK = {k}: GRU / MLP training throughput = {ratio:.3f}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scenario", default="mabim/standard-100")
    p.add_argument("--networks", default="mlp,gru")
    p.add_argument("--ks", default="1,16", help="learner counts, comma-separated")
    p.add_argument("--num-envs", type=int, default=1, help="environments per learner")
    p.add_argument("--updates", type=int, default=1, help="updates per timed chunk")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    load_before = list(os.getloadavg())
    rows = run(args)
    text = table(rows)
    print("\n" + text)
    write_record(
        args.out,
        "gru_throughput",
        {k: getattr(args, k) for k in ("scenario", "ks", "num_envs", "updates", "repeats")},
        "training agent-steps/s of all K learners (rollout + PPO update, default PPO settings), "
        "compile excluded; arms interleaved within each timed round",
        rows,
        load_average_before=load_before,
        table=text,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
