"""SUMO scenarios in the registry: names, errors, lazy imports, time windows, generated grids."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import envs_jax
from envs_jax.sumo import deps
from envs_jax.sumo.netgen import GridSpec
from envs_jax.sumo.scenarios import grid_scenario
from envs_jax.sumo.standardize import standardize_net

pytestmark = pytest.mark.sumo
REPO = Path(__file__).resolve().parents[1]
NAMES = [
    "sumo/arterial4x4",
    "sumo/cologne8",
    "sumo/grid2x2",
    "sumo/grid4x4",
    "sumo/grid5x5",
    "sumo/ingolstadt21",
]


def test_registry_lists_the_sumo_scenarios():
    assert envs_jax.list_scenarios("sumo") == NAMES
    assert "25200" in envs_jax.describe_scenario("sumo/cologne8")


def test_unknown_name_gives_the_registry_error():
    with pytest.raises(envs_jax.UnknownScenarioError, match="Did you mean .sumo/cologne8."):
        envs_jax.make("sumo/colgne8")


def test_importing_the_scenarios_imports_no_sumo_package():
    code = (
        "import sys, envs_jax, envs_jax.sumo.scenarios; envs_jax.list_scenarios('sumo'); "
        "print(sorted(m for m in ('libsumo', 'sumolib', 'traci', 'sumo_rl') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"


def test_missing_sumo_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        deps.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "libsumo" else real(name, *a),
    )
    with pytest.raises(deps.SumoNotInstalledError, match=r'libsumo.*pip install -e "\.\[sumo\]"'):
        envs_jax.make("sumo/grid4x4")


def test_cologne8_starts_at_its_time_window():
    with envs_jax.make("sumo/cologne8", n_envs=1, episode_seconds=30) as env:
        assert env.spec.n_agents == 8 and env.layout.avail_histogram() == {3: 1, 5: 1, 6: 6}
        assert "sumo-rl" in env.spec.data_source
        _, state = env.reset(0)
        assert state.time[0] == 25200.0
        _, _, done, info = env.step(env.avail_actions.argmax(-1))
        assert info["time"][0] == 25215.0 and not done.any()


def test_generated_grids_go_to_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ESPARK_SUMO_CACHE", str(tmp_path))
    sc = grid_scenario("grid5x5", GridSpec(n=5, vehicles_per_hour=2700.0, seed=0))
    assert Path(sc.net_file).parent.parent == tmp_path
    layout = standardize_net(sc.net_file)
    assert layout.n_intersections == 25 and layout.avail_histogram() == {8: 25}
    trips = Path(sc.route_files[0]).read_text().count("<trip ")
    assert 2000 < trips < 3400
    again = grid_scenario("grid5x5", GridSpec(n=5, vehicles_per_hour=2700.0, seed=0))
    assert again == sc  # cached, not regenerated
    with envs_jax.make("sumo/grid2x2", n_envs=1, episode_seconds=15) as env:
        assert Path(env.scenario.net_file).parent.parent == tmp_path
        env.reset(0)
        *_, done, info = env.step(env.avail_actions.argmax(-1))
        assert done.all() and info["metrics"]["n_finished"][0] >= 0
