"""The worker-pool bridge: a full short episode, action checks, crash recovery, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from envs_jax.sumo import worker_handle
from envs_jax.sumo.bridge import Scenario, SumoEnv, SumoWorkerError
from envs_jax.sumo.features import MASK_CONTEXT_FIELDS, OBS_DIM, REWARD_COMPONENTS
from envs_jax.sumo.netgen import generate_grid_net, write_trips
from tests.sumo_nets import two_arm_net

pytestmark = pytest.mark.sumo
REPO = Path(__file__).resolve().parents[1]
SECONDS = 300  # 20 decisions


@pytest.fixture(scope="module")
def grid_scenario(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grid2x2")
    net = generate_grid_net(2, folder / "grid.net.xml")
    routes = folder / "grid.rou.xml"
    write_trips(net, routes, seed=0, vehicles_per_hour=1500, seconds=SECONDS)
    return Scenario("test/grid2x2", str(net), (str(routes),), episode_seconds=SECONDS)


@pytest.fixture(scope="module")
def grid_env(grid_scenario):
    env = SumoEnv(grid_scenario, n_envs=2)
    yield env
    env.close()


def _random_actions(rng: np.random.Generator, avail: np.ndarray) -> np.ndarray:
    """The same random available phase for both simulations (they must stay identical)."""
    one = np.array([rng.choice(np.flatnonzero(row)) for row in avail[0]])
    return np.stack([one] * avail.shape[0])


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "Z" not in state.split()[1]  # a zombie is dead, just not reaped yet


def test_full_short_episode(grid_env, grid_scenario):
    env = grid_env
    spec = env.spec
    assert (
        spec.n_agents == 4 and spec.obs_dim == OBS_DIM and spec.n_actions == 8 and not spec.is_jax
    )
    assert spec.reward_components == REWARD_COMPONENTS and env.decisions == SECONDS // 15
    assert env.avail_actions.shape == (2, 4, 8) and env.avail_actions.all()
    obs, state = env.reset([3, 3])
    assert obs.shape == (2, 4, OBS_DIM) and obs.dtype == np.float32 and state.step == 0
    assert np.array_equal(state.time, [0.0, 0.0])
    rng = np.random.default_rng(0)
    prev_phase = state.phase.copy()
    for k in range(env.decisions):
        actions = _random_actions(rng, env.avail_actions)
        obs, reward, done, info = env.step(actions)
        ctx = env.mask_context()
        assert obs.shape == (2, 4, OBS_DIM) and np.isfinite(obs).all()
        assert reward.shape == (2, 4) and done.shape == (2,) and done.dtype == bool
        assert np.array_equal(reward, -info["components"]["stopped"])
        assert set(info["components"]) == set(REWARD_COMPONENTS)
        assert np.array_equal(info["time"], [15.0 * (k + 1)] * 2)
        assert np.array_equal(obs[0], obs[1]), "same seed and actions must give the same simulation"
        assert np.array_equal(ctx.current_phase, actions)
        kept = actions == prev_phase
        assert np.all(ctx.green_time[~kept] == 10.0) and np.all(ctx.green_time[kept] >= 25.0)
        prev_phase = actions
        assert done.all() == (k == env.decisions - 1)
    for f in MASK_CONTEXT_FIELDS:
        assert getattr(ctx, f.name).shape == (2, *spec.field_shape(f)), f.name
    assert int(ctx.steps_left[0]) == 0
    m = info["metrics"]
    departs = [float(t.get("depart")) for t in ET.parse(grid_scenario.route_files[0]).getroot()]
    scheduled = sum(d <= SECONDS for d in departs)
    assert m["n_finished"][0] + m["n_unfinished"][0] + m["n_undeparted"][0] == scheduled
    assert m["n_finished"][0] > 0 and m["avg_trip_time"][0] > 0 and m["avg_delay"][0] >= 0
    assert m["avg_delay"][0] == m["avg_delay"][1]
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(actions)


def test_worker_crash_is_recovered_by_replay(grid_env):
    env = grid_env
    env.reset([5, 5])
    rng = np.random.default_rng(1)
    for _ in range(3):
        env.step(_random_actions(rng, env.avail_actions))
    victim = env.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    with pytest.warns(RuntimeWarning, match="worker 0 .* died; restarted"):
        obs, reward, done, info = env.step(_random_actions(rng, env.avail_actions))
    assert np.array_equal(info["restarted"], [True, False])
    assert np.array_equal(info["worker_restarts"], [1, 0])
    assert env.worker_pids()[0] != victim and not _alive(victim)
    assert np.array_equal(obs[0], obs[1]), "the replayed simulation must continue exactly"
    while not done.all():
        obs, reward, done, info = env.step(_random_actions(rng, env.avail_actions))
    assert np.array_equal(obs[0], obs[1])
    assert info["metrics"]["avg_delay"][0] == info["metrics"]["avg_delay"][1]
    assert not info["restarted"].any() and np.array_equal(info["worker_restarts"], [1, 0])


def test_ctrl_c_during_a_step_leaves_a_usable_env(grid_env, monkeypatch):
    env = grid_env
    first, _ = env.reset([2, 2])
    real_recv = worker_handle.WorkerHandle.recv

    def interrupted(self, timeout):
        raise KeyboardInterrupt

    monkeypatch.setattr(worker_handle.WorkerHandle, "recv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        env.step(np.zeros((2, 4), dtype=int))  # sent to both workers, answers never read
    monkeypatch.setattr(worker_handle.WorkerHandle, "recv", real_recv)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros((2, 4), dtype=int))
    again, _ = env.reset([2, 2])  # the stale answers are dropped, not taken for this reset's
    assert np.array_equal(first, again)
    _, _, _, info = env.step(np.zeros((2, 4), dtype=int))
    assert np.array_equal(info["time"], [15.0, 15.0])


def test_bad_calls_raise_clear_errors(tmp_path):
    scenario = Scenario("test/road", str(two_arm_net(tmp_path)), (), episode_seconds=30)
    with pytest.raises(ValueError, match="multiple of 15"):
        SumoEnv(scenario, 1, episode_seconds=20)
    with SumoEnv(scenario, 1) as env:
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros((1, 1), dtype=int))
        env.reset(0)
        with pytest.raises(ValueError, match="reset needs 1 seeds"):
            env.reset([1, 2])
        with pytest.raises(ValueError, match="shape"):
            env.step(np.zeros((2, 1), dtype=int))
        with pytest.raises(
            ValueError, match="unavailable .* mask the policy with env.avail_actions"
        ):
            env.step(np.array([[0]]))  # WT-ET: no west/east arms on this road
        assert env.avail_actions[0, 0].tolist() == [
            False,
            True,
            False,
            False,
            False,
            False,
            True,
            True,
        ]
        env.step(np.array([[1]]))
        *_, done, _ = env.step(np.array([[1]]))
        assert done.all()
    with pytest.raises(RuntimeError, match="closed"):
        env.reset(0)
    with pytest.raises(FileNotFoundError, match="missing.rou.xml"):
        SumoEnv(Scenario("test/road", scenario.net_file, (str(tmp_path / "missing.rou.xml"),)), 1)


def test_a_sumo_error_in_a_worker_is_raised_in_one_line(tmp_path):
    net = two_arm_net(tmp_path)
    bad = tmp_path / "bad.rou.xml"
    bad.write_text('<routes><vehicle id="v" depart="0"><route edges="NOPE CE"/></vehicle></routes>')
    with SumoEnv(Scenario("test/bad", str(net), (str(bad),)), 2, episode_seconds=30) as env:
        with pytest.raises(
            SumoWorkerError, match="edge 'NOPE' within the route for vehicle 'v' is not known"
        ) as err:
            env.reset(0)
        assert "\n" not in str(err.value) and "Traceback" in err.value.details
        with pytest.raises(RuntimeError, match="call reset"):
            env.step(np.ones((2, 1), dtype=int))


def test_close_stops_every_worker(grid_scenario):
    env = SumoEnv(grid_scenario, n_envs=2)
    pids = env.worker_pids()
    assert all(_alive(p) for p in pids)
    env.reset(0)
    env.close()
    assert not any(_alive(p) for p in pids)
    assert env.worker_pids() == [None, None]
    env.close()  # idempotent


CHILD = textwrap.dedent(
    """
    import signal, sys, time
    # ctrl-c raises KeyboardInterrupt, as under a terminal (a shell's background job, CI's
    # included, inherits SIGINT ignored, and Python then installs no handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from envs_jax.sumo.bridge import Scenario, SumoEnv
    env = SumoEnv(Scenario("test/road", sys.argv[1], ()), 2, episode_seconds=30)
    env.reset(0)
    print(*env.worker_pids(), flush=True)
    if sys.argv[2] == "wait":
        while True:
            time.sleep(0.1)
    """
)


@pytest.mark.parametrize("how", ["exit", "ctrl-c", "sigkill"])
def test_no_orphans_when_the_parent_ends(tmp_path, how):
    net = two_arm_net(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(net), "exit" if how == "exit" else "wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids), proc.stderr.read()
    if how == "ctrl-c":
        proc.send_signal(signal.SIGINT)
    elif how == "sigkill":
        proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), f"orphan workers after {how}"
