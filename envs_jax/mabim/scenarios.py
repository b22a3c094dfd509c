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
:class:`~envs_jax.mabim.config.MabimConfig` field as keyword overrides.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

from envs_jax.core import register
from envs_jax.mabim import data as mdata
from envs_jax.mabim import synthetic
from envs_jax.mabim.config import MabimConfig, scenario_config
from envs_jax.mabim.env import MabimEnv


@functools.lru_cache(maxsize=16)
def _tables(sku_ids: tuple[str, ...], data_dir: str | None, seed: int) -> mdata.MabimTables:
    if data_dir is None:
        return synthetic.synthetic_tables(sku_ids, seed)
    return mdata.load_real(data_dir, sku_ids)


def build(config: MabimConfig) -> MabimEnv:
    """Load (or generate) the data a config needs and build the environment."""
    ids = mdata.read_sku_list(config.sku_list, config.data_dir)
    if config.n_skus is not None:
        if config.n_skus > len(ids):
            raise ValueError(
                f"{config.name}: n_skus={config.n_skus} but the list {config.sku_list} has "
                f"{len(ids)} SKUs"
            )
        ids = ids[: config.n_skus]
    data_dir = None if config.data_dir is None else str(config.data_dir)
    return MabimEnv(config, _tables(tuple(ids), data_dir, config.seed))


def _factory(base: MabimConfig) -> Callable[..., MabimEnv]:
    def make(**overrides: Any) -> MabimEnv:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(MabimConfig)}
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(MabimConfig) if f.name != "name")
            raise TypeError(
                f"{base.name}: unknown option(s) {', '.join(sorted(unknown))}; "
                f"valid options: {valid}"
            )
        if "capacity" in overrides:
            overrides["capacity"] = _capacity(base, overrides["capacity"])
        return build(dataclasses.replace(base, **overrides))

    return make


def _capacity(base: MabimConfig, value: Any) -> tuple[float, ...]:
    """A capacity override: one number for every warehouse, or one per warehouse."""
    try:
        if isinstance(value, (tuple, list)):
            return tuple(float(c) for c in value)
        return (float(value),) * len(base.warehouses)
    except (TypeError, ValueError):
        raise ValueError(
            f"{base.name}: capacity must be a number or one number per warehouse, got {value!r}"
        ) from None


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

_DESCRIPTIONS = {
    "standard": "1 warehouse, capacity #SKU x 100",
    "2-echelons": "2 warehouses in a chain, capacity #SKU x 100 each",
    "3-echelons": "3 warehouses in a chain, capacity #SKU x 100 each",
    "lower": "1 warehouse, capacity #SKU x 50",
    "lowest": "1 warehouse, capacity #SKU x 25",
}

for _name, _cfg in {**PAPER_SCENARIOS, **SMALL_SCENARIOS}.items():
    _kind = _name.split("/", 1)[1].rsplit("-", 1)[0]
    _desc = _DESCRIPTIONS.get(_kind, f"small test scenario, {len(_cfg.warehouses)} warehouse(s)")
    register(_name, _factory(_cfg), f"MABIM {_desc}")
