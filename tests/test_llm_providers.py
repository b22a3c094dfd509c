"""Providers: the real anthropic SDK path (httpx2.MockTransport), replay records, the factory."""

from __future__ import annotations

import json
import threading
import time
import warnings

import anthropic
import httpx2
import pytest
from llm_helpers import mabim_spec

from espark_jax.llm import prompts as P
from espark_jax.llm.providers import (
    AnthropicProvider,
    LLMConfigError,
    LLMRequest,
    LLMResponse,
    ReplayError,
    ReplayProvider,
    SlotResult,
    TemplateProvider,
    make_provider,
    read_record,
    record_path,
    record_response,
)

KEY = "test-key-123"


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


def _slot_of(body: dict) -> int:
    """The slot a request belongs to, read from its focus line ("candidate N of K")."""
    text = body["messages"][-1]["content"][-1]["text"]
    return int(text.split("candidate ", 1)[1].split(" ", 1)[0]) - 1


def _ok(body: dict, text: str, usage: dict | None = None) -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage or {"input_tokens": 11, "output_tokens": 7},
        },
    )


def _error(status: int, kind: str) -> httpx2.Response:
    return httpx2.Response(
        status,
        headers={"retry-after": "0.01"},
        json={"type": "error", "error": {"type": kind, "message": f"mock {kind}"}},
    )


def _provider(handler, max_retries: int = 2, **kw) -> AnthropicProvider:
    client = anthropic.Anthropic(
        api_key=KEY,
        base_url="http://mock.invalid",
        max_retries=max_retries,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    return AnthropicProvider("gen-model-x", "check-model-y", client=client, **kw)


# --------------------------------------------------------------------------------------------
# Anthropic SDK path
# --------------------------------------------------------------------------------------------


def test_request_shape_and_usage(info):
    seen = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        seen.append((request, body))
        return _ok(
            body,
            "```python\ndef compute_mask(ctx, action_space):\n    return 1\n```",
            {
                "input_tokens": 100,
                "output_tokens": 50,
                "cache_read_input_tokens": 900,
                "cache_creation_input_tokens": 40,
            },
        )

    prov = _provider(handler, max_tokens=1234)
    gen = _requests(info, 1)[0]
    check = LLMRequest.from_prompt(
        P.checker_messages(info, "def compute_mask(ctx, a):\n    return 1"), 1, 0, "checker"
    )
    r_gen, r_check = prov.generate([gen, check])
    request, body = seen[0]
    assert request.url.path == "/v1/messages"
    assert (
        request.headers["authorization"] == f"Bearer {KEY}"
        and "anthropic-version" in request.headers
    )
    assert body["model"] == "gen-model-x" and body["max_tokens"] == 1234
    assert not {"temperature", "top_p", "top_k", "n"} & set(body)
    assert body["system"] == [
        {"type": "text", "text": gen.system, "cache_control": {"type": "ephemeral"}}
    ]
    assert body["messages"] == [dict(m) for m in gen.messages]
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert seen[1][1]["model"] == "check-model-y"
    assert r_gen.ok and r_gen.text.startswith("```python") and r_gen.model == "gen-model-x"
    assert r_gen.usage == {
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_input_tokens": 900,
        "cache_creation_input_tokens": 40,
    }
    assert r_gen.raw["id"] == "msg_test" and r_gen.latency_s >= 0
    assert r_check.model == "check-model-y"
    assert prov.label == "LLM (gen-model-x)" and prov.describe()["checker_model"] == "check-model-y"


def test_retries_429_and_529_then_succeeds(info):
    calls = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request)
        if len(calls) == 1:
            return _error(429, "rate_limit_error")
        if len(calls) == 2:
            return _error(529, "overloaded_error")
        return _ok(json.loads(request.content), "done")

    (resp,) = _provider(handler, max_retries=3).generate(_requests(info, 1))
    assert resp.ok and resp.text == "done" and len(calls) == 3


@pytest.mark.parametrize(
    "status, kind, cls",
    [
        (429, "rate_limit_error", "RateLimitError"),
        (529, "overloaded_error", "OverloadedError"),
        (500, "api_error", "InternalServerError"),
    ],
)
def test_transient_errors_fail_only_their_slot(info, status, kind, cls):
    attempts = {0: 0, 1: 0, 2: 0}
    lock = threading.Lock()

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        slot = _slot_of(body)
        with lock:
            attempts[slot] += 1
        return _error(status, kind) if slot == 1 else _ok(body, f"slot {slot}")

    out = _provider(handler, max_retries=2).generate(_requests(info, 3))
    assert [r.ok for r in out] == [True, False, True]
    assert out[1].error.startswith(cls) and "\n" not in out[1].error and out[1].text == ""
    assert (
        attempts[1] == 3 and attempts[0] == attempts[2] == 1
    )  # the SDK retried the failing slot twice


