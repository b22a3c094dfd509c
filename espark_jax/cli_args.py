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


SPLITS = ("train", "validation", "test")
# dest -> flag, for the "applies to MABIM scenarios only" message
MABIM_FLAGS = {
    "data_dir": "--data-dir",
    "mabim_config": "--mabim-config",
    "precision": "--precision",
    "clip_negative_stock": "--clip-negative-stock",
    "capacity": "--capacity",
    "sku_list": "--sku-list",
    "episode_days": "--episode-days",
    **{f"{s}_dates": f"--{s}-dates" for s in SPLITS},
}


def add_mabim_options(p: Any) -> None:
    """The MABIM scenario options of every command that builds one (one group); read them with
    :func:`mabim_env_kwargs`."""
    import argparse

    g = p.add_argument_group("MABIM scenario (default: the registered scenario's settings)")
    g.add_argument(
        "--data-dir", help="MABIM data directory in the original layout (default: synthetic data)"
    )
    g.add_argument(
        "--mabim-config",
        metavar="FILE",
        help="an original MABIM YAML config (ReplenishmentEnv/config/*.yml): its warehouses, "
        "tables, capacities, costs, splits and SKU list replace the scenario's; unsupported keys "
        "are refused",
    )
    g.add_argument(
        "--precision",
        choices=["float32", "float64"],
        help="float64 turns on 64-bit JAX and matches the original exactly (slower; default "
        "float32)",
    )
    g.add_argument(
        "--clip-negative-stock",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cap what an over-full warehouse destroys at its stock (default on); "
        "--no-clip-negative-stock keeps the original's arithmetic, negative stock included",
    )
    g.add_argument(
        "--capacity", metavar="N[,N...]", help="capacity of every warehouse, or one per warehouse"
    )
    g.add_argument(
        "--sku-list",
        metavar="LIST",
        help="a list name (sku100), a *.sku_list.csv file, or SKU ids separated by commas",
    )
    g.add_argument(
        "--episode-days",
        type=int,
        metavar="D",
        help="days of a train episode, a random window of the train split (default 100)",
    )
    for split in SPLITS:
        g.add_argument(
            f"--{split}-dates",
            nargs=2,
            metavar=("FIRST", "LAST"),
            help=f"first and last day of the {split} split (Y/M/D)",
        )


def mabim_env_kwargs(args: Any, command: str) -> dict[str, Any]:
    """The scenario options of :func:`add_mabim_options` as JSON-ready keyword arguments of
    ``envs_jax.make`` (only those given), checked against ``args.scenario``; turns on 64-bit JAX
    for ``--precision float64``. Exits with one line on bad input."""
    given = [flag for dest, flag in MABIM_FLAGS.items() if getattr(args, dest, None) is not None]
    if not given:
        return {}
    require_scenario(command, args.scenario)
    if not str(args.scenario).startswith("mabim/"):
        raise SystemExit(
            f"{command}: only MABIM scenarios take {', '.join(given)}, not {args.scenario}"
        )
    kw: dict[str, Any] = {}
    if args.mabim_config:
        kw.update(_original_config(args.mabim_config, args.data_dir, command))
    elif args.data_dir:
        kw["data_dir"] = args.data_dir
    if args.precision:
        kw["precision"] = args.precision
    if args.clip_negative_stock is not None:
        kw["clip_negative_stock"] = args.clip_negative_stock
    if args.capacity:
        kw["capacity"] = _capacity(args.capacity, command)
    if args.sku_list:
        kw.update(sku_list=_sku_list(args.sku_list), n_skus=None)
    if args.episode_days is not None:
        kw["horizon"] = args.episode_days
    for split in SPLITS:
        if getattr(args, f"{split}_dates"):
            kw[f"{split}_dates"] = list(getattr(args, f"{split}_dates"))
    from envs_jax.mabim.scenarios import configure

    try:
        configure(args.scenario, **kw)
    except (TypeError, ValueError) as err:
        raise SystemExit(f"{command}: {err}") from None
    use_precision(kw)
    return kw


def use_precision(env_kwargs: Any) -> None:
    """Turn on 64-bit JAX when ``env_kwargs`` ask for ``precision="float64"`` (call it before
    any array is made: arrays made earlier stay 32-bit)."""
    if env_kwargs.get("precision") == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def _original_config(path: str, data_dir: str | None, command: str) -> dict[str, Any]:
    import json
    import sys
    from pathlib import Path

    from envs_jax.mabim.original import OriginalConfigError, read_original_config

    try:
        fields = read_original_config(path, data_dir)
    except OriginalConfigError as err:
        raise SystemExit(f"{command}: {err}") from None
    if fields.pop("continuous", False):  # the learners pick indices, as in eSpark's MARL runs
        print(
            f"{command}: {path} orders with demand_mean_continuous; the agents choose among the "
            "34 multipliers of the MARL baselines (demand_mean_discrete), as eSpark's runs do",
            file=sys.stderr,
        )
    fields["name"] = f"mabim/{Path(path).stem}"
    return json.loads(json.dumps(fields))


def _capacity(text: str, command: str) -> float | list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise SystemExit(
            f"{command}: --capacity expects a number or numbers separated by commas (one per "
            f"warehouse, head first), got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _sku_list(text: str) -> str | list[str]:
    from pathlib import Path

    if "," in text:
        return [s.strip() for s in text.split(",") if s.strip()]
    if text.endswith(".csv") or "/" in text:
        return str(Path(text).resolve())
    return text


def add_network_args(p: Any, preset_defaults: bool = False) -> None:
    """``--network``, ``--layer-norm``, ``--last-action``: the learners' policy network (with
    ``preset_defaults`` they default to None: the preset decides)."""
    p.add_argument(
        "--network",
        choices=["mlp", "gru"],
        default=None if preset_defaults else "mlp",
        help="policy network: mlp (actor and critic MLPs) or gru (FC -> GRU -> FC actor and "
        "critic with a hidden state per agent, as the released eSpark code; default "
        + ("the preset's" if preset_defaults else "mlp")
        + ")",
    )
    off = None if preset_defaults else False
    p.add_argument(
        "--layer-norm",
        action="store_true",
        default=off,
        help="--network gru: layer norm before the value head (the released critic)",
    )
    p.add_argument(
        "--last-action",
        action="store_true",
        default=off,
        help="--network gru: the actor also sees its previous action (the released o_la input)",
    )


def network_overrides(args: Any) -> dict[str, Any]:
    """SearchConfig overrides of ``add_network_args(p, preset_defaults=True)``: an explicit
    ``--network`` brings its default widths (:data:`~espark_jax.ippo.core.DEFAULT_HIDDEN`), and
    ``--network mlp`` turns the GRU options off; None values leave the preset's."""
    from espark_jax.ippo.core import DEFAULT_HIDDEN

    out = {"layer_norm": args.layer_norm, "last_action": args.last_action}
    if args.network is not None:
        out.update(network=args.network, hidden=DEFAULT_HIDDEN[args.network])
    if args.network == "mlp":
        out.update(layer_norm=False, last_action=False)
    return out


def network_hidden(args: Any) -> tuple[int, ...]:
    """The hidden widths of ``--hidden``, or the network's default (:data:`DEFAULT_HIDDEN`)."""
    from espark_jax.ippo.core import DEFAULT_HIDDEN

    if getattr(args, "hidden", None):
        return parse_hidden(args.hidden)
    return DEFAULT_HIDDEN[args.network]


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"64,64"`` -> ``(64, 64)``; exits with a one-line message on anything else."""
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise SystemExit(
            f"--hidden expects positive widths separated by commas, e.g. 64,64; got {text!r}"
        )
    return widths
