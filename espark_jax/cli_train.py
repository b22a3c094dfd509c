"""``espark train`` and ``espark eval``: IPPO under built-in masks, and a saved learner evaluated.

``espark train`` trains one learner per built-in mask (several masks = several learners in
parallel), keeps the one with the best selection score and saves it (parameters and optimiser
state, the loop's checkpoint format); ``espark eval`` restores it and evaluates it without
masks, greedy and sampled.

    espark train --scenario mabim/standard-100 --mask ss-pruning --steps 2e6 --seed 0 --out runs/ss
    espark eval --checkpoint runs/ss --split test
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from espark_jax.cli_args import (
    add_distributed_args,
    add_mabim_options,
    add_network_args,
    join_job,
    mabim_env_kwargs,
    network_hidden,
    require_scenario,
    use_precision,
)
from espark_jax.presets import FALLBACK_RULES, MASK_INTERFACES

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"


def add_train_parser(sub: Any) -> None:
    """Register ``espark train``."""
    p = sub.add_parser("train", help="train IPPO under built-in masks and save the learner")
    p.add_argument(
        "--scenario", default="mabim/standard-100", help="registered scenario (default %(default)s)"
    )
    p.add_argument(
        "--mask",
        default="none",
        help="built-in mask, or several separated by commas (one learner each, trained in "
        "parallel): none, random, ss-pruning, upbound (MABIM), maxpressure-pruning, "
        "random-pruning (SUMO)",
    )
    p.add_argument(
        "--mask-program",
        metavar="FILE",
        help="train one learner under a mask program (a .py file or an LLM reply) instead of "
        "--mask, checked in the sandbox like an LLM candidate",
    )
    p.add_argument(
        "--mask-interface",
        choices=list(MASK_INTERFACES),
        default="native",
        help="what --mask-program is written against: native = compute_mask(ctx, action_space), "
        "released = compute_mask(agent_states, supply_chain, action_space) of the authors' "
        "released code (MABIM; translated, then checked)",
    )
    p.add_argument(
        "--mask-fallback",
        choices=list(FALLBACK_RULES),
        default="per_agent",
        help="an agent whose mask allows nothing: per_agent acts unmasked alone (default), "
        "per_env unmasks its whole environment for the step (the released code)",
    )
    p.add_argument(
        "--steps",
        type=float,
        default=2e6,
        help="environment steps per learner (decisions x environments; default %(default)g)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output directory (default runs/train-<scenario>-<mask>-s<seed>)")
    p.add_argument(
        "--num-envs",
        type=int,
        help="parallel environments per learner (default: the scenario family's, MABIM 16; "
        "SUMO 2 simulations, one process each)",
    )
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (paper: 5e-4)")
    p.add_argument(
        "--reward-scale",
        type=float,
        help="reward multiplier before PPO (default: the scenario family's, MABIM 1e-3, SUMO 1e-2)",
    )
    p.add_argument(
        "--hidden",
        help="hidden widths of actor and critic, e.g. 128,128 (default: 64,64; --network gru: "
        "one width, 128)",
    )
    add_network_args(p)
    p.add_argument("--updates-per-chunk", type=int, default=5, help="updates per compiled chunk")
    p.add_argument(
        "--eval-every", type=int, help="updates between evaluations (default: 10 checkpoints)"
    )
    p.add_argument("--eval-split", default="validation", help="split of the periodic evaluation")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_mabim_options(p)
    add_distributed_args(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Train, evaluate the selected learner on validation and test, save checkpoint and results
    (in a multi-process job every process trains; process 0 writes and prints)."""
    primary = join_job(args, "espark train")
    env_kwargs = mabim_env_kwargs(args, "espark train")  # before any array is made
    import jax

    from espark_jax import ippo
    from espark_jax.distributed import check_env
    from espark_jax.families import family_of, make_env
    from espark_jax.masks.builtin import get_builtin_mask
    from espark_jax.masks.fallback import with_fallback
    from espark_jax.runs import package_versions, write_json

    require_scenario("espark train", args.scenario)
    family = family_of(args.scenario)
    masks = [m.strip() for m in args.mask.split(",") if m.strip()]
    if args.mask_program:
        masks = [Path(args.mask_program).stem]
    num_envs = args.num_envs or family.num_envs
    env = make_env(args.scenario, len(masks), num_envs, **env_kwargs)
    try:
        check_env(env.spec)
        if args.mask_program:
            mask_fns = [program_mask(args.mask_program, args.mask_interface, env)]
        else:
            mask_fns = [get_builtin_mask(m, env.spec) for m in masks]
        rule = (len(env.spec.agent_shape), args.mask_fallback)
        mask_fns = [with_fallback(fn, *rule) for fn in mask_fns]
        episode = int(env.spec.episode_length["train"])
        updates = max(1, math.ceil(args.steps / (episode * num_envs)))
        cfg = ippo.TrainConfig(
            num_envs=num_envs,
            num_updates=updates,
            updates_per_chunk=min(args.updates_per_chunk, updates),
            hidden=network_hidden(args),
            network=args.network,
            layer_norm=args.layer_norm,
            last_action=args.last_action,
            reward_scale=args.reward_scale,
            ppo=ippo.PPOConfig(lr=args.lr),
            eval_every=args.eval_every or max(1, updates // 10),
            eval_envs=family.eval_envs or num_envs,
            eval_split=args.eval_split,
        )
        trainer = ippo.make(env, cfg, mask_fns, progress=not args.no_progress)
    except ValueError as err:  # unknown mask (the message lists the valid names), bad sizes
        _close(env)
        raise SystemExit(f"espark train: {err}") from None
    out = Path(
        args.out or f"runs/train-{args.scenario.replace('/', '-')}-{'+'.join(masks)}-s{args.seed}"
    )
    if primary:
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS_FILE).unlink(missing_ok=True)
    config = {
        "scenario": args.scenario,
        "env_kwargs": env_kwargs,
        "masks": masks,
        "seed": args.seed,
        "steps": args.steps,
        "train_config": trainer.config.to_dict(),
        "data_source": env.spec.data_source,
        "data_files": getattr(env, "data_files", []),
        "versions": package_versions(),
        "command": " ".join(sys.argv),
    }
    if primary:
        write_json(out / CONFIG_FILE, config)
    k_init, k_train, k_eval = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    print(
        f"training {len(masks)} learner(s) [{', '.join(masks)}] on {args.scenario} "
        f"({env.spec.data_source}): {updates} updates x {num_envs} envs x {episode} steps"
    )
    try:
        result = ippo.train(
            trainer,
            trainer.init(k_init),
            k_train,
            metrics_path=str(out / METRICS_FILE) if primary else None,
            progress=primary and not args.no_progress,
        )
        best = max(range(len(masks)), key=lambda k: result.scores[k])
        learner = trainer.learner(result.state, best)
        if primary:
            trainer.save_learner(out / CHECKPOINT_DIR, learner)
        splits = ("validation", "test")
        final = ippo.evaluate_learner(trainer, learner["params"], k_eval, splits, cfg.eval_envs)
    finally:
        _close(env)
    results = {
        "selected": best,
        "selected_mask": masks[best],
        "scores": result.scores,
        "train_seconds": result.seconds,
        "compile_seconds": trainer.compile_seconds,
        "evaluation": final,
    }
    if not primary:
        return 0
    config.update(selected=best, selected_mask=masks[best])
    write_json(out / CONFIG_FILE, config)
    write_json(out / RESULTS_FILE, results)
    scores = [round(s, 1) for s in result.scores]
    print(f"selected learner {best} ({masks[best]}), selection scores {scores}")
    print_evaluation(final)
    print(f"saved {out / CHECKPOINT_DIR} and {out / RESULTS_FILE}")
    return 0


