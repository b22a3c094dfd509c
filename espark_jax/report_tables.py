"""The paper's tables from a sweep directory (``espark table``), and the CSVs of their numbers.

A sweep directory holds one run directory per (scenario, variant, seed) (``espark sweep``).
:func:`collect_runs` reads every finished one; :func:`observations` turns them into one number
per (scenario, method, seed, quantity):

* **eSpark** runs give the selected learner's test return under their method label (``eSpark``,
  ``eSpark w/o LLM`` for the template provider, plus the ablation flags), and their control
  learner's as **IPPO**. IPPO of a (scenario, seed) comes from the runs that train the standard
  budget (retention on); only where there are none, from the others.
* **pruning-baseline** runs (:mod:`espark_jax.pruning_run`) give their learner's return.
* the reference baselines of every run (``results["baselines"]``: constant, base stock, (S, s);
  SUMO: fixed-time, MaxPressure) give theirs.

Several runs with the same (scenario, method, seed) are averaged first; every cell is then the
mean (population std) over seeds. Tables: :func:`table1` (test returns; best bold, second
underlined), :func:`change_table` (the change ratio vs IPPO, ``(x - IPPO) / |IPPO|`` per seed,
the paper's Tables 3-8), :func:`sumo_tables` (trip metrics, lower is better), each rendered by
:func:`to_markdown` / :func:`to_latex`; :func:`runs_csv` and :func:`cells_csv` hold every number.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from espark_jax.baselines import LABELS
from espark_jax.pruning_run import PRUNING_LABELS, PRUNING_VARIANTS

IPPO = "IPPO"
ESPARK_ORDER = ("eSpark", "eSpark w/o LLM")
METRIC_LABELS = {
    "avg_delay": "delay (s)",
    "avg_trip_time": "trip time (s)",
    "avg_waiting_time": "waiting time (s)",
}


class SweepDirError(ValueError):
    """The directory is not a sweep directory with finished runs (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished run of a sweep: its directory name, path and ``results.json``."""

    name: str
    path: Path
    results: dict[str, Any]

    @property
    def scenario(self) -> str:
        """The run's scenario."""
        return str(self.results["scenario"])

    @property
    def seed(self) -> int:
        """The run's seed."""
        return int(self.results["config"]["seed"])


def ablation_label(cfg: dict[str, Any]) -> str:
    """The paper's ablation flags of a run configuration (``full`` when none)."""
    flags = []
    if not cfg.get("retention", True):
        flags.append("w/o retention")
    if not cfg.get("checker", True):
        flags.append("w/o checker")
    if not cfg.get("reward_factors", True):
        flags.append("w/o reward factors")
    if cfg.get("formulation") == "lang":
        flags.append("w/ lang")
    return ", ".join(flags) or "full"


def variant_label(results: dict[str, Any]) -> str:
    """A run's variant: its pruning baseline, or its ablation flags (``full`` when none)."""
    if results.get("pruning"):
        return PRUNING_LABELS.get(results["pruning"], str(results["pruning"]))
    return ablation_label(results.get("config", {}))


def method_label(results: dict[str, Any]) -> str:
    """The method a run's selected learner stands for in the tables."""
    if results.get("pruning"):
        return PRUNING_LABELS.get(results["pruning"], str(results["pruning"]))
    base = "eSpark w/o LLM" if results.get("provider_name") == "template" else "eSpark"
    flags = ablation_label(results.get("config", {}))
    return base if flags == "full" else f"{base}, {flags}"


def collect_runs(sweep_dir: str | Path, warn: Any = print) -> list[Run]:
    """Every finished run (``<sweep_dir>/<run>/results.json``), sorted by name; unfinished run
    directories are named through ``warn``. Raises :class:`SweepDirError` when there is none."""
    root = Path(sweep_dir)
    hint = "pass the --sweep-dir of a finished 'espark sweep'"
    if not root.is_dir():
        raise SweepDirError(f"{root} is not a directory; {hint}")
    runs = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        path = sub / "results.json"
        if not path.is_file():
            if (sub / "manifest.json").is_file():
                warn(f"{sub.name}: unfinished (no results.json), left out; run the sweep again")
            continue
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
            run = Run(sub.name, sub, results)
            float(run.results["test"]["greedy"]["return"]) + run.seed  # the fields tables read
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SweepDirError(f"{path} is not a run's results.json ({err!r}); {hint}") from None
        runs.append(run)
    if not runs:
        raise SweepDirError(f"{root} holds no finished runs (no <run>/results.json); {hint}")
    return runs


def ippo_sources(runs: Sequence[Run]) -> set[str]:
    """Names of the runs whose control learner counts as IPPO (see the module doc)."""
    with_control = [r for r in runs if r.results.get("control")]
    chosen = set()
    for key in {(r.scenario, r.seed) for r in with_control}:
        same = [r for r in with_control if (r.scenario, r.seed) == key]
        standard = [r for r in same if r.results["config"].get("retention", True)]
        chosen |= {r.name for r in (standard or same)}
    return chosen


def observations(runs: Sequence[Run], mode: str = "greedy") -> list[dict[str, Any]]:
    """One row per (scenario, method, seed, source run, quantity) with its ``value``: the test
    ``return`` of the ``mode`` policy (baselines: their one return) and SUMO trip metrics."""
    ippo = ippo_sources(runs)
    rows: list[dict[str, Any]] = []

    def add(run: Run, method: str, role: str, ev: dict[str, Any]) -> None:
        values = {"return": ev["return"], **(ev.get("metrics") or {})}
        for quantity, value in values.items():
            if value is not None:
                rows.append(
                    {
                        "scenario": run.scenario,
                        "method": method,
                        "seed": run.seed,
                        "run": run.name,
                        "role": role,
                        "quantity": quantity,
                        "value": float(value),
                    }
                )

    for run in runs:
        res = run.results
        add(run, method_label(res), "selected", res["test"][mode])
        if run.name in ippo:
            add(run, IPPO, "control", res["control"][mode])
        for name, base in (res.get("baselines") or {}).items():
            add(run, LABELS.get(name, name), f"baseline:{name}", base)
    return rows


def per_seed(rows: Iterable[dict[str, Any]], quantity: str) -> dict[tuple[str, str, int], float]:
    """``{(scenario, method, seed): value}`` of one quantity, averaged over source runs."""
    groups: dict[tuple[str, str, int], list[float]] = {}
    for r in rows:
        if r["quantity"] == quantity:
            groups.setdefault((r["scenario"], r["method"], r["seed"]), []).append(r["value"])
    return {k: float(np.mean(v)) for k, v in groups.items()}


def method_order(methods: Iterable[str]) -> list[str]:
    """IPPO, the eSpark variants, the pruning baselines, then the reference baselines."""
    methods = set(methods)
    pruning = [PRUNING_LABELS[v] for v in PRUNING_VARIANTS]
    refs = list(LABELS.values())

    def rank(m: str) -> tuple[int, int, str]:
        if m == IPPO:
            return (0, 0, m)
        if m.startswith("eSpark"):
            return (1, ESPARK_ORDER.index(m) if m in ESPARK_ORDER else len(ESPARK_ORDER), m)
        if m in pruning:
            return (2, pruning.index(m), m)
        return (3, refs.index(m) if m in refs else len(refs), m)

    return sorted(methods, key=rank)


@dataclasses.dataclass
class Table:
    """A methods x columns table of (mean, std, seeds) cells."""

    key: str
    title: str
    caption: str
    rows: list[str]
    cols: list[str]
    cells: dict[tuple[str, str], tuple[float, float | None, int]]
    higher_is_better: bool = True
    percent: bool = False

    def ranks(self, col: str) -> dict[str, int]:
        """Row -> 1 (best) or 2 (second) in a column, by mean."""
        means = sorted(
            {self.cells[(r, col)][0] for r in self.rows if (r, col) in self.cells},
            reverse=self.higher_is_better,
        )
        out = {}
        for r in self.rows:
            if (r, col) in self.cells and means:
                m = self.cells[(r, col)][0]
                if m == means[0]:
                    out[r] = 1
                elif len(means) > 1 and m == means[1]:
                    out[r] = 2
        return out

    def text(self, row: str, col: str) -> str:
        """A cell as ``mean (std)`` (``-`` when empty)."""
        if (row, col) not in self.cells:
            return "-"
        mean, std, _ = self.cells[(row, col)]
        if self.percent:
            core = f"{100 * mean:+.2f} %"
            return core if std is None else f"{core} ({100 * std:.2f})"
        digits = 0 if abs(mean) >= 1000 else 2
        return f"{mean:,.{digits}f}" + ("" if std is None else f" ({std:,.{digits}f})")


def _cells(values: dict[tuple[str, str, int], float]) -> dict[tuple[str, str], tuple]:
    """``{(scenario, method, seed): v}`` -> ``{(method, scenario): (mean, std, seeds)}``."""
    groups: dict[tuple[str, str], list[float]] = {}
    for (scen, method, _), v in sorted(values.items()):
        groups.setdefault((method, scen), []).append(v)
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in groups.items()}


