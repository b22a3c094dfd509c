"""Episode metrics: the tripinfo parser on a hand-written file, and trips computed by hand."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from envs_jax.sumo.bridge import Scenario, SumoEnv
from envs_jax.sumo.metrics import parse_tripinfo
from envs_jax.sumo.standardize import PHASE_NAMES
from tests.sumo_nets import two_arm_net, write_routes

pytestmark = pytest.mark.sumo

TRIPINFO = """<tripinfos>
    <tripinfo id="a" depart="0.00" departDelay="2.00" arrival="100.00" duration="100.00"
              waitingTime="30.00" timeLoss="40.00"/>
    <tripinfo id="b" depart="10.00" departDelay="0.00" arrival="-1.00" duration="50.00"
              waitingTime="10.00" timeLoss="20.00"/>
    <tripinfo id="c" depart="-1" departDelay="42.00" arrival="-1.00" duration="0.00"
              waitingTime="0.00" timeLoss="0.00"/>
</tripinfos>
"""


def test_parse_tripinfo_by_hand(tmp_path):
    path = tmp_path / "tripinfo.xml"
    path.write_text(TRIPINFO)
    m = parse_tripinfo(path)
    assert (m.n_finished, m.n_unfinished, m.n_undeparted) == (1, 1, 1)
    assert m.avg_trip_time == pytest.approx((100 + 50) / 2)  # departed vehicles only
    assert m.avg_waiting_time == pytest.approx((30 + 10) / 2)
    assert m.avg_delay == pytest.approx(((40 + 2) + (20 + 0) + 42) / 3)  # never-inserted c counts


def test_parse_empty_tripinfo_gives_nan(tmp_path):
    path = tmp_path / "tripinfo.xml"
    path.write_text("<tripinfos/>")
    m = parse_tripinfo(path)
    assert math.isnan(m.avg_delay) and m.n_finished == 0


@pytest.fixture(scope="module")
def road(tmp_path_factory):
    """The 2-arm road W-C-E (300 m + 300 m) with one 10 m/s vehicle from W to E at t=0."""
    folder = tmp_path_factory.mktemp("road")
    net = two_arm_net(folder)
    routes = write_routes(
        folder / "one.rou.xml",
        '<vehicle id="v" type="exact" depart="0" departSpeed="max">'
        '<route edges="WC CE"/></vehicle>',
    )
    env = SumoEnv(Scenario("test/road", str(net), (str(routes),)), 1, episode_seconds=120)
    yield env
    env.close()


def _phase(env: SumoEnv, serves_west: bool) -> int:
    """An available phase that gives green (or red) to the approach from W."""
    it = env.layout.intersections[0]
    west_arm = "NESW"[it.arm_edges.index("WC")]
    for p in range(8):
        if it.phase_avail[p] and (west_arm + "T" in PHASE_NAMES[p]) == serves_west:
            return p
    raise AssertionError("no such phase")


def test_single_vehicle_on_green(road):
    road.reset(0)
    green = _phase(road, True)
    for _ in range(road.decisions):
        *_, done, info = road.step(np.array([[green]]))
    m = info["metrics"]
    # the front starts 5 m (one length) into WC and must pass 300 + 0.1 (junction) + 300 m at
    # 10 m/s: ceil(595.1 / 10) = 60 one-second steps; never slower than 10 m/s, so no waiting
    assert (m["n_finished"][0], m["n_unfinished"][0], m["n_undeparted"][0]) == (1, 0, 0)
    assert m["avg_trip_time"][0] == 60.0
    assert m["avg_waiting_time"][0] == 0.0
    assert m["avg_delay"][0] == pytest.approx(0.0, abs=0.5)


def test_single_vehicle_waits_at_red(road):
    road.reset(0)
    red, green = _phase(road, False), _phase(road, True)
    for k in range(road.decisions):
        *_, done, info = road.step(np.array([[red if k < 4 else green]]))
    m = info["metrics"]
    # at t=30 the front reaches the stop line at 300 m (still moving at 5 m/s in that step); it
    # stands from t=31. Decision 4 starts at 60 s: 5 s yellow of the old phase, green from 65 s,
    # so it stands at t = 31..64 (34 s) and needs 30 more steps for 300.1 m: arrival at 95 s.
    assert m["avg_waiting_time"][0] == 34.0
    assert m["avg_trip_time"][0] == 95.0
    # delay = time lost against 10 m/s: the 34 s standing plus the braking step (about 0.5 s)
    assert 34.0 <= m["avg_delay"][0] <= 35.5


def test_never_inserted_vehicle_counts_in_delay(tmp_path):
    net = two_arm_net(tmp_path)
    routes = write_routes(
        tmp_path / "blocked.rou.xml",
        '<vehicle id="a" type="exact" depart="0" departPos="5"><route edges="WC CE"/>'
        '<stop lane="WC_0" startPos="0" endPos="5" duration="1000"/></vehicle>\n'
        '<vehicle id="b" type="exact" depart="10" departPos="5"><route edges="WC CE"/></vehicle>',
    )
    with SumoEnv(Scenario("test/blocked", str(net), (str(routes),)), 1, episode_seconds=60) as env:
        env.reset(0)
        for _ in range(env.decisions):
            *_, info = env.step(np.array([[env.layout.intersections[0].initial_phase]]))
        m = {k: v[0] for k, v in info["metrics"].items()}
        trips = {e.get("id"): e for e in ET.parse(env.tripinfo_file(0)).getroot()}
    # b is blocked by a, which stands at the start of WC for the whole episode: never inserted,
    # waiting 60 - 10 = 50 s for insertion
    assert trips["b"].get("depart") == "-1" and float(trips["b"].get("departDelay")) == 50.0
    assert (m["n_finished"], m["n_unfinished"], m["n_undeparted"]) == (0, 1, 1)
    loss_a = float(trips["a"].get("timeLoss")) + float(trips["a"].get("departDelay"))
    assert m["avg_delay"] == pytest.approx((loss_a + 50.0) / 2)
    assert m["avg_trip_time"] == float(trips["a"].get("duration"))  # b never departed
