"""The MABIM scenario options of ``espark run / train / sweep / baselines``: one helper, the same
keyword arguments everywhere (kept in the run's config), one-line errors; ``--precision float64``
in a fresh process (64-bit JAX is process-wide): ``espark baselines`` returns what the float64
NumPy reference of the original computes, ``espark train`` / ``espark eval`` / ``espark run``
train and evaluate on it and record the scenario and its data files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mabim_reference import ReferenceMabim

import envs_jax
from envs_jax.mabim import data as mdata
from envs_jax.mabim import synthetic
from espark_jax import cli_search, cli_sweep
from espark_jax.cli import build_parser, main
from espark_jax.cli_args import mabim_env_kwargs

OPTIONS = [
    "--precision",
    "float32",
    "--no-clip-negative-stock",
    "--capacity",
    "300",
    "--sku-list",
    "SKU0,SKU1,SKU3",
    "--episode-days",
    "30",
    "--test-dates",
    "2021/9/1",
    "2021/9/30",
]
EXPECTED = {
    "precision": "float32",
    "clip_negative_stock": False,
    "capacity": 300.0,
    "sku_list": ["SKU0", "SKU1", "SKU3"],
    "n_skus": None,
    "horizon": 30,
    "test_dates": ["2021/9/1", "2021/9/30"],
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    ids = sorted(set(mdata.read_sku_list("sku100")) | {f"SKU{i}" for i in range(6)})
    return synthetic.write_synthetic_dir(tmp_path_factory.mktemp("data"), seed=0, sku_ids=ids)


def test_every_command_that_builds_a_mabim_scenario_takes_the_same_options(data_dir):
    parser = build_parser()
    scenario = ["--scenario", "mabim/tiny", "--data-dir", str(data_dir)]
    expected = {"data_dir": str(data_dir), **EXPECTED}
    for command in ("run", "train", "sweep", "baselines"):
        args = parser.parse_args([command, *scenario, *OPTIONS])
        assert mabim_env_kwargs(args, f"espark {command}") == expected, command
    run = parser.parse_args(["run", *scenario, *OPTIONS, "--provider", "template"])
    assert cli_search._config_from_args(run).env_kwargs == expected  # kept for --resume
    sweep = parser.parse_args(["sweep", *scenario, *OPTIONS, "--variants", "full"])
    assert [run[1].env_kwargs for run in cli_sweep.plan(sweep)] == [expected]
    env = envs_jax.make("mabim/tiny", **json.loads(json.dumps(expected)))  # as read back
    cfg = env.config
    assert (env.N, cfg.capacity, cfg.horizon, cfg.clip_negative_stock) == (3, (300.0,), 30, False)
    assert env.spec.episode_length["test"] == 30
    # none given: the scenario's own settings
    assert mabim_env_kwargs(parser.parse_args(["train"]), "espark train") == {}


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--scenario", "sumo/grid2x2", "--precision", "float64"],
            "espark baselines: only MABIM scenarios take --precision, not sumo/grid2x2",
        ),
        (["--capacity", "big"], "--capacity expects a number or numbers separated by commas"),
        (["--capacity", "5,6"], "capacity needs one entry per warehouse (1), got (5.0, 6.0)"),
        (["--test-dates", "2021/9/1", "2021/9/31"], "bad test dates"),
        (["--episode-days", "0"], "lookback and horizon must be positive"),
        (["--mabim-config", "nope.yml"], "espark baselines: MABIM config nope.yml not found"),
        (["--data-dir", "/nonexistent"], "espark baselines: --data-dir /nonexistent is not a"),
    ],
)
def test_bad_options_are_one_line(argv, message):
    with pytest.raises(SystemExit) as err:
        main(["baselines", "--scenario", "mabim/tiny", "--only", "zero", *argv])
    assert message in str(err.value) and "\n" not in str(err.value)


def reference_return(tables: mdata.MabimTables, split_dates: tuple[str, str]) -> float:
    """The constant (1 x mean demand) policy's test return, float64 NumPy, original semantics."""
    first, last = (mdata.parse_date(d) for d in split_dates)
    start = tables.date_index(first)
    ref = ReferenceMabim(
        tables.prices["store1"][None],
        tables.prices["store2"][None],
        tables.demand,
        tables.vlt["store1"][None],
        tables.init_stock["store1"][None],
        [10000.0],
        start,
        (last - first).days + 1,
    )
    total, done = 0.0, False
    while not done:
        reward, _, done = ref.step(np.ones((1, len(tables.sku_ids))))
        total += float(reward.sum())
    return total