def _short(scenario: str) -> str:
    return scenario.split("/", 1)[-1]


def table1(runs: Sequence[Run], mode: str = "greedy") -> Table:
    """Table 1: the test return of every method per scenario, mean (std) over seeds."""
    values = per_seed(observations(runs, mode), "return")
    scens = sorted({s for s, _, _ in values})
    cells = {(m, _short(s)): c for (m, s), c in _cells(values).items()}
    return Table(
        key="table1",
        title=f"Table 1: test-split return ({mode} policy, no masks), mean (std) over seeds",
        caption="Higher is better; best in bold, second underlined. IPPO: the control learners "
        "of the eSpark runs; pruning baselines: IPPO under a built-in mask for the same steps.",
        rows=method_order(m for _, m, _ in values),
        cols=[_short(s) for s in scens],
        cells=cells,
    )


def change_table(runs: Sequence[Run], mode: str = "greedy") -> Table:
    """Tables 3-8: the change ratio vs IPPO of every other method per scenario (per seed
    against that seed's IPPO), and its average over scenarios."""
    values = per_seed(observations(runs, mode), "return")
    ratios = {}
    for (scen, method, seed), v in values.items():
        ref = values.get((scen, IPPO, seed))
        if method != IPPO and ref:
            ratios[(scen, method, seed)] = (v - ref) / abs(ref)
    scens = sorted({s for s, _, _ in ratios})
    cells = {(m, _short(s)): c for (m, s), c in _cells(ratios).items()}
    rows = method_order(m for _, m, _ in ratios)
    for m in rows:
        means = [cells[(m, _short(s))][0] for s in scens if (m, _short(s)) in cells]
        if means:
            cells[(m, "average")] = (float(np.mean(means)), None, len(means))
    return Table(
        key="change_vs_ippo",
        title=f"Tables 3-8: change ratio vs IPPO of the test return ({mode} policy), mean (std) "
        "over seeds",
        caption="(method - IPPO) / |IPPO| per seed, against the IPPO control of the same seed; "
        "average: mean over the scenarios. Positive beats IPPO.",
        rows=rows,
        cols=[_short(s) for s in scens] + (["average"] if scens else []),
        cells=cells,
        percent=True,
    )


