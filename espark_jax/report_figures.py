"""The paper's figures, each as PNG with the numbers behind it as CSV.

* :func:`loop_figure` (every run, ``summary.png`` / ``summary.csv``): learning curves (selection
  score of every candidate per iteration, the selected learner and the IPPO control, the
  reference baselines on the same validation split as horizontal lines; a pruning-baseline run:
  its evaluation curve), the test returns beside IPPO and the baselines, and the test reward
  components.
* :func:`write_figures` (a sweep, ``espark table``): per MABIM scenario the action-selection
  frequency heatmap of the paper's Fig. 2 (methods x the order multipliers, test split) and the
  daily profit / overflow / fulfilment curves of Fig. 4; per SUMO scenario the delay, trip time
  and waiting time of every method.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from espark_jax.baselines import LABELS

CAPTION_STYLE = dict(ha="center", va="bottom", fontsize=9, style="italic", wrap=True)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _compact(value: float, _pos: Any = None) -> str:
    """Axis numbers: 1.2M, 350k, 12."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:g}"


def _compact_axis(axis: Any) -> None:
    import matplotlib.ticker

    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(_compact))
    axis.set_major_locator(matplotlib.ticker.MaxNLocator(6))


def _finish(fig: Any, path: Path, caption: str, right: float = 1.0) -> Path:
    fig.text(0.5, 0.005, caption, **CAPTION_STYLE)
    fig.tight_layout(rect=(0, 0.06, right, 1))
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


