"""The GRU actor-critic learns: on mabim/tiny it clears the same bar as the MLP learning test.

Runs the real command line (``espark train --network gru`` then ``espark eval`` from the orbax
checkpoint, which restores the GRU parameters) with a CPU-sized budget: 40 updates of 4
environments x 100 days (16k environment steps), GRU width 32 with layer norm, learning rate
3e-3 (a fresh learner's greedy test return is far below the random policy's).
"""

import json

import jax
import pytest

import envs_jax
from envs_jax.mabim.baselines import run_baseline
from espark_jax.cli import main


def test_gru_beats_zero_order_policy_by_a_clear_margin(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--scenario", "mabim/tiny", "--mask", "none", "--network", "gru"]
    argv += ["--hidden", "32", "--layer-norm", "--steps", "1.6e4", "--num-envs", "4"]
    argv += ["--lr", "3e-3", "--seed", "0", "--eval-every", "20", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())["train_config"]
    assert (config["network"], config["hidden"], config["layer_norm"]) == ("gru", [32], True)
    trained = json.loads((out / "results.json").read_text())["evaluation"]["test"]
    ev_path = tmp_path / "ev.json"
    assert main(["eval", "--checkpoint", str(out), "--split", "test", "--json", str(ev_path)]) == 0
    restored = json.loads(ev_path.read_text())["test"]
    # the checkpoint restores the trained GRU learner exactly (greedy on the fixed test window)
    assert restored["greedy"]["return"] == pytest.approx(trained["greedy"]["return"], rel=1e-6)

    env = envs_jax.make("mabim/tiny")
    zero = run_baseline(env, "zero", jax.random.key(0))["return"]
    constant = run_baseline(env, "constant", jax.random.key(0))["return"]
    bar = zero + 0.4 * (constant - zero)  # the MLP learning test's bar
    for mode in ("greedy", "sampled"):
        ret = restored[mode]["return"]
        assert ret > bar, (mode, ret, zero, constant)