def sumo_tables(runs: Sequence[Run], mode: str = "greedy") -> list[Table]:
    """Trip metrics (SUMO: delay, trip time, waiting time; the vehicle counts are in
    ``runs.csv`` only) per method and scenario; lower is better. Empty without SUMO runs."""
    rows = observations(runs, mode)
    out = []
    present = {r["quantity"] for r in rows}
    for quantity in (q for q in METRIC_LABELS if q in present):  # the paper's three
        values = per_seed(rows, quantity)
        scens = sorted({s for s, _, _ in values})
        label = METRIC_LABELS.get(quantity, quantity)
        out.append(
            Table(
                key=f"sumo_{quantity}",
                title=f"Table 2 ({label}): test split, {mode} policy, mean (std) over seeds",
                caption="Lower is better; best in bold, second underlined.",
                rows=method_order(m for _, m, _ in values),
                cols=[_short(s) for s in scens],
                cells={(m, _short(s)): c for (m, s), c in _cells(values).items()},
                higher_is_better=False,
            )
        )
    return out


def to_markdown(table: Table) -> str:
    """The table in Markdown (bold best, ``<u>`` second)."""
    lines = [
        f"**{table.title}**",
        "",
        "| method | " + " | ".join(table.cols) + " |",
        "|---|" + "---:|" * len(table.cols),
    ]
    ranks = {c: table.ranks(c) for c in table.cols}
    for r in table.rows:
        cells = []
        for c in table.cols:
            t, rank = table.text(r, c), ranks[c].get(r)
            cells.append(f"**{t}**" if rank == 1 else f"<u>{t}</u>" if rank == 2 else t)
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", table.caption])


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_")):
        text = text.replace(a, b)
    return text.replace("#", r"\#")


