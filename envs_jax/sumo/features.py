"""SUMO observations, reward components and mask context, computed in numpy on the host.

Workers return raw per-lane measurements (:data:`envs_jax.sumo.worker.LANE_FEATURES`); this
module aggregates them, for a whole batch at once, into per-movement and per-intersection
quantities with one matrix product. Shapes: ``B`` simulations, ``I`` intersections (agents),
``M`` = 8 movements (``N-L, N-T, W-L, W-T, S-L, S-T, E-L, E-T``), ``P`` = 8 phases
(``WT-ET, NT-ST, WL-EL, NL-SL, WL-WT, EL-ET, SL-ST, NL-NT``).

**Observation** ``float32 [B, I, 72]`` per intersection: for each movement 7 features
(:data:`OBS_MOVEMENT_FEATURES`: per-lane means of vehicles / 20, halting vehicles / 20, queue
length / 200 m, occupancy (0-1), flow / 10, then a 0/1 "green now" flag and a 0/1 "movement
exists" flag), movement-major; then the current phase one-hot (8) and the available phases (8).
A missing movement is all zeros.

**Reward** ``= -stopped``: minus the number of halted vehicles (speed < 0.1 m/s) on the
intersection's incoming lanes after the decision, so higher is better. Components
(:data:`REWARD_COMPONENTS`, all ``[B, I]``, measured on the incoming lanes unless stated):
``stopped`` (vehicles), ``waiting_time`` (seconds: sum of the vehicles' accumulated waiting
time), ``queue_length`` (metres: halted vehicles x (mean vehicle length + 2.5 m gap)),
``pressure`` (halted vehicles on incoming lanes minus halted vehicles on outgoing lanes).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from envs_jax.core import ContextField, EnvSpec, MaskContext
from envs_jax.sumo.standardize import N_MOVEMENTS, N_PHASES, PHASE_MOVEMENTS, PHASE_NAMES, NetLayout
from envs_jax.sumo.worker import LANE_FEATURES

MIN_GAP = 2.5
OBS_MOVEMENT_FEATURES: tuple[str, ...] = (
    "vehicles",
    "halting",
    "queue_length",
    "occupancy",
    "flow",
    "green",
    "exists",
)
_OBS_SCALE = np.array([20.0, 20.0, 200.0, 1.0, 10.0], dtype=np.float32)
OBS_DIM = N_MOVEMENTS * len(OBS_MOVEMENT_FEATURES) + 2 * N_PHASES
REWARD_COMPONENTS: tuple[str, ...] = ("stopped", "waiting_time", "queue_length", "pressure")
GROUP_NAMES: tuple[str, ...] = ("intersections",)
_PHASE_MOV = np.array(PHASE_MOVEMENTS, dtype=np.int64)  # [P, 2]
# movement m is green in phase p
PHASE_SERVES = np.zeros((N_PHASES, N_MOVEMENTS), dtype=bool)
PHASE_SERVES[np.arange(N_PHASES)[:, None], _PHASE_MOV] = True

MASK_CONTEXT_FIELDS: tuple[ContextField, ...] = (
    ContextField(
        "phase_pressure",
        ("I", "P"),
        "float32",
        "MaxPressure score of each phase: over its two movements, halted vehicles on the incoming "
        "lanes minus halted vehicles on the lanes they lead to",
    ),
    ContextField(
        "phase_queue",
        ("I", "P"),
        "float32",
        "halted vehicles (speed < 0.1 m/s) on the incoming lanes each phase would serve",
    ),
    ContextField(
        "phase_vehicles",
        ("I", "P"),
        "float32",
        "vehicles on the incoming lanes each phase would serve",
    ),
    ContextField(
        "phase_avail",
        ("I", "P"),
        "bool",
        "True where the phase serves at least one movement; an unavailable phase is never a valid "
        "action",
    ),
    ContextField("current_phase", ("I",), "int32", "index (0-7) of the phase shown now"),
    ContextField(
        "current_phase_onehot", ("I", "P"), "float32", "the current phase as a one-hot vector"
    ),
    ContextField(
        "green_time",
        ("I",),
        "float32",
        "seconds the current phase has been green (10 after a switch, +15 for each decision it is "
        "kept)",
    ),
    ContextField(
        "movement_vehicles",
        ("I", "M"),
        "float32",
        "vehicles on the incoming lanes of each movement",
    ),
    ContextField(
        "movement_halting",
        ("I", "M"),
        "float32",
        "halted vehicles on the incoming lanes of each movement",
    ),
    ContextField(
        "movement_queue_length",
        ("I", "M"),
        "float32",
        "queue length in metres on the incoming lanes of each movement",
    ),
    ContextField(
        "movement_waiting_time",
        ("I", "M"),
        "float32",
        "sum of the accumulated waiting times (s) of the vehicles on each movement's incoming "
        "lanes",
    ),
    ContextField(
        "movement_occupancy",
        ("I", "M"),
        "float32",
        "mean fraction (0-1) of each incoming lane's length covered by vehicles",
    ),
    ContextField(
        "movement_flow",
        ("I", "M"),
        "float32",
        "vehicles that left each movement's incoming lanes during the last 15-s decision",
    ),
    ContextField(
        "movement_pressure",
        ("I", "M"),
        "float32",
        "halted vehicles on each movement's incoming lanes minus those on the lanes it leads to",
    ),
    ContextField(
        "movement_exists",
        ("I", "M"),
        "bool",
        "True where the intersection has lanes for the movement",
    ),
    ContextField("step", (), "int32", "decisions already taken in this episode"),
    ContextField(
        "steps_left", (), "int32", "decisions left in this episode, including the current one"
    ),
)


@dataclasses.dataclass(frozen=True, eq=False)
class LayoutIndex:
    """Lane bookkeeping for one net: which lanes to measure and how they aggregate.

    Attributes:
        layout: the standardised net.
        lanes: measured lanes, incoming lanes first (``n_incoming`` of them), then outgoing-only.
        n_incoming: number of incoming lanes at the front of ``lanes``.
        matrix: ``float32 [18 I, n_lanes]`` 0/1 aggregation rows: movement in-lanes (8 I),
            movement out-lanes (8 I), intersection in-lanes (I), intersection out-lanes (I).
        lanes_per_movement: ``[I, M]`` number of incoming lanes of each movement.
        movement_exists: ``bool [I, M]``.
        phase_avail: ``bool [I, P]``.
    """

    layout: NetLayout
    lanes: tuple[str, ...]
    n_incoming: int
    matrix: np.ndarray
    lanes_per_movement: np.ndarray
    movement_exists: np.ndarray
    phase_avail: np.ndarray

    @classmethod
    def from_layout(cls, layout: NetLayout) -> "LayoutIndex":
        """Build the index of a standardised net."""
        inters = layout.intersections
        incoming = list(dict.fromkeys(ln for it in inters for ln in it.incoming_lanes))
        outgoing = [
            ln
            for ln in dict.fromkeys(ln for it in inters for ln in it.outgoing_lanes)
            if ln not in incoming
        ]
        lanes = tuple(incoming + outgoing)
        col = {ln: j for j, ln in enumerate(lanes)}
        n = len(inters)
        mat = np.zeros((18 * n, len(lanes)), dtype=np.float32)
        for i, it in enumerate(inters):
            for m in range(N_MOVEMENTS):
                for ln in it.movement_lanes[m]:
                    mat[i * N_MOVEMENTS + m, col[ln]] = 1.0
                for ln in it.movement_out_lanes[m]:
                    mat[(n + i) * N_MOVEMENTS + m, col[ln]] = 1.0
            for ln in it.incoming_lanes:
                mat[16 * n + i, col[ln]] = 1.0
            for ln in it.outgoing_lanes:
                mat[17 * n + i, col[ln]] = 1.0
        per_mov = np.array([[len(x) for x in it.movement_lanes] for it in inters], dtype=np.float32)
        return cls(
            layout=layout,
            lanes=lanes,
            n_incoming=len(incoming),
            matrix=mat,
            lanes_per_movement=per_mov,
            movement_exists=per_mov > 0,
            phase_avail=np.array([it.phase_avail for it in inters], dtype=bool),
        )

    @property
    def n_intersections(self) -> int:
        """Number of agents."""
        return self.layout.n_intersections


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Aggregated measurements of a batch after one decision (all ``float32``).

    ``mov_*`` are ``[B, I, M]`` sums over a movement's incoming lanes (occupancy: mean);
    ``out_*`` over the lanes the movement leads to; ``in_*`` / ``tls_out_*`` are ``[B, I]`` sums
    over all incoming / outgoing lanes of the intersection (right-only lanes included).
    """

    mov_vehicles: np.ndarray
    mov_halting: np.ndarray
    mov_occupancy: np.ndarray
    mov_waiting_time: np.ndarray
    mov_queue_length: np.ndarray
    mov_flow: np.ndarray
    out_halting: np.ndarray
    in_vehicles: np.ndarray
    in_halting: np.ndarray
    in_waiting_time: np.ndarray
    in_queue_length: np.ndarray
    tls_out_halting: np.ndarray

    @property
    def mov_pressure(self) -> np.ndarray:
        """``[B, I, M]`` halted in minus halted out, per movement."""
        return self.mov_halting - self.out_halting


