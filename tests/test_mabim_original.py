"""Original MABIM YAML configs: one written like ``ReplenishmentEnv/config/sku100.*.yml`` builds
the registry scenario (every config field compared, and the arrays); unsupported keys are one-line
errors naming each; inline SKU lists; files looked up in ``--data-dir``; the command line maps the
shipped ``demand_mean_continuous`` mode to the 34 multipliers of eSpark's runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import envs_jax
from envs_jax.mabim import data as mdata
from envs_jax.mabim import synthetic
from envs_jax.mabim.config import MULTIPLIERS_34, TOPOLOGIES, MabimConfig
from envs_jax.mabim.original import OriginalConfigError, original_config, read_original_config
from envs_jax.mabim.scenarios import build, configure
from espark_jax.cli import build_parser, main
from espark_jax.cli_args import mabim_env_kwargs

DATA = "ReplenishmentEnv/data/sku2778"
DISCRETE = "action:\n  mode: demand_mean_discrete\n  space: [{}]\n".format(
    ", ".join(f"{v:.2f}" for v in MULTIPLIERS_34)
)
CONTINUOUS = "action:\n  mode: demand_mean_continuous\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the original repository's layout: synthetic data for the sku100 SKUs."""
    root = tmp_path_factory.mktemp("repo")
    ids = mdata.read_sku_list("sku100")
    synthetic.write_synthetic_dir(root / DATA, seed=0, sku_ids=ids)
    (root / "ReplenishmentEnv" / "config").mkdir()
    return root


def config_text(
    echelons: int, capacity: float, action: str = DISCRETE, tail_extra: str = ""
) -> str:
    """A config as the original repository writes them (``sku100.<n>_stores.standard.yml``)."""
    warehouses, prices, costs = TOPOLOGIES[echelons]
    blocks = []
    for i, (name, price, cost) in enumerate(zip(warehouses, prices, costs)):
        up = "super_vendor" if i == 0 else warehouses[i - 1]
        down = "consumer" if i == echelons - 1 else warehouses[i + 1]
        demand = (
            f"        - name: demand\n          file: {DATA}/sku2778.demand.csv\n"
            if i == echelons - 1
            else ""
        )
        blocks.append(
            f"""  - name: {name}
    initial_balance: 0
    capacity: {capacity:g}
    unit_storage_cost: 0.002
    accept_sku: equal_accept
    upstream: {up}
    downstream: {down}
    sku:
      dynamic_data:
        - name: procurement_cost
          file: {DATA}/sku2778.{cost}.selling_price.csv
        - name: selling_price
          file: {DATA}/sku2778.{price}.selling_price.csv
{demand}{tail_extra if i == echelons - 1 else ""}      static_data: {DATA}/sku2778.{name}.info.csv
      shared_data:
        unit_order_cost: 10
        volume: 1
        basic_holding_cost: 0.001
        backlog_ratio: 0.1
        overflow_cost_ratio: 0.5
"""
        )
    return f"""# Normal sku 100 task with common setting.
env:
  mode:
    - name: train
      start_date: 2018/8/1
      end_date: 2021/6/30
      random_interception: True
    - name: validation
      start_date: 2021/7/1
      end_date: 2021/8/31
    - name: test
      start_date: 2021/9/1
      end_date: 2021/10/30
  horizon: 100
  lookback_len: 21
  integerization_sku: True
  warmup: replenish_by_last_demand
  sku_list: {DATA}/sku100.sku_list.csv

warehouse:
{"".join(blocks)}
profit_function: reward2

reward_function: reward2

{action}
output_state:
  current_state:
    [selling_price, procurement_cost, vlt, volume,
    unit_order_cost, replenish, excess, in_stock, in_transit]
  lookback_state:
    [demand]

visualization:
  state:
    [demand, sale, arrived, replenish,
    excess, accepted, in_stock, in_transit]
"""


def write_config(repo: Path, name: str, text: str) -> Path:
    path = repo / "ReplenishmentEnv" / "config" / f"{name}.yml"
    path.write_text(text)
    return path


def same_fields(a: MabimConfig, b: MabimConfig, skip: tuple[str, ...] = ("name",)) -> None:
    names = [f.name for f in dataclasses.fields(MabimConfig) if f.name not in skip]
    assert {n: getattr(a, n) for n in names} == {n: getattr(b, n) for n in names}


@pytest.mark.parametrize(
    "echelons, capacity, scenario",
    [
        (1, 10000, "mabim/standard-100"),
        (3, 10000, "mabim/3-echelons-100"),
        (1, 2500, "mabim/lowest-100"),
    ],
)
def test_an_original_config_builds_the_registry_scenario(
    repo, tmp_path, monkeypatch, echelons, capacity, scenario
):
    monkeypatch.chdir(tmp_path)  # paths resolve against the repository root, as the original's
    path = write_config(repo, f"sku100.{echelons}.{capacity}", config_text(echelons, capacity))
    data = repo / DATA
    registry = configure(scenario, data_dir=str(data))
    from_yaml = original_config(path, name=scenario)
    same_fields(from_yaml, registry, skip=())
    assert read_original_config(path, data_dir=str(data)) == read_original_config(path)
    env_yaml, env_reg = build(from_yaml), envs_jax.make(scenario, data_dir=str(data))
    assert env_yaml.data_files == env_reg.data_files
    a, b = env_yaml.default_params("test"), env_reg.default_params("test")
    for field in dataclasses.fields(a):
        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name))