def to_latex(table: Table) -> str:
    """The table as a LaTeX ``table`` (booktabs; ``\\textbf`` best, ``\\underline`` second)."""
    ranks = {c: table.ranks(c) for c in table.cols}
    lines = [
        "% needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{_tex(table.title)}. {_tex(table.caption)}}}",
        f"\\label{{tab:{table.key.replace('_', '-')}}}",
        "\\begin{tabular}{l" + "r" * len(table.cols) + "}",
        "\\toprule",
        "Method & " + " & ".join(_tex(c) for c in table.cols) + " \\\\",
        "\\midrule",
    ]
    for r in table.rows:
        cells = []
        for c in table.cols:
            t, rank = _tex(table.text(r, c)), ranks[c].get(r)
            cells.append(
                f"\\textbf{{{t}}}" if rank == 1 else f"\\underline{{{t}}}" if rank == 2 else t
            )
        lines.append(f"{_tex(r)} & " + " & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines)


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def runs_csv(runs: Sequence[Run]) -> str:
    """Every per-run number behind the tables (both policy modes), one per line."""
    rows = []
    for mode in ("greedy", "sampled"):
        for r in observations(runs, mode):
            rows.append([r[k] for k in ("scenario", "method", "seed", "run", "role")] + [mode])
            rows[-1] += [r["quantity"], repr(r["value"])]
    header = ("scenario", "method", "seed", "run", "role", "mode", "quantity", "value")
    return _csv(header, rows)


def cells_csv(tables: Sequence[Table]) -> str:
    """Every cell of the tables: ``table, method, column, mean, std, seeds``."""
    rows = []
    for t in tables:
        for r in t.rows:
            for c in t.cols:
                if (r, c) in t.cells:
                    mean, std, n = t.cells[(r, c)]
                    rows.append([t.key, r, c, repr(mean), "" if std is None else repr(std), n])
    return _csv(("table", "method", "column", "mean", "std", "seeds"), rows)


def paper_tables(runs: Sequence[Run], mode: str = "greedy") -> list[Table]:
    """Table 1, the change-ratio table (when there is IPPO to compare with), SUMO tables."""
    tables = [table1(runs, mode)]
    change = change_table(runs, mode)
    if change.rows:
        tables.append(change)
    return tables + sumo_tables(runs, mode)


def write_tables(runs: Sequence[Run], out: str | Path, mode: str = "greedy") -> list[Path]:
    """Write ``tables.md``, ``<table>.tex`` per table, ``tables.csv`` (every cell) and
    ``runs.csv`` (every per-run number) into ``out``; returns the paths."""
    from espark_jax.runs import write_text

    out = Path(out)
    tables = paper_tables(runs, mode)
    md = "\n\n".join(to_markdown(t) for t in tables) + "\n"
    paths = [write_text(out / "tables.md", md)]
    paths += [write_text(out / f"{t.key}.tex", to_latex(t) + "\n") for t in tables]
    paths.append(write_text(out / "tables.csv", cells_csv(tables)))
    paths.append(write_text(out / "runs.csv", runs_csv(runs)))
    return paths
