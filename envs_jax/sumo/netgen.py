"""Generated SUMO scenarios: grid nets from ``netgenerate``, plain-XML nets from ``netconvert``,
and seeded trip files. Nothing generated is committed; files live in a cache directory.

The cache is ``$ESPARK_SUMO_CACHE`` if set, else ``~/.cache/espark-jax/sumo``. Every generated
scenario sits in its own folder named after its parameters, written atomically (a temporary
folder renamed into place), so concurrent processes never see half-written files.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

from envs_jax.sumo import deps


def cache_dir() -> Path:
    """Root folder for generated nets and routes."""
    root = os.environ.get("ESPARK_SUMO_CACHE") or os.path.join(
        Path.home(), ".cache", "espark-jax", "sumo"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder into place (keep an existing one from another process)."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def generate_grid_net(n: int, out_file: str | os.PathLike, length: float = 200.0) -> Path:
    """An ``n x n`` grid of signalised 4-arm junctions with 3-lane approaches.

    Each approach has a right+through, a through and a left-only lane over its last 100 m
    (``netgenerate --turn-lanes=1``), so all 8 movements exist at every junction; fringe roads
    of ``length`` metres lead in and out.
    """
    if n < 1:
        raise ValueError(f"grid size must be >= 1, got {n}")
    out = Path(out_file)
    deps.run_tool(
        "netgenerate",
        [
            "--grid",
            f"--grid.number={n}",
            f"--grid.length={length}",
            f"--grid.attach-length={length}",
            "--default.lanenumber=2",
            "--turn-lanes=1",
            f"--turn-lanes.length={min(100.0, length / 2)}",
            "--default.junctions.type=traffic_light",
            "--no-turnarounds",
            "--no-warnings",
            "-o",
            str(out),
        ],
    )
    return out


def build_plain_net(
    nodes: Sequence[tuple[str, float, float, str]],
    edges: Sequence[tuple[str, str, str, int]],
    out_file: str | os.PathLike,
    speed: float = 13.89,
) -> Path:
    """Build a net with ``netconvert`` from plain nodes and edges.

    Args:
        nodes: ``(id, x, y, type)``, type e.g. ``"traffic_light"``, ``"priority"``, ``"dead_end"``.
        edges: ``(id, from_node, to_node, n_lanes)``; straight edges between the node positions.
        out_file: the ``.net.xml`` to write.
        speed: speed limit of every edge in m/s.
    """
    out = Path(out_file)
    with tempfile.TemporaryDirectory(prefix="espark-plain-") as tmp:
        nod, edg = Path(tmp, "net.nod.xml"), Path(tmp, "net.edg.xml")
        nod.write_text(
            "<nodes>\n"
            + "".join(
                f'  <node id={quoteattr(i)} x="{x}" y="{y}" type={quoteattr(t)}/>\n'
                for i, x, y, t in nodes
            )
            + "</nodes>\n"
        )
        edg.write_text(
            "<edges>\n"
            + "".join(
                f"  <edge id={quoteattr(i)} from={quoteattr(a)} to={quoteattr(b)} "
                f'numLanes="{k}" speed="{speed}"/>\n'
                for i, a, b, k in edges
            )
            + "</edges>\n"
        )
        deps.run_tool(
            "netconvert",
            [
                "--node-files",
                str(nod),
                "--edge-files",
                str(edg),
                "--no-turnarounds",
                "--no-warnings",
                "-o",
                str(out),
            ],
        )
    return out


def fringe_edges(net_file: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(sources, sinks)``: edges leaving a fringe node and edges entering one.

    A fringe node lets no vehicle through: none of its incoming edges connects onwards.
    """
    import sumolib

    net = sumolib.net.readNet(str(net_file))

    def is_fringe(node) -> bool:
        return not any(e.getOutgoing() for e in node.getIncoming())

    edges = net.getEdges(withInternal=False)
    sources = sorted(e.getID() for e in edges if is_fringe(e.getFromNode()))
    sinks = sorted(e.getID() for e in edges if is_fringe(e.getToNode()))
    return sources, sinks


def write_trips(
    net_file: str | os.PathLike,
    out_file: str | os.PathLike,
    seed: int,
    vehicles_per_hour: float,
    seconds: float = 3600.0,
    slice_seconds: float = 300.0,
) -> int:
    """Write seeded random trips between fringe edges; returns the number of vehicles.

    Demand comes in ``slice_seconds`` slices whose rate is ``vehicles_per_hour`` times a factor
    drawn uniformly from [0.6, 1.4]; within a slice departures are uniform. Origin and
    destination are drawn uniformly among the fringe sources and sinks, excluding the sink that
    leads back to the origin's own fringe node. SUMO routes each trip at insertion.
    """
    import sumolib

    net = sumolib.net.readNet(str(net_file))
    sources, sinks = fringe_edges(net_file)
    if not sources or not sinks:
        raise ValueError(f"{net_file}: no fringe source/sink edges to place trips on")
    rng = np.random.default_rng(seed)
    rows = []
    for start in np.arange(0.0, seconds, slice_seconds):
        width = min(slice_seconds, seconds - start)
        rate = vehicles_per_hour / 3600.0 * rng.uniform(0.6, 1.4)
        departs = np.sort(rng.uniform(start, start + width, rng.poisson(rate * width)))
        for t in departs:
            src = sources[rng.integers(len(sources))]
            home = net.getEdge(src).getFromNode().getID()
            choices = [s for s in sinks if net.getEdge(s).getToNode().getID() != home] or sinks
            rows.append((float(t), src, choices[rng.integers(len(choices))]))
    with open(out_file, "w") as fh:
        fh.write("<routes>\n")
        for k, (t, a, b) in enumerate(rows):
            fh.write(
                f'  <trip id="v{k}" depart="{t:.2f}" from={quoteattr(a)} to={quoteattr(b)} '
                'departLane="best" departSpeed="max"/>\n'
            )
        fh.write("</routes>\n")
    return len(rows)


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """Parameters of a generated grid scenario (they name its cache folder)."""

    n: int
    vehicles_per_hour: float
    seed: int = 0
    length: float = 200.0
    seconds: float = 3600.0

    @property
    def key(self) -> str:
        """Cache folder name."""
        return (
            f"grid{self.n}x{self.n}-L{self.length:g}-v{self.vehicles_per_hour:g}-s{self.seed}"
            f"-t{self.seconds:g}"
        )


def generated_grid(spec: GridSpec) -> tuple[Path, Path]:
    """``(net_file, route_file)`` of a grid scenario, generating it into the cache if absent."""
    final = cache_dir() / spec.key
    net, routes = final / "grid.net.xml", final / "grid.rou.xml"
    if net.is_file() and routes.is_file():
        return net, routes
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.key}-", dir=cache_dir()))
    try:
        generate_grid_net(spec.n, tmp / net.name, spec.length)
        write_trips(
            tmp / net.name, tmp / routes.name, spec.seed, spec.vehicles_per_hour, spec.seconds
        )
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return net, routes
