"""``espark sweep``: runs every (variant, seed), skips finished runs, refuses a mismatched
directory."""

from __future__ import annotations

import json
import sys

import pytest

from espark_jax.cli import main

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


def test_sweep_runs_skips_and_summarises(tmp_path, capsys):
    root = tmp_path / "sweep"
    argv = [
        "sweep",
        *TINY,
        "--variants",
        "full,no-reward-factors",
        "--seeds",
        "0",
        "--sweep-dir",
        str(root),
    ]
    assert main(argv) == 0
    for name in ("full-s0", "no-reward-factors-s0"):
        results = json.loads((root / name / "results.json").read_text())
        assert results["config"]["seed"] == 0 and results["scenario"] == "mabim/tiny"
    assert (
        json.loads((root / "no-reward-factors-s0" / "results.json").read_text())["config"][
            "reward_factors"
        ]
        is False
    )
    summary = (root / "summary.md").read_text()
    assert "| mabim/tiny | template-mutation (no LLM) | full |" in summary
    assert "w/o reward factors" in summary
    capsys.readouterr()

    assert main(argv) == 0  # everything finished: nothing runs again
    assert capsys.readouterr().out.count("finished earlier: skipped") == 2

    changed = [a if a != "200" else "400" for a in argv]  # other --steps, same directory
    with pytest.raises(SystemExit, match="was made with another configuration"):
        (root / "full-s0" / "results.json").unlink()
        main(changed)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--variants", "full,bogus"], "unknown variant(s) bogus"),
        (["--seeds", "0,x"], "--seeds expects integers"),
        (["--scenario", "mabim/nope"], "unknown scenario 'mabim/nope'"),
    ],
)
def test_bad_input_is_one_line(extra, message, tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["sweep", *TINY, "--sweep-dir", str(tmp_path / "s"), *extra])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--address", "head:6379"], "--address need --executor ray"),
        (["--executor", "ray", "--cpus-per-run", "-1"], "--cpus-per-run must be >= 0"),
        (["--executor", "ray", "--retries", "-1"], "--retries must be >= 0"),
    ],
)
def test_bad_executor_options_are_one_line(extra, message, tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["sweep", *TINY, "--sweep-dir", str(tmp_path / "s"), *extra])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "s").exists()


def test_ray_executor_without_ray_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(SystemExit) as err:
        main(["sweep", *TINY, "--sweep-dir", str(tmp_path / "s"), "--executor", "ray"])
    assert str(err.value) == "espark sweep: --executor ray needs Ray: pip install -e '.[cluster]'"
