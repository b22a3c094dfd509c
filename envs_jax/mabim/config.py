"""MABIM scenario configuration: topology, capacities, costs, splits, action space.

The defaults are those of every shipped ``sku*.yml`` config of the original MABIM (lookback 21,
horizon 100, integer quantities, ``reward2``, unit order cost 10, volume 1, basic holding cost
0.001, unit storage cost 0.002, backlog ratio 0.1, overflow cost ratio 0.5) and the 34 demand-mean
multipliers of the MARL baselines.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import numbers

from envs_jax.mabim.data import DEMAND_FILE, format_date, parse_date

MULTIPLIERS_34: tuple[float, ...] = (
    0.00,
    0.16,
    0.33,
    0.40,
    0.45,
    0.50,
    0.55,
    0.60,
    0.66,
    0.83,
    1.00,
    1.16,
    1.33,
    1.50,
    1.66,
    1.83,
    2.00,
    2.16,
    2.33,
    2.50,
    2.66,
    2.83,
    3.00,
    3.16,
    3.33,
    3.50,
    3.66,
    3.83,
    4.00,
    5.00,
    6.00,
    7.00,
    9.00,
    12.00,
)

# cost settings given per warehouse in the original (its per-warehouse shared_data)
PER_WAREHOUSE = (
    "unit_order_cost",
    "volume",
    "basic_holding_cost",
    "unit_storage_cost",
    "backlog_ratio",
    "overflow_cost_ratio",
)

# Topologies, head first. Prices: own table; cost: the upstream's selling price.
TOPOLOGIES: dict[int, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    1: (("store1",), ("store1",), ("store2",)),
    2: (("store2", "store1"), ("store2", "store1"), ("store3", "store2")),
    3: (
        ("store3", "store2", "store1"),
        ("store3", "store2", "store1"),
        ("super_vendor", "store3", "store2"),
    ),
}


@dataclasses.dataclass(frozen=True)
class MabimConfig:
    """Everything static about a MABIM scenario.

    Attributes:
        name: registry name.
        sku_list: a list name (``"sku100"``: the data directory's ``sku100.sku_list.csv``, else the
            bundled one), a path to a ``*.sku_list.csv``, or the SKU ids themselves (a tuple).
        n_skus: keep only the first ``n_skus`` ids of the list (small test scenarios), or None.
        warehouses: store names, head first.
        price_tables / cost_tables: per warehouse, the price table of its selling price and of its
            procurement cost (the upstream's selling price): a table name (``store2`` ->
            ``sku2778.store2.selling_price.csv``) or a CSV file name in ``data_dir`` / a path.
        demand_file: the tail demand table in ``data_dir`` (a file name or a path).
        info_files: per warehouse, its ``SKU,init_stock,vlt`` file in ``data_dir``; None:
            ``sku2778.<warehouse>.info.csv``.
        capacity: per warehouse, in volume units.
        unit_order_cost, volume, basic_holding_cost, unit_storage_cost, backlog_ratio,
            overflow_cost_ratio: one number for every warehouse or one per warehouse (stored per
            warehouse), as the original's per-warehouse ``shared_data``.
        precision: ``"float32"`` or ``"float64"``.
        continuous: actions are non-negative multipliers instead of indices into ``action_values``.
        clip_negative_stock: see ``envs_jax.mabim.env``.
        random_window: draw a random ``horizon``-day window in the train split (as the original).
        data_dir: a directory in the original layout, or None for synthetic data.
        seed: seed of the synthetic data.
    """

    name: str
    sku_list: str | tuple[str, ...] = "sku100"
    n_skus: int | None = None
    warehouses: tuple[str, ...] = ("store1",)
    price_tables: tuple[str, ...] = ("store1",)
    cost_tables: tuple[str, ...] = ("store2",)
    demand_file: str = DEMAND_FILE
    info_files: tuple[str, ...] | None = None
    capacity: tuple[float, ...] = (10000.0,)
    lookback: int = 21
    horizon: int = 100
    train_dates: tuple[str, str] = ("2018/8/1", "2021/6/30")
    validation_dates: tuple[str, str] = ("2021/7/1", "2021/8/31")
    test_dates: tuple[str, str] = ("2021/9/1", "2021/10/30")
    unit_order_cost: float | tuple[float, ...] = 10.0
    volume: float | tuple[float, ...] = 1.0
    basic_holding_cost: float | tuple[float, ...] = 0.001
    unit_storage_cost: float | tuple[float, ...] = 0.002
    backlog_ratio: float | tuple[float, ...] = 0.1
    overflow_cost_ratio: float | tuple[float, ...] = 0.5
    action_values: tuple[float, ...] = MULTIPLIERS_34
    continuous: bool = False
    precision: str = "float32"
    clip_negative_stock: bool = True
    random_window: bool = True
    data_dir: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self._normalise()
        W = len(self.warehouses)
        for field in ("price_tables", "cost_tables", "capacity", *PER_WAREHOUSE, "info_files"):
            value = getattr(self, field)
            if value is not None and len(value) != W:
                raise ValueError(
                    f"{self.name}: {field} needs one entry per warehouse ({W}), got {value}"
                )
        for field in PER_WAREHOUSE:
            if not all(math.isfinite(v) and v >= 0 for v in getattr(self, field)):
                raise ValueError(
                    f"{self.name}: {field} must be finite and non-negative, got "
                    f"{getattr(self, field)}"
                )
        for c in self.capacity:
            if not c > 0:
                raise ValueError(
                    f"{self.name}: capacity must be positive, got {c}; use e.g. capacity=(10000.0,)"
                )
        if self.precision not in ("float32", "float64"):
            raise ValueError(
                f"{self.name}: precision must be 'float32' or 'float64', got {self.precision!r}"
            )
        if self.lookback < 1 or self.horizon < 1:
            raise ValueError(f"{self.name}: lookback and horizon must be positive")
        if self.n_skus is not None and self.n_skus < 1:
            raise ValueError(f"{self.name}: n_skus must be positive")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, numbers.Integral)
            or self.seed < 0
        ):
            raise ValueError(f"{self.name}: seed must be a non-negative integer, got {self.seed!r}")
        if any(v < 0 for v in self.action_values) or not self.action_values:
            raise ValueError(
                f"{self.name}: action_values must be a non-empty list of non-negative multipliers"
            )
        for split in ("train", "validation", "test"):
            first, last = self.split_dates(split)
            if last < first:
                raise ValueError(f"{self.name}: the {split} split ends before it starts")
            dates = (format_date(first), format_date(last))
            object.__setattr__(self, f"{split}_dates", dates)

    def _normalise(self) -> None:
        """Sequences as tuples (a config read back from JSON equals the original), one value per
        warehouse for the cost settings."""
        W = len(self.warehouses)

        def put(field: str, value: object) -> None:
            object.__setattr__(self, field, value)

        for field in ("warehouses", "price_tables", "cost_tables"):
            put(field, tuple(str(v) for v in getattr(self, field)))
        if not isinstance(self.sku_list, str):
            put("sku_list", tuple(str(v) for v in self.sku_list))
        if self.info_files is not None:
            put("info_files", tuple(str(v) for v in self.info_files))
        for field in ("train_dates", "validation_dates", "test_dates"):
            put(field, tuple(getattr(self, field)))
        try:
            field = "action_values"
            put(field, tuple(float(v) for v in self.action_values))
            for field in ("capacity", *PER_WAREHOUSE):
                value = getattr(self, field)
                if isinstance(value, numbers.Real):
                    value = (value,) * W
                put(field, tuple(float(v) for v in value))
        except (TypeError, ValueError):
            raise ValueError(
                f"{self.name}: {field} must be a number or one number per warehouse, got "
                f"{getattr(self, field)!r}"
            ) from None

    def split_dates(self, split: str) -> tuple[_dt.date, _dt.date]:
        """First and last calendar day of a split."""
        pair = {
            "train": self.train_dates,
            "validation": self.validation_dates,
            "test": self.test_dates,
        }[split]
        try:
            return parse_date(pair[0]), parse_date(pair[1])
        except ValueError as err:
            raise ValueError(f"{self.name}: bad {split} dates {pair}: {err}") from None

    def description(self, n_skus: int) -> str:
        """A paragraph for prompts and reports."""
        W = len(self.warehouses)
        chain = " -> ".join(["super vendor", *self.warehouses, "consumers"])
        caps = ", ".join(f"{w} {c:g}" for w, c in zip(self.warehouses, self.capacity))
        return (
            f"Multi-echelon inventory management (MABIM) with {W} warehouse(s) and {n_skus} SKUs "
            f"per warehouse ({W * n_skus} agents, one per warehouse and SKU). Goods flow {chain}. "
            "Every day each agent orders a quantity equal to a multiplier times its "
            f"{self.lookback}-day mean demand; orders arrive after the SKU's lead time; unmet "
            "demand is lost; arrivals that do not fit in the warehouse capacity "
            f"({caps} units) are destroyed at a cost. "
            "The team maximises total profit minus excess, order, holding and backlog costs."
        )


def scenario_config(
    name: str,
    n: int,
    echelons: int = 1,
    capacity_per_sku: float = 100.0,
    sku_list: str | None = None,
    **overrides: object,
) -> MabimConfig:
    """A config for ``n`` SKUs in ``echelons`` warehouses of capacity ``capacity_per_sku * n`` each.

    ``sku_list`` defaults to the bundled ``sku{n}`` list; pass ``n_skus=n`` in ``overrides`` to take
    the first ``n`` ids of a longer list.
    """
    if echelons not in TOPOLOGIES:
        raise ValueError(f"{name}: echelons must be one of {sorted(TOPOLOGIES)}, got {echelons!r}")
    warehouses, prices, costs = TOPOLOGIES[echelons]
    list_name = sku_list or f"sku{n}"
    cap = float(capacity_per_sku * n)
    kwargs: dict[str, object] = dict(
        name=name,
        sku_list=list_name,
        warehouses=warehouses,
        price_tables=prices,
        cost_tables=costs,
        capacity=(cap,) * echelons,
    )
    kwargs.update(overrides)
    return MabimConfig(**kwargs)  # type: ignore[arg-type]
