"""MABIM OR baselines on the test split of the five 100-SKU eSpark scenarios.

Usage::

    python benchmarks/mabim_baselines.py [--scenarios mabim/standard-100 ...] [--seed 0] [--key 0]
                                         [--n-windows 8] [--no-readme]

Runs every baseline of ``envs_jax.mabim.baselines`` (zero, constant 1.0, random, base stock static
and dynamic, (S, s) hindsight and static) on each scenario's test split (60 days, 2021/9/1 to
2021/10/30) with the synthetic data of ``--seed``, prints a table, writes
``benchmarks/results/mabim_baselines.json`` (device, versions, command, data source, returns, reward
components per warehouse, fitted parameters, seconds per baseline) and the ``## MABIM baselines``
section of ``benchmarks/README.md``. Seconds are wall time of fitting plus evaluation, JAX
compilation included. The returns are on synthetic data: they are not comparable with the MABIM or
eSpark papers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jaxlib
from readme_sections import README, write_readme_section

import envs_jax
from envs_jax.mabim import baselines as B

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "mabim_baselines.json"
SECTION = "## MABIM baselines"
SCENARIOS = (
    "mabim/standard-100",
    "mabim/2-echelons-100",
    "mabim/3-echelons-100",
    "mabim/lower-100",
    "mabim/lowest-100",
)
LABELS = {
    "zero": "zero",
    "constant": "constant 1.0",
    "random": "random-34",
    "base_stock_static": "BS static",
    "base_stock_dynamic": "BS dynamic",
    "sS_hindsight": "(S,s) hindsight",
    "sS_static": "(S,s) static",
}


def machine_info() -> dict[str, Any]:
    """Device, versions, load and command line for the results file."""
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in open("/proc/cpuinfo")
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    device = (
        f"{dev.platform.upper()}: {getattr(dev, 'device_kind', '')}"
        if dev.platform != "cpu"
        else f"CPU: {cpu}, {os.cpu_count()} cores"
    )
    return {
        "device": device,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join(["python", *sys.argv]),
    }


def run(
    scenarios: tuple[str, ...], seed: int, key: int, n_windows: int
) -> dict[str, dict[str, Any]]:
    """All baselines on every scenario; ``{scenario: {baseline: result dict}}``."""
    out: dict[str, dict[str, Any]] = {}
    for name in scenarios:
        env = envs_jax.make(name, seed=seed)
        out[name] = {}
        for baseline in B.BASELINES:
            r = B.run_baseline(
                env, baseline, key=jax.random.key(key), split="test", n_windows=n_windows
            )
            out[name][baseline] = r
            print(
                f"{name:24s} {LABELS[baseline]:16s} {r['return']:16,.1f}  {r['seconds']:6.1f} s",
                flush=True,
            )
    return out


def tables(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: returns (scenario x baseline), then seconds."""
    names = list(B.BASELINES)
    head = "| scenario | " + " | ".join(LABELS[b] for b in names) + " |"
    rule = "|---|" + "---:|" * len(names)
    rows = [head, rule]
    for scen, res in results.items():
        rows.append(f"| {scen} | " + " | ".join(f"{res[b]['return']:,.0f}" for b in names) + " |")
    rows += ["", "Seconds per baseline (fit + test episode, compilation included):", "", head, rule]
    for scen, res in results.items():
        rows.append(f"| {scen} | " + " | ".join(f"{res[b]['seconds']:.1f}" for b in names) + " |")
    return "\n".join(rows)


def readme_section(payload: dict[str, Any]) -> str:
    """The ``## MABIM baselines`` section of benchmarks/README.md."""
    first = next(iter(payload["results"].values()))["zero"]
    p = payload
    source, days, start = p["data_source"], first["days"], first["start_date"]
    load_before, load_after = p["load_avg_1_5_15"], p["load_avg_after"]
    return f"""{SECTION}

**Synthetic data ({source}): these returns are not comparable with the MABIM or eSpark
papers**, whose tables use the real MABIM demand and price files. Test split: {days} days from
{start}, after the 21-day warm-up; return = sum of `reward2` over all warehouses and
SKUs and days (profit - excess - order - holding - backlog costs). Reward components per warehouse
and the fitted per-SKU parameters are in `results/mabim_baselines.json`.

{tables(payload["results"])}

Baselines (`envs_jax/mabim/baselines.py`): *zero* never orders; *constant 1.0* orders the 21-day
mean demand every day; *random-34* draws one of the 34 discrete multipliers per agent and day;
*BS* (base stock) orders up to `S = dbar * (vlt + 1 + k)`, with `dbar` the training-split mean
demand (static) or the previous 21 days' mean re-estimated every 7 days (dynamic), and the safety
days `k` searched per SKU on {payload["n_windows"]} random training windows (the original solves an
integer programme with cvxpy/GLPK instead, and orders `target - 1`); *(S,s)* searches the 169 (S, s)
pairs per SKU, on the test split itself (hindsight) or on {payload["n_windows"]} random training
windows (static), all pairs in one vmapped call. Per-SKU selection from episodes in which every SKU
uses the same candidate ignores that SKUs share the warehouse capacity: in the Lower/Lowest
scenarios the combined choice can overflow it (see the excess costs in the JSON), as in the original
search.

{p["device"]}; load average {load_before} before and {load_after} after
the run (a shared machine: compare rows, not machines). JAX {p["jax"]}, Python {p["python"]}.
Command: `{p["command"]}`. Raw: `results/mabim_baselines.json`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument(
        "--key", type=int, default=0, help="JAX key of the training windows and the random policy"
    )
    parser.add_argument(
        "--n-windows", type=int, default=B.N_WINDOWS, help="training windows per grid search"
    )
    parser.add_argument(
        "--no-readme", action="store_true", help="do not rewrite the README section"
    )
    args = parser.parse_args()

    info = machine_info()
    t0 = time.perf_counter()
    results = run(tuple(args.scenarios), args.seed, args.key, args.n_windows)
    sources = {r["data_source"] for res in results.values() for r in res.values()}
    payload = {
        **info,
        "data_source": ", ".join(sorted(sources)),
        "comparable_with_papers": False,
        "split": "test",
        "key": args.key,
        "n_windows": args.n_windows,
        "total_seconds": time.perf_counter() - t0,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=1))
    print()
    print(tables(results))
    print(f"\nwrote {RESULTS}")
    if not args.no_readme:
        write_readme_section(SECTION, readme_section(payload).removeprefix(SECTION))
        print(f"updated the '{SECTION}' section of {README}")


if __name__ == "__main__":
    main()
