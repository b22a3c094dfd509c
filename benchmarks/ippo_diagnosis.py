"""Where plain IPPO loses against base stock: orders, destroyed arrivals, lost sales per warehouse.

Trains the ``after`` arm of ``benchmarks/sample_efficiency.py`` (the same settings, seeds, keys and
chunks, so its returns are that benchmark's) and, at each budget, replays the test episode of
every learner day by day (``espark_jax.traces.learner_traces``, greedy and sampled, the key of
the sample-efficiency evaluation) beside the reference policies
(``espark_jax.traces.baseline_traces``). Per policy and warehouse (head first) it reports:

- orders / demand: units ordered over units demanded from that warehouse (1 = orders match
  demand over the episode; a non-tail warehouse's demand is its downstream warehouse's orders);
- destroyed: units destroyed on arrival for lack of space, as a share of the units that arrived;
- fill: units sold (or shipped downstream) over units demanded;
- zero-order days and the mean order multiplier (learners only, from their action counts);
- the cost components summed over warehouses (excess = destroyed arrivals, backlog = lost sales).

    python benchmarks/ippo_diagnosis.py                     # three scenarios, budgets 5e4, 2e5
    python benchmarks/ippo_diagnosis.py --smoke             # seconds, mabim/tiny, to /tmp
    python benchmarks/ippo_diagnosis.py --report            # table, figure, README from the JSON

Writes ``results/ippo_diagnosis.json`` (after every scenario; ``--resume`` keeps them) and
``.png``, prints a table and refreshes its section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_sections import write_readme_section  # noqa: E402
from sample_efficiency import (  # noqa: E402
    EVAL_KEY,
    arm_settings,
    compact,
    cpu_model,
    fmt,
    make_learners,
    parse_runs,
    source_state,
    train_until,
)

from espark_jax.baselines import LABELS  # noqa: E402
from espark_jax.runs import device_info, package_versions, write_json  # noqa: E402
from espark_jax.traces import baseline_traces, learner_traces  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "ippo_diagnosis.json"
SCENARIOS = ("mabim/standard-100", "mabim/lowest-100", "mabim/3-echelons-100")
BUDGETS = (50_000, 200_000)
PLANNED = 200_000  # the sample-efficiency benchmark's largest budget: the lr anneals over it
REFERENCES = ("base_stock_dynamic", "sS_static")
COSTS = ("excess_cost", "backlog_cost", "order_cost", "holding_cost")
HEADING = "## Where IPPO loses against base stock"


def total(daily: dict[str, list[float]]) -> np.ndarray:
    """``{group: [T]}`` -> episode sums per group ``[G]`` (head first)."""
    return np.array([np.sum(v) for v in daily.values()], np.float64)


def ratio(num: np.ndarray, den: np.ndarray) -> list[float]:
    """``num / den`` per group, NaN where nothing was demanded or arrived."""
    return [float(n / d) if d > 0 else float("nan") for n, d in zip(num, den)]


def summarise(trace: dict[str, Any], action_values: np.ndarray | None = None) -> dict[str, Any]:
    """The per-warehouse numbers of one trace (the module doc), JSON-ready."""
    flows, comps = trace["daily"]["flows"], trace["daily"]["components"]
    demand, arrived = total(flows["demand"]), total(flows["arrived"])
    out = {
        "return": trace["return"],
        "orders_over_demand": ratio(total(flows["replenish"]), demand),
        "destroyed_share": ratio(total(flows["excess"]), arrived),
        "fill": ratio(total(flows["sale"]), demand),
        "costs": {name: float(total(comps[name]).sum()) for name in COSTS},
        "profit": float(total(comps["profit"]).sum()),
    }
    if "action_counts" in trace and action_values is not None:
        counts = np.array(list(trace["action_counts"].values()), np.float64)  # [G, A]
        share = counts / counts.sum(axis=1, keepdims=True)
        out["zero_order_share"] = share[:, action_values == 0].sum(axis=1).tolist()
        out["mean_multiplier"] = (share @ action_values).tolist()
    return out


def run_scenario(scenario: str, seeds: list[int], budgets: list[int]) -> dict[str, Any]:
    """Train the learners to each budget and summarise their test episodes and the references'."""
    s = arm_settings("after", PLANNED)
    env, trainer, state, per_update = make_learners(scenario, s, seeds, PLANNED)
    values = np.asarray(env.spec.action_values, np.float64).reshape(-1)
    key = jax.random.PRNGKey(EVAL_KEY)
    refs = baseline_traces(env, ("test",), 0)["test"]
    out: dict[str, Any] = {
        "scenario": scenario,
        "groups": list(env.spec.group_names),
        "settings": s,
        "references": {n: summarise(refs[n]) for n in REFERENCES if n in refs},
        "points": [],
        "source": source_state(),
    }
    done, t0 = 0, time.perf_counter()
    for budget in budgets:
        state, done, _ = train_until(trainer, state, done, math.ceil(budget / per_update))
        learners = {f"seed {x}": trainer.learner(state, k) for k, x in enumerate(seeds)}
        traces = learner_traces(trainer, learners, key, "test", s["eval_envs"])
        point = {"budget": budget, "env_steps": done * per_update, "updates": done}
        for mode in ("greedy", "sampled"):
            point[mode] = [summarise(traces[role][mode], values) for role in learners]
        out["points"].append(point)
        print(f"  {scenario} {done * per_update:>8,} steps: greedy "
              + " ".join(fmt(x["return"]) for x in point["greedy"])
              + f" | {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    out["seconds"] = time.perf_counter() - t0
    return out


def pct(xs: list[float]) -> str:
    return " / ".join("-" if math.isnan(x) else f"{100 * x:.0f}" for x in xs)


def per_wh(xs: list[float]) -> str:
    return " / ".join("-" if math.isnan(x) else f"{x:.2f}" for x in xs)


def mean_of(rows: list[dict[str, Any]], key: str) -> list[float]:
    """The mean over learners of a per-warehouse list."""
    return np.nanmean(np.array([r[key] for r in rows], np.float64), axis=0).tolist()


def policies(run: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(label, [summary per learner])`` for the references and each IPPO point and mode."""
    rows = [(LABELS[n], [v]) for n, v in run["references"].items()]
    for p in run["points"]:
        for mode in ("greedy", "sampled"):
            rows.append((f"IPPO {mode}, {p['env_steps']:,} steps", p[mode]))
    return rows


def table(data: dict[str, Any]) -> str:
    """Markdown, one row per scenario and policy; warehouse values head first (means over
    learners)."""
    head = ["scenario", "policy", "return", "orders / demand", "destroyed %", "fill %",
            "zero-order days %", "mean multiplier", "excess cost", "backlog cost"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for run in data["runs"]:
        for label, rows in policies(run):
            learner = "zero_order_share" in rows[0]
            cells = [
                fmt(float(np.mean([r["return"] for r in rows]))),
                per_wh(mean_of(rows, "orders_over_demand")),
                pct(mean_of(rows, "destroyed_share")),
                pct(mean_of(rows, "fill")),
                pct(mean_of(rows, "zero_order_share")) if learner else "-",
                per_wh(mean_of(rows, "mean_multiplier")) if learner else "-",
                fmt(float(np.mean([r["costs"]["excess_cost"] for r in rows]))),
                fmt(float(np.mean([r["costs"]["backlog_cost"] for r in rows]))),
            ]
            lines.append(f"| {run['scenario']} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(data: dict[str, Any], path: Path) -> None:
    """Per scenario: orders / demand per warehouse (top) and the costs (bottom) per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    runs = data["runs"]
    fig, axes = plt.subplots(2, len(runs), figsize=(5.6 * len(runs), 8.0), squeeze=False)
    for col, run in enumerate(runs):
        rows = policies(run)
        groups = run["groups"]
        names = ["head", *["middle"] * (len(groups) - 2), "tail"] if len(groups) > 1 else [""]
        width = 0.8 / len(rows)
        cmap = plt.get_cmap("tab10")
        top, bottom = axes[0][col], axes[1][col]
        bars = []
        for i, (label, rs) in enumerate(rows):
            y = np.array([r["orders_over_demand"] for r in rs], np.float64)
            x = np.arange(len(groups)) + (i - (len(rows) - 1) / 2) * width
            bars.append(top.bar(x, np.nanmean(y, 0), width, color=cmap(i),
                    yerr=[np.nanmean(y, 0) - np.nanmin(y, 0), np.nanmax(y, 0) - np.nanmean(y, 0)],
                    capsize=2))  # fmt: skip
            base = 0.0
            for j, cost in enumerate(("excess_cost", "backlog_cost", "order_cost")):
                v = float(np.mean([r["costs"][cost] for r in rs]))
                bottom.bar(i, v, 0.7, bottom=base, color=cmap(i), alpha=1.0 - 0.3 * j,
                           hatch=("", "//", ".."  )[j], edgecolor="black", lw=0.4)  # fmt: skip
                base += v
        top.axhline(1.0, color="black", lw=0.8, ls=":")
        top.set_xticks(np.arange(len(groups)),
                       [f"{n} {g}".strip() for n, g in zip(names, groups)])  # fmt: skip
        top.set_title(run["scenario"])
        top.set_ylabel("units ordered / units demanded (test episode)")
        bottom.set_xticks(range(len(rows)), [str(i + 1) for i in range(len(rows))])
        bottom.set_xlabel("policy (numbered as in the legend above, in order)")
        bottom.set_ylabel("cost over the test episode (all warehouses)")
        bottom.yaxis.set_major_formatter(FuncFormatter(compact))
        for ax in (top, bottom):
            ax.grid(alpha=0.3, axis="y")
            ax.set_axisbelow(True)
        highest = max(np.nanmax([r["orders_over_demand"] for r in rs]) for _, rs in rows)
        top.set_ylim(0, 1.55 * max(highest, 1.0))  # room for the legend above the bars
        top.legend(bars, [f"{i + 1}. {label}" for i, (label, _) in enumerate(rows)],
                   fontsize=7, loc="upper left", ncol=2)  # fmt: skip
    handles = [
        plt.Rectangle((0, 0), 1, 1, fc="white", ec="black", hatch=h) for h in ("", "//", "..")
    ]
    fig.legend(handles, ["destroyed arrivals (excess)", "lost sales (backlog)", "order cost"],
               loc="lower center", ncol=3, fontsize=9)  # fmt: skip
    fig.suptitle("Plain IPPO vs base stock, test split\nordering (top), where the money goes "
                 "(bottom); bars: mean, whiskers: min/max over seeds")  # fmt: skip
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def readme(data: dict[str, Any], out: Path) -> str:
    """The benchmark's section of ``benchmarks/README.md``."""
    seeds = ", ".join(map(str, data["seeds"]))
    minutes = sum(r["seconds"] for r in data["runs"]) / 60
    return (
        "`python benchmarks/ippo_diagnosis.py`: the `after` arm of `## IPPO sample efficiency` "
        f"(seeds {seeds}, the same settings, keys and chunks: its returns are that table's), "
        "the test episode replayed day by day at each budget beside base stock (dynamic) and "
        "(S,s) (static). Per warehouse, head first: units ordered / units demanded, units "
        "destroyed on arrival / units arrived, units sold / demanded, share of zero-order "
        "days and the mean order multiplier (IPPO only); costs summed over warehouses; means "
        "over seeds.\n\n"
        + table(data)
        + f"\n\n![where IPPO loses](results/{out.with_suffix('.png').name})\n\n"
        f"CPU: {data['cpu']}, {data['device']['cpus']} cores; load average "
        f"{data['load']['start'][0]:.1f} at the start, {data['load']['end'][0]:.1f} at the end; "
        f"{minutes:.0f} min. Command: `{data['command']}`; raw: `results/{out.name}`."
    )


def report(data: dict[str, Any], out: Path, readme_too: bool) -> None:
    """Print the table, draw the figure, refresh the README section."""
    print("\n" + table(data) + "\n")
    figure(data, out.with_suffix(".png"))
    if readme_too:
        write_readme_section(HEADING, readme(data, out))
    print(f"results: {out}, figure: {out.with_suffix('.png')}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--budgets",
        default=",".join(map(str, BUDGETS)),
        help=f"environment steps per learner (of a run planned for {PLANNED:,})",
    )
    ap.add_argument("--smoke", action="store_true", help="mabim/tiny, tiny budgets, to /tmp")
    ap.add_argument("--out", default=None, help=f"JSON path (default {RESULTS})")
    ap.add_argument("--resume", action="store_true", help="keep finished scenarios of --out")
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--report", action="store_true", help="only table, figure, README from --out")
    args = ap.parse_args()
    if args.smoke:
        args.scenarios, args.budgets, args.seeds, args.no_readme = "mabim/tiny", "200", "0,1", True
        args.out = args.out or str(Path(tempfile.gettempdir()) / "ippo_diagnosis_smoke.json")
    out = Path(args.out or RESULTS)
    if args.report:
        if not out.is_file():
            raise SystemExit(f"ippo_diagnosis: --report needs {out}; run the benchmark first")
        return report(json.loads(out.read_text()), out, readme_too=not args.no_readme)
    scenarios, seeds, budgets = parse_runs(args, "ippo_diagnosis", 1)
    if not all(name.startswith("mabim/") for name in scenarios):
        raise SystemExit("ippo_diagnosis: MABIM scenarios only (it reads inventory flows)")
    old: dict[str, Any] = {}
    if args.resume and out.is_file():  # finished scenarios of the same seeds and budgets
        prev = json.loads(out.read_text())
        if prev.get("seeds") == seeds and prev.get("budgets") == sorted(budgets):
            old = {r["scenario"]: r for r in prev["runs"]}
    data: dict[str, Any] = {
        "benchmark": "ippo_diagnosis",
        "command": "python " + " ".join(sys.argv),
        "seeds": seeds,
        "budgets": sorted(budgets),
        "planned": PLANNED,
        "device": device_info(),
        "cpu": cpu_model(),
        "versions": package_versions(),
        "load": {"start": os.getloadavg(), "end": None},
        "runs": [],
    }
    for scenario in scenarios:
        run = old.get(scenario)
        if run is None:
            run = run_scenario(scenario, seeds, sorted(budgets))
        else:
            print(f"  {scenario}: kept from {out}")
        data["runs"].append(run)
        data["load"]["end"] = os.getloadavg()
        write_json(out, data)
    report(data, out, readme_too=not args.no_readme)


if __name__ == "__main__":
    main()