def test_baselines_in_float64_give_the_original_return(data_dir, tmp_path):
    out = tmp_path / "b.json"
    argv = ["--scenario", "mabim/standard-100", "--data-dir", str(data_dir), "--only", "constant"]
    proc = subprocess.run(
        [sys.executable, "-m", "espark_jax.cli", "baselines", *argv, "--precision", "float64"]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"mabim/standard-100: float64, data real:{data_dir}" in proc.stdout
    report = json.loads(out.read_text())
    assert report["precision"] == "float64" and report["data_source"] == f"real:{data_dir}"
    names = [Path(f["path"]).name for f in report["data_files"]]
    assert names == ["sku100.sku_list.csv", mdata.DEMAND_FILE] + [
        mdata.price_file("store1"),
        mdata.price_file("store2"),
        mdata.info_file("store1"),
    ]
    env = envs_jax.make("mabim/standard-100", data_dir=str(data_dir))  # float32 here
    expected = reference_return(env.tables, env.config.test_dates)
    # float32 sums alone are off by ~1e-7 relative; float64 agrees to the last digits
    assert report["results"]["constant"]["return"] == pytest.approx(expected, rel=1e-12, abs=0)


SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from espark_jax.cli import main
    data, out = sys.argv[1], Path(sys.argv[2])
    scenario = ["--scenario", "mabim/tiny", "--data-dir", data, "--precision", "float64",
                "--no-clip-negative-stock", "--capacity", "400"]
    main(["train", *scenario, "--steps", "200", "--num-envs", "2", "--hidden", "8",
          "--updates-per-chunk", "1", "--no-progress", "--out", str(out / "train")])
    main(["eval", "--checkpoint", str(out / "train"), "--num-envs", "2",
          "--json", str(out / "eval.json")])
    main(["run", *scenario, "--provider", "template", "--k", "1", "--iterations", "1",
          "--steps", "200", "--num-envs", "2", "--no-control", "--no-progress",
          "--runs-dir", str(out / "runs"), "--name", "r"])
    import jax
    print("x64", jax.config.jax_enable_x64)
""")


@pytest.mark.slow
def test_train_eval_and_run_in_float64_record_the_scenario_and_its_files(data_dir, tmp_path):
    env = {
        **os.environ,
        "ESPARK_COMPILE_CACHE": str(tmp_path / "xla"),
        # these programs are dominated by XLA compile time
        "XLA_FLAGS": "--xla_backend_optimization_level=0",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "x64 True" in proc.stdout
    kwargs = {
        "data_dir": str(data_dir),
        "precision": "float64",
        "clip_negative_stock": False,
        "capacity": 400.0,
    }
    train = json.loads((tmp_path / "train" / "config.json").read_text())
    manifest = json.loads((tmp_path / "runs" / "r" / "manifest.json").read_text())
    for recorded in (train, manifest):
        files = recorded["data_files"]
        assert [Path(f["path"]).name for f in files] == [
            "sku50.sku_list.csv",
            mdata.DEMAND_FILE,
            mdata.price_file("store1"),
            mdata.price_file("store2"),
            mdata.info_file("store1"),
        ]
        assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in files)
    assert train["env_kwargs"] == kwargs and manifest["config"]["env_kwargs"] == kwargs
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    assert np.isfinite(evaluation["test"]["greedy"]["return"])
    assert json.loads((tmp_path / "runs" / "r" / "results.json").read_text())
