"""The ``espark`` command line: the argument parser of every subcommand, and ``main``.

Each subcommand lives in its own module: ``train`` / ``eval`` in :mod:`espark_jax.cli_train`,
``run`` / ``report`` (the eSpark loop) in :mod:`espark_jax.cli_search`, ``baselines`` in
:mod:`espark_jax.cli_baselines`, ``sweep`` in :mod:`espark_jax.cli_sweep`, ``table`` in
:mod:`espark_jax.cli_table`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from espark_jax import cli_baselines, cli_search, cli_sweep, cli_table, cli_train


def build_parser() -> argparse.ArgumentParser:
    """The ``espark`` argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="espark", description="eSpark in JAX: K-parallel IPPO with LLM-written masks"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cli_train.add_train_parser(sub)
    cli_train.add_eval_parser(sub)
    cli_search.add_run_parser(sub)
    cli_search.add_report_parser(sub)
    cli_baselines.add_baselines_parser(sub)
    cli_sweep.add_sweep_parser(sub)
    cli_table.add_table_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``espark`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as err:
        from envs_jax.mabim.data import MabimDataError

        if isinstance(err, MabimDataError):  # a missing or malformed data file: one line
            raise SystemExit(f"espark {args.command}: {err}") from None
        raise


if __name__ == "__main__":
    sys.exit(main())
