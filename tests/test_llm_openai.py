"""The openai provider through the real SDK against a real Chat Completions server on 127.0.0.1
(tests/llm_server.py): request shape, usage with cached tokens, retries, per-slot failures,
timeouts, malformed replies, aborts, concurrency limits."""

from __future__ import annotations

import pytest
from llm_helpers import generator_requests as requests_for
from llm_helpers import mabim_spec
from llm_server import LLMTestServer, Reply, error, peak_concurrency

from espark_jax.llm import prompts as P
from espark_jax.llm.openai_provider import chat_messages
from espark_jax.llm.providers import LLMConfigError, LLMRequest, OpenAIProvider

KEY = "sk-test-openai"


@pytest.fixture(scope="module")
def info() -> P.EnvPromptInfo:
    return P.EnvPromptInfo.from_spec(mabim_spec(), "def step(state):\n    return state\n")


def provider(server: LLMTestServer, max_retries: int = 2, **kw) -> OpenAIProvider:
    kw.setdefault("api_key", KEY)
    return OpenAIProvider(
        "gen-m", "check-m", base_url=server.openai_url, max_retries=max_retries, **kw
    )


def test_request_shape_and_usage_with_cached_tokens(info):
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1050,
        "prompt_tokens_details": {"cached_tokens": 900},
    }
    with LLMTestServer(lambda seen: Reply(text="some code", usage=usage)) as server:
        gen = requests_for(info, 1)[0]
        check = LLMRequest.from_prompt(P.checker_messages(info, "x = 1"), 1, 0, "checker")
        r_gen, r_check = provider(server, max_tokens=1234).generate([gen, check])
        first, second = server.requests
    assert first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == f"Bearer {KEY}"
    body = first.body
    assert body["model"] == "gen-m" and body["max_tokens"] == 1234
    assert not {"temperature", "top_p", "n", "max_completion_tokens"} & set(body)
    task, focus = gen.messages[0]["content"]
    assert body["messages"] == [
        {"role": "system", "content": gen.system},
        {"role": "user", "content": task["text"] + "\n\n" + focus["text"]},  # shared prefix first
    ]
    assert "cache_control" not in str(body)
    assert second.body["model"] == "check-m" and second.body["max_tokens"] == 2000
    assert r_gen.ok and r_gen.text == "some code" and r_gen.model == "gen-m"
    assert r_gen.usage == {
        "input_tokens": 100,  # prompt tokens not read from the cache
        "output_tokens": 50,
        "cache_read_input_tokens": 900,
        "cache_creation_input_tokens": 0,
    }
    assert r_gen.raw["usage"]["prompt_tokens"] == 1000 and r_check.model == "check-m"


def test_chat_messages_keep_turns_and_roles():
    msgs = ({"role": "user", "content": "a"}, {"role": "assistant", "content": [{"text": "b"}]})
    assert chat_messages("sys", msgs) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
    ]


def test_without_a_key_a_stand_in_key_is_sent_and_limits_are_configurable(info):
    with LLMTestServer() as server:
        prov = provider(server, api_key=None, token_limit_param="max_completion_tokens")
        prov.generate(requests_for(info, 1))
        (seen,) = server.requests
    assert seen.headers["authorization"] == "Bearer no-key-needed"
    assert seen.body["max_completion_tokens"] == 8000 and "max_tokens" not in seen.body
    with pytest.raises(LLMConfigError, match="max_tokens or max_completion_tokens"):
        OpenAIProvider("m", "m", base_url="http://127.0.0.1:9/v1", token_limit_param="limit")


def test_retries_429_and_500_then_succeeds(info):
    answers = iter([error(429, "rate_limit_exceeded"), error(500, "server_error"), "done"])
    with LLMTestServer(lambda seen: next(answers)) as server:
        (resp,) = provider(server, max_retries=3).generate(requests_for(info, 1))
        assert resp.ok and resp.text == "done" and len(server.requests) == 3


@pytest.mark.parametrize(
    "status, cls",
    [(429, "RateLimitError"), (500, "InternalServerError"), (503, "InternalServerError")],
)
def test_transient_errors_fail_only_their_slot(info, status, cls):
    def respond(seen):
        return error(status, "server_error") if seen.slot() == 1 else f"slot {seen.slot()}"

    with LLMTestServer(respond) as server:
        out = provider(server, max_retries=2).generate(requests_for(info, 3))
        slots = [s.slot() for s in server.requests]
    assert [r.text for r in out] == ["slot 0", "", "slot 2"]
    assert out[1].error.startswith(cls) and "\n" not in out[1].error
    assert slots.count(1) == 3 and slots.count(0) == slots.count(2) == 1


def test_timeout_fails_only_its_slot(info):
    def respond(seen):
        return Reply(text="late", delay=1.0) if seen.slot() == 1 else "in time"

    with LLMTestServer(respond) as server:
        out = provider(server, max_retries=1, timeout=0.25).generate(requests_for(info, 2))
        slots = [s.slot() for s in server.requests]
    assert out[0].text == "in time" and out[1].error.startswith("APITimeoutError")
    assert slots.count(1) == 2


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"<html>bad gateway</html>", "MalformedReply: JSONDecodeError"),
        (b'{"id": "x", "object": "chat.completion", "model": "m", "choices": []}', "no choices"),
        (
            b'{"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": "stop", '
            b'"message": {"role": "assistant", "content": null}}]}',
            "no message content",
        ),
    ],
)
def test_malformed_reply_fails_only_its_slot(info, raw, why):
    def respond(seen):
        return Reply(raw=raw) if seen.slot() == 0 else "fine"

    with LLMTestServer(respond) as server:
        out = provider(server).generate(requests_for(info, 2))
    assert why in out[0].error and out[0].text == "" and out[1].text == "fine"


@pytest.mark.parametrize(
    "status, kind, match",
    [
        (401, "invalid_api_key", "set a valid OPENAI_API_KEY"),
        (403, "permission_denied", "permission"),
        (400, "invalid_request_error", "BadRequestError"),
        (404, "model_not_found", "'gen-m' or the endpoint is unknown"),
        (422, "unprocessable", "rejected the request body"),
    ],
)
def test_configuration_errors_abort(info, status, kind, match):
    with LLMTestServer(lambda seen: error(status, kind)) as server:
        with pytest.raises(LLMConfigError, match=match) as exc:
            provider(server, max_retries=3).generate(requests_for(info, 4))
        n = len(server.requests)
    assert str(exc.value).startswith("openai ") and f"({status})" in str(exc.value)
    assert "\n" not in str(exc.value) and n == 1


def test_auth_failure_mid_batch_aborts(info):
    def respond(seen):
        return error(401, "invalid_api_key") if seen.slot() == 3 else "x"

    with LLMTestServer(respond) as server:
        with pytest.raises(LLMConfigError, match="401"):
            provider(server).generate(requests_for(info, 5))


def test_k_concurrent_requests_with_a_limit(info):
    def respond(seen):
        return Reply(text=f"slot {seen.slot()}", delay=0.3)

    with LLMTestServer(respond) as server:
        out = provider(server).generate(requests_for(info, 5))
        assert [r.text for r in out] == [f"slot {s}" for s in range(5)]
        assert peak_concurrency(server.requests) == 4  # request 0 alone, then the other four
    with LLMTestServer(lambda seen: Reply(text="x", delay=0.2)) as server:
        provider(server, max_concurrency=3).generate(requests_for(info, 8))
        assert peak_concurrency(server.requests) == 3 and len(server.requests) == 8
