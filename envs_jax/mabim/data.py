"""MABIM data: the tables of a scenario and the loader of the original data directory layout.

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
(Apache-2.0, see ``NOTICE.md`` there). Every result must say which data it was computed on: see
:attr:`MabimTables.source`; :attr:`MabimTables.files` lists the files read, with their hashes.

A scenario reads only the tables it names. With a data directory, a SKU list or info file missing
there is taken from the bundled copy and the fallback is announced once
(:class:`~envs_jax.mabim.files.MabimDataWarning`); nothing else falls back. Files are cached per
path while their modification stamp is unchanged (:mod:`envs_jax.mabim.files`).
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

from envs_jax.mabim.files import (
    BUNDLED_DIR,
    DataFile,
    MabimDataError,
    announce,
    is_file_name,
    read_cached,
)
from envs_jax.mabim.sku_lists import (
    check_sku_ids,
    data_lines,
    load_sku_list,
    must_exist,
    read_sku_list,
    sku_list_path,
)

__all__ = [
    "BUNDLED_DIR",
    "MabimDataError",
    "check_sku_ids",
    "load_sku_list",
    "read_sku_list",
    "sku_list_path",
]

FIRST_DATE = _dt.date(2018, 7, 1)
LAST_DATE = _dt.date(2021, 10, 30)
N_DAYS = (LAST_DATE - FIRST_DATE).days + 1  # 1218
N_SKUS_TOTAL = 2778
PRICE_TABLES = ("store1", "store2", "store3", "super_vendor")
INFO_STORES = ("store1", "store2", "store3")
DEMAND_FILE = "sku2778.demand.csv"
# per-SKU columns the original would take from an info file instead of the shared settings
STATE_COLUMNS = (
    "selling_price",
    "procurement_cost",
    "demand",
    "volume",
    "unit_order_cost",
    "basic_holding_cost",
    "backlog_ratio",
    "overflow_cost_ratio",
)


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
        files: the files read (SKU list, daily tables, info files), with their hashes.
    """

    dates: tuple[_dt.date, ...]
    sku_ids: tuple[str, ...]
    demand: np.ndarray
    prices: dict[str, np.ndarray]
    init_stock: dict[str, np.ndarray]
    vlt: dict[str, np.ndarray]
    source: str
    files: tuple[DataFile, ...] = ()

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
# Static info (SKU lists: envs_jax.mabim.sku_lists)
# ----------------------------------------------------------------------------------------------


def _parse_info(path: Path, raw: bytes) -> dict[str, tuple[float, float]]:
    reader = csv.DictReader(io.StringIO("\n".join(data_lines(raw))))
    fields = [f.strip() for f in reader.fieldnames or []]
    if not {"SKU", "init_stock", "vlt"} <= set(fields):
        raise MabimDataError(
            f"{path}: expected columns SKU,init_stock,vlt, found {','.join(fields)}"
        )
    per_sku = [f for f in fields if f in STATE_COLUMNS]
    if per_sku:
        raise MabimDataError(
            f"{path}: per-SKU {', '.join(per_sku)} columns are not supported (the original "
            "would use them instead of the shared settings); remove them"
        )
    table: dict[str, tuple[float, float]] = {}
    for row in reader:
        row = {k.strip(): v for k, v in row.items() if k is not None}
        try:
            table[row["SKU"]] = (float(row["init_stock"]), float(row["vlt"]))
        except (TypeError, ValueError):
            raise MabimDataError(
                f"{path}: non-numeric init_stock/vlt for {row.get('SKU')!r}"
            ) from None
    return table


