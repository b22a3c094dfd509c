"""Providers: replay records, the recording wrapper (resume reuse, usage files), the factory
(auto order, openai settings, model listing, routed generator and checker)."""

from __future__ import annotations

import json
import warnings

import pytest
from llm_helpers import mabim_spec
from llm_server import LLMTestServer, clear_llm_env

from espark_jax.llm import prompts as P
from espark_jax.llm.providers import (
    AnthropicProvider,
    LLMConfigError,
    LLMRequest,
    LLMResponse,
    OpenAIProvider,
    ReplayError,
    ReplayProvider,
    RoutedProvider,
    SlotResult,
    TemplateProvider,
    make_provider,
    read_record,
    record_path,
    record_response,
)
from espark_jax.llm.recording import RecordingProvider
from espark_jax.llm.remote import RemoteProvider


@pytest.fixture(scope="module")
def info() -> P.EnvPromptInfo:
    return P.EnvPromptInfo.from_spec(mabim_spec(), "def step(state):\n    return state\n")


def _requests(info, k: int, iteration: int = 1, role: str = "generator") -> list[LLMRequest]:
    return [
        LLMRequest.from_prompt(
            P.generator_messages(info, iteration, s, n_slots=k), iteration, s, role
        )
        for s in range(k)
    ]


# --------------------------------------------------------------------------------------------
# Records and replay
# --------------------------------------------------------------------------------------------


def test_record_round_trip_and_replay(info, tmp_path):
    reqs = _requests(info, 2)
    repair = LLMRequest.from_prompt(
        P.repair_messages(P.generator_messages(info, 1, 1, n_slots=2), "bad", "syntax"),
        1,
        1,
        "repair",
        round=1,
        history=[("bad", "syntax")],
    )
    responses = [
        LLMResponse(f"text {i}", "model-z", {"input_tokens": i}, 0.5, None, {"id": i})
        for i in range(3)
    ]
    for req, resp in zip([*reqs, repair], responses):
        record_response(tmp_path, req, resp)
    assert (
        record_path(tmp_path, 1, 1, "repair", 1)
        == tmp_path / "iter_01" / "cand_01" / "repair_r1.json"
    )
    rec = read_record(tmp_path, 1, 1, "repair", 1)
    assert rec["prompt_hash"] == repair.prompt_hash() and rec["history"] == [["bad", "syntax"]]
    assert rec["system"] == repair.system and rec["usage"] == {"input_tokens": 2}

    replay = ReplayProvider(tmp_path)
    assert replay.label == f"replay of run {tmp_path.name}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = replay.generate([*reqs, repair])
    assert [r.text for r in out] == ["text 0", "text 1", "text 2"]
    assert [r.model for r in out] == ["model-z"] * 3 and not any(r.prompt_drift for r in out)

    drifted = LLMRequest.from_prompt(
        P.generator_messages(info, 1, 0, formulation="lang"), 1, 0, "generator"
    )
    with pytest.warns(UserWarning, match="differ from the recorded"):
        (r,) = replay.generate([drifted])
    assert r.prompt_drift and r.text == "text 0"


def test_replay_errors(info, tmp_path):
    with pytest.raises(ReplayError, match="does not exist"):
        ReplayProvider(tmp_path / "missing")
    with pytest.raises(ReplayError, match="no iter_XX"):
        ReplayProvider(tmp_path)
    req = _requests(info, 1)[0]
    record_response(tmp_path, req, LLMResponse("t", "m"))
    replay = ReplayProvider(tmp_path)
    with pytest.raises(ReplayError, match="no record for iteration 2, slot 0, generator round 0"):
        replay.generate(_requests(info, 1, iteration=2))
    record_path(tmp_path, 1, 0, "generator").write_text("{not json")
    with pytest.raises(ReplayError, match="unreadable"):
        replay.generate([req])


def test_request_validation():
    with pytest.raises(ValueError, match="role"):
        LLMRequest(1, 0, "writer", "s", ())
    with pytest.raises(ValueError, match="non-negative"):
        LLMRequest(1, -1, "generator", "s", ())


# --------------------------------------------------------------------------------------------
# Recording wrapper: remote providers are not asked twice; usage files
# --------------------------------------------------------------------------------------------


