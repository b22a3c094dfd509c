"""The non-learning reference policies shown beside every run, computed once and cached.

MABIM: constant (order the mean demand), base stock (static and dynamic) and (S, s) (static),
fitted on training windows and evaluated on the run's split (``envs_jax.mabim.baselines``).
SUMO: fixed-time and MaxPressure on the evaluation seeds of the split. Results are cached as
JSON under ``$ESPARK_CACHE_DIR/baselines`` (default ``~/.cache/espark-jax``), keyed by the
scenario, a hash of the split's data, the split and the seed, so a sweep pays for them once;
``ESPARK_BASELINE_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

MABIM_REFERENCE = ("constant", "base_stock_static", "base_stock_dynamic", "sS_static")
SUMO_REFERENCE = ("fixed-time", "max-pressure")
LABELS = {
    "constant": "constant (1 x mean demand)",
    "base_stock_static": "base stock (static)",
    "base_stock_dynamic": "base stock (dynamic)",
    "sS_static": "(S, s) (static)",
    "fixed-time": "fixed-time",
    "max-pressure": "MaxPressure",
}


def cache_dir() -> Path | None:
    """Where baseline results are cached, or None when caching is off."""
    if os.environ.get("ESPARK_BASELINE_CACHE", "") == "0":
        return None
    root = os.environ.get("ESPARK_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "espark-jax"
    )
    return Path(root) / "baselines"


def _fingerprint(env: Any, split: str, seed: int, names: tuple[str, ...], episodes: int) -> str:
    """A hash of everything a baseline result depends on (the split's data included)."""
    h = hashlib.sha256()
    h.update(
        json.dumps([env.spec.name, env.spec.data_source, split, seed, names, episodes]).encode()
    )
    config = getattr(env, "config", None)  # settings outside the arrays (clip_negative_stock)
    if dataclasses.is_dataclass(config):
        h.update(json.dumps(dataclasses.asdict(config), default=str).encode())
    if env.spec.is_jax:
        for leaf in jax.tree_util.tree_leaves(env.default_params(split)):
            h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()[:24]


def _mabim(env: Any, split: str, seed: int, episodes: int) -> dict[str, dict[str, Any]]:
    from envs_jax.mabim.baselines import run_baseline

    out = {}
    for name in MABIM_REFERENCE:
        res = run_baseline(env, name, key=jax.random.key(seed), split=split)
        out[name] = {"return": res["return"], "components": res["components"]}
    return out


def _sumo(env: Any, split: str, seed: int, episodes: int) -> dict[str, dict[str, Any]]:
    from envs_jax.sumo.baselines import FixedTime, MaxPressure, evaluate
    from espark_jax.ippo.host_source import SPLIT_SEEDS

    seeds = [SPLIT_SEEDS[split] + e for e in range(max(1, episodes))]
    out = {}
    for name, ctrl in (("fixed-time", FixedTime()), ("max-pressure", MaxPressure())):
        res = evaluate(env, ctrl, seeds)
        metrics = {k: v for k, v in res["mean"].items() if k != "return"}
        out[name] = {"return": res["mean"]["return"], "metrics": metrics}
    return out


_BY_FAMILY: dict[str, Callable[..., dict[str, dict[str, Any]]]] = {"mabim": _mabim, "sumo": _sumo}
# Families whose result depends on ``episodes``: a MABIM episode is the split's whole horizon,
# one per split and key, so its cache entry is shared by every ``eval_envs``.
_USES_EPISODES = frozenset({"sumo"})


def reference_baselines(
    env: Any, split: str = "test", seed: int = 0, episodes: int = 1
) -> dict[str, dict[str, Any]]:
    """``{name: {"return", "components" | "metrics"}}`` of the family's reference policies on
    ``split`` (empty for a family without any), from the cache when it holds them."""
    family = env.spec.name.split("/", 1)[0]
    run = _BY_FAMILY.get(family)
    if run is None:
        return {}
    names = MABIM_REFERENCE if family == "mabim" else SUMO_REFERENCE
    keyed_episodes = episodes if family in _USES_EPISODES else 1
    fingerprint = _fingerprint(env, split, seed, names, keyed_episodes)
    return _cached(env, fingerprint, lambda: run(env, split, seed, episodes))


def reference_traces(
    env: Any, splits: tuple[str, ...] = ("test",), seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """Day by day, the episodes of :func:`reference_baselines` on each split (MABIM; empty for
    other families): ``{split: {name: {"return", "days", "reward", "components", "flows"}}}``
    (per day and warehouse; the same fit, key and episode, one fit for all splits:
    :func:`envs_jax.mabim.baselines.trace_baseline`), cached."""
    if env.spec.name.split("/", 1)[0] != "mabim":
        return {}
    from envs_jax.mabim.baselines import trace_baseline

    def run() -> dict[str, dict[str, dict[str, Any]]]:
        key = jax.random.key(seed)
        by_name = {n: trace_baseline(env, n, key=key, splits=splits) for n in MABIM_REFERENCE}
        return {s: {n: by_name[n][s] for n in MABIM_REFERENCE} for s in splits}

    names = ("traces", *MABIM_REFERENCE)
    parts = "".join(_fingerprint(env, s, seed, names, 1) for s in splits)
    return _cached(env, hashlib.sha256(parts.encode()).hexdigest()[:24], run)


def _cached(env: Any, fingerprint: str, compute: Callable[[], Any]) -> Any:
    """``compute()``, or its result cached under ``fingerprint`` (see the module doc)."""
    root = cache_dir()
    path = None
    if root is not None:
        path = root / f"{fingerprint}.json"
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))["results"]
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is computed again
    results = compute()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"scenario": env.spec.name, "results": results}))
            os.replace(tmp, path)
        except OSError:
            pass  # caching is an optimisation; a read-only home directory is fine
    return results


def change_ratio(value: float, reference: float) -> float:
    """The paper's change ratio vs IPPO: ``(value - reference) / |reference|``."""
    return (value - reference) / abs(reference) if reference else float("nan")
