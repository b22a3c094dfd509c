"""MABIM data files: a directory with only what a scenario names, announced fallbacks to the
bundled copies, edits seen between two builds, the files a scenario read (with their hashes),
inline SKU lists, and per-warehouse cost settings against the original's arithmetic."""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mabim_reference import reference_of

import envs_jax
from envs_jax.mabim import data as mdata
from envs_jax.mabim import synthetic
from envs_jax.mabim.config import MULTIPLIERS_34
from envs_jax.mabim.files import MabimDataWarning

SKU100 = mdata.read_sku_list("sku100")
SINGLE_STORE = (  # what sku100.single_store.standard.yml names
    "sku100.sku_list.csv",
    mdata.DEMAND_FILE,
    mdata.price_file("store1"),
    mdata.price_file("store2"),
    mdata.info_file("store1"),
)
ARRAYS = ("price", "cost", "demand", "init_stock", "vlt")


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory) -> Path:
    return synthetic.write_synthetic_dir(tmp_path_factory.mktemp("full"), seed=0, sku_ids=SKU100)


def copy_only(src: Path, dst: Path, names) -> Path:
    dst.mkdir()
    for name in names:
        shutil.copy(src / name, dst / name)
    return dst


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    return msg


def test_a_directory_with_only_the_files_a_single_store_config_names(full_dir, tmp_path):
    only = copy_only(full_dir, tmp_path / "only", SINGLE_STORE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to a bundled file, nothing announced
        env = envs_jax.make("mabim/standard-100", data_dir=str(only))
    assert [Path(f["path"]).name for f in env.data_files] == list(SINGLE_STORE)
    for f in env.data_files:
        raw = Path(f["path"]).read_bytes()
        assert Path(f["path"]).parent == only.resolve()
        assert f["sha256"] == hashlib.sha256(raw).hexdigest() and f["bytes"] == len(raw)
    params = env.default_params("test")
    full = envs_jax.make("mabim/standard-100", data_dir=str(full_dir)).default_params("test")
    for name in ARRAYS:
        np.testing.assert_array_equal(np.asarray(getattr(params, name)), getattr(full, name))
    # a scenario that needs more names the first file missing
    with pytest.raises(mdata.MabimDataError, match=r"not found: .*sku2778.store3.selling_price"):
        envs_jax.make("mabim/2-echelons-100", data_dir=str(only))


def test_a_missing_info_file_is_announced_once_with_the_path_used(full_dir, tmp_path):
    d = copy_only(full_dir, tmp_path / "noinfo", SINGLE_STORE[:-1])
    bundled = mdata.BUNDLED_DIR / mdata.info_file("store1")
    with pytest.warns(MabimDataWarning) as caught:
        env = envs_jax.make("mabim/standard-100", data_dir=str(d))
    assert [str(w.message) for w in caught] == [
        f"MABIM data: {d / mdata.info_file('store1')} not found; using the bundled copy {bundled}"
    ]
    assert env.data_files[-1]["path"] == str(bundled.resolve())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # announced once per process
        envs_jax.make("mabim/standard-100", data_dir=str(d))
    # an info file the config names by another name has no bundled copy: an error naming it
    with pytest.raises(mdata.MabimDataError, match=r"file not found: .*mine\.info\.csv$") as err:
        envs_jax.make("mabim/standard-100", data_dir=str(d), info_files=("mine.info.csv",))
    one_line(err)


def test_sku_lists_come_from_the_data_dir_or_the_announced_bundle_never_the_parent(
    full_dir, tmp_path
):
    d = copy_only(full_dir, tmp_path / "d", SINGLE_STORE[1:])
    (tmp_path / "sku100.sku_list.csv").write_text("SKU\nSKU0\n")  # beside, not in, the data dir
    with pytest.warns(
        MabimDataWarning, match=r"d/sku100.sku_list.csv not found; using the bundled"
    ):
        env = envs_jax.make("mabim/standard-100", data_dir=str(d))
    assert env.tables.sku_ids == SKU100
    inline = envs_jax.make("mabim/standard-100", data_dir=str(d), sku_list=[SKU100[3], SKU100[0]])
    assert inline.config.sku_list == (SKU100[3], SKU100[0]) and inline.N == 2
    assert [Path(f["path"]).name for f in inline.data_files] == list(SINGLE_STORE[1:])
    with pytest.raises(mdata.MabimDataError, match=r"the inline SKU list: .*repeats ids"):
        envs_jax.make("mabim/tiny", sku_list=("SKU0", "SKU0"), n_skus=None)


def test_an_edited_file_is_read_again_in_the_same_process(full_dir, tmp_path):
    d = copy_only(full_dir, tmp_path / "d", SINGLE_STORE)
    first = envs_jax.make("mabim/standard-100", data_dir=str(d))
    again = envs_jax.make("mabim/standard-100", data_dir=str(d))
    assert again.tables.demand is first.tables.demand  # unchanged: parsed once
    path = d / mdata.DEMAND_FILE
    lines = path.read_text().splitlines()
    row = lines[2].split(",")  # 2018/7/1 (after the comment and the header)
    col = lines[1].split(",").index(SKU100[0])
    old = int(row[col])
    new = old - 1 if row[col].endswith("9") else old + 1  # same length: same file size
    row[col] = str(new)
    lines[2] = ",".join(row)
    path.write_text("\n".join(lines) + "\n")
    edited = envs_jax.make("mabim/standard-100", data_dir=str(d))
    assert first.tables.demand[0, 0] == old and edited.tables.demand[0, 0] == new
    np.testing.assert_array_equal(edited.tables.demand[1:], first.tables.demand[1:])
    before, after = first.data_files[1], edited.data_files[1]
    assert before["bytes"] == after["bytes"] and before["sha256"] != after["sha256"]


def test_per_warehouse_cost_settings_match_the_original_in_float64():
    costs = dict(
        unit_order_cost=(10.0, 4.0),
        volume=(1.0, 2.0),
        basic_holding_cost=(0.001, 0.01),
        unit_storage_cost=(0.002, 0.005),
        backlog_ratio=(0.1, 0.3),
        overflow_cost_ratio=(0.5, 1.0),
    )
    with jax.enable_x64(True):
        env = envs_jax.make(
            "mabim/tiny-2-echelons",
            precision="float64",
            clip_negative_stock=False,
            capacity=(900.0, 150.0),
            **costs,
        )
        params = env.default_params("test")
        holding = np.asarray(params.holding_cost)
        np.testing.assert_allclose(holding[:, 0], [0.001 + 0.002 * 1.0, 0.01 + 0.005 * 2.0])
        start, D = int(params.start_lo), int(params.horizon)
        ref = reference_of(params, action_values=MULTIPLIERS_34, **costs)
        _, state = jax.jit(env.reset_to)(jnp.int32(start), params)
        step = jax.jit(env.step)
        rng = np.random.default_rng(3)
        excess = 0.0
        for _ in range(D):
            a = rng.integers(0, 34, (env.W, env.N))
            r_ref, c_ref, _ = ref.step(a)
            _, state, r, _, info = step(None, state, jnp.asarray(a.reshape(-1)), params)
            np.testing.assert_array_equal(np.asarray(r).reshape(env.W, env.N), r_ref)
            for k, v in c_ref.items():
                got = np.asarray(info["components"][k]).reshape(env.W, env.N)
                np.testing.assert_array_equal(got, v, err_msg=k)
            excess += float(c_ref["excess_cost"].sum())
    assert excess > 0  # the tight tail capacity (volume 2) destroys goods: its cost is tested