def add_eval_parser(sub: Any) -> None:
    """Register ``espark eval``."""
    p = sub.add_parser("eval", help="evaluate a learner saved by 'espark train' (no masks)")
    p.add_argument(
        "--checkpoint", required=True, help="directory written by 'espark train --out DIR'"
    )
    p.add_argument("--split", default="test", help="validation or test (default %(default)s)")
    p.add_argument("--num-envs", type=int, default=4, help="evaluation environments")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the evaluation to this file")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """Restore the saved learner and evaluate it greedy and sampled on one split."""
    import dataclasses

    import jax

    from espark_jax import ippo
    from espark_jax.checkpoints import CheckpointError
    from espark_jax.families import make_env
    from espark_jax.runs import write_json

    root = Path(args.checkpoint)
    if not (root / CONFIG_FILE).is_file() or not (root / CHECKPOINT_DIR).is_dir():
        raise SystemExit(
            f"espark eval: {root} has no {CONFIG_FILE} and {CHECKPOINT_DIR}/; "
            "pass the --out directory of 'espark train'"
        )
    config = json.loads((root / CONFIG_FILE).read_text())
    use_precision(config.get("env_kwargs", {}))
    env = make_env(config["scenario"], 1, args.num_envs, **config.get("env_kwargs", {}))
    # one learner; a host scenario runs it on num-envs simulations
    cfg = dataclasses.replace(ippo.TrainConfig(**config["train_config"]), num_envs=args.num_envs)
    try:
        trainer = ippo.make(env, cfg)
        learner = trainer.load_learner(root / CHECKPOINT_DIR)
        key = jax.random.PRNGKey(args.seed)
        result = ippo.evaluate_learner(
            trainer, learner["params"], key, (args.split,), args.num_envs
        )
    except (CheckpointError, ValueError) as err:
        raise SystemExit(f"espark eval: {err}") from None
    finally:
        _close(env)
    print_evaluation(result)
    if args.json:
        write_json(Path(args.json), result)
    return 0


def program_mask(path: str, interface: str, env: Any) -> Any:
    """The checked, exported mask of the program in ``path`` (written against ``interface``);
    a program that fails its checks exits with the checker's one-line reason."""
    from espark_jax.masks import MaskTask, compile_mask
    from espark_jax.masks.released import released_task

    try:
        text = Path(path).read_text()
    except OSError as err:
        raise SystemExit(f"espark train: cannot read --mask-program {path}: {err.strerror}")
    if interface == "released" and len(env.spec.agent_shape) != 2:
        raise SystemExit("espark train: --mask-interface released is for MABIM scenarios")
    task = released_task(env) if interface == "released" else MaskTask.from_env_spec(env.spec)
    result = compile_mask(text, task)
    if not result.ok:
        raise SystemExit(f"espark train: {path} fails its checks: {result.reason}")
    return result.fn


def print_evaluation(result: dict[str, Any]) -> None:
    """One line per split and mode: return, reward components (and SUMO trip metrics)."""
    for split, modes in result.items():
        for mode, ev in modes.items():
            comps = ", ".join(f"{n} {sum(g.values()):.1f}" for n, g in ev["components"].items())
            extra = "".join(f", {n} {v:.1f}" for n, v in ev.get("metrics", {}).items())
            ret = f"return {ev['return']:.1f} +- {ev['return_std']:.1f}"
            print(f"{split:>10} {mode:>7}: {ret} ({comps}{extra})")


def _close(env: Any) -> None:
    close = getattr(env, "close", None)
    if close is not None:  # a host (SUMO) environment: stop its workers
        close()