# ---------------------------------------------------------------------------- one run
def loop_figure(run_path: str | Path, results: dict[str, Any]) -> Path:
    """Write ``summary.png`` (and ``summary.csv``, its numbers) for a run; returns the PNG."""
    import matplotlib.ticker

    plt = _pyplot()
    run_path = Path(run_path)
    rows: list[list[Any]] = []  # panel, series, x, value
    pruning = results.get("mask") if results.get("pruning") else None
    learner = f"IPPO under the {pruning} mask" if pruning else "selected eSpark learner"
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5.2))

    iters = results.get("iterations") or []
    if iters:
        for h in iters:
            for k, s in enumerate(h["scores"]):
                y = math.nan if s is None else s
                fallback = k in h["fallbacks"]
                ax1.scatter(h["iteration"], y, c="tab:red" if fallback else "tab:blue", s=18)
                rows.append(
                    ["learning", f"candidate {k}" + (" (fallback)" * fallback), h["iteration"], y]
                )
        xs = [h["iteration"] for h in iters]
        best = [h["best_score"] for h in iters]
        ax1.plot(xs, best, "k-o", label="selected (best of K)")
        rows += [["learning", "selected", x, y] for x, y in zip(xs, best)]
        control = [h.get("control_score") for h in iters]
        if any(c is not None for c in control):
            ys = [math.nan if c is None else c for c in control]
            ax1.plot(xs, ys, "-s", color="tab:orange", label="IPPO control")
            rows += [["learning", "IPPO control", x, y] for x, y in zip(xs, ys)]
        ax1.set_xlabel("eSpark iteration")
        ax1.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax1.scatter([], [], c="tab:blue", s=18, label="candidates (red: all-ones fallback)")
        ax1.set_title("(a) learning: selection score per iteration")
    else:
        curve = results.get("curve") or {}
        xs, ys = curve.get("env_steps") or [], curve.get("eval_return") or []
        ax1.plot(xs, ys, "-o", color="tab:green", label=learner)
        rows += [["learning", learner, x, y] for x, y in zip(xs, ys)]
        ax1.set_xlabel("environment steps per learner")
        _compact_axis(ax1.xaxis)
        ax1.set_title("(a) learning: evaluation return during training")
    for i, (name, base) in enumerate((results.get("baselines_validation") or {}).items()):
        label = LABELS.get(name, name)
        ax1.axhline(base["return"], ls="--", lw=1, color=f"C{(i + 3) % 10}", label=label)
        rows.append(["learning", label, "", base["return"]])
    ax1.set_ylabel("episode return on the validation split (no masks)")
    _compact_axis(ax1.yaxis)
    ax1.legend(loc="best", fontsize=8)

    bars = [(learner, results["test"])]
    if results.get("control"):
        bars.append(("IPPO control", results["control"]))
    names, values, colours = [], [], []
    for name, ev in bars:
        names.append(f"{name}\n(sampled: {ev['sampled']['return']:,.0f})")
        values.append(ev["greedy"]["return"])
        colours.append("tab:blue" if name != "IPPO control" else "tab:orange")
        rows += [["test", f"{name} {m}", "", ev[m]["return"]] for m in ("greedy", "sampled")]
    for name, base in (results.get("baselines") or {}).items():
        names.append(LABELS.get(name, name))
        values.append(base["return"])
        colours.append("tab:gray")
        rows.append(["test", LABELS.get(name, name), "", base["return"]])
    ax2.barh(range(len(values)), values, color=colours)
    ax2.set_yticks(range(len(values)))
    ax2.set_yticklabels(names, fontsize=8)
    ax2.invert_yaxis()
    for i, v in enumerate(values):
        ax2.text(0, i, f" {v:,.0f} ", va="center", ha="left" if v < 0 else "right", fontsize=8)
    _compact_axis(ax2.xaxis)
    ax2.set_xlabel("episode return on the test split (greedy policy, no masks)")
    ax2.set_title("(b) test split: where the run stands")

    learners = [(learner, results["test"])] + (
        [("IPPO control", results["control"])] if results.get("control") else []
    )
    comps = list(results["test"]["greedy"].get("components", {}))
    width = 0.8 / len(learners)
    for li, (name, ev) in enumerate(learners):
        vals = [sum(v or 0.0 for v in ev["greedy"]["components"][c].values()) for c in comps]
        ax3.bar([i + li * width for i in range(len(comps))], vals, width=width, label=name)
        rows += [["components", name, c, v] for c, v in zip(comps, vals)]
    ax3.set_xticks([i + 0.4 - width / 2 for i in range(len(comps))])
    ax3.set_xticklabels(comps, rotation=20)
    ax3.set_ylabel("episode sum over agents (test split, greedy)")
    _compact_axis(ax3.yaxis)
    ax3.set_title("(c) test reward components")
    ax3.legend(fontsize=8)

    fig.suptitle(
        f"{results['scenario']} - provider: {results['provider']} - data: {results['data_source']}"
    )
    _write_csv(run_path / "summary.csv", ("panel", "series", "x", "value"), rows)
    what = (
        "evaluation return (validation split, no masks) during training"
        if pruning
        else "selection score = mean validation return of the last evaluation checkpoints, no masks"
    )
    caption = (
        f"(a) {what}; dashed: reference baselines on the same split. (b) greedy test return "
        "(sampled policy in brackets); (c) its reward components."
    )
    return _finish(fig, run_path / "summary.png", caption)


# ---------------------------------------------------------------------------- a sweep
def _slug(scenario: str) -> str:
    return scenario.split("/", 1)[-1].replace("/", "-")


def trace_series(runs: Sequence[Any], mode: str = "greedy") -> dict[str, dict[str, Any]]:
    """Per scenario: ``{"meta": a traces.json, "methods": {method: {seed: [trace, ...]}}}``
    from the runs' ``traces.json`` (the same method labels and IPPO runs as the tables)."""
    from espark_jax.report_tables import IPPO, ippo_sources, method_label
    from espark_jax.traces import read_traces

    ippo = ippo_sources(runs)
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        tr = read_traces(run.path)
        if not tr:
            continue
        entry = out.setdefault(run.scenario, {"meta": tr, "methods": {}})

        def add(method: str, trace: dict[str, Any], seed: int = run.seed) -> None:
            entry["methods"].setdefault(method, {}).setdefault(seed, []).append(trace)

        policies = tr.get("policies") or {}
        if "selected" in policies:
            add(method_label(run.results), policies["selected"][mode])
        if "control" in policies and run.name in ippo:
            add(IPPO, policies["control"][mode])
        for name, trace in (tr.get("baselines") or {}).items():
            add(LABELS.get(name, name), trace)
    return out


