"""GESA standardisation: arms, movements, phase availability and signal states."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs_jax.sumo import deps
from envs_jax.sumo.netgen import generate_grid_net
from envs_jax.sumo.standardize import (
    MOVEMENT_NAMES,
    PHASE_MOVEMENTS,
    PHASE_NAMES,
    Link,
    TLSTopology,
    UnmappableTLS,
    arm_of_angle,
    classify_lane,
    clockwise_angle,
    standardize_net,
    standardize_tls,
)
from tests.sumo_nets import t_junction_net, two_arm_net

pytestmark = pytest.mark.sumo


def test_phase_table_matches_espark_order():
    assert PHASE_NAMES == ("WT-ET", "NT-ST", "WL-EL", "NL-SL", "WL-WT", "EL-ET", "SL-ST", "NL-NT")
    named = [f"{MOVEMENT_NAMES[a]}/{MOVEMENT_NAMES[b]}" for a, b in PHASE_MOVEMENTS]
    assert named == [
        "W-T/E-T",
        "N-T/S-T",
        "W-L/E-L",
        "N-L/S-L",
        "W-L/W-T",
        "E-L/E-T",
        "S-L/S-T",
        "N-L/N-T",
    ]


def test_angles_and_lane_classes():
    south = (0.0, -1.0)  # approach 0 comes from the north, driving south
    assert clockwise_angle(south, (-1.0, 0.0)) == pytest.approx(90.0)  # from the east, driving west
    assert clockwise_angle(south, (0.0, 1.0)) == pytest.approx(180.0)
    assert clockwise_angle(south, (1.0, 0.0)) == pytest.approx(270.0)
    assert [arm_of_angle(a) for a in (0, 44.9, 45, 134.9, 135, 224.9, 225, 314.9, 315)] == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        0,
    ]
    assert classify_lane(["l", "s"]) == "T"
    assert classify_lane(["s", "r"]) == "T"
    assert classify_lane(["l", "r"]) == "L"
    assert classify_lane(["t"]) == "L"
    assert classify_lane(["r"]) == "R"


def _cross(first: str) -> TLSTopology:
    """A hand-made 4-arm junction: per arm a right-only lane _0, a through lane _1, a left lane _2.

    Edges are named after where they come from; ``first`` is the edge of link 0. Only the
    link directions matter, so the outgoing lanes are placeholders.
    """
    heading = {
        "from_n": (0.0, -1.0),
        "from_e": (-1.0, 0.0),
        "from_s": (0.0, 1.0),
        "from_w": (1.0, 0.0),
    }
    order = [first] + [e for e in heading if e != first]
    links, idx = [], 0
    for e in order:
        for lane, direction in ((0, "r"), (1, "s"), (2, "l")):
            links.append(Link(idx, f"{e}_{lane}", f"out_{e}_{lane}", direction))
            idx += 1
    return TLSTopology("X", idx, tuple(links), heading)


def test_hand_made_four_arm_junction_is_relative_to_link_zero():
    it = standardize_tls(_cross("from_e"))
    # approach 0 (from the east) is N; clockwise: from the south -> E, from the west -> S,
    # from the north -> W
    assert it.arm_edges == ("from_e", "from_s", "from_w", "from_n")
    assert it.n_arms == 4
    assert dict(zip(MOVEMENT_NAMES, it.movement_lanes)) == {
        "N-L": ("from_e_2",),
        "N-T": ("from_e_1",),
        "W-L": ("from_n_2",),
        "W-T": ("from_n_1",),
        "S-L": ("from_w_2",),
        "S-T": ("from_w_1",),
        "E-L": ("from_s_2",),
        "E-T": ("from_s_1",),
    }
    assert it.right_lanes == ("from_e_0", "from_n_0", "from_s_0", "from_w_0")
    assert all(it.phase_avail)
    # link order: from_e (0-2), from_n (3-5), from_s (6-8), from_w (9-11); r, s, l in each
    assert it.green_states[PHASE_NAMES.index("NT-ST")] == "gGr" + "grr" + "grr" + "gGr"
    assert it.green_states[PHASE_NAMES.index("WL-EL")] == "grr" + "grG" + "grG" + "grr"
    assert it.yellow_states[PHASE_NAMES.index("WL-EL")] == "grr" + "gry" + "gry" + "grr"
    prog = it.program()
    assert (
        len(prog) == 16
        and prog[0] == (it.green_states[0], 30.0)
        and prog[1] == (it.yellow_states[0], 5.0)
    )
    assert it.initial_phase == 0
    # the labels turn with the reference: starting from the north edge gives compass labels
    assert standardize_tls(_cross("from_n")).arm_edges == ("from_n", "from_e", "from_s", "from_w")


@settings(max_examples=40, deadline=None)
@given(theta=st.floats(0.0, 360.0), first=st.sampled_from(["from_n", "from_e", "from_s", "from_w"]))
def test_standardisation_is_rotation_invariant(theta, first):
    topo = _cross(first)
    c, s = math.cos(math.radians(theta)), math.sin(math.radians(theta))
    turned = {e: (c * x - s * y, s * x + c * y) for e, (x, y) in topo.edge_heading.items()}
    rotated = TLSTopology(topo.tls_id, topo.n_links, topo.links, turned)
    assert standardize_tls(rotated) == standardize_tls(topo)


def test_shared_left_through_lane_turns_left_permissively():
    heading = {"a": (0.0, -1.0), "b": (0.0, 1.0)}
    links = (
        Link(0, "a_0", "o1", "s"),
        Link(1, "a_0", "o2", "l"),
        Link(2, "b_0", "o3", "s"),
        Link(3, "b_0", "o4", "l"),
    )
    it = standardize_tls(TLSTopology("X", 4, links, heading))
    assert it.movement_lanes[MOVEMENT_NAMES.index("N-T")] == ("a_0",)
    assert it.phase_avail == (False, True, False, False, False, False, True, True)
    assert it.green_states[1] == "GgGg"  # through G, left turn from a through lane yields (g)
    assert it.yellow_states[1] == "yyyy"
    assert it.green_states[0] == "rrrr"  # unavailable phase: all red (no right turns here)


def test_two_approaches_in_one_bin_are_unmappable():
    heading = {"a": (0.0, -1.0), "b": (0.1, -1.0)}  # almost the same direction
    links = (Link(0, "a_0", "o", "s"), Link(1, "b_0", "o", "s"))
    with pytest.raises(UnmappableTLS, match="share arm N"):
        standardize_tls(TLSTopology("X", 2, links, heading))


def test_right_only_junction_is_unmappable():
    links = (Link(0, "a_0", "o", "r"),)
    with pytest.raises(UnmappableTLS, match="right-turn lanes only"):
        standardize_tls(TLSTopology("X", 1, links, {"a": (1.0, 0.0)}))


def test_generated_two_arm_junction(tmp_path):
    layout = standardize_net(two_arm_net(tmp_path))
    (it,) = layout.intersections
    assert it.n_arms == 2 and set(it.arm_edges) == {"WC", "EC", None}
    assert it.arm_edges[0] is not None and it.arm_edges[2] is not None  # opposite arms: N and S
    # only through movements N-T and S-T: NT-ST, SL-ST, NL-NT
    assert [PHASE_NAMES[p] for p in range(8) if it.phase_avail[p]] == ["NT-ST", "SL-ST", "NL-NT"]
    assert it.initial_phase == PHASE_NAMES.index("NT-ST")
    assert it.green_states[PHASE_NAMES.index("NT-ST")] == "GG"
    assert sorted(it.green_states[PHASE_NAMES.index(p)] for p in ("SL-ST", "NL-NT")) == ["Gr", "rG"]


def test_generated_t_junction(tmp_path):
    layout = standardize_net(t_junction_net(tmp_path))
    (it,) = layout.intersections
    assert it.n_arms == 3
    arms = dict(zip("NESW", it.arm_edges))
    missing = [k for k, v in arms.items() if v is None]
    assert len(missing) == 1
    # the stem (from the south) only turns: it is a left-movement lane, no through movement
    stem = next(k for k, v in arms.items() if v == "SC")
    assert it.movement_lanes[MOVEMENT_NAMES.index(f"{stem}-L")] == ("SC_0",)
    assert it.movement_lanes[MOVEMENT_NAMES.index(f"{stem}-T")] == ()
    assert sum(it.phase_avail) == 5
    # every available phase serves something; every unavailable one has two empty movements
    for p, (a, b) in enumerate(PHASE_MOVEMENTS):
        assert it.phase_avail[p] == bool(it.movement_lanes[a] or it.movement_lanes[b])
        if not it.phase_avail[p]:
            assert set(it.green_states[p]) <= {"r", "g"} and "G" not in it.green_states[p]


def test_generated_four_arm_grid(tmp_path):
    layout = standardize_net(generate_grid_net(2, tmp_path / "g.net.xml"))
    assert layout.n_intersections == 4 and not layout.skipped
    assert layout.arms_histogram() == {4: 4} and layout.avail_histogram() == {8: 4}
    for it in layout.intersections:
        assert all(len(lanes) >= 1 for lanes in it.movement_lanes)
        for g, y in zip(it.green_states, it.yellow_states):
            assert len(g) == len(y) == it.n_links
            for cg, cy in zip(g, y):  # yellow follows green; right turns stay g
                assert (cg, cy) in {("G", "y"), ("g", "y"), ("r", "r"), ("g", "g")}


@pytest.mark.parametrize(
    "name, arms, avail",
    [
        ("grid4x4", {4: 16}, {8: 16}),
        ("arterial4x4", {4: 16}, {7: 16}),
        ("cologne8", {2: 1, 3: 3, 4: 4}, {3: 1, 5: 1, 6: 6}),
        ("ingolstadt21", {3: 17, 4: 4}, {5: 2, 6: 14, 7: 2, 8: 3}),
    ],
)
def test_resco_nets_match_reference_histograms(name, arms, avail):
    net = deps.package_dir("sumo_rl") / "nets" / "RESCO" / name / f"{name}.net.xml"
    layout = standardize_net(net)
    assert not layout.skipped
    assert layout.arms_histogram() == arms
    assert layout.avail_histogram() == avail
