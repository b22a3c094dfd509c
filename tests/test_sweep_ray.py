"""``espark sweep --executor ray`` on a real local Ray cluster (2 CPUs): a 2 x 2 sweep survives
a worker killed in the middle of a run, which resumes from its run directory."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from espark_jax.cli import main
from espark_jax.sweep_executors import attempts

ray = pytest.importorskip("ray", reason="the cluster extra: pip install -e '.[cluster]'")

TINY = [
    "--scenario",
    "mabim/tiny",
    "--provider",
    "template",
    "--k",
    "2",
    "--iterations",
    "1",
    "--steps",
    "200",
    "--num-envs",
    "2",
    "--no-progress",
]
NAMES = ["full-s0", "full-s1", "no-reward-factors-s0", "no-reward-factors-s1"]


def _kill_first_run_mid_way(root, killed: list, stop: threading.Event) -> None:
    """Kill the worker of the first run that has started (its run directory has a manifest)
    and not finished: SIGKILL, as when a node dies."""
    while not stop.is_set():
        for name in NAMES:
            starts = [r for r in attempts(root, name) if r["event"] == "start"]
            if (
                starts
                and (root / name / "manifest.json").is_file()
                and not (root / name / "results.json").is_file()
            ):
                time.sleep(0.5)  # inside the run: provider, checks or training
                os.kill(starts[-1]["pid"], signal.SIGKILL)
                killed.append((name, starts[-1]["pid"]))
                return
        time.sleep(0.2)


@pytest.mark.slow
def test_ray_sweep_survives_a_killed_worker(tmp_path, monkeypatch, capsys):
    # the runs share one compilation cache; workers inherit the environment
    monkeypatch.setenv("ESPARK_COMPILE_CACHE", str(tmp_path / "xla"))
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")  # compile-bound runs
    root = tmp_path / "sweep"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    killed: list = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_run_mid_way, args=(root, killed, stop))
    killer.start()
    try:
        argv = ["sweep", *TINY, "--variants", "full,no-reward-factors", "--seeds", "0,1"]
        argv += ["--sweep-dir", str(root), "--executor", "ray", "--cpus-per-run", "1"]
        assert main(argv) == 0
    finally:
        stop.set()
        killer.join()
        ray.shutdown()
    out = capsys.readouterr().out
    assert killed, "no worker was killed"
    victim = killed[0][0]
    for name in NAMES:
        events = attempts(root, name)
        finished = [r for r in events if r["event"] == "finish"]
        assert len(finished) == 1, (name, events)  # every run finished exactly once
        assert json.loads((root / name / "results.json").read_text())["scenario"] == "mabim/tiny"
        assert f"{name} finished: test return" in out
    starts = [r for r in attempts(root, victim) if r["event"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed"] and starts[0]["pid"] == killed[0][1]
    summary = (root / "summary.md").read_text()
    assert all(f"| {name} |" in summary for name in NAMES)
    assert "w/o reward factors" in summary
