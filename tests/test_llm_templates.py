"""Mask templates (valid, traceable, right on hand-computed cases) and the template search."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from llm_helpers import (
    MABIM_MULTIPLIERS,
    SUMO_FIELDS,
    abstract_context,
    compile_source,
    mabim_spec,
    random_context,
    sumo_spec,
)

from envs_jax.core import MaskContext
from espark_jax.llm.extract import extract_code, parse_verdict
from espark_jax.llm.prompts import EnvPromptInfo
from espark_jax.llm.providers import LLMRequest, SlotResult, TemplateProvider
from espark_jax.llm.templates import (
    Genome,
    TemplateSearch,
    families_for,
    prepare_families,
    render_genome,
)
from espark_jax.llm.templates_mabim import COVER_CAP
from espark_jax.llm.templates_sumo import resolve_roles

SPECS = {"mabim": mabim_spec(W=2, N=5), "sumo": sumo_spec(4)}


def _provider(family: str, seed: int = 0) -> TemplateProvider:
    spec = SPECS[family]
    return TemplateProvider(family, seed, EnvPromptInfo.from_spec(spec, "x = 1"))


def _genomes(prov: TemplateProvider) -> list[Genome]:
    """Every family's default and a random draw, plus AND-combinations of neighbouring families."""
    rng = np.random.default_rng(1)
    fams = list(prov.families)
    out = [f.default_genome() for f in fams] + [f.random_genome(rng) for f in fams]
    out += [
        Genome(a.name, a.random_genome(rng).params, b.default_genome())
        for a, b in zip(fams, fams[1:] + fams[:1])
    ]
    return out


def _request(iteration: int, slot: int, role: str = "generator", round: int = 0) -> LLMRequest:
    return LLMRequest(
        iteration, slot, role, "system", ({"role": "user", "content": "x"},), round=round
    )


# --------------------------------------------------------------------------------------------
# Rendered templates are valid mask functions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["mabim", "sumo"])
def test_every_template_traces_with_the_right_shape_and_binary_values(family):
    spec = SPECS[family]
    prov = _provider(family)
    assert len(prov.families) >= (6 if family == "mabim" else 4)
    actions = np.asarray(spec.action_values, np.float32)
    abstract = (abstract_context(spec), jax.ShapeDtypeStruct(actions.shape, jnp.float32))
    genomes = _genomes(prov)
    for genome in genomes:
        source = prov.source(genome)
        out = jax.eval_shape(compile_source(source), *abstract)
        assert out.shape == (*spec.agent_shape, spec.n_actions), genome.describe()
        # values of the same code on random contexts (numpy backend: no compilation per candidate)
        for seed in range(3):
            mask = np.asarray(compile_source(source, "numpy")(random_context(spec, seed), actions))
            assert mask.shape == out.shape and set(np.unique(mask)) <= {0, 1}, genome.describe()
    # under jit and vmap over a batch of environments, all families in one program (one compilation)
    fns = [compile_source(prov.source(f.default_genome())) for f in prov.families]
    batch = random_context(spec, 7, batch=(3,))
    stacked = jax.jit(jax.vmap(lambda c: jnp.stack([fn(c, actions) for fn in fns])))(batch)
    assert stacked.shape == (3, len(fns), *spec.agent_shape, spec.n_actions)
    assert set(np.unique(np.asarray(stacked))) <= {0, 1}
    for i, fn in enumerate(fns):
        ctx0 = MaskContext({k: v[0] for k, v in batch.as_dict().items()})
        np.testing.assert_array_equal(
            np.asarray(stacked[0, i]),
            np.asarray(
                compile_source(prov.source(prov.families[i].default_genome()), "numpy")(
                    ctx0, actions
                )
            ),
        )


@pytest.mark.parametrize("family", ["mabim", "sumo"])
def test_every_template_passes_the_static_mask_validator(family):
    from espark_jax.masks.static import validate_source
    from espark_jax.masks.task import MaskTask

    prov = _provider(family)
    task = MaskTask.from_env_spec(SPECS[family])
    for genome in _genomes(prov):
        validate_source(extract_code(f"```python\n{prov.source(genome)}```"), task)


