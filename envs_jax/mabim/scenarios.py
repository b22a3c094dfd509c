"""The MABIM scenarios of the eSpark paper, plus small ones for tests, in the registry.

| name | warehouses | SKUs | capacity per warehouse |
|---|---|---|---|
| ``mabim/standard-{100,500}`` | 1 | 100 / 500 | #SKU x 100 |
| ``mabim/2-echelons-{100,500}`` | 2 | 100 / 500 | #SKU x 100 each |
| ``mabim/3-echelons-{100,500}`` | 3 | 100 / 500 | #SKU x 100 each |
| ``mabim/lower-{100,500}`` | 1 | 100 / 500 | #SKU x 50 |
| ``mabim/lowest-{100,500}`` | 1 | 100 / 500 | #SKU x 25 |
| ``mabim/tiny``, ``mabim/tiny-{2,3}-echelons`` | 1-3 | 5 | 500 |
| ``mabim/small-20``, ``mabim/small-20-3-echelons`` | 1 / 3 | 20 | 2000 |
| ``mabim/small-20-lowest`` | 1 | 20 | 500 |

Every factory accepts ``data_dir`` (a directory in the original layout; default: synthetic data),
``seed`` (of the synthetic data), ``precision``, ``continuous`` and any other
:class:`~envs_jax.mabim.config.MabimConfig` field as keyword overrides (:func:`configure`); an
original MABIM YAML config gives such overrides through
:func:`envs_jax.mabim.original.read_original_config`.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable

from envs_jax.core import register
from envs_jax.mabim import data as mdata
from envs_jax.mabim import synthetic
from envs_jax.mabim.config import MabimConfig, scenario_config
from envs_jax.mabim.env import MabimEnv


@functools.lru_cache(maxsize=16)
def _synthetic(sku_ids: tuple[str, ...], seed: int) -> mdata.MabimTables:
    return synthetic.synthetic_tables(sku_ids, seed)


def _check_synthetic(config: MabimConfig) -> None:
    tables = (*config.price_tables, *config.cost_tables)
    if (
        not set(tables) <= set(mdata.PRICE_TABLES)
        or not set(config.warehouses) <= set(mdata.INFO_STORES)
        or config.demand_file != mdata.DEMAND_FILE
        or config.info_files is not None
    ):
        raise ValueError(
            f"{config.name}: synthetic data has the tables {', '.join(mdata.PRICE_TABLES)} and "
            f"the stores {', '.join(mdata.INFO_STORES)} only; pass data_dir to read other files"
        )


def build(config: MabimConfig) -> MabimEnv:
    """Load (or generate) the data a config needs (only the files it names) and build the
    environment; ``env.data_files`` lists the files read."""
    data_dir = None if config.data_dir is None else str(config.data_dir)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise mdata.MabimDataError(f"--data-dir {data_dir} is not a directory")
    ids, sku_file = mdata.load_sku_list(config.sku_list, data_dir)
    if config.n_skus is not None:
        if config.n_skus > len(ids):
            raise ValueError(
                f"{config.name}: n_skus={config.n_skus} but the list {config.sku_list} has "
                f"{len(ids)} SKUs"
            )
        ids = ids[: config.n_skus]
    if data_dir is None:
        _check_synthetic(config)
        tables = _synthetic(tuple(ids), config.seed)
    else:
        tables = mdata.load_real(
            data_dir,
            ids,
            tables=(*config.price_tables, *config.cost_tables),
            stores=config.warehouses,
            demand_file=config.demand_file,
            info_files=config.info_files,
        )
    files = tuple(dict.fromkeys(f for f in (sku_file, *tables.files) if f is not None))
    return MabimEnv(config, dataclasses.replace(tables, files=files))


def configure(scenario: str, /, **overrides: Any) -> MabimConfig:
    """The config that registered MABIM scenario ``scenario`` builds with these keyword overrides
    (checked; no data read; ``name`` renames it). ``TypeError`` names an unknown option."""
    base = ALL_SCENARIOS[scenario]
    unknown = set(overrides) - {f.name for f in dataclasses.fields(MabimConfig)}
    if unknown:
        valid = ", ".join(f.name for f in dataclasses.fields(MabimConfig) if f.name != "name")
        raise TypeError(
            f"{base.name}: unknown option(s) {', '.join(sorted(unknown))}; valid options: {valid}"
        )
    return dataclasses.replace(base, **overrides)


def _factory(name: str) -> Callable[..., MabimEnv]:
    def make(**overrides: Any) -> MabimEnv:
        return build(configure(name, **overrides))

    return make


PAPER_SCENARIOS: dict[str, MabimConfig] = {}
for _n in (100, 500):
    PAPER_SCENARIOS[f"mabim/standard-{_n}"] = scenario_config(f"mabim/standard-{_n}", _n)
    PAPER_SCENARIOS[f"mabim/2-echelons-{_n}"] = scenario_config(
        f"mabim/2-echelons-{_n}", _n, echelons=2
    )
    PAPER_SCENARIOS[f"mabim/3-echelons-{_n}"] = scenario_config(
        f"mabim/3-echelons-{_n}", _n, echelons=3
    )
    PAPER_SCENARIOS[f"mabim/lower-{_n}"] = scenario_config(
        f"mabim/lower-{_n}", _n, capacity_per_sku=50
    )
    PAPER_SCENARIOS[f"mabim/lowest-{_n}"] = scenario_config(
        f"mabim/lowest-{_n}", _n, capacity_per_sku=25
    )

SMALL_SCENARIOS: dict[str, MabimConfig] = {
    "mabim/tiny": scenario_config("mabim/tiny", 5, sku_list="sku50", n_skus=5),
    "mabim/tiny-2-echelons": scenario_config(
        "mabim/tiny-2-echelons", 5, echelons=2, sku_list="sku50", n_skus=5
    ),
    "mabim/tiny-3-echelons": scenario_config(
        "mabim/tiny-3-echelons", 5, echelons=3, sku_list="sku50", n_skus=5
    ),
    "mabim/small-20": scenario_config("mabim/small-20", 20, sku_list="sku50", n_skus=20),
    "mabim/small-20-3-echelons": scenario_config(
        "mabim/small-20-3-echelons", 20, echelons=3, sku_list="sku50", n_skus=20
    ),
    "mabim/small-20-lowest": scenario_config(
        "mabim/small-20-lowest", 20, sku_list="sku50", n_skus=20, capacity_per_sku=25
    ),
}

ALL_SCENARIOS: dict[str, MabimConfig] = {**PAPER_SCENARIOS, **SMALL_SCENARIOS}

_DESCRIPTIONS = {
    "standard": "1 warehouse, capacity #SKU x 100",
    "2-echelons": "2 warehouses in a chain, capacity #SKU x 100 each",
    "3-echelons": "3 warehouses in a chain, capacity #SKU x 100 each",
    "lower": "1 warehouse, capacity #SKU x 50",
    "lowest": "1 warehouse, capacity #SKU x 25",
}

for _name, _cfg in ALL_SCENARIOS.items():
    _kind = _name.split("/", 1)[1].rsplit("-", 1)[0]
    _desc = _DESCRIPTIONS.get(_kind, f"small test scenario, {len(_cfg.warehouses)} warehouse(s)")
    register(_name, _factory(_name), f"MABIM {_desc}")