def test_recording_reuses_remote_records_and_writes_usage(info, tmp_path):
    with LLMTestServer(lambda seen: "reply " + str(seen.slot())) as server:
        remote = OpenAIProvider("m", "m", base_url=server.openai_url)
        reqs = _requests(info, 3)
        first = RecordingProvider(remote, tmp_path).generate(reqs)
        assert len(server.requests) == 3
        again = RecordingProvider(remote, tmp_path)  # a resumed run
        second = again.generate(reqs)
        assert len(server.requests) == 3 and again.reused == 3  # nothing sent twice
        served = [s.prompt_chars() // 4 for s in server.requests]
    assert [r.text for r in second] == [r.text for r in first] == ["reply 0", "reply 1", "reply 2"]
    usage = json.loads((tmp_path / "usage.json").read_text())
    assert usage["requests"] == 3 and usage["tokens"]["input_tokens"] == sum(served)
    assert usage["tokens"]["output_tokens"] == 3 * (len("reply 0") // 4)
    assert usage["iterations"]["1"]["by_model"]["m"]["requests"] == 3
    assert json.loads((tmp_path / "iter_01" / "usage.json").read_text())["replies"] == 3


def test_recording_asks_offline_providers_again(info, tmp_path):
    template = TemplateProvider("mabim", 0, info)
    reqs = _requests(info, 2)
    RecordingProvider(template, tmp_path).generate(reqs)
    again = RecordingProvider(template, tmp_path)
    again.generate(reqs)
    assert again.reused == 0 and not again.reuse
    usage = json.loads((tmp_path / "usage.json").read_text())
    assert usage["offline"] == 2 and usage["requests"] == 0 and usage["cost_usd"] == 0.0


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


@pytest.fixture
def no_key(monkeypatch):
    return clear_llm_env(monkeypatch)


def test_auto_without_any_setting_is_template(no_key):
    prov, note = make_provider("auto", env_family="mabim")
    assert isinstance(prov, TemplateProvider) and prov.label == "template-mutation (no LLM)"
    assert "template-mutation (no LLM)" in note and "no ANTHROPIC_API_KEY, OPENAI_API_KEY" in note


@pytest.mark.parametrize("var", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
def test_auto_with_an_anthropic_key_is_anthropic(no_key, var):
    no_key.setenv(var, "sk-test")
    no_key.setenv("OPENAI_API_KEY", "sk-openai")  # anthropic still comes first
    prov, note = make_provider(
        "auto", env_family="mabim", generator_model="gen-a", checker_model="chk-b"
    )
    assert isinstance(prov, AnthropicProvider) and prov.label == "LLM (gen-a)"
    assert "LLM (gen-a)" in note and "chk-b" in note and "an Anthropic key is set" in note
    assert isinstance(make_provider("auto", env_family="mabim", environ={})[0], TemplateProvider)


def test_auto_prefers_openai_settings_over_template(no_key):
    prov, note = make_provider("auto", env_family="mabim", environ={"OPENAI_API_KEY": "sk-o"})
    assert isinstance(prov, OpenAIProvider) and "OPENAI_API_KEY is set" in note
    assert (prov.generator_model, prov.checker_model) == ("gpt-4.1", "gpt-4.1-mini")
    assert prov.token_limit_param == "max_completion_tokens"  # the OpenAI API itself
    with LLMTestServer(models=("qwen-local",)) as server:
        prov, note = make_provider("auto", env_family="mabim", base_url=server.openai_url)
        assert "--base-url is given" in note and prov.generator_model == "qwen-local"
        env = {"OPENAI_BASE_URL": server.openai_url}
        prov, note = make_provider("auto", env_family="mabim", environ=env)
        assert "OPENAI_BASE_URL is set" in note and prov.base_url == server.openai_url
        assert prov.token_limit_param == "max_tokens"


def test_openai_models_from_the_server_listing(no_key):
    with LLMTestServer(models=("llama3.1:8b",)) as one:
        prov, note = make_provider("openai", env_family="mabim", base_url=one.openai_url)
        assert (prov.generator_model, prov.checker_model) == ("llama3.1:8b", "llama3.1:8b")
        assert f"LLM (llama3.1:8b at {one.openai_url})" in note
        prov, _ = make_provider(
            "openai", env_family="mabim", base_url=one.openai_url, checker_model="small"
        )
        assert (prov.generator_model, prov.checker_model) == ("llama3.1:8b", "small")
    with LLMTestServer(models=("a", "b")) as two:
        with pytest.raises(LLMConfigError, match=r"lists 2 models \(a, b\); pass --generator"):
            make_provider("openai", env_family="mabim", base_url=two.openai_url)
        prov, _ = make_provider(
            "openai", env_family="mabim", base_url=two.openai_url, generator_model="b"
        )
        assert prov.checker_model == "b" and len(two.requests) == 0  # a listing is no request
        url = two.openai_url
    with pytest.raises(LLMConfigError, match="cannot reach .* start it or fix --base-url"):
        make_provider("openai", env_family="mabim", base_url=url)


def test_remote_providers_without_settings_fail_at_once(no_key):
    with pytest.raises(LLMConfigError, match="needs ANTHROPIC_API_KEY"):
        make_provider("anthropic", env_family="mabim")
    with pytest.raises(LLMConfigError, match="needs OPENAI_API_KEY .* or --base-url URL"):
        make_provider("openai", env_family="mabim")


def test_a_remote_provider_must_implement_send_and_config_message():
    settings = dict(max_tokens=1, checker_max_tokens=1, timeout=1, max_concurrency=1)

    class NoConfigMessage(RemoteProvider):
        def _send(self, request, model, limit):
            return LLMResponse("x", model, {}, 0.0, None, {})

    class Complete(NoConfigMessage):
        label = "complete"

        def _config_message(self, err, model):
            return "fix it"

    with pytest.raises(TypeError, match="abstract"):
        RemoteProvider("g", "c", base_url=None, **settings)
    with pytest.raises(TypeError, match="_config_message"):
        NoConfigMessage("g", "c", base_url=None, **settings)
    assert Complete("g", "c", base_url=None, **settings).describe()["label"] == "complete"


def test_routed_generator_and_checker_from_different_providers(no_key, info):
    with LLMTestServer(lambda s: "gen reply", models=("local",)) as oai:
        with LLMTestServer(lambda s: '{"pass": true, "reasons": []}') as ant:
            no_key.setenv("ANTHROPIC_API_KEY", "sk-test")
            prov, note = make_provider(
                "openai",
                env_family="mabim",
                base_url=oai.openai_url,
                checker_provider="anthropic",
                checker_base_url=ant.url,
                checker_model="claude-haiku-4-5",
                max_concurrency=3,
            )
            assert isinstance(prov, RoutedProvider) and prov.remote
            assert "generator local (openai), checker claude-haiku-4-5 (anthropic)" in note
            check = LLMRequest.from_prompt(P.checker_messages(info, "x = 1"), 1, 0, "checker")
            gens = _requests(info, 2)
            out = prov.generate([gens[0], check, gens[1]])
            assert [r.text for r in out] == ["gen reply", '{"pass": true, "reasons": []}'] + [
                "gen reply"
            ]
            assert [s.body["model"] for s in oai.requests] == ["local", "local"]
            assert [s.body["model"] for s in ant.requests] == ["claude-haiku-4-5"]
    assert prov.generator.max_concurrency == prov.checker.max_concurrency == 3
    desc = prov.describe()
    assert desc["generator"]["name"] == "openai" and desc["checker"]["name"] == "anthropic"


def test_replay_and_unknown_specs(no_key, info, tmp_path):
    record_response(tmp_path, _requests(info, 1)[0], LLMResponse("t", "m"))
    prov, note = make_provider(f"replay:{tmp_path}", env_family="mabim")
    assert isinstance(prov, ReplayProvider) and "replay of run" in note and not prov_remote(prov)
    with pytest.raises(LLMConfigError, match="unknown provider 'gemini'; use auto, anthropic"):
        make_provider("gemini", env_family="mabim")


def prov_remote(prov) -> bool:
    return bool(getattr(prov, "remote", False))


def test_offline_providers_ignore_tell(info, tmp_path):
    record_response(tmp_path, _requests(info, 1)[0], LLMResponse("t", "m"))
    ReplayProvider(tmp_path).tell(1, [SlotResult(0, "code", 1.0)])