def _select_info(
    path: Path, table: dict[str, tuple[float, float]], sku_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    missing = [s for s in sku_ids if s not in table]
    if missing:
        raise MabimDataError(
            f"{path}: the SKU list names unknown SKUs {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    arr = np.array([table[s] for s in sku_ids], dtype=np.float64).reshape(-1, 2)
    if (arr < 0).any():
        raise MabimDataError(f"{path}: init_stock and vlt must be non-negative")
    return arr[:, 0].copy(), arr[:, 1].copy()


def load_info(path: Path, sku_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, DataFile]:
    """``(init_stock [N], vlt [N], file read)`` from a ``SKU,init_stock,vlt`` file."""
    must_exist(path)
    table, record = read_cached(path, "info", _parse_info)
    return (*_select_info(path, table, sku_ids), record)


def read_info(path: Path, sku_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``SKU,init_stock,vlt`` for the given SKUs; returns ``(init_stock [N], vlt [N])``."""
    return load_info(path, sku_ids)[:2]


def sku_index(sku_id: str) -> int:
    """Numeric index of an id like ``SKU17`` (used to seed the synthetic generator per SKU)."""
    if not sku_id.startswith("SKU") or not sku_id[3:].isdigit():
        raise MabimDataError(f"SKU ids look like 'SKU17', got {sku_id!r}")
    return int(sku_id[3:])


# ----------------------------------------------------------------------------------------------
# Wide daily CSVs
# ----------------------------------------------------------------------------------------------


def _parse_wide(
    path: Path, raw: bytes, sku_ids: Sequence[str]
) -> tuple[tuple[_dt.date, ...], np.ndarray]:
    lines = [ln for ln in raw.decode("utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise MabimDataError(f"{path}: the file has no rows")
    header = lines[0].split(",")
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
        parts = ln.split(",")
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
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(idx))
    if not np.isfinite(values).all():
        raise MabimDataError(f"{path}: values must be finite numbers")
    if (values < 0).any():
        r, c = (int(i[0]) for i in np.nonzero(values < 0))
        raise MabimDataError(
            f"{path}: values must be non-negative, found {values[r, c]:g} for {sku_ids[c]} on "
            f"{format_date(dates[r])}"
        )
    values.setflags(write=False)  # shared through the cache
    return tuple(dates), values


def load_wide_csv(
    path: Path, sku_ids: Sequence[str]
) -> tuple[tuple[_dt.date, ...], np.ndarray, DataFile]:
    """``(dates, values [T, N], file read)`` of a wide ``Date,SKU...`` CSV, columns ``sku_ids``.

    Rows must be consecutive days; values must be numbers. Errors name the file and the problem.
    """
    if not path.is_file():
        raise MabimDataError(
            f"MABIM data file not found: {path}. Point --data-dir at a directory with the original "
            f"ReplenishmentEnv/data/sku2778 files, or write synthetic ones with "
            f"envs_jax.mabim.synthetic.write_synthetic_dir(DIR)"
        )
    ids = tuple(sku_ids)
    (dates, values), record = read_cached(
        path, ("wide", ids), lambda p, raw: _parse_wide(p, raw, ids)
    )
    return dates, values, record


def read_wide_csv(path: Path, sku_ids: Sequence[str]) -> tuple[tuple[_dt.date, ...], np.ndarray]:
    """``(dates, values [T, N])`` of a wide CSV (see :func:`load_wide_csv`)."""
    return load_wide_csv(path, sku_ids)[:2]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def table_path(data_dir: str | os.PathLike[str], entry: str) -> Path:
    """The file of a price-table entry: a table name (``store2`` ->
    ``sku2778.store2.selling_price.csv``) or a file name / path, in ``data_dir``."""
    return Path(data_dir) / (entry if is_file_name(entry) else price_file(entry))


def info_path(data_dir: str | os.PathLike[str], store: str, entry: str | None = None) -> Path:
    """A store's info file in ``data_dir`` (``entry``: a file name or path; None:
    ``sku2778.<store>.info.csv``); a standard one missing there is the bundled copy (announced)."""
    name = entry or info_file(store)
    path, bundled = Path(data_dir) / name, BUNDLED_DIR / name
    if not path.is_file() and name == info_file(store) and bundled.is_file():
        announce(f"MABIM data: {path} not found; using the bundled copy {bundled}")
        return bundled
    return path


def load_real(
    data_dir: str | os.PathLike[str],
    sku_ids: Sequence[str],
    tables: Iterable[str] = PRICE_TABLES,
    stores: Iterable[str] = INFO_STORES,
    demand_file: str = DEMAND_FILE,
    info_files: Sequence[str] | None = None,
) -> MabimTables:
    """Load a MABIM data directory (original layout) for the given SKUs: only what is named.

    Args:
        data_dir: directory holding the demand file, the selling-price tables and the
            ``*.info.csv`` files (the original ``ReplenishmentEnv/data/sku2778``, or one written
            by :func:`envs_jax.mabim.synthetic.write_synthetic_dir`). A standard info file
            missing there is taken from the bundled copy, announced once.
        sku_ids: SKU columns to load.
        tables: price tables needed: names (``store1`` ... ``super_vendor``) or file names.
        stores: stores whose static info is needed.
        demand_file: the tail demand file (a file name in ``data_dir`` or a path).
        info_files: per store, its info file (None: ``sku2778.<store>.info.csv``).
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise MabimDataError(f"--data-dir {d} is not a directory")
    dates, demand, demand_rec = load_wide_csv(d / demand_file, sku_ids)
    files = [demand_rec]
    prices = {}
    for t in dict.fromkeys(tables):
        pdates, prices[t], rec = load_wide_csv(table_path(d, t), sku_ids)
        files.append(rec)
        if pdates != dates:
            raise MabimDataError(f"{table_path(d, t)}: dates differ from {d / demand_file}")
    stores = tuple(stores)
    entries = tuple(info_files) if info_files is not None else (None,) * len(stores)
    if len(entries) != len(stores):
        raise MabimDataError(f"info_files needs one entry per store {stores}, got {entries}")
    init_stock, vlt = {}, {}
    for s, entry in zip(stores, entries):
        init_stock[s], vlt[s], rec = load_info(info_path(d, s, entry), sku_ids)
        files.append(rec)
    unique = tuple(dict.fromkeys(files))
    return MabimTables(dates, tuple(sku_ids), demand, prices, init_stock, vlt, f"real:{d}", unique)
