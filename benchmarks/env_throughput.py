"""MABIM environment throughput: env steps/s and agent-steps/s over vmapped environment counts.

Usage::

    python benchmarks/env_throughput.py                                  # CPU defaults
    python benchmarks/env_throughput.py --host-devices 2 --envs 8 32 128 # envs over 2 CPU cores
    python benchmarks/env_throughput.py --envs 1024 4096 16384           # a GPU
    python benchmarks/env_throughput.py --baseline 33fd6e5 --envs 16     # A/B against a commit

Each (scenario, env count, mode) is one jitted program: ``E`` environments vmapped, time in a
``lax.scan``. The observation is materialised every step (the scan carries it, as a rollout
carries it to the policy) and the reward is accumulated per agent, so nothing is dead code. Modes:

- ``episode``: ``--episodes`` full train episodes per call, each a vmapped ``reset`` (random
  window and the 21-day warm-up included) followed by ``D`` (= horizon, 100) steps;
- ``step``: ``D`` steps from an already reset state (no resets), random actions;
- ``step-norng``: as ``step`` with fixed actions (precomputed): the environment alone.

Random actions come from a counter-based integer hash (murmur3's 32-bit finaliser of the step,
environment and agent indices, reduced to ``[0, A)`` with a multiply-shift): a few integer
operations per agent, far cheaper than ``jax.random.randint`` (``--rng`` selects threefry or rbg
for comparison; the costs are in ``benchmarks/README.md``).

``--baseline REV`` also times ``envs_jax`` as of a git revision (loaded from ``git archive`` under
another name) in turns with the working tree's, so both see the same machine load (an A/B that
stays meaningful on a shared machine).

When JAX sees several devices (GPUs, or CPU cores exposed with ``--host-devices``), the
environment axis is sharded over all of them (``E`` must be a multiple of the device count).
Compile time (``lower().compile()``) is reported apart from run time. The modes of one
(scenario, env count) are timed in turns, ``--repeats`` calls each after one warm-up call; a row
gives the median (and the best) throughput, the throughput per second of process CPU time (all
threads; on a shared machine the least load-sensitive number, best read with the process pinned
to one core, ``taskset -c 0``) and the ratio of CPU time to wall time.

Prints a table and writes ``benchmarks/results/env_throughput.json`` with the device, versions,
command, machine load and all timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

DEFAULT_SCENARIOS = ("mabim/standard-100", "mabim/3-echelons-100", "mabim/standard-500")
MODES = ("episode", "step", "step-norng")
RNGS = ("hash", "threefry", "rbg")
CPU_ENVS = (4, 16, 64)
ACCELERATOR_ENVS = (1024, 4096, 16384)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; errors are one line naming the fix."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=list(DEFAULT_SCENARIOS))
    parser.add_argument(
        "--envs",
        nargs="+",
        type=int,
        default=None,
        help=f"vmapped environment counts (default: {CPU_ENVS} on CPU, {ACCELERATOR_ENVS} on GPU)",
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--rng",
        nargs="+",
        default=["hash"],
        choices=RNGS,
        help="random-action generator(s); each adds rows of the random-action modes",
    )
    parser.add_argument(
        "--episodes", type=int, default=1, help="episodes per timed call in 'episode' mode"
    )
    parser.add_argument(
        "--repeats", type=int, default=9, help="timed calls per row (median and best reported)"
    )
    parser.add_argument(
        "--host-devices",
        type=int,
        default=None,
        help="CPU only: expose this many CPU devices (XLA_FLAGS) and shard the environments "
        "over them",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        default=None,
        help="also time envs_jax as of this git revision, in turns with the working tree's (A/B)",
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "env_throughput.json")
    )
    args = parser.parse_args(argv)
    if args.envs is not None and any(n < 1 for n in args.envs):
        parser.error(f"--envs must be positive, got {args.envs}")
    if args.repeats < 1 or args.episodes < 1:
        parser.error("--repeats and --episodes must be >= 1")
    if args.host_devices is not None and args.host_devices < 1:
        parser.error(f"--host-devices must be >= 1, got {args.host_devices}")
    return args


def set_host_devices(n: int | None) -> None:
    """Ask XLA for ``n`` CPU devices; must run before JAX initialises its backend."""
    if n is None:
        return
    flags = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if "xla_force_host_platform_device_count" not in f
    ]
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={n}"])


def _mix32(x: Any) -> Any:
    """murmur3's 32-bit finaliser: a bijective avalanche of ``uint32`` values."""
    import jax.numpy as jnp

    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def hash_actions(counter: Any, n_envs: int, n_agents: int, n_actions: int) -> Any:
    """Pseudo-random actions ``int32 [n_envs, n_agents]`` in ``[0, n_actions)`` from a step counter.

    One hash of ``(counter, env, agent)`` per agent: fine for a benchmark (not for science), and
    far cheaper on CPU than ``jax.random``.
    """
    import jax.numpy as jnp

    env = jnp.arange(n_envs, dtype=jnp.uint32)[:, None]
    agent = jnp.arange(n_agents, dtype=jnp.uint32)[None, :]
    salt = _mix32(
        jnp.asarray(counter, jnp.uint32) * jnp.uint32(0x9E3779B9) + jnp.uint32(0x7F4A7C15)
    )
    h = _mix32((env * jnp.uint32(n_agents) + agent) ^ salt)
    return ((h >> 16) * jnp.uint32(n_actions) >> 16).astype(jnp.int32)


