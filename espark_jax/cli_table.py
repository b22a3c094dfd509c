"""``espark table SWEEP_DIR``: the paper's tables and figures from a finished sweep.

Reads every ``<SWEEP_DIR>/<run>/results.json`` (and ``traces.json``) written by ``espark sweep``
and writes into the sweep directory (or ``--out``):

* ``tables.md``: Table 1 (test return of IPPO, the eSpark variants, the pruning baselines and
  the reference baselines per scenario, mean (std) over seeds, best bold, second underlined),
  the change ratio vs IPPO (the paper's Tables 3-8) and, with SUMO runs, the trip metrics;
  ``<table>.tex``: each as a LaTeX table; ``tables.csv``: every cell; ``runs.csv``: every
  per-run number behind them.
* ``fig2_action_frequency_<scenario>.png``: how often each method chose each order multiplier;
  ``fig4_daily_<scenario>.png``: daily profit, overflow and fulfilment per method (MABIM);
  ``sumo_metrics_<scenario>.png``: delay, trip time, waiting time per method (SUMO); each with
  a CSV of its numbers.

    espark sweep --scenarios mabim/standard-100,mabim/lowest-100 \\
        --variants template,random,ss-pruning,upbound --seeds 0,1 --sweep-dir runs/t1
    espark table runs/t1
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_table_parser(sub: Any) -> None:
    """Register ``espark table``."""
    p = sub.add_parser(
        "table",
        help="the paper's tables and figures from a sweep directory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="the --sweep-dir of 'espark sweep'")
    p.add_argument("--out", help="where the tables and figures go (default: SWEEP_DIR)")
    p.add_argument(
        "--mode",
        default="greedy",
        choices=["greedy", "sampled"],
        help="policy of the learned methods on the test split (default %(default)s)",
    )
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.set_defaults(func=cmd_table)


def write_paper(
    sweep_dir: str | Path, out: str | Path | None = None, mode: str = "greedy", figures: bool = True
) -> tuple[list[Any], list[Path]]:
    """Tables (and figures) of a sweep into ``out`` (default the sweep directory): returns the
    tables (:class:`~espark_jax.report_tables.Table`) and the paths written. Raises
    :class:`~espark_jax.report_tables.SweepDirError` (one line) for a directory without runs."""
    from espark_jax.report_tables import collect_runs, paper_tables, write_tables

    runs = collect_runs(sweep_dir)
    out = Path(out or sweep_dir)
    paths = write_tables(runs, out, mode)
    if figures:
        from espark_jax.report_figures import write_figures

        paths += write_figures(runs, out, mode)
    return paper_tables(runs, mode), paths


def cmd_table(args: argparse.Namespace) -> int:
    """Print the tables; write them, their CSVs and the figures."""
    from espark_jax.report_tables import SweepDirError, to_markdown

    try:
        tables, paths = write_paper(args.sweep_dir, args.out, args.mode, not args.no_figures)
    except SweepDirError as err:
        raise SystemExit(f"espark table: {err}") from None
    print("\n\n".join(to_markdown(t) for t in tables))
    print("\nwritten: " + ", ".join(str(p) for p in paths))
    return 0
