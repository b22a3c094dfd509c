"""The paper's tables and figures: a tiny sweep (template eSpark + a pruning baseline, two seeds)
through ``espark sweep`` and ``espark table``; table numbers against the runs' results.json;
hand-made SUMO results through the same tables; traces against the evaluations they extend."""

from __future__ import annotations

import csv
import json

import jax
import numpy as np
import pytest
from test_cli_sweep import TINY as SWEEP_OPTIONS

from espark_jax.cli import main
from espark_jax.report_tables import Table, collect_runs, sumo_tables, to_latex, to_markdown

SEEDS = (0, 1)
TINY = SWEEP_OPTIONS[2:]  # the tiny sweep options without --scenario mabim/tiny
assert SWEEP_OPTIONS[:2] == ["--scenario", "mabim/tiny"]


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper") / "sweep"
    argv = ["sweep", "--scenarios", "mabim/tiny", *TINY, "--variants", "template,upbound"]
    assert main([*argv, "--seeds", ",".join(map(str, SEEDS)), "--sweep-dir", str(root)]) == 0
    results = {
        (v, s): json.loads((root / f"tiny-{v}-s{s}" / "results.json").read_text())
        for v in ("template", "upbound")
        for s in SEEDS
    }
    return root, results


@pytest.mark.slow
def test_sweep_runs_every_scenario_variant_and_seed(sweep):
    root, results = sweep
    for (variant, seed), res in results.items():
        run = root / f"tiny-{variant}-s{seed}"
        assert res["scenario"] == "mabim/tiny" and res["config"]["seed"] == seed
        for name in ("traces.json", "summary.png", "summary.csv"):
            assert (run / name).is_file(), (run, name)
        assert set(res["baselines"]) == set(res["baselines_validation"])
    spark, prune = results[("template", 0)], results[("upbound", 0)]
    assert spark["control"] is not None and prune["control"] is None
    assert prune["pruning"] == "upbound" and prune["mask"] == "upbound"
    # the pruning baseline trains as many environment steps as one eSpark candidate
    steps = sum(h["env_steps_per_candidate"] for h in _summaries(root / "tiny-template-s0"))
    assert prune["env_steps_per_learner"] == steps
    # same format: the tables read both alike
    assert set(prune["test"]) == set(spark["test"]) == {"greedy", "sampled"}
    assert prune["baselines"] == spark["baselines"]  # same scenario, seed and split


def _summaries(run):
    return [json.loads(p.read_text()) for p in sorted(run.glob("iter_*/summary.json"))]


@pytest.mark.slow
def test_table_numbers_equal_the_runs_results(sweep):
    root, results = sweep
    cells = {(r["table"], r["method"], r["column"]): r for r in _csv(root / "tables.csv")}

    def check(table, method, values):
        cell = cells[(table, method, "tiny")]
        assert float(cell["mean"]) == pytest.approx(np.mean(values), rel=1e-12)
        assert float(cell["std"]) == pytest.approx(np.std(values), rel=1e-9, abs=1e-9)
        assert int(cell["seeds"]) == len(values)

    def ret(variant, part, mode="greedy"):
        return [results[(variant, s)][part][mode]["return"] for s in SEEDS]

    check("table1", "eSpark w/o LLM", ret("template", "test"))
    check("table1", "IPPO", ret("template", "control"))
    check("table1", "upbound pruning", ret("upbound", "test"))
    bs = [results[("template", s)]["baselines"]["base_stock_static"]["return"] for s in SEEDS]
    check("table1", "base stock (static)", bs)
    # the change ratio vs IPPO of the eSpark runs is the one each run recorded
    recorded = [results[("template", s)]["change_vs_ippo"]["greedy"] for s in SEEDS]
    check("change_vs_ippo", "eSpark w/o LLM", recorded)
    ippo = ret("template", "control")
    prune = [(v - i) / abs(i) for v, i in zip(ret("upbound", "test"), ippo)]
    check("change_vs_ippo", "upbound pruning", prune)

    md = (root / "tables.md").read_text()
    best = max(
        (float(c["mean"]), m) for (t, m, _), c in cells.items() if t == "table1"
    )  # the best mean of Table 1 is bold
    assert f"| {best[1]} | **" in md and "<u>" in md
    tex = (root / "table1.tex").read_text()
    assert "\\textbf{" in tex and "\\underline{" in tex and "\\begin{tabular}{lr}" in tex
    per_run = _csv(root / "runs.csv")
    spark0 = [
        r
        for r in per_run
        if r["run"] == "tiny-template-s0" and r["role"] == "selected" and r["mode"] == "sampled"
    ]
    assert float(spark0[0]["value"]) == results[("template", 0)]["test"]["sampled"]["return"]