def test_template_reply_is_extractable_and_labelled():
    prov = _provider("mabim")
    (resp,) = prov.generate([_request(1, 0)])
    genome = prov.families[0].default_genome()
    assert extract_code(resp.text) == prov.source(genome)
    assert resp.model == "template-mutation" and resp.raw["genome"] == genome.to_dict()
    assert Genome.from_dict(resp.raw["genome"]) == genome
    assert "template-mutation (no LLM)" in resp.text and prov.label == "template-mutation (no LLM)"
    (check,) = prov.generate([_request(1, 0, "checker")])
    assert check.model == "static-only" and parse_verdict(check.text).passed
    assert prov.describe()["checker"] == "static-only"


# --------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------


def _mabim_ctx(in_stock, in_transit, demand_mean, **extra) -> MaskContext:
    spec = SPECS["mabim"]
    fields = {f.name: np.zeros(spec.field_shape(f), np.dtype(f.dtype)) for f in spec.context_fields}
    for name, value in dict(
        in_stock=in_stock, in_transit=in_transit, demand_mean=demand_mean, **extra
    ).items():
        fields[name] = np.full(fields[name].shape, value, fields[name].dtype)
    return MaskContext(fields)


def _mask(prov: TemplateProvider, family: str, ctx: MaskContext, **params) -> np.ndarray:
    """The mask of one genome on ``ctx`` (numpy backend; the jax backend agrees, see above)."""
    genome = Genome(family, tuple(params.items()))
    actions = np.asarray(SPECS[prov.env_family].action_values, np.float32)
    return np.asarray(compile_source(prov.source(genome), "numpy")(ctx, actions))


def test_mabim_hand_computed_masks():
    prov = _provider("mabim")
    mult = np.asarray(MABIM_MULTIPLIERS, np.float32)
    # 10 on hand, 0 in transit, mean demand 5: a cap of 4 days (20 units) allows orders of at
    # most 10 units
    m = _mask(prov, "cover_cap", _mabim_ctx(10, 0, 5), max_days=4.0)
    np.testing.assert_array_equal(m[0, 0], (np.floor(mult * 5) <= 10).astype(int))
    assert (
        m[0, 0, 17] == 1 and m[0, 0, 18] == 0
    )  # 2.16 x 5 floors to 10 (allowed), 2.33 x 5 to 11 (pruned)
    assert m[0, 0].sum() == int((np.floor(mult * 5) <= 10).sum()) and (m == m[0, 0]).all()
    # covered (30 >= 6 days x 5): only quantities that floor to zero stay
    m = _mask(prov, "reorder_block", _mabim_ctx(20, 10, 5), k_days=6.0)
    np.testing.assert_array_equal(m[1, 4], (np.floor(mult * 5) == 0).astype(int))
    m = _mask(prov, "reorder_block", _mabim_ctx(20, 9, 5), k_days=6.0)
    assert m.all()
    m = _mask(prov, "upper_bound", _mabim_ctx(0, 0, 5), max_mult=2.0)
    np.testing.assert_array_equal(m[0, 2], (mult <= 2.0).astype(int))
    # end of the episode: 2 days left, lead time 3 -> nothing may be ordered
    m = _mask(prov, "horizon_guard", _mabim_ctx(0, 0, 5, vlt=3, days_left=2), extra_days=0.0)
    np.testing.assert_array_equal(m[0, 0], (np.floor(mult * 5) == 0).astype(int))
    m = _mask(prov, "horizon_guard", _mabim_ctx(0, 0, 5, vlt=3, days_left=10), extra_days=1.0)
    assert m.all()