def _seed_mean(by_seed: dict[int, list[Any]], fn: Any) -> np.ndarray:
    """``fn(trace)`` averaged over a seed's traces, then over seeds."""
    return np.mean([np.mean([fn(t) for t in ts], axis=0) for ts in by_seed.values()], axis=0)


def _total(daily: dict[str, list[float]]) -> np.ndarray:
    return np.sum([np.asarray(v, np.float64) for v in daily.values()], axis=0)


def action_figure(
    scenario: str, series: dict[str, Any], out: Path, mode: str = "greedy"
) -> list[Path]:
    """Fig. 2: how often each method chose each order multiplier (test split)."""
    from espark_jax.report_tables import method_order

    plt = _pyplot()
    meta = series["meta"]
    methods = [
        m
        for m in method_order(series["methods"])
        if all("action_counts" in t for ts in series["methods"][m].values() for t in ts)
    ]
    if not methods:
        return []

    def freq(t: dict[str, Any]) -> np.ndarray:
        counts = _total(t["action_counts"])
        return counts / max(counts.sum(), 1.0)

    values = np.array([_seed_mean(series["methods"][m], freq) for m in methods])
    names = meta.get("action_values") or list(range(values.shape[1]))
    fig, ax = plt.subplots(figsize=(14, 1.6 + 0.45 * len(methods)))
    im = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0.0)
    ax.set_yticks(range(len(methods)))
    ax.set_yticklabels(methods)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{v:g}" for v in names], rotation=90, fontsize=8)
    ax.set_xlabel("order multiplier (order quantity = multiplier x the 21-day mean daily demand)")
    fig.colorbar(im, ax=ax, label="fraction of decisions")
    ax.set_title(f"Action-selection frequency on the test split, {scenario}")
    caption = (
        "Each row sums to 1: the share of (SKU, warehouse, day) decisions of the test episode "
        f"that chose each multiplier, {mode} policy without masks, mean over seeds."
    )
    slug = _slug(scenario)
    rows = [
        [scenario, m, f"{names[a]:g}", values[i, a]]
        for i, m in enumerate(methods)
        for a in range(values.shape[1])
    ]
    csv = _write_csv(
        out / f"fig2_action_frequency_{slug}.csv",
        ("scenario", "method", "multiplier", "fraction"),
        rows,
    )
    return [_finish(fig, out / f"fig2_action_frequency_{slug}.png", caption), csv]


def daily_figure(
    scenario: str, series: dict[str, Any], out: Path, mode: str = "greedy"
) -> list[Path]:
    """Fig. 4: daily profit, overflow and fulfilment of every method (test split)."""
    from espark_jax.report_tables import method_order

    traces = [t for by_seed in series["methods"].values() for ts in by_seed.values() for t in ts]
    if not all({"excess", "sale", "demand"} <= set(t["daily"]["flows"]) for t in traces):
        return []  # an environment without MABIM's flows
    plt = _pyplot()
    groups = series["meta"]["group_names"]
    tail = groups[-1]  # the store that sells to consumers

    def profit(t: dict[str, Any]) -> np.ndarray:
        return _total(t["daily"]["reward"])

    def overflow(t: dict[str, Any]) -> np.ndarray:
        return _total(t["daily"]["flows"]["excess"])

    def fulfilment(t: dict[str, Any]) -> np.ndarray:
        sale = np.asarray(t["daily"]["flows"]["sale"][tail], np.float64)
        demand = np.asarray(t["daily"]["flows"]["demand"][tail], np.float64)
        return 100.0 * np.divide(sale, demand, out=np.full_like(sale, np.nan), where=demand > 0)

    panels = (
        (
            "(a) daily profit (net reward)",
            "net reward per day (sum over SKUs and echelons)",
            profit,
        ),
        ("(b) overflow", "units destroyed per day (arrivals over capacity)", overflow),
        (f"(c) fulfilment at {tail}", "sale / demand per day (%)", fulfilment),
    )
    methods = method_order(series["methods"])
    curves = {m: [_seed_mean(series["methods"][m], fn) for _, _, fn in panels] for m in methods}
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2))
    for i, m in enumerate(methods):
        learned = not any(m == label for label in LABELS.values())
        for ax, ys in zip(axes, curves[m]):
            ax.plot(
                np.arange(1, len(ys) + 1),
                ys,
                "-" if learned else "--",
                color=f"C{i % 10}",
                lw=1.6 if learned else 1.1,
                label=m,
            )
    for ax, (title, ylabel, _) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("day of the test episode")
        ax.set_ylabel(ylabel)
        if ylabel.startswith("net"):
            _compact_axis(ax.yaxis)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center right", fontsize=8)
    fig.suptitle(f"Daily account of the test episode, {scenario}")
    caption = (
        f"Solid: learned policies ({mode}, no masks); dashed: reference baselines. Mean over "
        "seeds. Overflow: arrivals beyond the warehouse capacity, destroyed at a cost."
    )
    slug = _slug(scenario)
    rows = [
        [scenario, m, d + 1, *(curves[m][p][d] for p in range(3))]
        for m in methods
        for d in range(len(curves[m][0]))
    ]
    header = ("scenario", "method", "day", "net_reward", "overflow_units", "fulfilment_pct")
    csv = _write_csv(out / f"fig4_daily_{slug}.csv", header, rows)
    return [_finish(fig, out / f"fig4_daily_{slug}.png", caption, right=0.86), csv]