def measure(index: LayoutIndex, lane_stats: np.ndarray) -> Measurement:
    """Aggregate ``lane_stats [B, n_lanes, len(LANE_FEATURES)]`` into a :class:`Measurement`."""
    lane_stats = np.asarray(lane_stats, dtype=np.float32)
    f = {name: lane_stats[..., k] for k, name in enumerate(LANE_FEATURES)}
    queue = f["halting"] * (f["mean_length"] + MIN_GAP) * (f["halting"] > 0)
    derived = np.stack(
        [f["vehicles"], f["halting"], f["occupancy"], f["waiting_time"], queue, f["flow"]], axis=-1
    )
    agg = np.matmul(index.matrix, derived)  # [B, 18 I, 6]
    b, n = lane_stats.shape[0], index.n_intersections
    mov = agg[:, : 8 * n].reshape(b, n, N_MOVEMENTS, 6)
    out = agg[:, 8 * n : 16 * n].reshape(b, n, N_MOVEMENTS, 6)
    tin, tout = agg[:, 16 * n : 17 * n], agg[:, 17 * n :]
    return Measurement(
        mov_vehicles=mov[..., 0],
        mov_halting=mov[..., 1],
        mov_occupancy=mov[..., 2] / np.maximum(index.lanes_per_movement, 1.0),
        mov_waiting_time=mov[..., 3],
        mov_queue_length=mov[..., 4],
        mov_flow=mov[..., 5],
        out_halting=out[..., 1],
        in_vehicles=tin[..., 0],
        in_halting=tin[..., 1],
        in_waiting_time=tin[..., 3],
        in_queue_length=tin[..., 4],
        tls_out_halting=tout[..., 1],
    )


