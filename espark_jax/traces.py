"""Day-by-day traces of the test episode, for the paper's figures (``traces.json`` of a run).

At the end of a run (:meth:`espark_jax.search.Search.final_evaluation`, and a pruning-baseline
run of :mod:`espark_jax.pruning_run`) the learners are evaluated once more on the test split
(no masks, greedy and sampled, the same key as the results) with the trace output of
:func:`espark_jax.ippo.evaluate.make_evaluate`, and the reference baselines are replayed day by
day (:func:`espark_jax.baselines.reference_traces`). ``traces.json`` holds::

    {"split": "test", "days": T, "group_names": [...], "action_values": [...],
     "policies": {role: {"greedy" | "sampled": trace}},   # role: "selected", "control"
     "baselines": {name: trace}}
    trace = {"return": float,
             "daily": {"reward": {group: [T]}, "components": {name: {group: [T]}},
                       "flows": {name: {group: [T]}}},
             "action_counts": {group: [A]}}      # learners only: decisions per action

Values are means over the evaluation environments of sums over each group's agents (MABIM:
warehouses; flows: demand, sale, excess, ...). Host (SUMO) environments have no traces: their
figures read the trip metrics of ``results.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from espark_jax.baselines import reference_baselines, reference_traces
from espark_jax.ippo.compiled import TimedJit
from espark_jax.ippo.evaluate import make_evaluate
from espark_jax.runs import read_json, write_json

TRACES = "traces.json"


def _by_group(values: np.ndarray, groups: tuple[str, ...]) -> dict[str, list[float]]:
    """``[T, G]`` -> ``{group: [T]}``."""
    return {g: values[:, i].tolist() for i, g in enumerate(groups)}


def learner_traces(
    trainer: Any, learners: dict[str, Any], key: jax.Array, split: str, num_envs: int
) -> dict[str, dict[str, Any]]:
    """Traces of learners ``{role: {"params", ...}}`` on ``split``, greedy and sampled, in one
    compiled program (all learners stacked; the same key for each): ``{role: {mode: trace}}``.
    Empty for host environments."""
    env, spec = trainer.env, trainer.spec
    if not spec.is_jax or not learners:
        return {}
    roles = list(learners)
    params = jax.tree_util.tree_map(
        lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]),
        *[learners[r]["params"] for r in roles],
    )
    length = int(spec.episode_length[split])
    fn = make_evaluate(env, trainer.apply_fn, length, num_envs, trace=True)
    program = TimedJit(fn, "evaluate_trace", trainer.log)
    env_params = env.default_params(split)
    groups = tuple(spec.group_names)
    out: dict[str, dict[str, Any]] = {r: {} for r in roles}
    for greedy in (True, False):
        raw = jax.device_get(program(params, key, env_params, jnp.asarray(greedy)))
        tr = raw["trace"]
        for k, role in enumerate(roles):

            def mean(x: Any, k: int = k) -> np.ndarray:  # [T, K, E, G] -> [T, G]
                return np.asarray(x, np.float64)[:, k].mean(axis=1)

            counts = np.asarray(tr["action_counts"], np.float64)[k].mean(axis=0)  # [G, A]
            out[role]["greedy" if greedy else "sampled"] = {
                "return": float(np.asarray(raw["return"], np.float64)[k].mean()),
                "daily": {
                    "reward": _by_group(mean(tr["reward"]), groups),
                    "components": {
                        n: _by_group(mean(v), groups) for n, v in tr["components"].items()
                    },
                    "flows": {n: _by_group(mean(v), groups) for n, v in tr["flows"].items()},
                },
                "action_counts": {g: counts[i].tolist() for i, g in enumerate(groups)},
            }
    return out


def baseline_traces(
    env: Any, splits: tuple[str, ...], seed: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """The reference baselines day by day in the trace format (no action counts), per split:
    ``{split: {name: trace}}`` (empty for families without traces)."""
    return {
        split: _baseline_traces(env, traces)
        for split, traces in reference_traces(env, splits, seed).items()
    }


def _baseline_traces(env: Any, traces: dict[str, Any]) -> dict[str, dict[str, Any]]:
    groups = tuple(env.spec.group_names)
    out = {}
    for name, tr in traces.items():

        def by_group(part: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
            return {n: _by_group(np.asarray(v, np.float64), groups) for n, v in part.items()}

        out[name] = {
            "return": tr["return"],
            "daily": {
                "reward": _by_group(np.asarray(tr["reward"], np.float64), groups),
                "components": by_group(tr["components"]),
                "flows": by_group(tr["flows"]),
            },
        }
    return out


def final_traces(
    trainer: Any, learners: dict[str, Any], key: jax.Array, seed: int, num_envs: int
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """What the figures of a finished run need beyond ``results.json``: the content of
    ``traces.json`` (test split) and the reference baselines on the validation split (the
    split of the selection scores, for the learning curves)."""
    env, spec = trainer.env, trainer.spec
    refs = baseline_traces(env, ("test", "validation"), seed)  # one fit for both splits
    traces = {
        "split": "test",
        "days": int(spec.episode_length["test"]),
        "group_names": list(spec.group_names),
        "action_values": [float(a) for a in np.asarray(spec.action_values).reshape(-1)],
        "action_names": list(spec.action_names or ()),
        "policies": learner_traces(trainer, learners, key, "test", num_envs),
        "baselines": refs.get("test", {}),
    }
    if "validation" in refs:
        validation = {
            name: {
                "return": tr["return"],
                "components": {  # episode totals, as reference_baselines gives them
                    c: float(sum(np.sum(v) for v in by_group.values()))
                    for c, by_group in tr["daily"]["components"].items()
                },
            }
            for name, tr in refs["validation"].items()
        }
    else:
        validation = reference_baselines(env, "validation", seed, num_envs)
    return traces, validation


def write_traces(run_path: str | Path, traces: dict[str, Any]) -> Path:
    """Write ``traces.json`` into a run directory."""
    return write_json(Path(run_path) / TRACES, traces)


def read_traces(run_path: str | Path) -> dict[str, Any] | None:
    """A run's ``traces.json``, or None when it has none (older runs, host environments)."""
    path = Path(run_path) / TRACES
    return read_json(path) if path.is_file() else None