def sumo_figure(
    scenario: str, rows: Sequence[dict[str, Any]], out: Path, mode: str = "greedy"
) -> list[Path]:
    """Delay, trip time and waiting time of every method on one SUMO scenario (test split)."""
    from espark_jax.report_tables import METRIC_LABELS, method_order, per_seed

    plt = _pyplot()
    metrics = [q for q in METRIC_LABELS if any(r["quantity"] == q for r in rows)]
    if not metrics:
        return []
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.8), squeeze=False)
    table = []
    for ax, q in zip(axes[0], metrics):
        values = {k: v for k, v in per_seed(rows, q).items() if k[0] == scenario}
        methods = method_order({m for _, m, _ in values})
        stats = [[v for (_, m2, _), v in values.items() if m2 == m] for m in methods]
        means, stds = [float(np.mean(s)) for s in stats], [float(np.std(s)) for s in stats]
        ax.barh(
            range(len(methods)), means, xerr=stds, color=[f"C{i % 10}" for i in range(len(methods))]
        )
        ax.set_yticks(range(len(methods)))
        ax.set_yticklabels(methods, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"average {METRIC_LABELS[q]} per vehicle")
        ax.set_title(METRIC_LABELS[q].split(" (")[0])
        table += [
            [scenario, m, q, mu, sd, len(s)] for m, mu, sd, s in zip(methods, means, stds, stats)
        ]
    fig.suptitle(f"Trip metrics on the test split, {scenario} (lower is better)")
    caption = f"Mean over seeds (bars) and std (whiskers); learned policies {mode}, no masks."
    slug = _slug(scenario)
    csv = _write_csv(
        out / f"sumo_metrics_{slug}.csv",
        ("scenario", "method", "metric", "mean", "std", "seeds"),
        table,
    )
    return [_finish(fig, out / f"sumo_metrics_{slug}.png", caption), csv]


def write_figures(runs: Sequence[Any], out: str | Path, mode: str = "greedy") -> list[Path]:
    """Every sweep figure (PNG + CSV) into ``out``; returns the paths."""
    from espark_jax.report_tables import observations

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for scenario, series in sorted(trace_series(runs, mode).items()):
        if not series["methods"]:  # host (SUMO) runs keep no traces
            continue
        paths += action_figure(scenario, series, out, mode)
        paths += daily_figure(scenario, series, out, mode)
    rows = observations(runs, mode)
    for scenario in sorted({r.scenario for r in runs if r.scenario.startswith("sumo/")}):
        paths += sumo_figure(scenario, [r for r in rows if r["scenario"] == scenario], out, mode)
    return paths