def per_phase(values: np.ndarray) -> np.ndarray:
    """Sum a ``[..., M]`` movement quantity over each phase's two movements: ``[..., P]``."""
    return values[..., _PHASE_MOV[:, 0]] + values[..., _PHASE_MOV[:, 1]]


def observation(index: LayoutIndex, m: Measurement, phase: np.ndarray) -> np.ndarray:
    """``float32 [B, I, OBS_DIM]`` (layout in the module docstring); ``phase`` is ``int [B, I]``."""
    lanes = np.maximum(index.lanes_per_movement, 1.0)
    raw = (
        np.stack(
            [
                m.mov_vehicles / lanes,
                m.mov_halting / lanes,
                m.mov_queue_length / lanes,
                m.mov_occupancy,
                m.mov_flow / lanes,
            ],
            axis=-1,
        )
        / _OBS_SCALE
    )
    onehot = np.eye(N_PHASES, dtype=np.float32)[phase]  # [B, I, P]
    green = PHASE_SERVES[phase].astype(np.float32)  # [B, I, M]
    exists = np.broadcast_to(index.movement_exists, green.shape).astype(np.float32)
    mov = np.concatenate(
        [raw * exists[..., None], green[..., None] * exists[..., None], exists[..., None]], axis=-1
    )
    avail = np.broadcast_to(index.phase_avail, onehot.shape).astype(np.float32)
    b, n = phase.shape
    return np.concatenate([mov.reshape(b, n, -1), onehot, avail], axis=-1).astype(np.float32)


