"""SUMO scenarios in the registry: ``envs_jax.make("sumo/<name>", n_envs=B, ...)`` is a SumoEnv.

=====================  ==========================================================================
name                   source
=====================  ==========================================================================
``sumo/grid4x4``       RESCO Grid 4x4 from the installed sumo-rl package (CC BY-NC-SA), 0-3600 s
``sumo/arterial4x4``   RESCO Arterial 4x4 from sumo-rl (CC BY-NC-SA), 0-3600 s
``sumo/cologne8``      RESCO Cologne8 from sumo-rl (TAPAS Cologne, CC BY-NC-SA 3.0), 25200-28800 s
``sumo/ingolstadt21``  RESCO Ingolstadt21 from sumo-rl (InTAS, GPL-3.0), 57600-61200 s
``sumo/grid5x5``       generated: 5x5 grid, 3-lane approaches, about 2,700 seeded trips per hour
``sumo/grid2x2``       generated: 2x2 grid, same road layout, about 800 trips per hour (for tests)
=====================  ==========================================================================

No scenario file is part of this repository: the RESCO nets are read from the sumo-rl wheel at
run time (their licences forbid redistribution here), and the grids are generated with SUMO's own
``netgenerate`` into the cache of :mod:`envs_jax.sumo.netgen`. Importing this module imports no
SUMO package; building an environment checks for them and names ``pip install -e ".[sumo]"``.

Factory keyword arguments: ``n_envs`` (simulations, default 1), ``episode_seconds`` (default
3600), and the other keyword arguments of :class:`envs_jax.sumo.bridge.SumoEnv`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from envs_jax.core import register
from envs_jax.sumo import deps
from envs_jax.sumo.bridge import SumoEnv
from envs_jax.sumo.netgen import GridSpec, generated_grid
from envs_jax.sumo.plan import Scenario

# name -> (net file, route files, begin seconds, licence)
RESCO: dict[str, tuple[str, tuple[str, ...], float, str]] = {
    "grid4x4": ("grid4x4.net.xml", ("grid4x4_1.rou.xml",), 0.0, "CC BY-NC-SA 4.0"),
    "arterial4x4": ("arterial4x4.net.xml", ("arterial4x4_1.rou.xml",), 0.0, "CC BY-NC-SA 4.0"),
    "cologne8": (
        "cologne8.net.xml",
        ("cologne8.rou.xml",),
        25200.0,
        "TAPAS Cologne, CC BY-NC-SA 3.0",
    ),
    "ingolstadt21": ("ingolstadt21.net.xml", ("ingolstadt21.rou.xml",), 57600.0, "InTAS, GPL-3.0"),
}
GRIDS: dict[str, GridSpec] = {
    "grid5x5": GridSpec(n=5, vehicles_per_hour=2700.0, seed=0),
    "grid2x2": GridSpec(n=2, vehicles_per_hour=800.0, seed=0),
}


def resco_scenario(name: str) -> Scenario:
    """A RESCO scenario whose files are read from the installed sumo-rl package."""
    net, routes, begin, licence = RESCO[name]
    folder = deps.package_dir("sumo_rl") / "nets" / "RESCO" / name
    files = [folder / net, *(folder / r for r in routes)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"sumo-rl lacks {', '.join(missing)}; install sumo-rl==1.4.5 ({deps.INSTALL_HINT})"
        )
    return Scenario(
        name=f"sumo/{name}",
        net_file=str(files[0]),
        route_files=tuple(str(f) for f in files[1:]),
        begin=begin,
        data_source=f"RESCO {name} from the installed sumo-rl package ({licence})",
    )


def grid_scenario(name: str, spec: GridSpec) -> Scenario:
    """A generated grid scenario (net and trips created in the cache on first use)."""
    net, routes = generated_grid(spec)
    return Scenario(
        name=f"sumo/{name}",
        net_file=str(net),
        route_files=(str(routes),),
        begin=0.0,
        episode_seconds=spec.seconds,
        data_source=f"generated with netgenerate: {spec.key} ({Path(net).parent})",
    )


def _factory(build: Callable[[], Scenario], needs: tuple[str, ...]) -> Callable[..., SumoEnv]:
    def make_env(n_envs: int = 1, **kwargs: Any) -> SumoEnv:
        deps.require("libsumo", "sumolib", *needs)
        return SumoEnv(build(), n_envs, **kwargs)

    return make_env


for _name, (_net, _routes, _begin, _licence) in RESCO.items():
    register(
        f"sumo/{_name}",
        _factory(lambda n=_name: resco_scenario(n), ("sumo_rl",)),
        f"SUMO RESCO {_name} ({_begin:g}-{_begin + 3600:g} s; nets from the sumo-rl package, "
        f"{_licence})",
    )
for _name, _spec in GRIDS.items():
    register(
        f"sumo/{_name}",
        _factory(lambda n=_name, s=_spec: grid_scenario(n, s), ("sumo",)),
        f"SUMO generated {_spec.n}x{_spec.n} grid, 3-lane approaches, "
        f"~{_spec.vehicles_per_hour:g} trips/h",
    )
