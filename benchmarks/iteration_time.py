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
    ap.add_argument("--no-control", action="store_true", help="no IPPO control learner")
    ap.add_argument(
        "--baseline",
        metavar="REV",
        help="A/B mode: this tree (with and without the control learner) against commit REV, "
        "each run in a fresh process, --rounds rounds interleaved",
    )
    ap.add_argument("--rounds", type=int, default=3, help="A/B rounds (default %(default)s)")
    args = ap.parse_args()
    if args.baseline:
        compare(args)
        return

    overrides = {"scenario": args.scenario, "provider": args.provider}
    if args.no_control:
        overrides["control"] = False
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


def _summary(record: dict) -> dict[str, float]:
    rows = record["rows"]
    recompiles = [r["compile_s"] for r in rows if r["iteration"] > 1]
    return {
        "median_iteration_s": record["median_iteration_s_excl_llm"],
        "median_recompile_s": statistics.median(recompiles) if recompiles else float("nan"),
        "median_train_and_eval_s": statistics.median(r["train_and_eval_s"] for r in rows),
    }


def compare(args: argparse.Namespace) -> None:
    """Interleaved A/B runs of this script: this tree vs ``--baseline``, medians and ratios."""
    from ab import ROOT, baseline_tree, interleave, run_json

    old = baseline_tree(args.baseline)
    common = ["--preset", args.preset, "--scenario", args.scenario, "--provider", args.provider]
    if args.iterations:
        common += ["--iterations", str(args.iterations)]
    script = "benchmarks/iteration_time.py"
    arms = {
        f"baseline {args.baseline}": lambda: run_json(old, script, common),
        "this tree, no control": lambda: run_json(ROOT, script, [*common, "--no-control"]),
        "this tree, with control": lambda: run_json(ROOT, script, common),
    }
    got = interleave(args.rounds, arms)
    summary = {
        name: {k: statistics.median(_summary(r)[k] for r in runs) for k in _summary(runs[0])}
        for name, runs in got.items()
    }
    base = summary[f"baseline {args.baseline}"]
    print(f"\nA/B, {args.rounds} rounds, medians over rounds (each a median over iterations)")
    print("| arm | s / iteration | recompile s / iteration | train + eval s | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for name, s in summary.items():
        ratio = base["median_iteration_s"] / s["median_iteration_s"]
        print(
            f"| {name} | {s['median_iteration_s']:.1f} | {s['median_recompile_s']:.1f} "
            f"| {s['median_train_and_eval_s']:.1f} | {ratio:.2f}x |"
        )
    out = Path(args.out) if args.out else RESULTS / f"iteration_time_{args.preset}_ab.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "iteration_time_ab",
                "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
                "baseline": args.baseline,
                "rounds": args.rounds,
                "summary": summary,
                "runs": got,
                "device": device_info(),
                "versions": package_versions(),
                "load_avg": os.getloadavg(),
                "date": time.strftime("%Y-%m-%d %H:%M"),
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