def reward_components(m: Measurement) -> dict[str, np.ndarray]:
    """The components named in :data:`REWARD_COMPONENTS`, each ``float32 [B, I]``."""
    return {
        "stopped": m.in_halting,
        "waiting_time": m.in_waiting_time,
        "queue_length": m.in_queue_length,
        "pressure": m.in_halting - m.tls_out_halting,
    }


def reward(m: Measurement) -> np.ndarray:
    """``float32 [B, I]``: minus the stopped vehicles on each intersection's incoming lanes."""
    return -m.in_halting


def mask_context(
    index: LayoutIndex,
    m: Measurement,
    phase: np.ndarray,
    green_time: np.ndarray,
    step: int,
    decisions: int,
) -> MaskContext:
    """The batched mask context (numpy, leading axis ``B``) of :data:`MASK_CONTEXT_FIELDS`."""
    b = phase.shape[0]
    avail = np.broadcast_to(index.phase_avail, (b, *index.phase_avail.shape))
    exists = np.broadcast_to(index.movement_exists, (b, *index.movement_exists.shape))
    f32 = np.float32
    return MaskContext(
        {
            "phase_pressure": per_phase(m.mov_pressure).astype(f32),
            "phase_queue": per_phase(m.mov_halting).astype(f32),
            "phase_vehicles": per_phase(m.mov_vehicles).astype(f32),
            "phase_avail": avail.copy(),
            "current_phase": phase.astype(np.int32),
            "current_phase_onehot": np.eye(N_PHASES, dtype=f32)[phase],
            "green_time": green_time.astype(f32),
            "movement_vehicles": m.mov_vehicles.astype(f32),
            "movement_halting": m.mov_halting.astype(f32),
            "movement_queue_length": m.mov_queue_length.astype(f32),
            "movement_waiting_time": m.mov_waiting_time.astype(f32),
            "movement_occupancy": m.mov_occupancy.astype(f32),
            "movement_flow": m.mov_flow.astype(f32),
            "movement_pressure": m.mov_pressure.astype(f32),
            "movement_exists": exists.copy(),
            "step": np.full((b,), step, dtype=np.int32),
            "steps_left": np.full((b,), decisions - step, dtype=np.int32),
        }
    )


DESCRIPTION = (
    "Traffic-signal control in SUMO. Each agent is a signalised intersection standardised to four "
    "relative arms N, E, S, W (N is an arbitrary reference approach; the others follow clockwise) "
    "and eight movements (left L and through T from each arm; right turns are always allowed). "
    "Every 15 s each intersection picks one of 8 phases, each giving green to two movements: "
    "WT-ET, NT-ST, WL-EL, NL-SL, WL-WT, EL-ET, SL-ST, NL-NT. Changing phase costs a 5-s yellow. A "
    "phase whose movements have no lanes is unavailable. The reward is minus the number of stopped "
    "vehicles on the intersection's incoming lanes; episodes last 3600 s."
)


def make_spec(
    name: str,
    index: LayoutIndex,
    decisions: int,
    description: str = DESCRIPTION,
    data_source: str = "",
) -> EnvSpec:
    """The :class:`EnvSpec` of a SUMO scenario (``is_jax=False``)."""
    n = index.n_intersections
    return EnvSpec(
        name=name,
        n_agents=n,
        obs_dim=OBS_DIM,
        n_actions=N_PHASES,
        agent_shape=(n,),
        action_values=tuple(float(p) for p in range(N_PHASES)),
        action_names=PHASE_NAMES,
        reward_components=REWARD_COMPONENTS,
        group_names=GROUP_NAMES,
        agent_group=np.zeros(n, dtype=np.int32),
        episode_length={"train": decisions, "validation": decisions, "test": decisions},
        context_fields=MASK_CONTEXT_FIELDS,
        dims={"I": n, "P": N_PHASES, "M": N_MOVEMENTS},
        is_jax=False,
        description=description,
        data_source=data_source,
    )
