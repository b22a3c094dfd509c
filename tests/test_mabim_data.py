"""MABIM data layer: the synthetic generator and its files, the loader of the original layout,
scenario/config checks, and one-line errors for bad input."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jax
import numpy as np
import pytest

import envs_jax
from envs_jax.core import UnknownScenarioError
from envs_jax.mabim import data as mdata
from envs_jax.mabim import synthetic
from envs_jax.mabim.config import scenario_config

N_WRITE = 6  # SKU0..SKU5: covers the first five ids of the sku50 list (SKU0, 1, 2, 3, 5)
DAILY_FILES = (mdata.DEMAND_FILE, *(mdata.price_file(t) for t in mdata.PRICE_TABLES))


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    return synthetic.write_synthetic_dir(tmp_path_factory.mktemp("synth0"), seed=0, n_skus=N_WRITE)


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg, f"not a one-line message: {msg!r}"
    return msg


# ------------------------------------------------------------------------------------------
# Synthetic files and the loader
# ------------------------------------------------------------------------------------------


def test_write_synthetic_dir_is_byte_identical_per_seed(synth_dir, tmp_path):
    again = synthetic.write_synthetic_dir(tmp_path / "again", seed=0, n_skus=N_WRITE)
    other = synthetic.write_synthetic_dir(tmp_path / "other", seed=1, n_skus=N_WRITE)
    for name in DAILY_FILES:
        assert (synth_dir / name).read_bytes() == (again / name).read_bytes(), name
        assert (synth_dir / name).read_bytes() != (other / name).read_bytes(), name
    for store in mdata.INFO_STORES:  # the bundled real info files are copied as they are
        assert (other / mdata.info_file(store)).read_bytes() == (
            mdata.BUNDLED_DIR / mdata.info_file(store)
        ).read_bytes()


def test_written_files_have_the_original_layout(synth_dir):
    lines = (synth_dir / mdata.DEMAND_FILE).read_text().splitlines()
    assert lines[0].startswith("#") and "not real data" in lines[0]
    assert lines[1] == "Date," + ",".join(f"SKU{i}" for i in range(N_WRITE))
    assert (
        len(lines) == 2 + 1218
        and lines[2].startswith("2018/7/1,")
        and lines[-1].startswith("2021/10/30,")
    )
    price = (synth_dir / mdata.price_file("store1")).read_text().splitlines()
    assert price[0].startswith("Date,") and len(price) == 1 + 1218
    for ln in lines[2:5] + price[1:4]:
        assert all(v.isdigit() for v in ln.split(",")[1:])  # non-negative integers


def test_load_real_on_a_written_dir_equals_synthetic_tables(synth_dir):
    ids = ("SKU0", "SKU3", "SKU5")
    real = mdata.load_real(synth_dir, ids)
    synth = synthetic.synthetic_tables(ids, seed=0)
    assert real.dates == synth.dates and real.sku_ids == synth.sku_ids == ids
    np.testing.assert_array_equal(real.demand, synth.demand)
    for t in mdata.PRICE_TABLES:
        np.testing.assert_array_equal(real.prices[t], synth.prices[t])
    for s in mdata.INFO_STORES:
        np.testing.assert_array_equal(real.init_stock[s], synth.init_stock[s])
        np.testing.assert_array_equal(real.vlt[s], synth.vlt[s])
    assert real.source == f"real:{synth_dir}" and synth.source == "synthetic(seed=0)"


def test_scenario_on_a_data_dir_matches_the_default_synthetic_data(synth_dir):
    default = envs_jax.make("mabim/tiny").default_params("test")
    env = envs_jax.make("mabim/tiny", data_dir=str(synth_dir))
    assert env.spec.data_source == f"real:{synth_dir}"
    params = env.default_params("test")
    for field in ("price", "cost", "demand", "init_stock", "vlt"):
        np.testing.assert_array_equal(
            np.asarray(getattr(params, field)), np.asarray(getattr(default, field))
        )


def test_synthetic_columns_depend_only_on_seed_and_sku():
    many = synthetic.synthetic_tables([f"SKU{i}" for i in range(6)], seed=3)
    one = synthetic.synthetic_tables(["SKU4"], seed=3)
    np.testing.assert_array_equal(one.demand[:, 0], many.demand[:, 4])
    for t in mdata.PRICE_TABLES:
        np.testing.assert_array_equal(one.prices[t][:, 0], many.prices[t][:, 4])


# ------------------------------------------------------------------------------------------
# Generator properties
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tables100() -> mdata.MabimTables:
    return synthetic.synthetic_tables([f"SKU{i}" for i in range(100)], seed=0)


def test_values_are_non_negative_integers_and_prices_fall_upstream(tables100):
    d = tables100.demand
    assert d.shape == (1218, 100) and (d >= 0).all() and (d == np.floor(d)).all() and d.mean() > 1
    chain = [
        tables100.prices[t] for t in mdata.PRICE_TABLES
    ]  # store1, store2, store3, super_vendor
    for p in chain:
        assert (p >= 1).all() and (p == np.floor(p)).all()
    for down, up in zip(chain, chain[1:]):
        assert (up < down).all()


def test_price_chain_stays_strict_when_a_markup_drifts_high():
    """Regression: seed 2, SKU175 (store1 price 4, markups near 2) used to give
    store3 == super_vendor == 1."""
    tabs = synthetic.synthetic_tables(["SKU175"], seed=2)
    chain = [tabs.prices[t][:, 0] for t in mdata.PRICE_TABLES]
    assert chain[0].min() == 4.0
    for down, up in zip(chain, chain[1:]):
        assert (up < down).all()
    below = np.array([4.0, 4.0, 10.0])
    # markup 3: floor(4 / 3) = 1 would leave no room for two more tables; the floor 3 keeps it at 3
    np.testing.assert_array_equal(
        synthetic.upstream_price(below, np.array([3.0, 1.0, 1.2]), floor=3.0), [3, 3, 8]
    )


def test_weekly_seasonality_shows_in_the_autocorrelation_at_lag_7(tables100):
    x = np.diff(tables100.demand, axis=0)  # differencing removes the slow level; the week stays
    x = x - x.mean(axis=0)

    def acf(lag: int) -> float:
        return float(np.mean((x[lag:] * x[:-lag]).sum(axis=0) / (x * x).sum(axis=0)))

    assert acf(7) > 0.08 and acf(14) > 0.08
    assert acf(3) < 0 and acf(4) < 0  # half a week apart: opposite phase
    assert acf(7) > acf(5) + 0.1


def test_prices_are_piecewise_constant(tables100):
    for t in mdata.PRICE_TABLES:
        changes = np.diff(tables100.prices[t], axis=0) != 0
        assert changes.mean() < 0.05, t
    p1 = tables100.prices["store1"]
    for j in range(
        p1.shape[1]
    ):  # store1 keeps each price for at least 30 days (first/last runs are cut)
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(p1[:, j]) != 0) + 1, [len(p1)]])
        assert (np.diff(bounds)[1:-1] >= 30).all()


# ------------------------------------------------------------------------------------------
# Bad input: one-line errors that name the problem
# ------------------------------------------------------------------------------------------


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


GOOD_ROWS = ["2018/7/1,1,2", "2018/7/2,3,4", "2018/7/3,5,6"]


@pytest.mark.parametrize(
    "header, rows, pattern",
    [
        ("Day,SKU0,SKU1", GOOD_ROWS, r"the first column must be 'Date', found 'Day'"),
        (
            "Date,SKU0,SKU1",
            ["2018/7/1,1,2", "2018/7/2,3", "2018/7/3,5,6"],
            r"row 3 has 2 fields, the header has 3",
        ),
        (
            "Date,SKU0,SKU1",
            ["2018/7/1,1,2", "2018/7/2,3,x4"],
            r"row 3, column SKU1: 'x4' is not a number",
        ),
        (
            "Date,SKU0,SKU1",
            ["2018/7/1,1,2", "2018/7/2,,4"],
            r"row 3, column SKU0: '' is not a number",
        ),
        ("Date,SKU0,SKU1", ["2018/7/1,1,2", "July 2,3,4"], r"row 3: not a Y/M/D date: 'July 2'"),
        (
            "Date,SKU0,SKU1",
            ["2018/7/1,1,2", "2018/2/30,3,4"],
            r"row 3: not a Y/M/D date: '2018/2/30'",
        ),
        (
            "Date,SKU0,SKU1",
            ["2018/7/1,1,2", "2018/7/3,3,4"],
            r"consecutive days, found 2018/7/1 then 2018/7/3",
        ),
        ("Date,SKU0,SKU1", [], r"a header but no data rows"),
        (
            "Date,SKU0,SKU1",
            ["2018/7/1,1,2", "2018/7/2,-3,4"],
            r"non-negative, found -3 for SKU0 on 2018/7/2",
        ),
        ("Date,SKU0,SKU1", ["2018/7/1,1,2", "2018/7/2,nan,4"], r"finite numbers"),
    ],
)
def test_malformed_wide_csv(tmp_path, header, rows, pattern):
    path = write_csv(tmp_path / "sku2778.demand.csv", header, rows)
    with pytest.raises(mdata.MabimDataError, match=pattern) as err:
        mdata.read_wide_csv(path, ["SKU0", "SKU1"])
    assert str(path) in one_line_error(err)


def test_sku_lists_naming_unknown_skus(synth_dir, tmp_path):
    with pytest.raises(
        mdata.MabimDataError, match=r"names unknown SKUs SKU7, SKU9 \(no such column\)"
    ) as err:
        mdata.load_real(synth_dir, ["SKU0", "SKU7", "SKU9"])
    one_line_error(err)
    custom = tmp_path / "mine.sku_list.csv"
    custom.write_text("# my list\nSKU\nSKU0\nSKU999999\n")
    with pytest.raises(
        mdata.MabimDataError, match=r"info.csv: the SKU list names unknown SKUs SKU999999"
    ) as err:
        envs_jax.make("mabim/tiny", sku_list=str(custom), n_skus=None)
    one_line_error(err)
    custom.write_text("SKU0\nSKU1\n")
    with pytest.raises(mdata.MabimDataError, match=r"needs a 'SKU' header line") as err:
        mdata.read_sku_list(custom)
    one_line_error(err)
    with pytest.raises(
        mdata.MabimDataError, match=r"SKU list 'sku123' not found .* bundled lists: sku100, sku200"
    ):
        mdata.read_sku_list("sku123")


def test_info_file_without_the_vlt_column(tmp_path):
    path = write_csv(tmp_path / "sku2778.store1.info.csv", "SKU,init_stock", ["SKU0,5"])
    with pytest.raises(
        mdata.MabimDataError, match=r"expected columns SKU,init_stock,vlt, found SKU,init_stock"
    ) as err:
        mdata.read_info(path, ["SKU0"])
    one_line_error(err)


def test_missing_data_dir_and_missing_files(synth_dir, tmp_path):
    with pytest.raises(mdata.MabimDataError, match=r"--data-dir .*nope is not a directory") as err:
        envs_jax.make("mabim/tiny", data_dir=str(tmp_path / "nope"))
    one_line_error(err)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / mdata.DEMAND_FILE).write_bytes((synth_dir / mdata.DEMAND_FILE).read_bytes())
    with pytest.raises(
        mdata.MabimDataError,
        match=r"store1.selling_price.csv. Point --data-dir .*"
        r"write_synthetic_dir\(DIR\)",
    ) as err:
        mdata.load_real(partial, ["SKU0"])
    one_line_error(err)


def test_dates_outside_the_data():
    with pytest.raises(
        mdata.MabimDataError, match=r"date 2021/11/30 is outside the data \(2018/7/1 to 2021/10/30"
    ) as err:
        envs_jax.make("mabim/tiny", test_dates=("2021/9/1", "2021/11/30"))
    one_line_error(err)
    with pytest.raises(ValueError, match=r"the 21-day warm-up needs earlier days") as err:
        envs_jax.make("mabim/tiny", train_dates=("2018/7/10", "2021/6/30"))
    one_line_error(err)
    with pytest.raises(ValueError, match=r"bad test dates .*not a Y/M/D date: '2021/9/31'") as err:
        envs_jax.make("mabim/tiny", test_dates=("2021/9/31", "2021/10/30"))
    one_line_error(err)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        ({"capacity": -5}, ValueError, r"capacity must be positive, got -5.0"),
        ({"capacity": (100.0, 100.0)}, ValueError, r"capacity needs one entry per warehouse \(1\)"),
        (
            {"capacity": "big"},
            ValueError,
            r"capacity must be a number or one number per warehouse, got 'big'",
        ),
        (
            {"capacty": 5},
            TypeError,
            r"unknown option\(s\) capacty; valid options: sku_list, n_skus, .*capacity",
        ),
        ({"seed": -1}, ValueError, r"seed must be a non-negative integer, got -1"),
        ({"n_skus": 60}, ValueError, r"n_skus=60 but the list sku50 has 50 SKUs"),
        ({"precision": "float16"}, ValueError, r"precision must be 'float32' or 'float64'"),
    ],
)
def test_bad_scenario_options(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern) as err:
        envs_jax.make("mabim/tiny", **kwargs)
    one_line_error(err)


def test_check_scenario_builds_nothing_and_says_the_same_as_make():
    assert envs_jax.check_scenario("mabim/standard-500") is None
    with pytest.raises(UnknownScenarioError) as checked:
        envs_jax.check_scenario("mabim/standrd-100")
    with pytest.raises(UnknownScenarioError) as made:
        envs_jax.make("mabim/standrd-100")
    assert str(checked.value) == str(made.value)


def test_unknown_scenario_lists_the_valid_names():
    with pytest.raises(
        UnknownScenarioError,
        match=r"unknown scenario 'mabim/standrd-100'\. Did you mean "
        r"'mabim/standard-100'\? Valid scenarios: .*mabim/2-echelons-100",
    ) as err:
        envs_jax.make("mabim/standrd-100")
    msg = one_line_error(err)
    assert all(name in msg for name in envs_jax.list_scenarios("mabim"))
    with pytest.raises(ValueError, match=r"echelons must be one of \[1, 2, 3\], got 4"):
        scenario_config("mabim/four", 10, echelons=4)


def test_float64_needs_x64():
    with jax.enable_x64(False):
        with pytest.raises(
            ValueError,
            match=r"precision='float64' needs 64-bit JAX: call "
            r"jax.config.update\('jax_enable_x64', True\)",
        ) as err:
            envs_jax.make("mabim/tiny", precision="float64")
    one_line_error(err)


def test_from_arrays_checks_shapes():
    with pytest.raises(
        mdata.MabimDataError, match=r"price table store1 must have shape \(5, 2\), got \(5, 3\)"
    ):
        mdata.MabimTables.from_arrays(np.zeros((5, 2)), {"store1": np.zeros((5, 3))}, {}, {})
    tabs = mdata.MabimTables.from_arrays(
        np.zeros((5, 2)), {}, {}, {}, first_date=dt.date(2020, 1, 1)
    )
    assert tabs.dates[-1] == dt.date(2020, 1, 5) and tabs.sku_ids == ("SKU0", "SKU1")
