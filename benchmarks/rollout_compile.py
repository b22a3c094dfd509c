"""Seconds to compile the per-iteration rollout program, and what XLA options buy or cost.

Every eSpark iteration brings K new mask programs, so the rollout (environment step, masks,
policy) is lowered and compiled again; everything else is compiled once per run. This script
builds the real K template candidates of the quick preset (sandbox-checked, exported), loads
them afresh for every repetition (as a new iteration would), and times, interleaved round by
round over the variants: JAX lowering, XLA compile, and one run of the compiled rollout (so a
faster compile that slows the rollout shows). Variants are XLA option sets passed to this
program's ``compile`` only.

    python benchmarks/rollout_compile.py                       # K = 4 and 16, all variants
    python benchmarks/rollout_compile.py --k 16 --reps 5 --variants default,opt2
"""

from __future__ import annotations

import argparse
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
    "default": None,
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
    """Lower, compile (with ``options``) and run the rollout of ``masks`` once each."""
    source = trainer.source
    source.rollout_compiler_options = options
    trainer.set_masks(masks)
    state = trainer.init(jax.random.PRNGKey(0))
    jitted = source.rollout_program.jitted
    t0 = time.perf_counter()
    lowered = jitted.lower(state, source.train_params)
    t1 = time.perf_counter()
    exe = lowered.compile(options)
    t2 = time.perf_counter()
    out = exe(state, source.train_params)
    jax.block_until_ready(out)
    t3 = time.perf_counter()
    out = exe(out[0], source.train_params)  # second run: steady state
    jax.block_until_ready(out)
    t4 = time.perf_counter()
    return {"lower_s": t1 - t0, "compile_s": t2 - t1, "first_run_s": t3 - t2, "run_s": t4 - t3}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenario", default="mabim/standard-100")
    ap.add_argument("--k", type=int, nargs="+", default=[4, 16], help="candidates (+ control)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds per variant")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    ap.add_argument("--out", default=str(RESULTS / "rollout_compile.json"))
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    from espark_jax.runs import device_info, package_versions

    load_start = os.getloadavg()
    rows = []
    for k in args.k:
        trainer, masks, task = template_masks(args.scenario, k)
        got: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        for _ in range(args.reps):
            for name in names:
                got[name].append(time_once(trainer, fresh(masks, task), VARIANTS[name]))
        for name in names:
            med = {f: statistics.median(r[f] for r in got[name]) for f in got[name][0]}
            rows.append(
                {"k": k, "slots": len(masks), "variant": name, "options": VARIANTS[name]}
                | {f"median_{f}": v for f, v in med.items()}
                | {"median_lower_plus_compile_s": med["lower_s"] + med["compile_s"]}
                | {"reps": got[name]}
            )
    print(f"\n{args.scenario}, quick preset, template candidates + control, medians of {args.reps}")
    print("| K | variant | lower s | compile s | lower + compile s | rollout run s |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['k']} | {r['variant']} | {r['median_lower_s']:.2f} | {r['median_compile_s']:.2f}"
            f" | {r['median_lower_plus_compile_s']:.2f} | {r['median_run_s']:.3f} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "rollout_compile",
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "scenario": args.scenario,
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
