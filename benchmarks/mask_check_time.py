"""Time to check LLM mask candidates: one candidate, and K = 16 concurrently in the sandbox.

Usage (every option has the default shown)::

    python benchmarks/mask_check_time.py [--scenario mabim/standard-100] [--k 16]
                                         [--workers 2] [--repeats 3]

Rows (median over ``--repeats``):

- ``in-process, 1 candidate``: ``check_in_process`` in this (warm) process: static checks,
  abstract trace and value checks, no sandbox. The floor of what a check costs.
- ``sandbox, 1 candidate``: ``compile_mask``: a fresh zygote (imports JAX), one forked child,
  re-validation and exec in the parent.
- ``sandbox, K candidates``: ``check_candidates`` with ``--workers`` children at a time.

The candidates are K variants of a paper-style capacity rule (different days of cover), all
accepted. Prints a table and writes ``benchmarks/results/mask_check_time.json`` with the device,
versions, command, machine load and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jaxlib
import numpy as np

import envs_jax
from espark_jax.masks import MaskTask, check_candidates, check_in_process, compile_mask

RULE = """```python
import numpy as np

def compute_mask(ctx, action_space):
    order = np.floor(action_space[None, None, :] * ctx.demand_mean[:, :, None])
    pipeline = (ctx.total_stock + ctx.total_in_transit)[:, None, None]
    fits = np.logical_or(pipeline + order <= ctx.capacity[:, None, None], order == 0)
    cover = (ctx.in_stock + ctx.in_transit) / np.maximum(ctx.demand_mean, 1e-6)
    overstocked = (cover > {days:.1f})[:, :, None]
    return np.where(overstocked, (action_space == 0)[None, None, :], fits)
```"""


def candidates(k: int) -> list[str]:
    """K accepted candidates that differ in one constant."""
    return [RULE.format(days=4.0 + i) for i in range(k)]


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    """Median wall time of ``fn()`` over ``repeats`` calls, all times, and the last return value."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="mabim/standard-100")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "mask_check_time.json")
    )
    args = parser.parse_args()

    task = MaskTask.from_env_spec(envs_jax.make(args.scenario).spec)
    texts = candidates(args.k)
    load_before = os.getloadavg()

    check_in_process(texts[0], task)  # warm this process's JAX caches
    t_inproc, all_inproc, _ = timed(lambda: check_in_process(texts[1], task), args.repeats)
    t_one, all_one, one = timed(lambda: compile_mask(texts[0], task), args.repeats)
    t_k, all_k, results = timed(
        lambda: check_candidates(texts, task, max_workers=args.workers), args.repeats
    )
    assert one.ok and all(r.ok for r in results), [r.reason for r in [one, *results] if not r.ok]

    per = [r.seconds for r in results]
    startup = [r.stats["child_startup_s"] for r in results]
    stages = {
        s: statistics.median(r.stats["timings"][s] for r in results)
        for s in ("static", "abstract", "values")
    }
    rows = [
        ("in-process, 1 candidate", 1, 1, t_inproc, all_inproc),
        ("sandbox, 1 candidate", 1, 1, t_one, all_one),
        (f"sandbox, K={args.k} candidates", args.k, args.workers, t_k, all_k),
    ]
    print(
        f"scenario {args.scenario}: agents {task.agent_shape}, {task.n_actions} actions; "
        f"{os.cpu_count()} CPUs, load {load_before[0]:.1f}"
    )
    print(f"{'what':<28} {'K':>3} {'workers':>7} {'median s':>9} {'s / candidate':>14}")
    for name, k, w, med, _ in rows:
        print(f"{name:<28} {k:>3} {w:>7} {med:>9.2f} {med / k:>14.2f}")
    print(
        f"inside one child (median): startup {statistics.median(startup):.2f} s, "
        f"static {stages['static']:.3f} s, "
        f"abstract {stages['abstract']:.3f} s, values {stages['values']:.3f} s; "
        f"child total {statistics.median(per):.2f} s"
    )

    record = {
        "benchmark": "mask_check_time",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": {
            "platform": jax.default_backend(),
            "kind": jax.devices()[0].device_kind,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "processor": platform.processor(),
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "numpy": np.__version__,
        },
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "scenario": args.scenario,
        "agent_shape": list(task.agent_shape),
        "n_actions": task.n_actions,
        "repeats": args.repeats,
        "rows": [
            {
                "what": n,
                "k": k,
                "workers": w,
                "median_s": round(m, 4),
                "per_candidate_s": round(m / k, 4),
                "all_s": [round(t, 4) for t in ts],
            }
            for n, k, w, m, ts in rows
        ],
        "child_median_s": {
            "startup": statistics.median(startup),
            **stages,
            "total": statistics.median(per),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