def test_sumo_hand_computed_masks():
    prov = _provider("sumo")
    spec = SPECS["sumo"]
    pressure = np.tile(np.asarray([5.0, 1.0, 9.0, 3.0, 8.0, 0.0, 2.0, 7.0], np.float32), (4, 1))
    avail = np.tile(np.asarray([True, True, False, True, True, True, True, True]), (4, 1))
    queue = np.tile(np.asarray([0.0, 4.0, 9.0, 0.0, 12.0, 1.0, 0.0, 3.0], np.float32), (4, 1))
    ctx = MaskContext(
        {
            "phase_pressure": pressure,
            "phase_queue": queue,
            "phase_available": avail,
            "current_phase": np.asarray([4, 1, 0, 4], np.int32),
        }
    )
    # top 2 available phases by pressure: phase 2 (9) is unavailable -> phases 4 (8) and 7 (7)
    m = _mask(prov, "top_k_pressure", ctx, k=2)
    np.testing.assert_array_equal(m[0], [0, 0, 0, 0, 1, 0, 0, 1])
    m = _mask(prov, "forbid_empty", ctx, min_queue=0.5)
    np.testing.assert_array_equal(m[0], [0, 1, 0, 0, 1, 1, 0, 1])
    # current phase 4 has a queue of 12 > 10: keep it alone; phase 1's queue of 4 is short: all
    # available
    m = _mask(prov, "keep_current", ctx, q_thresh=10.0)
    np.testing.assert_array_equal(m[0], [0, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(m[1], np.asarray(avail[1], int))
    assert spec.n_actions == 8


def test_recombination_is_an_and_that_never_empties_a_row():
    prov = _provider("mabim")
    ctx = _mabim_ctx(10, 0, 5)
    a = Genome("upper_bound", (("max_mult", 1.0),))
    b = Genome(
        "cover_cap", (("max_days", 2.2),)
    )  # allows orders of at most 1 unit: multipliers < 0.4
    combined = Genome(a.family, a.params, b)
    ma, mb, both = (_mask_of(prov, g, ctx) for g in (a, b, combined))
    np.testing.assert_array_equal(both, ma * mb)
    assert both[0, 0].sum() == 3 and "def mask_part_a" in prov.source(combined)
    # where the AND would leave an agent nothing, the first part's mask is kept
    low = Genome("upper_bound", (("max_mult", 0.5),))  # multipliers 0 .. 0.5
    band = Genome(
        "ss_band", (("s_days", 3.0), ("extra_days", 4.0), ("width", 0.1))
    )  # ~35 units: 7.0 only
    empty = _mabim_ctx(0, 0, 5)
    np.testing.assert_array_equal(
        _mask_of(prov, band, empty)[0, 0], (np.asarray(MABIM_MULTIPLIERS) == 7.0)
    )
    np.testing.assert_array_equal(
        _mask_of(prov, Genome(low.family, low.params, band), empty), _mask_of(prov, low, empty)
    )


def _mask_of(prov: TemplateProvider, genome: Genome, ctx: MaskContext) -> np.ndarray:
    actions = np.asarray(MABIM_MULTIPLIERS, np.float32)
    return np.asarray(compile_source(prov.source(genome), "numpy")(ctx, actions))


# --------------------------------------------------------------------------------------------
# Search: determinism and selection
# --------------------------------------------------------------------------------------------


def _run_generation(prov: TemplateProvider, iteration: int, k: int) -> list[str]:
    return [r.text for r in prov.generate([_request(iteration, s) for s in range(k)])]


def test_first_generation_covers_the_families_and_is_deterministic():
    a, b, c = _provider("mabim", 7), _provider("mabim", 7), _provider("mabim", 8)
    k = 12
    ta, tb, tc = (_run_generation(p, 1, k) for p in (a, b, c))
    assert ta == tb and ta != tc
    n = len(a.families)
    assert ta[:n] == tc[:n]  # defaults first, then seeded random draws
    assert {a.search.propose(1, s).family for s in range(n)} == {f.name for f in a.families}
    assert len(set(ta)) == k


def test_scores_drive_selection():
    k = 8
    prov, twin = _provider("mabim", 3), _provider("mabim", 3)
    for p in (prov, twin):
        _run_generation(p, 1, k)
    genomes = [prov.search.propose(1, s) for s in range(k)]
    scores = [1.0, 5.0, 2.0, 9.0, 3.0, None, 0.5, 4.0]
    results = [SlotResult(s, prov.source(g), sc) for s, (g, sc) in enumerate(zip(genomes, scores))]
    for p in (prov, twin):
        p.tell(1, results)
    elites = prov.search.elites()
    assert elites[:2] == [genomes[3], genomes[1]]  # best first; 2 of 7 scored (elite_frac 0.25)
    nxt = [prov.search.propose(2, s) for s in range(k)]
    assert nxt[0] == genomes[3]  # the best survives unchanged
    parents = {genomes[3].family, genomes[1].family}
    derived = [g for g in nxt[1:] if g.family in parents]
    assert len(derived) >= k // 2  # most offspring come from the elites
    assert _run_generation(prov, 2, k) == _run_generation(twin, 2, k)


def test_search_converges_towards_better_parameters():
    search = TemplateSearch([COVER_CAP], seed=0, p_restart=0.1, p_recombine=0.0)
    score = lambda g: -abs(dict(g.params)["max_days"] - 3.0)  # noqa: E731
    first = None
    for it in range(1, 9):
        gen = [search.propose(it, s) for s in range(6)]
        search.tell(it, {s: (g, score(g)) for s, g in enumerate(gen)})
        first = first if first is not None else max(score(g) for g in gen)
    best = search.elites()[0]
    assert score(best) > first and abs(dict(best.params)["max_days"] - 3.0) < 1.0


def test_failed_or_foreign_slots_do_not_count():
    prov = _provider("mabim")
    _run_generation(prov, 1, 4)
    g = [prov.search.propose(1, s) for s in range(4)]
    with pytest.warns(UserWarning, match=r"slots \[1\] report code it did not issue"):
        prov.tell(
            1,
            [
                SlotResult(0, None, 100.0),
                SlotResult(1, "def compute_mask(ctx, a):\n    return 1\n", 50.0),
                SlotResult(2, prov.source(g[2]), 1.0),
                SlotResult(3, prov.source(g[3]), math.nan),
            ],
        )
    assert prov.search.elites() == [g[2]]


def test_tell_after_resume_recognises_proposals_and_repairs():
    """A fresh provider (as after --resume) maps reported code back to genomes it never issued."""
    first = _provider("mabim", 5)
    texts = _run_generation(first, 1, 3)
    (repaired,) = first.generate([_request(1, 1, "repair", round=1)])
    codes = [extract_code(texts[0]), extract_code(repaired.text), extract_code(texts[2])]
    results = [SlotResult(s, c, float(s)) for s, c in enumerate(codes)]
    fresh = _provider("mabim", 5)
    fresh.tell(1, results)
    first.tell(1, results)
    assert fresh.search.elites() == first.search.elites()
    assert fresh.search.elites()[1] == Genome.from_dict(repaired.raw["genome"])
    assert _run_generation(fresh, 2, 3) == _run_generation(first, 2, 3)


def test_repair_gives_a_fresh_template_and_tell_uses_it():
    prov = _provider("mabim")
    (first,) = prov.generate([_request(1, 2)])
    (repaired,) = prov.generate([_request(1, 2, "repair", round=1)])
    assert extract_code(repaired.text) != extract_code(first.text)
    assert prov.generate([_request(1, 2, "repair", round=1)])[0].text == repaired.text
    prov.tell(1, [SlotResult(2, extract_code(repaired.text), 3.0)])
    assert prov.search.elites() == [Genome.from_dict(repaired.raw["genome"])]


# --------------------------------------------------------------------------------------------
# Environment fields
# --------------------------------------------------------------------------------------------


def test_sumo_roles_follow_the_documented_fields():
    spec = SPECS["sumo"]
    shapes = {f.name: spec.field_shape(f) for f in SUMO_FIELDS}
    roles = resolve_roles(SUMO_FIELDS, shapes, (4,), 8)
    assert roles["pressure"] == "ctx.phase_pressure" and roles["queue"] == "ctx.phase_queue"
    assert roles["avail"] == "(ctx.phase_available > 0)" and "ctx.current_phase" in roles["current"]
    # without pressure fields only the queue-based families remain
    only_queue = tuple(f for f in SUMO_FIELDS if "pressure" not in f.name)
    info = EnvPromptInfo.from_spec(
        __import__("dataclasses").replace(spec, context_fields=only_queue), "x"
    )
    fams, _ = prepare_families("sumo", info)
    assert {f.name for f in fams} == {"top_k_queue", "forbid_empty", "keep_current"}


def test_sumo_templates_resolve_on_the_real_sumo_context_fields():
    import dataclasses

    from envs_jax.sumo.features import MASK_CONTEXT_FIELDS

    spec = dataclasses.replace(
        SPECS["sumo"], context_fields=MASK_CONTEXT_FIELDS, dims={"I": 4, "P": 8, "M": 8}
    )
    prov = TemplateProvider("sumo", 0, EnvPromptInfo.from_spec(spec, "x"))
    assert {f.name for f in prov.families} == {f.name for f in families_for("sumo")}
    actions = np.arange(8, dtype=np.float32)
    for fam in prov.families:
        fn = compile_source(prov.source(fam.default_genome()), "numpy")
        mask = np.asarray(fn(random_context(spec, 0), actions))
        assert mask.shape == (4, 8) and set(np.unique(mask)) <= {0, 1}


def test_bad_template_inputs():
    with pytest.raises(ValueError, match="no mask templates for environment family 'chess'"):
        families_for("chess")
    with pytest.raises(ValueError, match="env_info=EnvPromptInfo.from_env"):
        TemplateProvider("sumo", 0)
    with pytest.raises(ValueError, match="unknown template family 'nope'"):
        render_genome(Genome("nope", ()), {f.name: f for f in families_for("mabim")})
    assert TemplateProvider("mabim", 0).families == families_for("mabim")
