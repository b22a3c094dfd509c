"""Map every signalised intersection of a SUMO net onto 4 arms, 8 movements and 8 phases.

The rules follow the GESA standardisation (see ``shared/reference/sumo-bridge.md`` section 4.1),
written from the description, with one change: approach 0 is chosen deterministically.

1. **Lanes.** Each incoming lane of a traffic light is classified from the directions of its
   controlled links: any straight link makes it a *through* lane (T, shared left-through and
   through-right lanes included); otherwise a left or U-turn link makes it a *left* lane (L);
   otherwise it is right-only. Right turns are not movements: their links show ``g`` in every
   signal state, yellow and all-red included.
2. **Arms.** An approach is an incoming edge, heading along the last segment of its lane-0
   shape. Approach 0 is the incoming edge of the lowest controlled link index (deterministic) and
   is labelled ``N``; every other approach is binned by its clockwise angle to approach 0:
   [45, 135) -> E, [135, 225) -> S, [225, 315) -> W, otherwise N. Labels are relative
   (rotation-invariant), not compass directions. Two approaches in one bin make the traffic light
   unmappable (it keeps its own program and is not an agent); missing arms stay empty.
3. **Movements**, in the order ``N-L, N-T, W-L, W-T, S-L, S-T, E-L, E-T``; each may be empty.
4. **Phases**, each a pair of movements, in eSpark's order ``WT-ET, NT-ST, WL-EL, NL-SL, WL-WT,
   EL-ET, SL-ST, NL-NT``. A phase whose two movements are both empty is *unavailable* (never a
   valid action). The custom program has 16 states: green ``2 p`` and yellow ``2 p + 1`` of phase
   ``p``. Green: the phase's links ``G``; right turns ``g``; everything else ``r``. One refinement
   of GESA: a left or U-turn link that leaves a *through* lane is ``g`` (permissive, it yields to
   the oncoming through traffic that is green at the same time) rather than ``G``, since SUMO lets
   two conflicting ``G`` links drive through each other. Yellow: every ``G``/``g`` of the green
   becomes ``y`` except right turns, which stay ``g``.

The rules are pure functions of a :class:`TLSTopology`; :func:`read_topologies` builds those from
a ``.net.xml`` with ``sumolib`` (pure Python, no simulation), and :func:`standardize_net` runs
the whole pipeline (cached per file).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections import Counter
from typing import Mapping, Sequence

PHASE_NAMES: tuple[str, ...] = (
    "WT-ET",
    "NT-ST",
    "WL-EL",
    "NL-SL",
    "WL-WT",
    "EL-ET",
    "SL-ST",
    "NL-NT",
)
MOVEMENT_NAMES: tuple[str, ...] = ("N-L", "N-T", "W-L", "W-T", "S-L", "S-T", "E-L", "E-T")
ARM_NAMES: tuple[str, ...] = ("N", "E", "S", "W")
N_PHASES = 8
N_MOVEMENTS = 8
# Movement slots served by each phase (indices into MOVEMENT_NAMES), in PHASE_NAMES order.
PHASE_MOVEMENTS: tuple[tuple[int, int], ...] = tuple(
    (MOVEMENT_NAMES.index(a[0] + "-" + a[1]), MOVEMENT_NAMES.index(b[0] + "-" + b[1]))
    for a, b in (name.split("-") for name in PHASE_NAMES)
)
PROGRAM_ID = "espark"
PROGRAM_GREEN_SECONDS = 30.0
PROGRAM_YELLOW_SECONDS = 5.0

_RIGHT = frozenset("rR")
_LEFT = frozenset("lLt")


@dataclasses.dataclass(frozen=True)
class Link:
    """One controlled connection of a traffic light.

    Attributes:
        index: the link index (position in the signal state string).
        in_lane: incoming lane id.
        out_lane: outgoing lane id.
        direction: SUMO's link direction: ``s``, ``l``, ``L``, ``r``, ``R`` or ``t``.
    """

    index: int
    in_lane: str
    out_lane: str
    direction: str

    @property
    def in_edge(self) -> str:
        """Edge id of the incoming lane (the lane id without its ``_<index>`` suffix)."""
        return self.in_lane.rsplit("_", 1)[0]


@dataclasses.dataclass(frozen=True)
class TLSTopology:
    """What the standardisation needs to know about one traffic light.

    Attributes:
        tls_id: traffic-light id.
        n_links: length of its signal state string.
        links: every controlled connection (several may share one index).
        edge_heading: for each incoming edge, the direction ``(dx, dy)`` of the last segment of
            its lane-0 shape (the direction of travel into the junction).
    """

    tls_id: str
    n_links: int
    links: tuple[Link, ...]
    edge_heading: Mapping[str, tuple[float, float]]


class UnmappableTLS(ValueError):
    """A traffic light that cannot be put on 4 arms (e.g. two approaches in one bin)."""


@dataclasses.dataclass(frozen=True)
class Intersection:
    """A standardised traffic light: arms, movements, phase availability and signal states.

    Attributes:
        tls_id: traffic-light id.
        n_links: length of the signal state strings.
        arm_edges: incoming edge id per arm ``N, E, S, W`` (``None`` for a missing arm).
        movement_lanes: incoming lanes of each of the 8 movements (empty tuple when absent).
        movement_out_lanes: distinct outgoing lanes reached by each movement's non-right links.
        right_lanes: right-only incoming lanes (no movement; always ``g``).
        incoming_lanes: every controlled incoming lane, in first-link order.
        outgoing_lanes: every controlled outgoing lane, in first-link order.
        phase_avail: for each of the 8 phases, whether it serves at least one movement.
        green_states: the 8 green signal states (an unavailable phase is all red but right turns).
        yellow_states: the 8 yellow signal states that follow each green.
    """

    tls_id: str
    n_links: int
    arm_edges: tuple[str | None, ...]
    movement_lanes: tuple[tuple[str, ...], ...]
    movement_out_lanes: tuple[tuple[str, ...], ...]
    right_lanes: tuple[str, ...]
    incoming_lanes: tuple[str, ...]
    outgoing_lanes: tuple[str, ...]
    phase_avail: tuple[bool, ...]
    green_states: tuple[str, ...]
    yellow_states: tuple[str, ...]

    @property
    def n_arms(self) -> int:
        """Number of arms with an incoming edge (2, 3 or 4)."""
        return sum(e is not None for e in self.arm_edges)

    @property
    def initial_phase(self) -> int:
        """The first available phase (shown at reset)."""
        return self.phase_avail.index(True)

    def program(self) -> list[tuple[str, float]]:
        """The 16-state custom program ``[(state, duration), ...]``: green 2p, yellow 2p+1."""
        out: list[tuple[str, float]] = []
        for green, yellow in zip(self.green_states, self.yellow_states):
            out += [(green, PROGRAM_GREEN_SECONDS), (yellow, PROGRAM_YELLOW_SECONDS)]
        return out


def classify_lane(directions: Sequence[str]) -> str:
    """Lane class from its controlled link directions: ``"T"``, ``"L"`` or ``"R"`` (right-only)."""
    dirs = set(directions)
    if "s" in dirs:
        return "T"
    if dirs & _LEFT:
        return "L"
    return "R"


def clockwise_angle(ref: tuple[float, float], vec: tuple[float, float]) -> float:
    """Clockwise angle in degrees, in [0, 360), that turns ``ref`` onto ``vec`` (y axis up)."""
    cross = ref[0] * vec[1] - ref[1] * vec[0]
    dot = ref[0] * vec[0] + ref[1] * vec[1]
    return (-math.degrees(math.atan2(cross, dot))) % 360.0


def arm_of_angle(angle: float) -> int:
    """Arm index (0 N, 1 E, 2 S, 3 W) of an approach at a clockwise ``angle`` from approach 0."""
    if 45.0 <= angle < 135.0:
        return 1
    if 135.0 <= angle < 225.0:
        return 2
    if 225.0 <= angle < 315.0:
        return 3
    return 0


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def standardize_tls(topo: TLSTopology) -> Intersection:
    """Standardise one traffic light (rules in the module docstring).

    Raises:
        UnmappableTLS: no usable incoming link, two approaches in one arm bin, or no movement.
    """
    links = sorted(
        (lk for lk in topo.links if not lk.in_lane.startswith(":")), key=lambda lk: lk.index
    )
    if not links:
        raise UnmappableTLS(f"traffic light {topo.tls_id!r} controls no incoming road lane")
    # 2. arms: approach 0 is the edge of the lowest link index
    edges = _unique([lk.in_edge for lk in links])
    for e in edges:
        if e not in topo.edge_heading:
            raise UnmappableTLS(f"traffic light {topo.tls_id!r}: no shape for incoming edge {e!r}")
    ref = topo.edge_heading[edges[0]]
    arm_edges: list[str | None] = [None] * 4
    for e in edges:
        arm = arm_of_angle(clockwise_angle(ref, topo.edge_heading[e]))
        if arm_edges[arm] is not None:
            raise UnmappableTLS(
                f"traffic light {topo.tls_id!r}: approaches {arm_edges[arm]!r} and {e!r} share "
                f"arm {ARM_NAMES[arm]}"
            )
        arm_edges[arm] = e
    edge_arm = {e: a for a, e in enumerate(arm_edges) if e is not None}
    # 1. lane classes
    lane_dirs: dict[str, list[str]] = {}
    for lk in links:
        lane_dirs.setdefault(lk.in_lane, []).append(lk.direction)
    lane_class = {lane: classify_lane(d) for lane, d in lane_dirs.items()}
    # 3. movements: the slot named "<arm>-<class>"
    lane_slot = {
        lane: MOVEMENT_NAMES.index(f"{ARM_NAMES[edge_arm[lane.rsplit('_', 1)[0]]]}-{cls}")
        for lane, cls in lane_class.items()
        if cls != "R"
    }
    movement_lanes = tuple(
        _unique([ln for ln in lane_dirs if lane_slot.get(ln) == m]) for m in range(N_MOVEMENTS)
    )
    movement_out = tuple(
        _unique(
            [
                lk.out_lane
                for lk in links
                if lane_slot.get(lk.in_lane) == m and lk.direction not in _RIGHT
            ]
        )
        for m in range(N_MOVEMENTS)
    )
    if not any(movement_lanes):
        raise UnmappableTLS(f"traffic light {topo.tls_id!r} has right-turn lanes only")
    phase_avail = tuple(bool(movement_lanes[a] or movement_lanes[b]) for a, b in PHASE_MOVEMENTS)
    # 4. signal states; an index is a right turn only if all its connections are right turns
    by_index: dict[int, list[Link]] = {}
    for lk in links:
        by_index.setdefault(lk.index, []).append(lk)
    n_links = max(topo.n_links, max(by_index) + 1)
    greens, yellows = [], []
    for movs in PHASE_MOVEMENTS:
        green = ["r"] * n_links
        yellow = ["r"] * n_links
        for idx, lks in by_index.items():
            main = next((lk for lk in lks if lk.direction not in _RIGHT), None)
            if main is None:
                green[idx] = yellow[idx] = "g"
            elif lane_slot.get(main.in_lane) in movs:
                permissive = lane_class[main.in_lane] == "T" and main.direction in _LEFT
                green[idx] = "g" if permissive else "G"
                yellow[idx] = "y"
        greens.append("".join(green))
        yellows.append("".join(yellow))
    return Intersection(
        tls_id=topo.tls_id,
        n_links=n_links,
        arm_edges=tuple(arm_edges),
        movement_lanes=movement_lanes,
        movement_out_lanes=movement_out,
        right_lanes=tuple(ln for ln, c in lane_class.items() if c == "R"),
        incoming_lanes=_unique([lk.in_lane for lk in links]),
        outgoing_lanes=_unique([lk.out_lane for lk in links]),
        phase_avail=phase_avail,
        green_states=tuple(greens),
        yellow_states=tuple(yellows),
    )


def read_topologies(net_file: str | os.PathLike) -> list[TLSTopology]:
    """Read every traffic light of a ``.net.xml`` with sumolib, sorted by id."""
    import sumolib  # deferred: only needed when a net is actually read

    net = sumolib.net.readNet(str(net_file), withPrograms=True)
    out = []
    for tls in sorted(net.getTrafficLights(), key=lambda t: t.getID()):
        links, headings = [], {}
        for in_lane, out_lane, idx in tls.getConnections():
            conn = next(
                (
                    c
                    for c in in_lane.getOutgoing()
                    if c.getToLane() is out_lane and c.getTLLinkIndex() == idx
                ),
                None,
            )
            direction = conn.getDirection() if conn is not None else "s"
            links.append(Link(int(idx), in_lane.getID(), out_lane.getID(), direction))
            edge = in_lane.getEdge()
            if edge.getID() not in headings:
                shape = edge.getLane(0).getShape()
                (x0, y0), (x1, y1) = shape[-2][:2], shape[-1][:2]
                headings[edge.getID()] = (x1 - x0, y1 - y0)
        lengths = [len(ph.state) for prog in tls.getPrograms().values() for ph in prog.getPhases()]
        n_links = max(lengths) if lengths else (max((lk.index for lk in links), default=-1) + 1)
        out.append(TLSTopology(tls.getID(), n_links, tuple(links), headings))
    return out


@dataclasses.dataclass(frozen=True)
class NetLayout:
    """All standardised intersections of one net (the agents, sorted by traffic-light id).

    Attributes:
        net_file: the ``.net.xml`` path.
        intersections: the mappable traffic lights; these are the agents.
        skipped: unmappable traffic-light id -> reason; they keep their own program.
    """

    net_file: str
    intersections: tuple[Intersection, ...]
    skipped: Mapping[str, str]

    @property
    def n_intersections(self) -> int:
        """Number of agents."""
        return len(self.intersections)

    def arms_histogram(self) -> dict[int, int]:
        """``{n_arms: count}`` over the agents."""
        return dict(sorted(Counter(i.n_arms for i in self.intersections).items()))

    def avail_histogram(self) -> dict[int, int]:
        """``{available phases: count}`` over the agents."""
        return dict(sorted(Counter(sum(i.phase_avail) for i in self.intersections).items()))


def standardize_topologies(net_file: str, topologies: Sequence[TLSTopology]) -> NetLayout:
    """Standardise a list of traffic lights; unmappable ones go to ``skipped`` with the reason."""
    inters, skipped = [], {}
    for topo in topologies:
        try:
            inters.append(standardize_tls(topo))
        except UnmappableTLS as err:
            skipped[topo.tls_id] = str(err)
    if not inters:
        raise ValueError(
            f"{net_file}: no traffic light could be standardised ({len(skipped)} skipped)"
        )
    return NetLayout(str(net_file), tuple(inters), skipped)


@functools.lru_cache(maxsize=16)
def _standardize_cached(net_file: str, mtime_ns: int) -> NetLayout:
    return standardize_topologies(net_file, read_topologies(net_file))


def standardize_net(net_file: str | os.PathLike) -> NetLayout:
    """Standardise every traffic light of a ``.net.xml`` (cached per path and modification time)."""
    path = os.fspath(net_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SUMO net file not found: {path}")
    return _standardize_cached(path, os.stat(path).st_mtime_ns)
