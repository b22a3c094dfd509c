"""Multi-host runs: two CPU processes (2 forced host devices each, gloo collectives) in one
``jax.distributed`` job give bit for bit what one process with 4 forced host devices gives:
``espark train`` of K = 4 learners for 2 updates (joined through its flags: every learner's
metrics at every update, the evaluations, the saved learner) and a two-iteration ``espark run``
(scores, metrics, checkpoints, test results; process 0 alone writes the run directory)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from espark_jax import distributed
from espark_jax.checkpoints import restore_tree

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    n, pid, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    import jax
    jax.config.update("jax_compilation_cache_dir", str(out / "xla"))  # shared by the 2 parts
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    from espark_jax.cli import main
    job = ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", str(n),
           "--process-id", str(pid), "--coordinator-timeout", "120"]
    masks = ("none", "random", "ss-pruning", "upbound")
    # 1. espark train joins the job through its flags
    main(["train", "--scenario", "mabim/tiny", "--mask", ",".join(masks), "--steps", "400",
          "--num-envs", "2", "--hidden", "8", "--updates-per-chunk", "1", "--eval-every", "1",
          "--no-progress", "--out", str(out / "train"), *(job if n > 1 else [])])
    from espark_jax.cli_search import execute_run
    from espark_jax.search_config import SearchConfig
    assert jax.process_count() == n and len(jax.devices()) == 4, jax.devices()
    # 2. an eSpark run: process 0 generates, checks and writes; process 1 follows
    run = SearchConfig.from_preset("quick", scenario="mabim/tiny", provider="template", k=4,
                                   iterations=2, steps=800, num_envs=2, hidden=(8,), lr=5e-4,
                                   eval_envs=4)
    execute_run(run, out / "run", resume=False, progress=False)
    print("process", pid, "done")
""")

TIMING = ("seconds", "agent_steps_per_s", "train_seconds", "compile_seconds", "timings")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(n: int, pid: int, port: int, out, devices: int) -> subprocess.Popen:
    out.mkdir(parents=True)
    # optimisation level 0: these programs are dominated by XLA compile time
    flags = f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-c", SCRIPT, str(n), str(pid), str(port), str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def _json_lines(path):
    return [_without_timings(json.loads(line)) for line in path.read_text().splitlines()]


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.slow
def test_two_processes_equal_one_process_with_four_devices(tmp_path):
    port = _free_port()
    one, lead, follow = tmp_path / "one", tmp_path / "lead", tmp_path / "follow"
    procs = [
        _start(1, 0, port, one, 4),
        _start(2, 0, port, lead, 2),
        _start(2, 1, port, follow, 2),
    ]
    logs = [p.communicate(timeout=600)[0].decode(errors="replace") for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    assert "process 1 done" in logs[2]

    # espark train: metrics of every learner and update, evaluations, the saved learner
    assert _json_lines(one / "train" / "metrics.jsonl") == _json_lines(
        lead / "train" / "metrics.jsonl"
    )
    results = [json.loads((d / "train" / "results.json").read_text()) for d in (one, lead)]
    assert _without_timings(results[0]) == _without_timings(results[1])
    ca, cb = (_restore(d / "train" / "checkpoint") for d in (one, lead))
    assert len(ca) == len(cb) and all(_same_bits(x, y) for x, y in zip(ca, cb))

    # espark run: every iteration's scores and metrics, the final test results, checkpoints
    for it in ("iter_01", "iter_02"):
        sa, sb = (json.loads((d / "run" / it / "summary.json").read_text()) for d in (one, lead))
        assert _without_timings(sa) == _without_timings(sb)
        assert _json_lines(one / "run" / it / "metrics.jsonl") == _json_lines(
            lead / "run" / it / "metrics.jsonl"
        )
        ca, cb = (_restore(d / "run" / it / "best") for d in (one, lead))
        assert len(ca) == len(cb) and all(_same_bits(x, y) for x, y in zip(ca, cb))
    ra, rb = (json.loads((d / "run" / "results.json").read_text()) for d in (one, lead))
    assert (
        ra["test"] == rb["test"] and ra["iterations"][1]["scores"] == rb["iterations"][1]["scores"]
    )
    manifest = json.loads((lead / "run" / "manifest.json").read_text())
    assert manifest["processes"] == 2
    # process 1 wrote nothing (its --out and run directory stay empty)
    assert sorted(p.name for p in follow.iterdir()) == ["xla"]


def _restore(path) -> list:
    """The leaves of a saved learner, as saved."""
    import jax
    import orbax.checkpoint as ocp

    meta = ocp.StandardCheckpointer().metadata(path)
    meta = getattr(meta, "item_metadata", meta)
    like = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), meta)
    return jax.tree_util.tree_leaves(restore_tree(path, like))


@pytest.mark.parametrize(
    "kwargs, environ, message",
    [
        (dict(coordinator_address="127.0.0.1:1234"), {}, "needs --num-processes, --process-id"),
        (dict(num_processes=2, process_id=2, coordinator_address="h:1"), {}, "0..1, got 2"),
        (dict(coordinator_address="nohost", num_processes=2, process_id=0), {}, "HOST:PORT"),
        ({}, {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES must be an integer"),
    ],
)
def test_bad_job_settings_are_one_line(kwargs, environ, message):
    with pytest.raises(ValueError, match=message) as err:
        distributed.job_settings(**kwargs, environ=environ)
    assert "\n" not in str(err.value)


def test_job_settings_from_flags_environment_and_slurm():
    assert distributed.job_settings(environ={}) is None  # alone
    env = {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert distributed.job_settings(environ=env) == distributed.JobSettings("h:1", 2, 1)
    assert distributed.job_settings(num_processes=1, environ=env) is None  # flag wins: alone
    slurm = {
        "SLURM_JOB_ID": "7",
        "SLURM_STEP_NODELIST": "node[1-2]",
        "SLURM_NTASKS": "2",
        "SLURM_PROCID": "0",
    }
    got = distributed.job_settings(environ=slurm)
    assert got.cluster == "slurm" and got.coordinator_address is None  # JAX fills the rest
    assert distributed.job_settings(environ={**slurm, "SLURM_NTASKS": "1"}) is None


def test_unreachable_coordinator_is_one_line():
    script = textwrap.dedent(f"""
        from espark_jax.cli import main
        main(["train", "--scenario", "mabim/tiny", "--coordinator-address",
              "127.0.0.1:{_free_port()}", "--num-processes", "2", "--process-id", "1",
              "--coordinator-timeout", "2"])
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("espark train: cannot reach the coordinator at 127.0.0.1:")
    assert "--coordinator-address HOST:PORT" in last


def test_the_mesh_takes_devices_of_every_process():
    from types import SimpleNamespace

    from espark_jax.ippo.sharding import spread_devices

    devs = [SimpleNamespace(id=i, process_index=i // 2) for i in range(4)]  # 2 processes x 2
    assert [d.id for d in spread_devices(devs, 2)] == [0, 2]  # one of each process
    assert [d.id for d in spread_devices(devs, 4)] == [0, 1, 2, 3]
    assert [d.id for d in spread_devices(devs[:2], 1)] == [0]  # one process: the first
    with pytest.raises(ValueError, match="cannot be shared by 2 processes"):
        spread_devices(devs, 3)