def test_connection_error_fails_only_its_slot(info):
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if _slot_of(body) == 0:
            raise httpx2.ConnectError("connection refused")
        return _ok(body, "fine")

    out = _provider(handler, max_retries=1).generate(_requests(info, 2))
    assert out[0].error.startswith("APIConnectionError") and out[1].ok


@pytest.mark.parametrize(
    "status, kind, match",
    [
        (401, "authentication_error", "ANTHROPIC_API_KEY"),
        (403, "permission_error", "permission"),
        (400, "invalid_request_error", "BadRequestError"),
        (404, "not_found_error", "gen-model-x"),
    ],
)
def test_configuration_errors_abort(info, status, kind, match):
    calls = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        return _error(status, kind)

    with pytest.raises(LLMConfigError, match=match) as exc:
        _provider(handler, max_retries=3).generate(_requests(info, 4))
    assert "\n" not in str(exc.value)
    assert len(calls) == 1  # no retries, and request 0 failing stops the batch before the others


def test_auth_failure_mid_batch_aborts(info):
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        return _error(401, "authentication_error") if _slot_of(body) == 2 else _ok(body, "x")

    with pytest.raises(LLMConfigError, match="401"):
        _provider(handler).generate(_requests(info, 4))


def test_missing_credentials_abort(info, monkeypatch):
    for var in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_PROFILE",
        "ANTHROPIC_CONFIG_DIR",
    ):
        monkeypatch.delenv(var, raising=False)
    client = anthropic.Anthropic(
        base_url="http://mock.invalid",
        http_client=httpx2.Client(transport=httpx2.MockTransport(lambda r: _ok({}, ""))),
    )
    with pytest.raises(LLMConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider(client=client).generate(_requests(info, 1))


def test_k_concurrent_requests_answered_in_slot_order(info):
    log: list[tuple[int, float, float]] = []
    active, peak = [0], [0]
    lock = threading.Lock()

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        slot = _slot_of(body)
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        start = time.monotonic()
        time.sleep(0.05 if slot else 0.02)
        with lock:
            active[0] -= 1
            log.append((slot, start, time.monotonic()))
        return _ok(body, f"reply for slot {slot}")

    k = 6
    out = _provider(handler, max_workers=8).generate(_requests(info, k))
    assert [r.text for r in out] == [f"reply for slot {s}" for s in range(k)]
    first = next(entry for entry in log if entry[0] == 0)
    assert all(
        start >= first[2] for slot, start, _ in log if slot != 0
    )  # request 0 alone warms the cache
    assert peak[0] >= 2  # the rest ran concurrently


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
# Factory
# --------------------------------------------------------------------------------------------


@pytest.fixture
def no_key(monkeypatch):
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_auto_without_key_is_template(no_key):
    prov, note = make_provider("auto", env_family="mabim")
    assert isinstance(prov, TemplateProvider) and prov.label == "template-mutation (no LLM)"
    assert "template-mutation (no LLM)" in note and "no ANTHROPIC_API_KEY" in note


@pytest.mark.parametrize("var", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
def test_auto_with_key_is_anthropic(no_key, var):
    no_key.setenv(var, "sk-test")
    prov, note = make_provider(
        "auto", env_family="mabim", generator_model="gen-a", checker_model="chk-b"
    )
    assert isinstance(prov, AnthropicProvider) and prov.label == "LLM (gen-a)"
    assert "LLM (gen-a)" in note and "chk-b" in note
    assert isinstance(make_provider("auto", env_family="mabim", environ={})[0], TemplateProvider)


def test_explicit_anthropic_without_key_fails_at_once(no_key):
    with pytest.raises(LLMConfigError, match="needs ANTHROPIC_API_KEY"):
        make_provider("anthropic", env_family="mabim")


def test_replay_and_unknown_specs(no_key, info, tmp_path):
    record_response(tmp_path, _requests(info, 1)[0], LLMResponse("t", "m"))
    prov, note = make_provider(f"replay:{tmp_path}", env_family="mabim")
    assert isinstance(prov, ReplayProvider) and "replay of run" in note
    with pytest.raises(LLMConfigError, match="unknown provider 'openai'"):
        make_provider("openai", env_family="mabim")


def test_llm_providers_ignore_tell(info, tmp_path):
    record_response(tmp_path, _requests(info, 1)[0], LLMResponse("t", "m"))
    ReplayProvider(tmp_path).tell(1, [SlotResult(0, "code", 1.0)])
    _provider(lambda r: _ok({}, "")).tell(1, [SlotResult(0, None, None)])
