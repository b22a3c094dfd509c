"""Paper-style tables and figures from run directories.

* :func:`loop_figure`: the summary figure of one run (:mod:`espark_jax.report_figures`, which
  also draws the paper's figures of a sweep; the paper's tables: :mod:`espark_jax.report_tables`).
* :func:`results_table`: one row per run (scenario, provider, ablation flags, test return and
  components), as Markdown, for comparing runs and ablations.
* :func:`variant_table`: one row per (scenario, provider, variant): mean ± std of the test return
  over the runs (seeds) of a sweep.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from espark_jax.report_figures import loop_figure
from espark_jax.report_tables import variant_label


def results_table(run_dirs: Sequence[str | Path], prices: dict | None = None) -> str:
    """A Markdown table comparing finished runs (each must hold ``results.json``), with each
    run's LLM tokens and cost (:mod:`espark_jax.llm.usage`; ``prices`` over the run's table)."""
    from espark_jax.llm.usage import format_cost, format_tokens, run_usage

    rows = []
    comp_names: list[str] = []
    for d in run_dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the run has not finished (continue it with --resume {d})"
            )
        res = json.loads(path.read_text())
        greedy = res["test"]["greedy"]
        comps = {
            n: sum(v for v in g.values() if v is not None)
            for n, g in greedy.get("components", {}).items()
        }
        comp_names = comp_names or list(comps)
        rows.append(
            (
                Path(d).name,
                res["scenario"],
                res["provider"],
                variant_label(res),
                greedy["return"],
                comps,
                res["data_source"],
                run_usage(d, prices),
            )
        )
    head = (
        "| run | scenario | provider | variant | test return | "
        + " | ".join(comp_names)
        + " | data | LLM tokens in / out | LLM cost |"
    )
    sep = "|" + "---|" * (8 + len(comp_names))
    lines = [head, sep]
    for name, scen, prov, var, ret, comps, data, usage in rows:
        cells = " | ".join(f"{comps.get(n, float('nan')):,.0f}" for n in comp_names)
        llm = f"{data} | {format_tokens(usage)} | {format_cost(usage)}"
        lines.append(f"| {name} | {scen} | {prov} | {var} | {ret:,.0f} | {cells} | {llm} |")
    return "\n".join(lines)


def final_table(results: dict[str, Any]) -> str:
    """The table ``espark run`` prints at the end: iterations, then the test evaluation."""
    lines = [
        f"eSpark on {results['scenario']} | provider: {results['provider']} "
        f"| data: {results['data_source']}",
        "",
        "| iteration | best slot | selection score | fallbacks | generate+check s | train s |",
        "|---|---|---|---|---|---|",
    ]
    for h in results["iterations"]:
        t = h["timings"]
        lines.append(
            f"| {h['iteration']} | {h['best_slot']} | {h['best_score']:,.1f} "
            f"| {len(h['fallbacks'])} "
            f"| {t.get('generate_and_check_s', float('nan')):.1f} "
            f"| {t.get('train_s', float('nan')):.1f} |"
        )
    lines += ["", *standing_table(results)]
    for mode in ("greedy", "sampled"):
        ev = results["test"].get(mode)
        if not ev:
            continue
        comps = ev.get("components", {})
        groups = sorted({g for c in comps.values() for g in c})
        lines += [
            "",
            f"test split, {mode} policy, no masks: return {ev['return']:,.1f}",
            "| component | " + " | ".join(groups) + " |",
            "|---|" + "---|" * len(groups),
        ]
        for name, by_group in comps.items():
            lines.append(
                f"| {name} | "
                + " | ".join(f"{by_group.get(g, float('nan')):,.1f}" for g in groups)
                + " |"
            )
    return "\n".join(lines)


def standing_table(results: dict[str, Any]) -> list[str]:
    """Markdown lines: the selected learner beside the IPPO control and the reference baselines
    on the test split, with the paper's change ratio vs IPPO."""
    from espark_jax.baselines import LABELS, change_ratio

    control = results.get("control")
    ref = control["greedy"]["return"] if control else None

    def ratio(value: float) -> str:
        return f"{100 * change_ratio(value, ref):+.2f} %" if ref is not None else "-"

    pruning = results.get("pruning")
    first = f"IPPO under the {results['mask']} mask" if pruning else "eSpark (selected learner)"
    rows = [(first, results["test"])]
    if control:
        rows.append(("IPPO (control, all-ones mask)", control))
    lines = [
        "where it stands (test split, no masks; change vs IPPO control, greedy):",
        "| policy | greedy return | sampled return | vs IPPO |",
        "|---|---:|---:|---:|",
    ]
    for name, ev in rows:
        g, smp = ev["greedy"]["return"], ev["sampled"]["return"]
        lines.append(f"| {name} | {g:,.1f} | {smp:,.1f} | {ratio(g)} |")
    for name, base in (results.get("baselines") or {}).items():
        ret = base["return"]
        lines.append(f"| {LABELS.get(name, name)} | {ret:,.1f} | - | {ratio(ret)} |")
    return lines


def variant_table(run_dirs: Sequence[str | Path]) -> str:
    """Markdown: finished runs grouped by (scenario, provider, variant); mean ± std (population,
    over seeds) of the greedy test return and the number of runs."""
    import numpy as np

    groups: dict[tuple[str, str, str], list[float]] = {}
    for d in run_dirs:
        res = json.loads((Path(d) / "results.json").read_text())
        key = (res["scenario"], res["provider"], variant_label(res))
        groups.setdefault(key, []).append(float(res["test"]["greedy"]["return"]))
    lines = [
        "| scenario | provider | variant | test return (mean ± std) | runs |",
        "|---|---|---|---|---|",
    ]
    for (scen, prov, var), vals in groups.items():
        lines.append(
            f"| {scen} | {prov} | {var} | {np.mean(vals):,.0f} ± {np.std(vals):,.0f} "
            f"| {len(vals)} |"
        )
    return "\n".join(lines)


__all__ = [
    "final_table",
    "loop_figure",
    "results_table",
    "standing_table",
    "variant_table",
]
