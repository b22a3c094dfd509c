"""The ``espark`` command line: one small function per subcommand.

``espark train`` trains IPPO learners under built-in masks (several masks = several learners in
parallel) and saves the selected learner as an orbax checkpoint; ``espark eval`` evaluates a saved
learner without masks. ``espark run`` / ``espark report`` (the eSpark loop) live in
:mod:`espark_jax.cli_search`, ``espark baselines`` in :mod:`espark_jax.cli_baselines`, ``espark sweep``
in :mod:`espark_jax.cli_sweep`.

    espark train --scenario mabim/standard-100 --mask ss-pruning --steps 2e6 --seed 0 --out runs/ss
    espark eval --checkpoint runs/ss --split test
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from espark_jax import cli_baselines, cli_search, cli_sweep

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"


# --------------------------------------------------------------------------------------------- train
def add_train_parser(sub: Any) -> None:
    """Register ``espark train``."""
    p = sub.add_parser("train", help="train IPPO under built-in masks and save the learner")
    p.add_argument(
        "--scenario", default="mabim/standard-100", help="registered scenario (default %(default)s)"
    )
    p.add_argument(
        "--mask",
        default="none",
        help="built-in mask, or several separated by commas (one learner each, trained in parallel): "
        "none, random, ss-pruning, upbound (MABIM), maxpressure-pruning, random-pruning (SUMO)",
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
        help="parallel environments per learner (default 16; SUMO: 2 simulations, one process each)",
    )
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (paper: 5e-4)")
    p.add_argument(
        "--reward-scale", type=float, help="reward multiplier before PPO (default 1e-3; SUMO 1e-2)"
    )
    p.add_argument(
        "--hidden", default="64,64", help="hidden widths of actor and critic, e.g. 128,128"
    )
    p.add_argument("--updates-per-chunk", type=int, default=5, help="updates per compiled chunk")
    p.add_argument(
        "--eval-every", type=int, help="updates between evaluations (default: 10 checkpoints)"
    )
    p.add_argument("--eval-split", default="validation", help="split of the periodic evaluation")
    p.add_argument(
        "--data-dir", help="MABIM data directory in the original layout (default: synthetic data)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Train, evaluate the selected learner on validation and test, save checkpoint and results."""
    import jax

    from espark_jax.ippo import host
    from espark_jax.ippo.ppo import PPOConfig
    from espark_jax.ippo.train import TrainConfig, train
    from espark_jax.masks.builtin import get_builtin_mask

    env_kwargs = {"data_dir": args.data_dir} if args.data_dir else {}
    masks = [m.strip() for m in args.mask.split(",") if m.strip()]
    try:  # a host (SUMO) scenario gets len(masks) x num-envs simulations
        env = host.make_env(
            args.scenario, len(masks), args.num_envs or host.DEFAULT_NUM_ENVS, **env_kwargs
        )
        mask_fns = [get_builtin_mask(m, env.spec) for m in masks]
    except (
        KeyError,
        ValueError,
    ) as err:  # unknown scenario or mask: the message lists the valid names
        raise SystemExit(f"espark train: {err}") from None
    is_host = host.is_host_env(env)
    num_envs = args.num_envs or (host.DEFAULT_NUM_ENVS if is_host else 16)
    reward_scale = (
        args.reward_scale
        if args.reward_scale is not None
        else (host.REWARD_SCALE if is_host else 1e-3)
    )
    host_eval = (
        {"eval_envs": num_envs} if is_host else {}
    )  # SUMO: one evaluation round of all simulations
    episode = int(env.spec.episode_length["train"])
    updates = max(1, math.ceil(args.steps / (episode * num_envs)))
    cfg = TrainConfig(
        num_envs=num_envs,
        num_updates=updates,
        updates_per_chunk=min(args.updates_per_chunk, updates),
        hidden=_parse_hidden(args.hidden),
        reward_scale=reward_scale,
        ppo=PPOConfig(lr=args.lr),
        eval_every=args.eval_every or max(1, updates // 10),
        eval_split=args.eval_split,
        **host_eval,
    )
    out = Path(
        args.out or f"runs/train-{args.scenario.replace('/', '-')}-{'+'.join(masks)}-s{args.seed}"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_FILE).unlink(missing_ok=True)
    config = {
        "scenario": args.scenario,
        "env_kwargs": env_kwargs,
        "masks": masks,
        "seed": args.seed,
        "steps": args.steps,
        "train_config": cfg.to_dict(),
        "data_source": env.spec.data_source,
        "versions": _versions(),
        "command": " ".join(sys.argv),
    }
    _write_json(out / CONFIG_FILE, config)

    try:
        trainer = host.make_trainer(env, cfg, mask_fns, progress=not args.no_progress)
    except ValueError as err:
        raise SystemExit(f"espark train: {err}") from None
    key = jax.random.PRNGKey(args.seed)
    k_init, k_train, k_eval = jax.random.split(key, 3)
    print(
        f"training {len(masks)} learner(s) [{', '.join(masks)}] on {args.scenario} "
        f"({env.spec.data_source}): {updates} updates x {num_envs} envs x {episode} steps"
    )
    try:
        result = train(
            trainer,
            trainer.init(k_init),
            k_train,
            metrics_path=str(out / METRICS_FILE),
            progress=not args.no_progress,
        )
        best = max(range(len(masks)), key=lambda k: result.scores[k])
        params = jax.tree_util.tree_map(lambda x: x[best], result.state.params)
        _save_params(out / CHECKPOINT_DIR, params)
        final = _evaluate_all(trainer, params, k_eval, ("validation", "test"), cfg.eval_envs)
    finally:
        if is_host:
            env.close()
    results = {
        "selected": best,
        "selected_mask": masks[best],
        "scores": result.scores,
        "train_seconds": result.seconds,
        "compile_seconds": trainer.compile_seconds,
        "evaluation": final,
    }
    config.update(selected=best, selected_mask=masks[best])
    _write_json(out / CONFIG_FILE, config)
    _write_json(out / RESULTS_FILE, results)
    print(
        f"selected learner {best} ({masks[best]}), selection scores {[round(s, 1) for s in result.scores]}"
    )
    _print_evaluation(final)
    print(f"saved {out / CHECKPOINT_DIR} and {out / RESULTS_FILE}")
    return 0


# --------------------------------------------------------------------------------------------- eval
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

    from espark_jax.ippo import host
    from espark_jax.ippo.train import TrainConfig
    from espark_jax.masks.builtin import get_builtin_mask

    root = Path(args.checkpoint)
    if not (root / CONFIG_FILE).is_file() or not (root / CHECKPOINT_DIR).is_dir():
        raise SystemExit(
            f"espark eval: {root} has no {CONFIG_FILE} and {CHECKPOINT_DIR}/; "
            "pass the --out directory of 'espark train'"
        )
    config = json.loads((root / CONFIG_FILE).read_text())
    env = host.make_env(config["scenario"], 1, args.num_envs, **config.get("env_kwargs", {}))
    cfg = TrainConfig(**config["train_config"])
    if host.is_host_env(env):  # one learner on num-envs simulations
        cfg = dataclasses.replace(cfg, num_envs=args.num_envs)
    try:
        trainer = host.make_trainer(env, cfg, [get_builtin_mask("none", env.spec)])
        params = _load_params(root / CHECKPOINT_DIR, trainer)
        result = _evaluate_all(
            trainer, params, jax.random.PRNGKey(args.seed), (args.split,), args.num_envs
        )
    finally:
        if host.is_host_env(env):
            env.close()
    _print_evaluation(result)
    if args.json:
        _write_json(Path(args.json), result)
    return 0


# --------------------------------------------------------------------------------------------- helpers
def _parse_hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise SystemExit(
            f"--hidden expects positive widths separated by commas, e.g. 64,64; got {text!r}"
        )
    return widths


def _evaluate_all(
    trainer: Any, params: Any, key: Any, splits: Sequence[str], num_envs: int
) -> dict[str, Any]:
    """Greedy and sampled evaluation of one learner on each split, as plain numbers."""
    import jax
    import jax.numpy as jnp

    stacked = jax.tree_util.tree_map(lambda x: jnp.expand_dims(x, 0), params)
    out: dict[str, Any] = {}
    for split in splits:
        for greedy in (True, False):
            ev = trainer.evaluate(stacked, key, split=split, greedy=greedy, num_envs=num_envs)
            out.setdefault(split, {})["greedy" if greedy else "sampled"] = _first(ev)
    return out


def _first(tree: Any) -> Any:
    """Values of learner 0 from an evaluation of K learners (lists of length K become numbers)."""
    if isinstance(tree, dict):
        return {k: _first(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return tree[0]
    return tree


def _print_evaluation(result: dict[str, Any]) -> None:
    for split, modes in result.items():
        for mode, ev in modes.items():
            comps = ", ".join(f"{n} {sum(g.values()):.1f}" for n, g in ev["components"].items())
            extra = "".join(
                f", {n} {v:.1f}" for n, v in ev.get("metrics", {}).items()
            )  # SUMO episode metrics
            print(
                f"{split:>10} {mode:>7}: return {ev['return']:.1f} +- {ev['return_std']:.1f} ({comps}{extra})"
            )


def _save_params(path: Path, params: Any) -> None:
    import shutil

    import orbax.checkpoint as ocp

    path = path.resolve()
    if path.exists():
        shutil.rmtree(path)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path, params)
    ckpt.wait_until_finished()


def _load_params(path: Path, trainer: Any) -> Any:
    import jax
    import orbax.checkpoint as ocp

    from espark_jax.ippo.networks import param_shapes

    like = param_shapes(trainer.network, trainer.spec.obs_dim)
    target = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
    return ocp.StandardCheckpointer().restore(path.resolve(), target)


def _versions() -> dict[str, str]:
    import jax

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The ``espark`` argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="espark", description="eSpark in JAX: K-parallel IPPO with LLM-written masks"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_eval_parser(sub)
    cli_search.add_run_parser(sub)
    cli_search.add_report_parser(sub)
    cli_baselines.add_baselines_parser(sub)
    cli_sweep.add_sweep_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``espark`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
