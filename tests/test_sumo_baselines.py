"""Fixed-time and MaxPressure controllers, and the evaluation helper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs_jax.sumo.baselines import (
    FixedTime,
    MaxPressure,
    evaluate,
    fixed_time_actions,
    max_pressure_actions,
)
from envs_jax.sumo.bridge import Scenario, SumoEnv
from envs_jax.sumo.netgen import generate_grid_net, write_trips

pytestmark = pytest.mark.sumo


def test_fixed_time_cycles_available_phases_30s_each():
    avail = np.zeros((2, 8), dtype=bool)
    avail[0, [0, 2, 3]] = True
    avail[1, :] = True
    seq = np.stack([fixed_time_actions(avail, k) for k in range(8)])  # [step, I]
    assert seq[:, 0].tolist() == [0, 0, 2, 2, 3, 3, 0, 0]
    assert seq[:, 1].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # batched steps broadcast over intersections
    batch = fixed_time_actions(np.stack([avail, avail]), np.array([0, 2]))
    assert batch.tolist() == [[0, 0], [2, 1]]
    with pytest.raises(ValueError, match="multiple of 15"):
        FixedTime(seconds_per_phase=20)


def test_max_pressure_picks_the_best_available_phase():
    pressure = np.array(
        [[1.0, 5.0, 3.0, 9.0, 0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
    )
    avail = np.ones((2, 8), dtype=bool)
    avail[0, 3] = False  # the highest pressure is unavailable
    assert max_pressure_actions(pressure, avail).tolist() == [1, 0]  # tie -> lowest index


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grid")
    net = generate_grid_net(2, folder / "grid.net.xml")
    write_trips(net, folder / "grid.rou.xml", seed=1, vehicles_per_hour=1500, seconds=300)
    env = SumoEnv(
        Scenario("test/grid2x2", str(net), (str(folder / "grid.rou.xml"),), episode_seconds=300), 2
    )
    yield env
    env.close()


def test_controllers_drive_the_bridge(grid):
    env = grid
    env.reset(0)
    ft = FixedTime()
    for k in range(4):
        ctx = env.mask_context()
        actions = ft(ctx)
        assert np.all(actions == [0, 0, 1, 1][k])  # the 2x2 grid has all 8 phases everywhere
        env.step(actions)
    ctx = env.mask_context()
    mp = MaxPressure()(ctx)
    assert np.array_equal(mp, ctx.phase_pressure.argmax(-1))


def test_evaluate_summarises_episodes(grid):
    out = evaluate(grid, MaxPressure(), seeds=[0, 1, 2])  # two batches, the second padded
    assert out["seeds"] == [0, 1, 2]
    per = out["per_episode"]
    assert len(per["avg_delay"]) == 3 and len(per["return"]) == 3
    assert out["mean"]["avg_delay"] == pytest.approx(np.mean(per["avg_delay"]))
    assert out["std"]["avg_trip_time"] == pytest.approx(np.std(per["avg_trip_time"]))
    assert all(r < 0 for r in per["return"]) and all(d >= 0 for d in per["avg_delay"])
    single = evaluate(grid, FixedTime(), seeds=[0])
    assert math.isnan(single["std"]["avg_delay"])
    assert single["per_episode"]["avg_delay"][0] != per["avg_delay"][0]  # different controllers
