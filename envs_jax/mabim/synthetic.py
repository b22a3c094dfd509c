"""Seeded synthetic MABIM data in the original layout (the real daily files are not shipped).

:func:`synthetic_tables` produces the daily demand and the four price tables in memory for any
SKU subset (each SKU's series depends only on the seed and its index); :func:`write_synthetic_dir`
writes the same numbers as look-alike CSV files that :func:`envs_jax.mabim.data.load_real` reads.
Static data (initial stock, lead times) are the bundled real files.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from envs_jax.mabim.data import (
    BUNDLED_DIR,
    DEMAND_FILE,
    FIRST_DATE,
    INFO_STORES,
    N_DAYS,
    N_SKUS_TOTAL,
    PRICE_TABLES,
    MabimTables,
    format_date,
    info_file,
    load_info,
    price_file,
    sku_index,
)


def _synthetic_sku(seed: int, sku: int, n_days: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Demand and the four price series of one SKU; depends only on ``(seed, sku)``.

    Demand: a log-normal base level, weekly seasonality, a persistent AR(1) log-level (noise that
    lasts weeks), a slow trend, and Poisson sampling -> non-negative integers.
    Prices: store1 price is piecewise constant (changes every 30-120 days by a few percent);
    every upstream table is the downstream price divided by its own piecewise-constant markup,
    rounded down and kept at least 1 below, so store1 > store2 > store3 > super_vendor >= 1
    (see :func:`upstream_price`).
    """
    rng = np.random.default_rng([seed, sku, 0x4D41])
    days = np.arange(n_days)
    level = np.exp(rng.normal(2.6, 1.1))  # median ~13 units/day, long right tail
    amp = rng.uniform(0.05, 0.35)
    phase = rng.uniform(0, 7)
    weekly = 1.0 + amp * np.sin(2 * np.pi * (days + phase) / 7.0)
    rho, sigma = 0.97, rng.uniform(0.03, 0.08)
    eps = rng.normal(0.0, sigma, n_days)
    ar = np.empty(n_days)
    x = rng.normal(0.0, sigma / np.sqrt(1 - rho**2))
    for i in range(n_days):  # host-side data generation, once per SKU
        x = rho * x + eps[i]
        ar[i] = x
    trend = np.exp(rng.normal(0.0, 0.15) * days / n_days)
    demand = rng.poisson(level * weekly * np.exp(ar) * trend).astype(np.float64)

    def piecewise(start: float, low: float, high: float) -> np.ndarray:
        out = np.empty(n_days)
        i, value = 0, start
        while i < n_days:
            span = int(rng.integers(30, 121))
            out[i : i + span] = value
            i += span
            value = value * rng.uniform(low, high)
        return out

    n_up = len(PRICE_TABLES) - 1
    p1 = np.maximum(np.floor(piecewise(np.exp(rng.normal(3.6, 0.6)), 0.94, 1.07)), n_up + 1.0)
    prices = {"store1": p1}
    below = p1
    for i, table in enumerate(PRICE_TABLES[1:]):
        markup = piecewise(1.0 + rng.uniform(0.03, 0.25), 0.97, 1.03)
        prices[table] = below = upstream_price(below, markup, floor=float(n_up - i))
    return demand, prices


def upstream_price(below: np.ndarray, markup: np.ndarray, floor: float) -> np.ndarray:
    """The upstream table's price: ``below / markup`` rounded down, at least 1 below ``below``
    and at least ``floor``.

    With ``below >= floor + 1`` everywhere the result is strictly below ``below``; the floors
    ``3, 2, 1`` of store2, store3 and the super vendor (store1 >= 4) keep the whole chain strictly
    decreasing however large a markup drifts.
    """
    up = np.minimum(np.floor(below / np.maximum(markup, 1.0)), below - 1.0)
    return np.maximum(up, floor)


def synthetic_tables(
    sku_ids: Sequence[str], seed: int = 0, stores: Iterable[str] = INFO_STORES
) -> MabimTables:
    """The synthetic data for ``sku_ids`` in memory; what :func:`write_synthetic_dir` writes.

    Daily series depend only on ``(seed, SKU index)``, so any SKU subset gives the same columns.
    Static info (initial stock, lead times) is the bundled real data.
    """
    n = len(sku_ids)
    demand = np.empty((N_DAYS, n))
    prices = {t: np.empty((N_DAYS, n)) for t in PRICE_TABLES}
    for j, s in enumerate(sku_ids):
        dj, pj = _synthetic_sku(seed, sku_index(s), N_DAYS)
        demand[:, j] = dj
        for t in PRICE_TABLES:
            prices[t][:, j] = pj[t]
    init_stock, vlt, files = {}, {}, []
    for s in stores:
        init_stock[s], vlt[s], record = load_info(BUNDLED_DIR / info_file(s), sku_ids)
        files.append(record)
    dates = tuple(FIRST_DATE + _dt.timedelta(days=i) for i in range(N_DAYS))
    return MabimTables(
        dates,
        tuple(sku_ids),
        demand,
        prices,
        init_stock,
        vlt,
        f"synthetic(seed={seed})",
        tuple(files),
    )


def write_synthetic_dir(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    n_skus: int = N_SKUS_TOTAL,
    sku_ids: Sequence[str] | None = None,
) -> Path:
    """Write the five daily CSVs, copies of the info files and of the bundled SKU lists (the
    original ``data/sku2778`` layout).

    The same seed gives byte-identical files. ``n_skus`` < 2778 writes only the first columns
    (for quick tests), ``sku_ids`` only those columns; the columns keep their ids, so lists of
    those ids still resolve.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = list(sku_ids) if sku_ids is not None else [f"SKU{i}" for i in range(n_skus)]
    tabs = synthetic_tables(ids, seed)
    date_col = [format_date(d) for d in tabs.dates]

    def write(path: Path, values: np.ndarray, comment: str | None) -> None:
        with path.open("w", newline="\n") as fh:
            if comment:
                fh.write(f"# {comment}\n")
            fh.write("Date," + ",".join(ids) + "\n")
            for d, row in zip(date_col, values.astype(np.int64)):
                fh.write(d + "," + ",".join(map(str, row.tolist())) + "\n")

    write(
        out / DEMAND_FILE,
        tabs.demand,
        f"synthetic demand written by espark-jax (seed={seed}); not real data",
    )
    for t in PRICE_TABLES:
        write(out / price_file(t), tabs.prices[t], None)
    for s in INFO_STORES:
        (out / info_file(s)).write_bytes((BUNDLED_DIR / info_file(s)).read_bytes())
    for sku_list in BUNDLED_DIR.glob("*.sku_list.csv"):
        (out / sku_list.name).write_bytes(sku_list.read_bytes())
    return out
