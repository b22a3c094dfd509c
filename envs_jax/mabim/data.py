"""MABIM data: a loader for the original data directory layout and a seeded synthetic generator.

The original MABIM (``VictorYXL/ReplenishmentEnv``) reads, from ``data/sku2778/``:

* ``sku2778.demand.csv``: wide CSV ``Date,SKU0,...,SKU2777``, one row per day from 2018/7/1 to
  2021/10/30 (1,218 rows, ``Y/M/D`` dates without zero padding), integer demand at the tail store,
  preceded by one ``#`` comment line;
* ``sku2778.{store1,store2,store3,super_vendor}.selling_price.csv``: the same layout, integer
  prices;
* ``sku2778.store{1,2,3}.info.csv``: ``SKU,init_stock,vlt`` (lead time into that store);
* ``sku{N}.sku_list.csv``: ``#`` comment lines, a ``SKU`` header, one SKU id per line.

The large daily files are not redistributable here; :mod:`envs_jax.mabim.synthetic` writes
look-alike files (same names, layout and value types) or produces the same numbers in memory. The
small real files (SKU lists, lead times, initial stock) are bundled in ``envs_jax/mabim/data/``
(Apache-2.0, see
``NOTICE.md`` there). Every result must say which data it was computed on: see
:attr:`MabimTables.source`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

BUNDLED_DIR = Path(__file__).parent / "data"
FIRST_DATE = _dt.date(2018, 7, 1)
LAST_DATE = _dt.date(2021, 10, 30)
N_DAYS = (LAST_DATE - FIRST_DATE).days + 1  # 1218
N_SKUS_TOTAL = 2778
PRICE_TABLES = ("store1", "store2", "store3", "super_vendor")
INFO_STORES = ("store1", "store2", "store3")
DEMAND_FILE = "sku2778.demand.csv"


class MabimDataError(ValueError):
    """A MABIM data file is missing or malformed; the message names the file and the fix."""


def price_file(table: str) -> str:
    """File name of a selling-price table (``store1`` ... ``super_vendor``)."""
    return f"sku2778.{table}.selling_price.csv"


def info_file(store: str) -> str:
    """File name of a store's static info table (``init_stock``, ``vlt``)."""
    return f"sku2778.{store}.info.csv"


def format_date(d: _dt.date) -> str:
    """MABIM's date format: ``Y/M/D`` without zero padding."""
    return f"{d.year}/{d.month}/{d.day}"


def parse_date(text: str) -> _dt.date:
    """Parse ``Y/M/D`` (or ISO ``Y-M-D``) into a date; raises ``ValueError`` on bad input."""
    parts = text.strip().replace("-", "/").split("/")
    try:
        y, m, d = (int(p) for p in parts)
        return _dt.date(y, m, d)
    except ValueError:  # wrong field count, non-numeric field, or no such day
        raise ValueError(f"not a Y/M/D date: {text!r}") from None


# ----------------------------------------------------------------------------------------------
# Containers
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class MabimTables:
    """Daily and static data for a set of SKUs, on the host (numpy, float64).

    Attributes:
        dates: the calendar days covered, one per row of the daily tables.
        sku_ids: SKU ids in column order.
        demand: ``[T, N]`` consumer demand at the tail store.
        prices: table name (``store1``..``super_vendor``) -> ``[T, N]`` selling price.
        init_stock: store name -> ``[N]`` initial stock.
        vlt: store name -> ``[N]`` lead time (days) into that store.
        source: a label for reports, e.g. ``"synthetic(seed=0)"`` or ``"real:/path/to/sku2778"``.
    """

    dates: tuple[_dt.date, ...]
    sku_ids: tuple[str, ...]
    demand: np.ndarray
    prices: dict[str, np.ndarray]
    init_stock: dict[str, np.ndarray]
    vlt: dict[str, np.ndarray]
    source: str

    @classmethod
    def from_arrays(
        cls,
        demand: np.ndarray,
        prices: dict[str, np.ndarray],
        init_stock: dict[str, np.ndarray],
        vlt: dict[str, np.ndarray],
        first_date: _dt.date = FIRST_DATE,
        source: str = "arrays",
    ) -> "MabimTables":
        """Tables from in-memory arrays: ``demand [T, N]``, ``prices[t] [T, N]``, statics ``[N]``.

        SKU ids are ``SKU0..SKU{N-1}``; rows are consecutive days from ``first_date``.
        """
        demand = np.asarray(demand, dtype=np.float64)
        if demand.ndim != 2:
            raise MabimDataError(f"demand must be [days, skus], got shape {demand.shape}")
        T, N = demand.shape
        for name, arr in prices.items():
            if np.shape(arr) != (T, N):
                raise MabimDataError(
                    f"price table {name} must have shape {(T, N)}, got {np.shape(arr)}"
                )
        for name, arr in [*init_stock.items(), *vlt.items()]:
            if np.shape(arr) != (N,):
                raise MabimDataError(
                    f"static data for {name} must have shape ({N},), got {np.shape(arr)}"
                )
        dates = tuple(first_date + _dt.timedelta(days=i) for i in range(T))
        as64 = lambda d: {k: np.asarray(v, dtype=np.float64) for k, v in d.items()}  # noqa: E731
        return cls(
            dates,
            tuple(f"SKU{i}" for i in range(N)),
            demand,
            as64(prices),
            as64(init_stock),
            as64(vlt),
            source,
        )

    def date_index(self, d: _dt.date) -> int:
        """Row of a date; :class:`MabimDataError` when the data do not cover it."""
        i = (d - self.dates[0]).days
        if not 0 <= i < len(self.dates):
            raise MabimDataError(
                f"date {format_date(d)} is outside the data ({format_date(self.dates[0])} to "
                f"{format_date(self.dates[-1])}, source {self.source}); choose split dates inside "
                "that range"
            )
        return i


