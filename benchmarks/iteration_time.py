"""Seconds per eSpark iteration, LLM time excluded and reported separately.

Runs the real loop (template provider: no network, so "LLM time" is the template search, near
zero; with ``--provider anthropic`` it is the API time) and splits every iteration into:
candidate generation + sandboxed compile checks, compilation of the training programs, training
and evaluation. Prints a table and writes ``benchmarks/results/iteration_time_<preset>.json``.

    python benchmarks/iteration_time.py --preset quick               # CPU, a few minutes
    python benchmarks/iteration_time.py --preset paper --iterations 2  # GPU: Standard-100, K = 16,
                                                                     # 502 k env steps per candidate
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

import jax

from espark_jax.llm.providers import make_provider
from espark_jax.runs import RunDir, device_info, package_versions
from espark_jax.search import SearchConfig, run_search

RESULTS = Path(__file__).parent / "results"


def llm_seconds(run: RunDir, iteration: int) -> float:
    """Sum of the recorded provider latencies of one iteration."""
    total = 0.0
    for rec in run.iter_dir(iteration).glob("cand_*/*.json"):
        if rec.name in ("check.json", "metrics.json"):
            continue
        total += float(json.loads(rec.read_text()).get("latency_s") or 0.0)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="quick", choices=["quick", "paper"])
    ap.add_argument("--scenario", default="mabim/standard-100")
    ap.add_argument("--iterations", type=int, help="iterations to time (default: the preset's)")
    ap.add_argument("--provider", default="template")
    ap.add_argument("--out", help="results JSON (default results/iteration_time_<preset>.json)")
    args = ap.parse_args()

    overrides = {"scenario": args.scenario, "provider": args.provider}
    if args.iterations:
        base = SearchConfig.from_preset(args.preset)
        # keep the per-iteration budget of the preset when timing fewer iterations
        overrides.update(
            iterations=args.iterations, steps=base.steps_per_iteration() * args.iterations
        )
    cfg = SearchConfig.from_preset(args.preset, **overrides)
    import envs_jax
    from espark_jax.llm.prompts import EnvPromptInfo

    env = envs_jax.make(cfg.scenario)
    provider, note = make_provider(
        cfg.provider,
        env_family=cfg.scenario.split("/")[0],
        seed=cfg.seed,
        env_info=EnvPromptInfo.from_env(env),
    )
    print(note)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir.create(Path(tmp) / "bench", {"config": cfg.to_dict()})
        results = run_search(cfg, run, provider, progress=False)
        total = time.perf_counter() - start
        rows = []
        for h in results["iterations"]:
            it = h["iteration"]
            summary = json.loads((run.iter_dir(it) / "summary.json").read_text())
            comp = summary["compile_seconds"]
            prev = (
                json.loads((run.iter_dir(it - 1) / "summary.json").read_text())["compile_seconds"]
                if it > 1
                else {}
            )
            new_compile = sum(sum(v) for v in comp.values()) - sum(sum(v) for v in prev.values())
            llm = llm_seconds(run, it)
            t = summary["timings"]
            rows.append(
                {
                    "iteration": it,
                    "llm_s": llm,
                    "checks_s": t["generate_and_check_s"] - llm,
                    "compile_s": new_compile,
                    "train_and_eval_s": t["train_s"] - new_compile,
                    "iteration_s_excl_llm": t["generate_and_check_s"] - llm + t["train_s"],
                    "env_steps_per_candidate": summary["env_steps_per_candidate"],
                }
            )
    print(
        f"\n{cfg.scenario}, preset {args.preset}, K = {cfg.k}, {cfg.iterations} iterations, "
        f"{rows[0]['env_steps_per_candidate']:,} env steps per candidate per iteration, "
        f"provider {provider.label}"
    )
    print(
        "| iteration | LLM s | compile checks s | XLA compile s | train + eval s "
        "| iteration s (no LLM) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['iteration']} | {r['llm_s']:.1f} | {r['checks_s']:.1f} | {r['compile_s']:.1f} | "
            f"{r['train_and_eval_s']:.1f} | {r['iteration_s_excl_llm']:.1f} |"
        )
    med = statistics.median(r["iteration_s_excl_llm"] for r in rows)
    print(f"median seconds per iteration (LLM excluded): {med:.1f}; whole run {total:.1f} s")
    out = Path(args.out) if args.out else RESULTS / f"iteration_time_{args.preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "iteration_time",
                "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
                "config": cfg.to_dict(),
                "provider": provider.label,
                "rows": rows,
                "median_iteration_s_excl_llm": med,
                "total_s": total,
                "device": device_info(),
                "versions": package_versions(),
                "load_avg": os.getloadavg(),
                "jax_backend": jax.default_backend(),
                "date": time.strftime("%Y-%m-%d %H:%M"),
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
