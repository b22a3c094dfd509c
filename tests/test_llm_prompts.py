"""Prompt templates, the prompt builder and the reply parsers (espark_jax.llm.prompts / extract)."""

from __future__ import annotations

import dataclasses
import shutil
import sys

import pytest
from llm_helpers import SUMO_PHASES, mabim_spec, sumo_spec

from espark_jax.llm import prompts as P
from espark_jax.llm.extract import (
    CheckerVerdict,
    ExtractionError,
    extract_code,
    fenced_blocks,
    parse_verdict,
)

SOURCE = (
    "def step(key, state, actions, params):\n"
    "    reward = profit - excess_cost  # MARKER-SOURCE-42\n"
)


@pytest.fixture(scope="module")
def info() -> P.EnvPromptInfo:
    return P.EnvPromptInfo.from_spec(mabim_spec(description="A PARAGRAPH-7 scenario."), SOURCE)


def _texts(prompt: P.Prompt) -> list[str]:
    return [b["text"] for m in prompt.messages for b in m["content"]]


# --------------------------------------------------------------------------------------------
# Templates and env info
# --------------------------------------------------------------------------------------------


def test_prompt_files_and_hashes(tmp_path, monkeypatch):
    hashes = P.prompt_hashes()
    for name in (
        "common/generator_system.txt",
        "common/checker_system.txt",
        "common/code_output_tip.txt",
        "common/checker_output_tip.txt",
        "common/execution_error_feedback.txt",
        "common/policy_feedback.txt",
        "common/reflection_tips.txt",
        "common/function_signature.txt",
        "common/initial_user.txt",
        "mabim/task_description.txt",
        "mabim/formulation_lang.txt",
        "mabim/focuses.txt",
        "sumo/task_description.txt",
        "sumo/formulation_lang.txt",
        "sumo/focuses.txt",
    ):
        assert len(hashes[name]) == 16
    # an edited copy selected through the environment variable changes exactly that file's hash
    copy = tmp_path / "prompts"
    shutil.copytree(P.prompts_dir(), copy)
    (copy / "common" / "reflection_tips.txt").write_text("edited\n")
    monkeypatch.setenv(P.PROMPTS_ENV_VAR, str(copy))
    edited = P.prompt_hashes()
    assert {k for k in hashes if hashes[k] != edited[k]} == {"common/reflection_tips.txt"}
    monkeypatch.setenv(P.PROMPTS_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(P.PromptError, match="ESPARK_PROMPTS_DIR"):
        P.prompts_dir()


def test_env_info_from_spec(info):
    assert (
        info.family == "mabim" and info.agent_axes == ("W", "N") and info.mask_shape == (2, 3, 34)
    )
    assert "PARAGRAPH-7" in info.task_description and "W = 2, N = 3" in info.task_description
    assert info.field_shapes()["demand_history"] == (2, 3, 21)
    assert len(P.focuses("mabim")) >= 16 and len(P.focuses("sumo")) >= 8


def test_unknown_family_and_bad_arguments(info):
    spec = dataclasses.replace(mabim_spec(), name="nosuch/x")
    with pytest.raises(P.PromptError, match="no prompts for environment family 'nosuch'"):
        P.EnvPromptInfo.from_spec(spec)
    with pytest.raises(P.PromptError, match="formulation must be 'code' or 'lang'"):
        P.generator_messages(info, 1, 0, formulation="prose")
    with pytest.raises(P.PromptError, match="from_env"):
        P.generator_messages(P.EnvPromptInfo.from_spec(mabim_spec()), 1, 0)
    with pytest.raises(P.PromptError, match="needs its policy feedback"):
        P.generator_messages(
            info, 2, 0, previous_best_code="def compute_mask(ctx, action_space): ..."
        )


class FakeEnv:
    """An environment whose module source is this test file (MARKER-ENV-SOURCE)."""

    spec = mabim_spec()

    def step(self, key, state, actions, params):
        return None


def test_env_info_from_env_reads_module_source():
    info = P.EnvPromptInfo.from_env(FakeEnv())
    assert "MARKER-ENV-SOURCE" in info.formulation_source
    assert "MARKER-ENV-SOURCE" in _texts(P.generator_messages(info, 1, 0))[0]
    assert (
        P.EnvPromptInfo.from_env(FakeEnv(), formulation_source="x = 1").formulation_source
        == "x = 1"
    )


def test_env_info_from_real_mabim_env():
    import envs_jax

    env = envs_jax.make("mabim/tiny")
    info = P.EnvPromptInfo.from_env(env)
    assert "def step(" in info.formulation_source
    assert info.agent_shape == tuple(env.spec.agent_shape) and info.n_actions == env.spec.n_actions
    assert sys.modules[type(env).__module__].__file__.endswith("env.py")


# --------------------------------------------------------------------------------------------
# Generator / checker / repair messages
# --------------------------------------------------------------------------------------------


def test_initial_generator_prompt_content_and_cache_layout(info):
    p0 = P.generator_messages(info, 1, 0, n_slots=4)
    p1 = P.generator_messages(info, 1, 1, n_slots=4)
    assert "def compute_mask(ctx, action_space):" in p0.system and "[2, 3, 34]" in p0.system
    assert "knowing what NOT to do" in p0.system
    (msg,) = p0.messages
    task, focus = msg["content"]
    assert task["cache_control"] == {"type": "ephemeral"} and "cache_control" not in focus
    for f in info.context_fields:
        assert f"ctx.{f.name}:" in task["text"]
    assert "MARKER-SOURCE-42" in task["text"] and "PARAGRAPH-7" in task["text"]
    assert "33: x12.00 = 12" in task["text"]
    # the stable prefix is shared by all slots; only the focus (last block) differs
    assert p0.system == p1.system and p0.messages[0]["content"][0] == p1.messages[0]["content"][0]
    assert focus["text"] != p1.messages[0]["content"][1]["text"]
    assert "candidate 1 of 4" in focus["text"] and P.focuses("mabim")[1] in focus["text"]
    assert p0.hash() != p1.hash() and len(p0.hash()) == 16


def test_lang_formulation_replaces_source(info):
    text = _texts(P.generator_messages(info, 1, 0, formulation="lang"))[0]
    assert "MARKER-SOURCE-42" not in text
    assert "described in words" in text and "backlog_cost = max(0" in text


def test_reflection_prompt_has_four_part_history(info):
    code = "def compute_mask(ctx, action_space):\n    return ctx.in_stock[..., None] * 0 + 1\n"
    p = P.generator_messages(
        info, 3, 2, feedback="profit: max 5 min 1 FEEDBACK-9", previous_best_code=code, n_slots=16
    )
    roles = [m["role"] for m in p.messages]
    assert roles == ["user", "assistant", "user"]
    assert "return ctx.in_stock" in p.messages[1]["content"][0]["text"]
    fb, focus = p.messages[2]["content"]
    assert (
        "FEEDBACK-9" in fb["text"]
        and "round 3" in fb["text"]
        and "Analyse the feedback" in fb["text"]
    )
    assert fb["cache_control"] == {"type": "ephemeral"} and "candidate 3 of 16" in focus["text"]
    # every slot of an iteration shares everything up to the focus
    q = P.generator_messages(
        info, 3, 5, feedback="profit: max 5 min 1 FEEDBACK-9", previous_best_code=code
    )
    assert q.messages[:2] == p.messages[:2] and q.messages[2]["content"][0] == fb


def test_feedback_without_best_code(info):
    p = P.generator_messages(info, 2, 0, feedback="every slot failed: NO-CODE-3")
    (msg,) = p.messages
    assert len(msg["content"]) == 3 and "NO-CODE-3" in msg["content"][1]["text"]
    assert "No candidate of the previous round" in msg["content"][1]["text"]


def test_checker_prompt(info):
    p = P.checker_messages(info, "def compute_mask(ctx, action_space):\n    return CHECK-ME\n")
    assert (
        '"pass": true or false' in p.system and "def compute_mask(ctx, action_space):" in p.system
    )
    task, review = p.messages[0]["content"]
    assert task["cache_control"] == {"type": "ephemeral"} and "ctx.capacity:" in task["text"]
    assert "CHECK-ME" in review["text"]


def test_repair_prompts(info):
    base = P.generator_messages(info, 1, 0)
    r1 = P.repair_messages(base, "```python\nbroken(\n```", "syntax: line 1: '(' was never closed")
    assert r1.system == base.system and r1.messages[: len(base.messages)] == base.messages
    assert [m["role"] for m in r1.messages[-2:]] == ["assistant", "user"]
    assert "broken(" in r1.messages[-2]["content"][0]["text"]
    assert "'(' was never closed" in r1.messages[-1]["content"][0]["text"]
    r2 = P.repair_messages(
        r1, "```python\nx\n```", ["reads ctx.foo", "returns the wrong shape"], kind="check"
    )
    assert len(r2.messages) == len(base.messages) + 4
    assert "- reads ctx.foo\n- returns the wrong shape" in r2.messages[-1]["content"][0]["text"]
    with pytest.raises(P.PromptError, match="repair kind"):
        P.repair_messages(base, "x", "y", kind="other")


def test_sumo_prompts():
    info = P.EnvPromptInfo.from_spec(sumo_spec(), "class Bridge: ...")
    p = P.generator_messages(info, 1, 0, formulation="lang")
    text = p.system + "".join(_texts(p))
    for phase in SUMO_PHASES:
        assert phase in text
    assert "ctx.phase_pressure:" in text and "phase indices 0..7" in text and "[4, 8]" in p.system
    assert "stopped (halting) vehicles" in text


def test_hash_ignores_cache_markers(info):
    p = P.generator_messages(info, 1, 0)
    stripped = tuple(
        {
            "role": m["role"],
            "content": [{k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]],
        }
        for m in p.messages
    )
    assert P.hash_prompt(p.system, stripped) == p.hash()
    assert P.hash_prompt(p.system + " ", stripped) != p.hash()


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def test_extract_last_block_defining_the_function():
    text = (
        "Idea...\n```python\ndef compute_mask(ctx, action_space):\n    return 1\n```\nBetter:\n"
        "```python\ndef helper(x):\n    return x\n\n"
        "def compute_mask(ctx, action_space):\n    return 2\n```\n"
        "Usage:\n```python\nmask = compute_mask(ctx, a)\n```\n"
    )
    code = extract_code(text)
    assert "return 2" in code and "def helper" in code and "mask = compute_mask" not in code


def test_extract_falls_back_to_last_block_and_handles_truncation():
    assert extract_code("```\ndef other():\n    pass\n```\n~~~py\nx = 1\n~~~") == "x = 1\n"
    truncated = "Here:\n```python\ndef compute_mask(ctx, action_space):\n    m = np.where(ctx.in"
    assert extract_code(truncated).startswith(
        "def compute_mask(ctx, action_space):\n    m = np.where"
    )
    assert fenced_blocks("no code") == []


@pytest.mark.parametrize(
    "text", ["", "   ", "I cannot write this function.", "def compute_mask(ctx, a): return 1"]
)
def test_extract_without_fenced_code_is_a_clear_error(text):
    with pytest.raises(ExtractionError, match="compute_mask"):
        extract_code(text)


@pytest.mark.parametrize(
    "reply, expected",
    [
        (
            'Looks fine.\n```json\n{"pass": true, "reasons": [], "suggestion": ""}\n```',
            CheckerVerdict(True),
        ),
        (
            'Analysis {not json}. {"pass": false, "reasons": ["axis 0 is SKUs, not warehouses"], '
            '"suggestion": "use axis=-1"}'
            " Thanks.",
            CheckerVerdict(False, ("axis 0 is SKUs, not warehouses",), "use axis=-1"),
        ),
        (
            '{\'ignored\': 1} then {"verdict": "FAIL", "reasons": "divides by zero"}',
            CheckerVerdict(False, ("divides by zero",)),
        ),
        ('{"pass": False, "issues": ["x"]}', CheckerVerdict(False, ("x",))),
        (
            '{"pass": true} and later {"pass": false, "reasons": ["second thoughts"]}',
            CheckerVerdict(False, ("second thoughts",)),
        ),
    ],
)
def test_parse_verdict_tolerates_prose(reply, expected):
    assert parse_verdict(reply) == expected


@pytest.mark.parametrize(
    "reply", ["", "The function is fine.", '{"score": 3}', '{"pass": "maybe"}']
)
def test_parse_verdict_without_json_is_a_clear_error(reply):
    with pytest.raises(ExtractionError, match='"pass"'):
        parse_verdict(reply)