# ----------------------------------------------------------------------------------------------
# SKU lists and static info
# ----------------------------------------------------------------------------------------------


def _data_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise MabimDataError(f"MABIM data file not found: {path}")
    return [
        ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def read_sku_list(
    name_or_path: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None
) -> tuple[str, ...]:
    """Read a SKU list: a bundled name (``"sku100"``), a file in ``data_dir``, or a path.

    The file has ``#`` comment lines, then a ``SKU`` header, then one id per line.
    """
    candidates = []
    p = Path(name_or_path)
    if p.suffix == ".csv":
        candidates.append(p)
    else:
        fname = f"{name_or_path}.sku_list.csv"
        if data_dir is not None:
            candidates.append(Path(data_dir) / fname)
            candidates.append(Path(data_dir).parent / fname)
        candidates.append(BUNDLED_DIR / fname)
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        bundled = sorted(f.name.split(".")[0] for f in BUNDLED_DIR.glob("*.sku_list.csv"))
        raise MabimDataError(
            f"SKU list {str(name_or_path)!r} not found (looked in "
            f"{', '.join(str(c) for c in candidates)}); bundled lists: {', '.join(bundled)}"
        )
    lines = _data_lines(path)
    if not lines or lines[0].strip() != "SKU":
        raise MabimDataError(f"{path}: a SKU list needs a 'SKU' header line before the ids")
    ids = tuple(ln.strip() for ln in lines[1:])
    if not ids:
        raise MabimDataError(f"{path}: the SKU list is empty")
    if len(set(ids)) != len(ids):
        raise MabimDataError(f"{path}: the SKU list repeats ids")
    return ids


def read_info(path: Path, sku_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``SKU,init_stock,vlt`` for the given SKUs; returns ``(init_stock [N], vlt [N])``."""
    lines = _data_lines(path)
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    need = {"SKU", "init_stock", "vlt"}
    if reader.fieldnames is None or not need <= set(reader.fieldnames):
        raise MabimDataError(
            f"{path}: expected columns SKU,init_stock,vlt, found "
            f"{','.join(reader.fieldnames or [])}"
        )
    table: dict[str, tuple[float, float]] = {}
    for row in reader:
        try:
            table[row["SKU"]] = (float(row["init_stock"]), float(row["vlt"]))
        except (TypeError, ValueError):
            raise MabimDataError(
                f"{path}: non-numeric init_stock/vlt for {row.get('SKU')!r}"
            ) from None
    missing = [s for s in sku_ids if s not in table]
    if missing:
        raise MabimDataError(
            f"{path}: the SKU list names unknown SKUs {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    arr = np.array([table[s] for s in sku_ids], dtype=np.float64)
    if (arr < 0).any():
        raise MabimDataError(f"{path}: init_stock and vlt must be non-negative")
    return arr[:, 0], arr[:, 1]


def sku_index(sku_id: str) -> int:
    """Numeric index of an id like ``SKU17`` (used to seed the synthetic generator per SKU)."""
    if not sku_id.startswith("SKU") or not sku_id[3:].isdigit():
        raise MabimDataError(f"SKU ids look like 'SKU17', got {sku_id!r}")
    return int(sku_id[3:])


# ----------------------------------------------------------------------------------------------
# Wide daily CSVs
# ----------------------------------------------------------------------------------------------


def read_wide_csv(path: Path, sku_ids: Sequence[str]) -> tuple[tuple[_dt.date, ...], np.ndarray]:
    """Read a wide ``Date,SKU...`` CSV and select columns; returns ``(dates, values [T, N])``.

    Rows must be consecutive days; values must be numbers. Errors name the file and the problem.
    """
    if not path.is_file():
        raise MabimDataError(
            f"MABIM data file not found: {path}. Point --data-dir at a directory with the original "
            f"ReplenishmentEnv/data/sku2778 files, or write synthetic ones with "
            f"envs_jax.mabim.synthetic.write_synthetic_dir(DIR)"
        )
    with path.open() as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise MabimDataError(f"{path}: the file has no rows")
    header = lines[0].rstrip("\r\n").split(",")
    if header[0].strip() != "Date":
        raise MabimDataError(f"{path}: the first column must be 'Date', found {header[0]!r}")
    col = {name.strip(): i for i, name in enumerate(header)}
    missing = [s for s in sku_ids if s not in col]
    if missing:
        raise MabimDataError(
            f"{path}: the SKU list names unknown SKUs {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            + " (no such column)"
        )
    idx = [col[s] for s in sku_ids]
    dates: list[_dt.date] = []
    rows: list[list[float]] = []
    # rows are counted among the non-comment lines, the header being row 1
    for lineno, ln in enumerate(lines[1:], start=2):
        parts = ln.rstrip("\r\n").split(",")
        if len(parts) != len(header):
            raise MabimDataError(
                f"{path}: row {lineno} has {len(parts)} fields, the header has {len(header)}"
            )
        try:
            dates.append(parse_date(parts[0]))
        except ValueError as err:
            raise MabimDataError(f"{path}: row {lineno}: {err}") from None
        try:
            rows.append([float(parts[i]) for i in idx])
        except ValueError:
            bad = next(i for i in idx if not _is_number(parts[i]))
            raise MabimDataError(
                f"{path}: row {lineno}, column {header[bad].strip()}: {parts[bad].strip()!r} is "
                "not a number"
            ) from None
    if not rows:
        raise MabimDataError(f"{path}: the file has a header but no data rows")
    for a, b in zip(dates, dates[1:]):
        if (b - a).days != 1:
            raise MabimDataError(
                f"{path}: dates must be consecutive days, found {format_date(a)} then "
                f"{format_date(b)}"
            )
    values = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(values).all():
        raise MabimDataError(f"{path}: values must be finite numbers")
    if (values < 0).any():
        r, c = (int(i[0]) for i in np.nonzero(values < 0))
        raise MabimDataError(
            f"{path}: values must be non-negative, found {values[r, c]:g} for {sku_ids[c]} on "
            f"{format_date(dates[r])}"
        )
    return tuple(dates), values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_real(
    data_dir: str | os.PathLike[str],
    sku_ids: Sequence[str],
    tables: Iterable[str] = PRICE_TABLES,
    stores: Iterable[str] = INFO_STORES,
) -> MabimTables:
    """Load a MABIM data directory (original layout) for the given SKUs.

    Args:
        data_dir: directory holding ``sku2778.demand.csv``, the selling-price tables and the
            ``*.info.csv`` files (the original ``ReplenishmentEnv/data/sku2778``, or one written
            by :func:`envs_jax.mabim.synthetic.write_synthetic_dir`). Info files missing there
            are taken from the bundled copies.
        sku_ids: SKU columns to load.
        tables: price tables needed (default: all four).
        stores: stores whose static info is needed.
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise MabimDataError(f"--data-dir {d} is not a directory")
    dates, demand = read_wide_csv(d / DEMAND_FILE, sku_ids)
    prices = {}
    for t in tables:
        pdates, prices[t] = read_wide_csv(d / price_file(t), sku_ids)
        if pdates != dates:
            raise MabimDataError(f"{d / price_file(t)}: dates differ from {DEMAND_FILE}")
    init_stock, vlt = {}, {}
    for s in stores:
        path = d / info_file(s)
        init_stock[s], vlt[s] = read_info(
            path if path.is_file() else BUNDLED_DIR / info_file(s), sku_ids
        )
    return MabimTables(dates, tuple(sku_ids), demand, prices, init_stock, vlt, f"real:{d}")
