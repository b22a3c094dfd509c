"""Pruning-baseline runs of ``espark sweep``: plain IPPO under one built-in mask.

The paper compares eSpark with IPPO trained under hand-made pruning rules: random pruning,
(S, s) pruning and upbound pruning (MABIM), MaxPressure pruning (SUMO). A pruning-baseline run
trains one learner under the rule's built-in mask (:mod:`espark_jax.masks.builtin`) for the
environment steps of one eSpark candidate over a whole run (``iterations`` x the updates per
iteration of :func:`espark_jax.search_config.train_config`, with the same trainer settings), and
evaluates it like the selected eSpark learner: test split, no masks, greedy and sampled, the same
key, beside the same reference baselines. Its run directory holds ``manifest.json``,
``metrics.jsonl``, ``learner/`` (checkpoint), ``results.json`` in the format of an eSpark run
(``"control": null``, ``"pruning"``, ``"mask"``, the evaluation curve under ``"curve"``),
``traces.json`` and ``summary.png``, so tables and figures read every run alike.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

# sweep variant -> {scenario family: built-in mask}
PRUNING_VARIANTS: dict[str, dict[str, str]] = {
    "random": {"mabim": "random", "sumo": "random-pruning"},
    "ss-pruning": {"mabim": "ss-pruning"},
    "upbound": {"mabim": "upbound"},
    "maxpressure-pruning": {"sumo": "maxpressure-pruning"},
}
PRUNING_LABELS = {
    "random": "random pruning",
    "ss-pruning": "(S, s) pruning",
    "upbound": "upbound pruning",
    "maxpressure-pruning": "MaxPressure pruning",
}
LEARNER = "learner"


def builtin_mask_name(variant: str, scenario: str) -> str | None:
    """The built-in mask of pruning variant ``variant`` on ``scenario``'s family (None: the
    variant does not apply there)."""
    return PRUNING_VARIANTS.get(variant, {}).get(scenario.split("/", 1)[0])


def run_pruning(
    cfg: Any,
    variant: str,
    path: str | Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, evaluate and record the pruning baseline ``variant`` with ``cfg``'s budget and
    trainer settings in run directory ``path`` (an unfinished one is trained again from the
    start); returns the results dict (also written to ``results.json``). ``cfg``: a
    :class:`~espark_jax.search_config.SearchConfig`."""
    import jax  # here, not at the top: the tables import this module's labels without JAX

    from espark_jax import ippo
    from espark_jax.baselines import reference_baselines
    from espark_jax.families import make_env
    from espark_jax.masks.builtin import get_builtin_mask
    from espark_jax.masks.fallback import with_fallback
    from espark_jax.report import loop_figure, standing_table
    from espark_jax.runs import RunDir, write_json
    from espark_jax.search import FINAL_EVAL_FOLD
    from espark_jax.search_config import train_config
    from espark_jax.traces import final_traces, write_traces

    mask = builtin_mask_name(variant, cfg.scenario)
    if mask is None:
        families = ", ".join(PRUNING_VARIANTS.get(variant, {})) or "none"
        raise ValueError(
            f"pruning variant {variant!r} does not apply to {cfg.scenario} (families: {families})"
        )
    path = Path(path)
    env = make_env(cfg.scenario, 1, cfg.num_envs, **cfg.env_kwargs)
    try:
        tc, per_iteration = train_config(cfg, env)
        tc = dataclasses.replace(tc, num_updates=per_iteration * cfg.iterations)
        rule = (len(env.spec.agent_shape), cfg.mask_fallback, cfg.mask_first_step)
        fn = with_fallback(get_builtin_mask(mask, env.spec), *rule)
        trainer = ippo.make(env, tc, [fn], progress=progress)
        if (path / "manifest.json").is_file():
            run = RunDir.open(path)
        else:
            manifest = {
                "config": cfg.to_dict(),
                "pruning": variant,
                "mask": mask,
                "scenario": cfg.scenario,
                "data_source": env.spec.data_source,
            }
            run = RunDir.create(path, manifest)
        metrics = run.path / "metrics.jsonl"
        metrics.unlink(missing_ok=True)
        root = jax.random.PRNGKey(cfg.seed)
        k_init, k_train = jax.random.split(jax.random.fold_in(root, 1))
        env_steps = tc.num_updates * tc.num_envs * trainer.num_steps
        log(
            f"pruning baseline {PRUNING_LABELS[variant]} ({mask}) on {cfg.scenario}: "
            f"{tc.num_updates} updates, {env_steps:,} environment steps"
        )
        result = ippo.train(
            trainer,
            trainer.init(k_init),
            k_train,
            metrics_path=str(metrics),
            progress=progress,
            desc=PRUNING_LABELS[variant],
        )
        learner = trainer.learner(result.state, 0)
        trainer.save_learner(run.path / LEARNER, learner)
        key = jax.random.fold_in(root, FINAL_EVAL_FOLD)
        test = ippo.evaluate_learner(trainer, learner["params"], key, ("test",), cfg.eval_envs)
        refs = reference_baselines(env, "test", cfg.seed, cfg.eval_envs)
        traces, refs_validation = final_traces(
            trainer, {"selected": learner}, key, cfg.seed, cfg.eval_envs
        )
    finally:
        close = getattr(env, "close", None)
        if close is not None:  # a host (SUMO) environment: stop its workers
            close()
    results = {
        "scenario": cfg.scenario,
        "data_source": env.spec.data_source,
        "provider": f"none: pruning baseline ({PRUNING_LABELS[variant]}, no LLM)",
        "provider_name": "pruning",
        "pruning": variant,
        "mask": mask,
        "config": cfg.to_dict(),
        "test": test["test"],
        "control": None,
        "baselines": refs,
        "baselines_validation": refs_validation,
        "change_vs_ippo": None,
        "iterations": [],
        "curve": {
            "env_steps": [e.get("env_steps") for e in result.evals],
            "eval_return": [e["return"][0] for e in result.evals],
            "split": tc.eval_split,
        },
        "env_steps_per_learner": env_steps,
        "train_seconds": result.seconds,
    }
    write_json(run.path / "results.json", results)
    write_traces(run.path, traces)
    loop_figure(run.path, results)
    log("\n".join(standing_table(results)))
    log(f"results: {run.path / 'results.json'}  figure: {run.path / 'summary.png'}")
    return results
