"""``benchmarks/ippo_diagnosis.py``: the per-warehouse numbers of a trace, hand-computed."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from ippo_diagnosis import summarise  # noqa: E402


def _trace() -> dict:
    """Two warehouses (head, tail), three days; the head is never asked for anything."""
    flows = {
        "demand": {"head": [0, 0, 0], "tail": [10, 20, 10]},
        "replenish": {"head": [5, 0, 0], "tail": [30, 0, 30]},
        "arrived": {"head": [0, 0, 0], "tail": [0, 30, 10]},
        "excess": {"head": [0, 0, 0], "tail": [0, 6, 4]},
        "sale": {"head": [0, 0, 0], "tail": [10, 15, 5]},
    }
    zeros = {"head": [0, 0, 0], "tail": [0, 0, 0]}
    components = {
        "profit": {"head": [0, 0, 0], "tail": [100, 150, 50]},
        "excess_cost": {"head": [0, 0, 0], "tail": [0, 3, 2]},
        "backlog_cost": {"head": [0, 0, 0], "tail": [0, 1, 1]},
        "order_cost": {"head": [10, 0, 0], "tail": [10, 0, 10]},
        "holding_cost": zeros,
    }
    return {
        "return": 123.0,
        "daily": {"flows": flows, "components": components},
        "action_counts": {"head": [2, 1, 0], "tail": [1, 0, 2]},
    }


def test_summary_is_the_hand_computed_one():
    out = summarise(_trace(), np.array([0.0, 1.0, 4.0]))
    assert out["return"] == 123.0
    assert math.isnan(out["orders_over_demand"][0]) and out["orders_over_demand"][1] == 1.5
    assert math.isnan(out["destroyed_share"][0]) and out["destroyed_share"][1] == 0.25
    assert out["fill"][1] == 0.75
    assert out["costs"] == {
        "excess_cost": 5.0, "backlog_cost": 2.0, "order_cost": 30.0, "holding_cost": 0.0
    }  # fmt: skip
    assert out["profit"] == 300.0
    assert np.allclose(out["zero_order_share"], [2 / 3, 1 / 3])
    assert np.allclose(out["mean_multiplier"], [1 / 3, 8 / 3])


def test_a_reference_policy_has_no_action_numbers():
    trace = _trace()
    del trace["action_counts"]
    out = summarise(trace)
    assert "zero_order_share" not in out and "mean_multiplier" not in out


def test_smoke_run_resumes_and_draws(tmp_path):
    """The whole benchmark on mabim/tiny: JSON, figure; ``--resume`` keeps the finished run."""
    import json
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ippo_diagnosis.py"
    out = tmp_path / "diag.json"
    cmd = [sys.executable, str(script), "--smoke", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    first = json.loads(out.read_text())
    (run,) = first["runs"]
    assert run["scenario"] == "mabim/tiny" and [p["budget"] for p in run["points"]] == [200]
    for mode in ("greedy", "sampled"):
        assert len(run["points"][0][mode]) == 2  # one summary per seed
        for summary in run["points"][0][mode]:
            assert 0.0 <= summary["fill"][0] <= 1.0 and summary["orders_over_demand"][0] >= 0.0
            assert 0.0 <= summary["zero_order_share"][0] <= 1.0
    assert set(run["references"]) == {"base_stock_dynamic", "sS_static"}
    assert out.with_suffix(".png").stat().st_size > 10_000
    again = subprocess.run([*cmd, "--resume"], check=True, capture_output=True, text=True)
    assert "kept from" in again.stdout
    assert json.loads(out.read_text())["runs"] == first["runs"]
