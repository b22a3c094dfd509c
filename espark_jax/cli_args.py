"""Argument checks shared by the ``espark`` subcommands: one-line errors that name the fix."""

from __future__ import annotations

from typing import Any, Iterable


def require_scenario(command: str, name: str) -> None:
    """Exit with ``"<command>: unknown scenario ... Valid scenarios: ..."`` unless ``name`` is
    registered (the message of :func:`envs_jax.check_scenario`, closest match included)."""
    import envs_jax

    try:
        envs_jax.check_scenario(name)
    except envs_jax.UnknownScenarioError as err:
        raise SystemExit(f"{command}: {err}") from None


def pick_names(text: str, valid: Iterable[str], what: str, command: str) -> list[str]:
    """The comma-separated names in ``text``; exits with one line listing the valid ones when a
    name is unknown or none is given."""
    valid = list(valid)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise SystemExit(
            f"{command}: unknown {what}(s) {', '.join(unknown) or '(none given)'}; "
            f"valid: {', '.join(valid)}"
        )
    return names


def add_distributed_args(p: Any) -> None:
    """The ``jax.distributed`` flags of ``espark run`` / ``espark train`` (one group)."""
    g = p.add_argument_group(
        "multi-process job (jax.distributed; default: the JAX_* variables, SLURM srun detection)"
    )
    g.add_argument("--coordinator-address", metavar="HOST:PORT", help="process 0's host and port")
    g.add_argument("--num-processes", type=int, help="processes in the job (1: run alone)")
    g.add_argument("--process-id", type=int, help="this process, 0..N-1 (0 leads)")
    g.add_argument(
        "--coordinator-timeout",
        type=int,
        default=300,
        metavar="S",
        help="seconds to wait for every process to join (default %(default)s)",
    )


def join_job(args: Any, command: str) -> bool:
    """Join the job the flags (or environment, or cluster) describe, before any JAX computation;
    exits with one line naming the fix when that fails. True in process 0 (or alone)."""
    from espark_jax import distributed

    try:
        settings = distributed.job_settings(
            args.coordinator_address, args.num_processes, args.process_id, args.coordinator_timeout
        )
        distributed.join(settings)
    except (ValueError, RuntimeError) as err:
        raise SystemExit(f"{command}: {err}") from None
    return not distributed.joined() or distributed.Job.current().primary
