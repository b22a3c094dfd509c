"""Seconds to compile the per-iteration rollout program, and what XLA options buy or cost.

Every eSpark iteration brings K new mask programs, so the rollout (environment step, masks,
policy) is lowered and compiled again; everything else is compiled once per run. This script
builds the real K template candidates of the quick preset (sandbox-checked, exported), loads
them afresh for every repetition (as a new iteration would), and times, interleaved round by
round over the variants: the compile (JAX lowering + XLA) and two runs of the compiled rollout
(so a faster compile that slows the rollout shows). Variants are XLA option sets passed to this
program's ``compile`` only. ``--baseline REV`` runs the same measurement in fresh processes of
commit REV and of this tree, interleaved.

    python benchmarks/rollout_compile.py                       # K = 4 and 16, all variants
    python benchmarks/rollout_compile.py --k 16 --reps 5 --variants default,opt2
    python benchmarks/rollout_compile.py --baseline 2d753dd --variants default --rounds 3
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax

RESULTS = Path(__file__).parent / "results"

VARIANTS: dict[str, dict[str, Any] | None] = {
    "default": None,  # the tree's own choice (this tree: ROLLOUT_CPU_OPTIONS)
    "O3": {"xla_backend_optimization_level": 3},  # XLA's default
    "opt2": {"xla_backend_optimization_level": 2},
    "opt1": {"xla_backend_optimization_level": 1},
    "split8": {"xla_cpu_parallel_codegen_split_count": 8},
    "no-fusion-emitters": {"xla_cpu_use_fusion_emitters": False},
}


def template_masks(scenario: str, k: int) -> tuple[Any, list, Any]:
    """The quick preset's search on ``scenario`` with ``k`` template candidates (+ control):
    its trainer, the checked mask functions and the mask task."""
    import envs_jax
    from espark_jax.llm.prompts import EnvPromptInfo
    from espark_jax.llm.providers import make_provider
    from espark_jax.runs import RunDir
    from espark_jax.search import Carry, Search, SearchConfig

    cfg = SearchConfig.from_preset("quick", scenario=scenario, provider="template", k=k)
    env = envs_jax.make(scenario)
    provider, _ = make_provider(
        "template", env_family=scenario.split("/")[0], seed=0, env_info=EnvPromptInfo.from_env(env)
    )
    run = RunDir.create(Path(tempfile.mkdtemp()) / "run", {"config": cfg.to_dict()})
    search = Search(cfg, run, provider, progress=False, log=lambda _: None)
    masks = search.check(1, search.generate(1, Carry()))
    return search.trainer, masks, search.task


def fresh(masks: list, task: Any) -> tuple:
    """New mask objects from the same artefacts: a new iteration's program, nothing cached."""
    from espark_jax.masks.export import load_exported

    return tuple(load_exported(m.data, task) if hasattr(m, "data") else m for m in masks)


def time_once(trainer: Any, masks: tuple, options: dict | None) -> dict[str, float]:
    """Compile (JAX lowering + XLA, with ``options``) and run the rollout of ``masks``: the
    compile seconds the trainer logs, then two runs (the second is the steady state)."""
    if options is not None:
        trainer.source.rollout_compiler_options = options
    trainer.set_masks(masks)
    state = trainer.init(jax.random.PRNGKey(0))
    t0, c0 = time.perf_counter(), time.process_time()
    out = trainer.rollout(state)
    jax.block_until_ready(out)
    t1, c1 = time.perf_counter(), time.process_time()
    out = trainer.rollout(out[0])
    jax.block_until_ready(out)
    t2, c2 = time.perf_counter(), time.process_time()
    compile_s = trainer.log.compile_seconds["rollout"][-1]
    return {
        "compile_s": compile_s,
        # CPU seconds of all threads: compile + first run, less a steady run (less noisy than
        # wall time on a shared machine)
        "compile_cpu_s": (c1 - c0) - (c2 - c1),
        "first_run_s": t1 - t0 - compile_s,
        "run_s": t2 - t1,
    }


def measure(scenario: str, ks: list[int], reps: int, names: list[str]) -> list[dict]:
    """Rows per (K, variant): the repetitions and the medians of the recompiles (every
    repetition after the first, which is the run's first iteration: cold caches)."""
    rows = []
    for k in ks:
        trainer, masks, task = template_masks(scenario, k)
        got: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        for _ in range(reps):
            for name in names:
                got[name].append(time_once(trainer, fresh(masks, task), VARIANTS[name]))
        for name in names:
            warm = got[name][1:] or got[name]
            rows.append(
                {"k": k, "slots": len(masks), "variant": name, "options": VARIANTS[name]}
                | {f"median_{f}": statistics.median(r[f] for r in warm) for f in warm[0]}
                | {"reps": got[name]}
            )
    return rows


def compare(args: argparse.Namespace, names: list[str]) -> list[dict]:
    """Interleaved fresh processes: ``--baseline`` (default options) and this tree (each
    variant); rows with each arm's median over rounds."""
    import shutil

    from ab import ROOT, baseline_tree, interleave, run_json

    old = baseline_tree(args.baseline)
    script = "benchmarks/rollout_compile.py"
    shutil.copy(ROOT / script, old / script)  # the old tree runs this same measurement
    arms = {}
    for k in args.k:
        common = ["--scenario", args.scenario, "--k", str(k), "--reps", str(args.reps)]
        arms[f"K={k} baseline {args.baseline}"] = functools.partial(
            run_json, old, script, [*common, "--variants", "default"]
        )
        for name in names:
            arms[f"K={k} this tree {name}"] = functools.partial(
                run_json, ROOT, script, [*common, "--variants", name]
            )
    got = interleave(args.rounds, arms)
    rows = []
    for arm, runs in got.items():
        first = runs[0]["rows"][0]
        fields = [f for f in first if f.startswith("median_")]
        rows.append(
            {"arm": arm, "k": first["k"], "variant": first["variant"], "slots": first["slots"]}
            | {f: statistics.median(r["rows"][0][f] for r in runs) for f in fields}
            | {"rounds": [r["rows"][0] for r in runs]}
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenario", default="mabim/standard-100")
    ap.add_argument("--k", type=int, nargs="+", default=[4, 16], help="candidates (+ control)")
    ap.add_argument("--reps", type=int, default=3, help="mask sets compiled per process (>= 2)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    ap.add_argument("--baseline", metavar="REV", help="A/B against commit REV, fresh processes")
    ap.add_argument("--rounds", type=int, default=3, help="A/B rounds (default %(default)s)")
    ap.add_argument("--out", default=str(RESULTS / "rollout_compile.json"))
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    if args.reps < 2:
        raise SystemExit("--reps must be >= 2: the first mask set is the cold first iteration")
    from espark_jax.runs import device_info, package_versions

    load_start = os.getloadavg()
    if args.baseline:
        rows = compare(args, names)
    else:
        rows = measure(args.scenario, args.k, args.reps, names)
    print(f"\n{args.scenario}, quick preset, K template candidates + the control; medians of")
    print(
        "the recompiles (a new mask set after the first)"
        + (" over A/B rounds" * bool(args.baseline))
    )
    print("| K | arm | compile s (lowering + XLA) | compile CPU s | rollout run s |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['k']} | {r.get('arm', r['variant'])} | {r['median_compile_s']:.2f} "
            f"| {r['median_compile_cpu_s']:.2f} | {r['median_run_s']:.3f} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "rollout_compile",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "scenario": args.scenario,
        "baseline": args.baseline,
        "rows": rows,
        "device": device_info(),
        "versions": package_versions(),
        "load_avg": {"start": load_start, "end": os.getloadavg()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