def make_action_fn(
    rng: str, n_envs: int, n_agents: int, n_actions: int
) -> Callable[[Any, Any], Any]:
    """``actions(counter, key) -> int32 [n_envs, n_agents]`` for the chosen generator."""
    import jax

    if rng == "hash":
        return lambda counter, key: hash_actions(counter, n_envs, n_agents, n_actions)

    def sample(counter: Any, key: Any) -> Any:
        return jax.random.randint(
            jax.random.fold_in(key, counter), (n_envs, n_agents), 0, n_actions
        )

    return sample


def build_programs(
    env: Any, params: Any, n_envs: int, rng: str, episodes: int, sharding: Any = None
) -> dict[str, tuple[Callable, tuple]]:
    """The function and its arguments for each mode.

    ``sharding``: of the environment axis, or None.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    n_agents, n_actions, horizon = env.spec.n_agents, env.spec.n_actions, int(params.horizon)
    actions_of = make_action_fn(rng, n_envs, n_agents, n_actions)
    v_reset = jax.vmap(env.reset, in_axes=(0, None))
    v_step = jax.vmap(env.step, in_axes=(None, 0, 0, None))
    key0 = jax.random.key(0, impl="rbg" if rng == "rbg" else "threefry2x32")
    shard = (
        (lambda x: x)
        if sharding is None
        else (lambda x: jax.lax.with_sharding_constraint(x, sharding))
    )

    def run_steps(state, obs, counter, key, fixed, params):
        def body(carry, _):
            state, obs, ret, counter = carry
            actions = shard(fixed if fixed is not None else actions_of(counter, key))
            obs, state, reward, _, _ = v_step(None, state, actions, params)
            return (state, obs, ret + reward, counter + 1), None

        init = (state, obs, shard(jnp.zeros((n_envs, n_agents), obs.dtype)), counter)
        (state, obs, ret, counter), _ = jax.lax.scan(body, init, None, length=horizon)
        return state, obs, jnp.sum(ret), counter

    def episode_program(key, params):
        def one(carry, ep_key):
            total, counter = carry
            obs, state = v_reset(shard(jax.random.split(ep_key, n_envs)), params)
            _, obs, ep_total, counter = run_steps(state, obs, counter, key, None, params)
            return (total + ep_total + jnp.sum(obs[..., 0]), counter), None

        init = (jnp.zeros((), env.dtype), jnp.uint32(0))
        (total, _), _ = jax.lax.scan(one, init, jax.random.split(key, episodes))
        return total

    def step_program(state, obs, key, params):
        _, obs, total, _ = run_steps(state, obs, jnp.uint32(0), key, None, params)
        return total + jnp.sum(obs[..., 0])

    def norng_program(state, obs, actions, params):
        _, obs, total, _ = run_steps(state, obs, jnp.uint32(0), key0, actions, params)
        return total + jnp.sum(obs[..., 0])

    keys = jax.random.split(jax.random.key(1), n_envs)
    fixed = jnp.asarray(
        np.random.default_rng(0).integers(0, n_actions, (n_envs, n_agents)), jnp.int32
    )
    if sharding is not None:
        keys, fixed = jax.device_put(keys, sharding), jax.device_put(fixed, sharding)
    obs0, state0 = jax.jit(v_reset)(keys, params)
    return {
        "episode": (episode_program, (key0, params)),
        "step": (step_program, (state0, obs0, key0, params)),
        "step-norng": (norng_program, (state0, obs0, fixed, params)),
    }


def time_programs(
    programs: dict[Any, tuple[Callable, tuple]], repeats: int
) -> dict[Any, dict[str, Any]]:
    """Compile each program (``lower().compile()``, timed), warm each up once, then time ``repeats``
    calls of each in turns (round robin, so every program sees the same machine load)."""
    import jax

    compiled, results = {}, {}
    for name, (fn, args) in programs.items():
        t0 = time.perf_counter()
        compiled[name] = jax.jit(fn).lower(*args).compile()
        results[name] = {"compile_s": time.perf_counter() - t0, "all_s": [], "cpu_s": []}
        jax.block_until_ready(compiled[name](*args))
    for _ in range(repeats):
        for name, (_, args) in programs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(compiled[name](*args))
            results[name]["all_s"].append(time.perf_counter() - t0)
            results[name]["cpu_s"].append(time.process_time() - c0)
    for res in results.values():
        res["median_s"] = statistics.median(res["all_s"])
        res["min_s"] = min(res["all_s"])
        res["cpu_median_s"] = statistics.median(res.pop("cpu_s"))
    return results


def load_baseline(rev: str) -> Any:
    """``envs_jax`` as of git revision ``rev``, importable as ``envs_jax_baseline``.

    The package is extracted with ``git archive`` into a temporary directory and its absolute
    imports renamed; the SUMO family is left out (only MABIM is timed).
    """
    import atexit
    import importlib
    import io
    import re
    import shutil
    import subprocess
    import tarfile
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    try:
        blob = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", rev, "envs_jax"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise SystemExit(
            f"--baseline {rev}: git archive failed in {repo} ({err}); pass a commit of this "
            "repository"
        )
    root = Path(tempfile.mkdtemp(prefix="env_throughput_baseline_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(root, filter="data")
    pkg = root / "envs_jax_baseline"
    (root / "envs_jax").rename(pkg)
    shutil.rmtree(pkg / "sumo", ignore_errors=True)
    for f in pkg.rglob("*.py"):
        f.write_text(re.sub(r"\benvs_jax\b", "envs_jax_baseline", f.read_text()))
    sys.path.insert(0, str(root))
    return importlib.import_module("envs_jax_baseline")


def git_commit(path: Path) -> str | None:
    """The commit of the checkout holding ``path`` (``+dirty`` for local changes), or None."""
    import subprocess

    try:
        rev = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def device_info() -> dict[str, Any]:
    """The devices JAX runs on and the host."""
    import jax

    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "kind": dev.device_kind,
        "count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_host_devices(args.host_devices)
    import jax
    import jaxlib
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    import envs_jax

    dev = device_info()
    if args.host_devices is not None and (
        dev["platform"] != "cpu" or dev["count"] != args.host_devices
    ):
        raise SystemExit(
            f"--host-devices {args.host_devices}: JAX shows {dev['count']} {dev['platform']} "
            "device(s); use it on CPU only, with JAX not initialised before"
        )
    n_dev = dev["count"]
    env_counts = args.envs or list(CPU_ENVS if dev["platform"] == "cpu" else ACCELERATOR_ENVS)
    bad = [n for n in env_counts if n % n_dev]
    if bad:
        raise SystemExit(
            f"--envs {bad}: the environments are sharded over {n_dev} devices; use multiples "
            f"of {n_dev}"
        )
    sharding = None
    if n_dev > 1:
        sharding = NamedSharding(Mesh(np.array(jax.devices()), ("env",)), PartitionSpec("env"))

    load_before = os.getloadavg()
    print(
        f"device {dev['platform']} ({dev['kind']}) x{n_dev}, {dev['cpu_count']} CPUs, "
        f"load {load_before[0]:.1f}; jax {jax.__version__}"
    )
    print(
        f"{'scenario':<22} {'impl':<9} {'mode':<10} {'actions':<8} {'envs':>6} {'agents':>6} "
        f"{'compile s':>9} {'run s':>8} "
        f"{'env-steps/s':>12} {'agent-steps/s':>14} {'best agent/s':>14} {'per CPU-s':>14} "
        f"{'cpu/wall':>8}"
    )
    impls = {"current": envs_jax}
    if args.baseline is not None:
        impls[f"baseline {args.baseline}"] = load_baseline(args.baseline)
    rows = []
    for name in args.scenarios:
        envs = {impl: pkg.make(name) for impl, pkg in impls.items()}
        horizon = int(envs["current"].default_params("train").horizon)
        n_agents = envs["current"].spec.n_agents
        for n_envs in env_counts:
            programs = {}
            for impl, env in envs.items():
                params = env.default_params("train")
                for rng in args.rng:
                    built = build_programs(env, params, n_envs, rng, args.episodes, sharding)
                    for mode in args.modes:
                        if mode != "step-norng" or rng == args.rng[0]:
                            programs[(impl, mode, rng if mode != "step-norng" else "-")] = built[
                                mode
                            ]
            results = time_programs(programs, args.repeats)
            for (impl, mode, rng), res in results.items():
                steps = horizon * n_envs * (args.episodes if mode == "episode" else 1)
                env_sps = steps / res["median_s"]
                row = {
                    "impl": impl,
                    "scenario": name,
                    "mode": mode,
                    "rng": rng,
                    "envs": n_envs,
                    "agents": n_agents,
                    "devices": n_dev,
                    "steps_per_call": steps,
                    "env_steps_per_s": env_sps,
                    "agent_steps_per_s": env_sps * n_agents,
                    "agent_steps_per_s_best": steps * n_agents / res["min_s"],
                    "agent_steps_per_cpu_s": steps * n_agents / res["cpu_median_s"],
                    **res,
                }
                rows.append(row)
                print(
                    f"{name:<22} {impl.split()[-1]:<9} {mode:<10} {rng:<8} {n_envs:>6} "
                    f"{n_agents:>6} {res['compile_s']:>9.2f} "
                    f"{res['median_s']:>8.4f} {env_sps:>12.4g} {row['agent_steps_per_s']:>14.4g} "
                    f"{row['agent_steps_per_s_best']:>14.4g} {row['agent_steps_per_cpu_s']:>14.4g} "
                    f"{res['cpu_median_s'] / res['median_s']:>8.2f}",
                    flush=True,
                )

    pkg_dir = Path(envs_jax.__file__).parent
    record = {
        "benchmark": "env_throughput",
        "command": " ".join(
            ["python", "benchmarks/env_throughput.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "device": dev,
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "numpy": np.__version__,
        },
        "envs_jax": {"path": str(pkg_dir), "git_commit": git_commit(pkg_dir)},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "cpu_affinity": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rngs": args.rng,
        "episodes": args.episodes,
        "repeats": args.repeats,
        "baseline": args.baseline,
        "rows": [
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items() if k != "all_s"}
            | {"all_s": [round(t, 6) for t in r["all_s"]]}
            for r in rows
        ],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