def test_the_command_line_runs_the_shipped_continuous_mode_on_the_34_multipliers(repo, capsys):
    path = write_config(repo, "sku100.single_store.standard", config_text(1, 10000, CONTINUOUS))
    assert read_original_config(path)["continuous"] is True  # what the file says
    args = build_parser().parse_args(["baselines", "--mabim-config", str(path)])
    kwargs = mabim_env_kwargs(args, "espark baselines")
    assert "demand_mean_continuous" in capsys.readouterr().err
    cfg = configure("mabim/standard-100", **kwargs)
    assert cfg.name == "mabim/sku100.single_store.standard" and not cfg.continuous
    same_fields(cfg, configure("mabim/standard-100", data_dir=str(repo / DATA)))


TAIL_VLT = f"        - name: vlt\n          file: {DATA}/sku2778.store1.vlt.csv\n"


@pytest.mark.parametrize(
    "old, new, named",
    [
        ("", TAIL_VLT, "warehouse[0] store1: sku.dynamic_data vlt (dynamic lead times)"),
        ("reward_function: reward2", "reward_function: reward1", "reward_function reward1"),
        ("accept_sku: equal_accept", "accept_sku: ratio_accept", "accept_sku ratio_accept"),
        ("integerization_sku: True", "integerization_sku: False", "env.integerization_sku False"),
        ("warmup: replenish_by_last_demand", "warmup: zero", "env.warmup zero"),
        ("mode: demand_mean_discrete", "mode: discrete", "action.mode discrete"),
        ("volume: 1", "volume: 1\n        init_stock: 5", "sku.shared_data.init_stock"),
        ("profit_function: reward2", "exploration: 1", "exploration (not a MABIM config key)"),
        (
            "end_date: 2021/10/30",
            "end_date: 2021/10/30\n      random_interception: True",
            "env.mode[2].random_interception (random windows in test)",
        ),
        ("initial_balance: 0", "init_balance: 5", "init_balance 5 (balances start at 0)"),
    ],
)
def test_an_unsupported_key_is_a_one_line_error_naming_it(repo, old, new, named):
    text = config_text(1, 10000)
    text = text.replace(old, new, 1) if old else config_text(1, 10000, tail_extra=new)
    path = write_config(repo, "unsupported", text)
    with pytest.raises(OriginalConfigError) as err:
        read_original_config(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: unsupported MABIM config key(s): ")
    assert named in msg


def test_every_unsupported_key_is_named_at_once_and_the_cli_says_the_same(repo):
    text = config_text(2, 10000, tail_extra=TAIL_VLT).replace("reward_function: reward2", "")
    text = text.replace("accept_sku: equal_accept", "accept_sku: greedy", 1)
    path = write_config(repo, "two", text + "reward_function: reward1\n")
    with pytest.raises(OriginalConfigError) as err:
        read_original_config(path)
    msg = str(err.value)
    for named in ("store2: accept_sku greedy", "store1: sku.dynamic_data vlt", "reward1"):
        assert named in msg
    with pytest.raises(SystemExit) as cli:
        main(["baselines", "--mabim-config", str(path), "--only", "zero"])
    assert str(cli.value) == f"espark baselines: {msg}"
    # the chain must be listed head first, as the environment orders its warehouses
    text = config_text(2, 10000)
    head, tail, end = (text.index(k) for k in ("  - name: store2", "  - name: store1", "profit_"))
    swapped = text[:head] + text[tail:end] + text[head:tail] + text[end:]
    with pytest.raises(OriginalConfigError, match=r"list the chain head first"):
        read_original_config(write_config(repo, "swapped", swapped))


def test_inline_sku_lists_and_files_looked_up_in_a_data_dir(repo, tmp_path):
    ids = mdata.read_sku_list("sku100")[:3]
    text = config_text(1, 300).replace(
        f"sku_list: {DATA}/sku100.sku_list.csv", f"sku_list: {list(ids)}"
    )
    path = tmp_path / "elsewhere.yml"  # not in a repository: only --data-dir finds the files
    path.write_text(text)
    with pytest.raises(
        OriginalConfigError, match=r"sku2778.demand.csv not found .*--data-dir"
    ) as err:
        read_original_config(path)
    assert "\n" not in str(err.value)
    fields = read_original_config(path, data_dir=str(repo / DATA))
    assert fields["sku_list"] == ids and fields["data_dir"] == str(repo / DATA)
    env = build(original_config(path, continuous=False, data_dir=str(repo / DATA)))
    assert env.tables.sku_ids == ids and env.config.capacity == (300.0,)