@pytest.mark.slow
def test_figures_and_their_numbers(sweep, capsys):
    root, results = sweep
    out = root / "again"
    assert main(["table", str(root), "--out", str(out)]) == 0
    assert "Table 1" in capsys.readouterr().out
    for name in ("fig2_action_frequency_tiny", "fig4_daily_tiny"):
        assert (out / f"{name}.png").stat().st_size > 20_000
    freq = _csv(out / "fig2_action_frequency_tiny.csv")
    methods = {r["method"] for r in freq}
    assert methods == {"IPPO", "eSpark w/o LLM", "upbound pruning"}
    for m in methods:
        rows = [r for r in freq if r["method"] == m]
        assert len(rows) == 34 and sum(float(r["fraction"]) for r in rows) == pytest.approx(1.0)
    daily = _csv(out / "fig4_daily_tiny.csv")
    assert {r["method"] for r in daily} >= methods | {"base stock (static)", "(S, s) (static)"}
    spark = [r for r in daily if r["method"] == "eSpark w/o LLM"]
    assert [int(r["day"]) for r in spark] == list(range(1, 61))
    total = np.mean([results[("template", s)]["test"]["greedy"]["return"] for s in SEEDS])
    assert sum(float(r["net_reward"]) for r in spark) == pytest.approx(total, rel=1e-5)
    assert all(0 <= float(r["fulfilment_pct"]) <= 100 for r in spark)
    # traces against the results they extend
    traces = json.loads((root / "tiny-template-s0" / "traces.json").read_text())
    sel = traces["policies"]["selected"]["greedy"]
    want = results[("template", 0)]["test"]["greedy"]["return"]
    assert sel["return"] == pytest.approx(want, rel=1e-5)
    assert sum(sum(v) for v in sel["action_counts"].values()) == 60 * 5  # days x agents
    for name, base in results[("template", 0)]["baselines"].items():
        assert traces["baselines"][name]["return"] == pytest.approx(base["return"], rel=1e-9)


