"""Tiny SUMO nets and route files for the SUMO tests, generated at test time from plain XML."""

from __future__ import annotations

from pathlib import Path

from envs_jax.sumo.netgen import build_plain_net

# A vehicle type that makes trips computable by hand: 10 m/s, no dawdling, (almost) instant
# acceleration and braking, speed factor exactly 1.
EXACT_VTYPE = (
    '<vType id="exact" accel="100" decel="100" emergencyDecel="100" sigma="0" maxSpeed="10" '
    'length="5" minGap="2.5" speedFactor="1" speedDev="0"/>'
)


def two_arm_net(folder: Path) -> Path:
    """A straight road W - C - E through a signalised node C; every edge 300 m, one lane."""
    return build_plain_net(
        [("C", 0, 0, "traffic_light"), ("W", -300, 0, "dead_end"), ("E", 300, 0, "dead_end")],
        [("WC", "W", "C", 1), ("CW", "C", "W", 1), ("EC", "E", "C", 1), ("CE", "C", "E", 1)],
        folder / "two_arm.net.xml",
    )


def t_junction_net(folder: Path) -> Path:
    """A signalised T junction: arms from the west, east and south; one lane per edge."""
    return build_plain_net(
        [
            ("C", 0, 0, "traffic_light"),
            ("W", -200, 0, "dead_end"),
            ("E", 200, 0, "dead_end"),
            ("S", 0, -200, "dead_end"),
        ],
        [
            ("WC", "W", "C", 1),
            ("CW", "C", "W", 1),
            ("EC", "E", "C", 1),
            ("CE", "C", "E", 1),
            ("SC", "S", "C", 1),
            ("CS", "C", "S", 1),
        ],
        folder / "t_junction.net.xml",
    )


def write_routes(path: Path, body: str) -> Path:
    """A route file with :data:`EXACT_VTYPE` and the given vehicles."""
    path.write_text(f"<routes>\n{EXACT_VTYPE}\n{body}\n</routes>\n")
    return path
