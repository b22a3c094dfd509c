"""``espark baselines``: tables for MABIM and SUMO scenarios, one-line errors."""

from __future__ import annotations

import json

import pytest

from envs_jax.mabim.baselines import BASELINES
from espark_jax.cli import main
from espark_jax.cli_baselines import MABIM_BASELINES


def test_names_match_the_environment_package():
    assert MABIM_BASELINES == BASELINES


def test_mabim_table_and_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert (
        main(
            ["baselines", "--scenario", "mabim/tiny", "--only", "zero,constant", "--json", str(out)]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "| zero |" in text and "| constant |" in text and "backlog_cost" in text
    results = json.loads(out.read_text())["results"]
    for r in results.values():  # the return is the sum of the signed components
        c = r["components"]
        assert r["return"] == pytest.approx(
            c["profit"]
            - c["excess_cost"]
            - c["order_cost"]
            - c["holding_cost"]
            - c["backlog_cost"],
            rel=1e-6,
        )
    assert results["zero"]["components"]["order_cost"] == 0.0
    assert results["constant"]["return"] > results["zero"]["return"]


@pytest.mark.sumo
def test_sumo_table(capsys):
    assert main(["baselines", "--scenario", "sumo/grid2x2", "--seeds", "0"]) == 0
    text = capsys.readouterr().out
    assert "| fixed-time |" in text and "| max-pressure |" in text and "avg_delay" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--scenario", "mabim/nope"],
            "unknown scenario 'mabim/nope'. Did you mean 'mabim/tiny'? "
            "Valid scenarios: mabim/2-echelons-100",
        ),
        (["--only", "zero,bogus"], "unknown baseline(s) bogus; valid: zero"),
    ],
)
def test_bad_input_is_one_line(argv, message):
    with pytest.raises(SystemExit) as err:
        main(["baselines", *argv])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_mabim_reference_cache_is_shared_by_every_eval_envs(tmp_path, monkeypatch):
    """A MABIM reference run is one episode per split and key whatever ``episodes`` says, so
    one cache entry serves all of them; the cached values equal an uncached computation."""
    import envs_jax
    from espark_jax.baselines import reference_baselines

    monkeypatch.setenv("ESPARK_CACHE_DIR", str(tmp_path))
    env = envs_jax.make("mabim/tiny")
    first = reference_baselines(env, "test", 0, 1)
    assert len(list((tmp_path / "baselines").glob("*.json"))) == 1
    assert reference_baselines(env, "test", 0, 4) == first
    assert len(list((tmp_path / "baselines").glob("*.json"))) == 1
    monkeypatch.setenv("ESPARK_BASELINE_CACHE", "0")
    fresh = reference_baselines(env, "test", 0, 4)
    assert {n: r["return"] for n, r in fresh.items()} == pytest.approx(
        {n: r["return"] for n, r in first.items()}, rel=1e-6
    )
    reference_baselines(env, "validation", 0, 1)  # another split is another entry
    monkeypatch.delenv("ESPARK_BASELINE_CACHE")
    reference_baselines(env, "validation", 0, 1)
    assert len(list((tmp_path / "baselines").glob("*.json"))) == 2