def test_sweep_argument_errors_are_one_line(tmp_path):
    cases = [
        (["--scenario", "mabim/tiny", "--scenarios", "mabim/tiny"], "not both"),
        (["--scenarios", "mabim/tiny", "--variants", "maxpressure-pruning"], "applies to sumo"),
        (["--scenarios", "mabim/tiny,mabim/nope"], "unknown scenario 'mabim/nope'"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as err:
            main(["sweep", *TINY, "--sweep-dir", str(tmp_path / "s"), *extra])
        assert message in str(err.value) and "\n" not in str(err.value)


def test_table_of_a_directory_that_is_not_a_sweep_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken" / "run-s0"
    broken.mkdir(parents=True)
    (broken / "results.json").write_text('{"scenario": "mabim/tiny"}')
    cases = [
        (tmp_path / "missing", "is not a directory"),
        (tmp_path / "empty", "holds no finished runs"),
        (tmp_path / "broken", "is not a run's results.json"),
    ]
    for path, message in cases:
        with pytest.raises(SystemExit) as err:
            main(["table", str(path)])
        text = str(err.value)
        assert text.startswith("espark table: ") and message in text and "\n" not in text
        assert "--sweep-dir" in text


def _sumo_run(root, name, seed, delay, provider="template", control=None, pruning=None):
    """A results.json of a SUMO run in the format the runs write (hand-made numbers)."""
    ev = {"return": -delay * 10, "metrics": {"avg_delay": delay, "avg_trip_time": delay + 50}}
    res = {
        "scenario": "sumo/grid4x4",
        "provider_name": provider,
        "pruning": pruning,
        "config": {"seed": seed},
        "test": {"greedy": ev, "sampled": ev},
        "control": None
        if control is None
        else {"greedy": {"return": -control * 10, "metrics": {"avg_delay": control}}},
        "baselines": {"max-pressure": {"return": -300.0, "metrics": {"avg_delay": 30.0}}},
    }
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps(res))


def test_sumo_tables_and_figure_from_hand_made_runs(tmp_path):
    from espark_jax.report_figures import write_figures

    for seed, (delay, control) in enumerate([(20.0, 40.0), (30.0, 50.0)]):
        _sumo_run(tmp_path, f"t-s{seed}", seed, delay, control=control)
        _sumo_run(
            tmp_path, f"mp-s{seed}", seed, 35.0 + seed, "pruning", None, "maxpressure-pruning"
        )
    runs = collect_runs(tmp_path, warn=lambda line: None)
    delay = next(t for t in sumo_tables(runs) if t.key == "sumo_avg_delay")
    assert delay.cells[("eSpark w/o LLM", "grid4x4")] == (25.0, 5.0, 2)
    assert delay.cells[("IPPO", "grid4x4")] == (45.0, 5.0, 2)
    assert delay.cells[("MaxPressure pruning", "grid4x4")] == (35.5, 0.5, 2)
    assert delay.cells[("MaxPressure", "grid4x4")] == (30.0, 0.0, 2)
    assert delay.ranks("grid4x4") == {"eSpark w/o LLM": 1, "MaxPressure": 2}  # lower is better
    paths = write_figures(runs, tmp_path / "figs")
    assert [p.name for p in paths] == ["sumo_metrics_grid4x4.png", "sumo_metrics_grid4x4.csv"]
    rows = _csv(tmp_path / "figs" / "sumo_metrics_grid4x4.csv")
    ippo = next(r for r in rows if r["method"] == "IPPO" and r["metric"] == "avg_delay")
    assert float(ippo["mean"]) == 45.0 and float(ippo["std"]) == 5.0


def test_bold_best_and_underlined_second_in_markdown_and_latex():
    cells = {("a", "x"): (3.0, 0.5, 2), ("b", "x"): (1.0, None, 1), ("c_d", "x"): (2.0, 0.0, 2)}
    table = Table("t", "T", "caption 50%", ["a", "b", "c_d"], ["x"], cells)
    md = to_markdown(table).splitlines()
    assert "| a | **3.00 (0.50)** |" in md and "| c_d | <u>2.00 (0.00)</u> |" in md
    assert "| b | 1.00 |" in md
    tex = to_latex(table)
    assert "a & \\textbf{3.00 (0.50)} \\\\" in tex and "c\\_d & \\underline{2.00 (0.00)}" in tex
    assert "caption 50\\%" in tex


def test_traced_evaluation_keeps_the_results_and_adds_daily_sums():
    from espark_jax import ippo
    from espark_jax.families import make_env
    from espark_jax.ippo.evaluate import make_evaluate

    env = make_env("mabim/tiny-2-echelons", 2, 2)
    trainer = ippo.make(env, ippo.TrainConfig(num_envs=2, hidden=(8, 8)))
    params = jax.tree_util.tree_map(lambda x: x[:1], trainer.init(jax.random.PRNGKey(0)).params)
    spec = env.spec
    length, key, split = (
        spec.episode_length["test"],
        jax.random.PRNGKey(1),
        env.default_params("test"),
    )
    plain = jax.jit(make_evaluate(env, trainer.apply_fn, length, 2))
    traced = jax.jit(make_evaluate(env, trainer.apply_fn, length, 2, trace=True))
    for greedy in (True, False):
        a = jax.device_get(plain(params, key, split, greedy))
        b = jax.device_get(traced(params, key, split, greedy))
        for name in ("return", "group_return"):
            np.testing.assert_array_equal(a[name], b[name])
        tr = b["trace"]
        assert tr["reward"].shape == (length, 1, 2, 2)  # days, learners, envs, echelons
        np.testing.assert_allclose(tr["reward"].sum(axis=(0, 3)), a["return"], rtol=1e-5)
        for n, v in a["components"].items():
            np.testing.assert_allclose(tr["components"][n].sum(axis=0), v, rtol=1e-5, atol=1e-3)
        counts = np.asarray(tr["action_counts"])
        per_group = length * spec.n_agents // spec.n_groups  # decisions of one echelon
        np.testing.assert_array_equal(counts.sum(axis=-1), np.full((1, 2, 2), per_group))
        sale, demand = np.asarray(tr["flows"]["sale"]), np.asarray(tr["flows"]["demand"])
        assert np.all(sale <= demand + 1e-3) and np.all(sale >= 0)
