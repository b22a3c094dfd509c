"""The anthropic provider through the real SDK against a real Messages API server on 127.0.0.1
(tests/llm_server.py): request shape and prompt-caching markers, retries, per-slot failures,
timeouts, malformed replies, aborts, concurrency, usage from the response bodies."""

from __future__ import annotations

import pytest
from llm_helpers import generator_requests as requests_for
from llm_helpers import mabim_spec
from llm_server import LLMTestServer, Reply, error, peak_concurrency

from espark_jax.llm import prompts as P
from espark_jax.llm.providers import AnthropicProvider, LLMConfigError, LLMRequest, SlotResult

KEY = "test-key-123"
CODE = "```python\ndef compute_mask(ctx, action_space):\n    return action_space >= 0\n```"


@pytest.fixture(scope="module")
def info() -> P.EnvPromptInfo:
    return P.EnvPromptInfo.from_spec(mabim_spec(), "def step(state):\n    return state\n")


def provider(server: LLMTestServer, max_retries: int = 2, **kw) -> AnthropicProvider:
    return AnthropicProvider(
        "gen-model-x",
        "check-model-y",
        api_key=KEY,
        base_url=server.url,
        max_retries=max_retries,
        **kw,
    )


def test_request_shape_caching_markers_and_usage(info):
    usage = {
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_input_tokens": 900,
        "cache_creation_input_tokens": 40,
    }
    with LLMTestServer(lambda seen: Reply(text=CODE, usage=usage)) as server:
        gen = requests_for(info, 1)[0]
        check = LLMRequest.from_prompt(
            P.checker_messages(info, "def compute_mask(ctx, a):\n    return 1"), 1, 0, "checker"
        )
        r_gen, r_check = provider(server, max_tokens=1234).generate([gen, check])
        seen = server.requests
    first = seen[0]
    assert first.path == "/v1/messages" and first.headers["authorization"] == f"Bearer {KEY}"
    assert "anthropic-version" in first.headers
    body = first.body
    assert body["model"] == "gen-model-x" and body["max_tokens"] == 1234
    assert not {"temperature", "top_p", "top_k", "n"} & set(body)
    # the stable prefix carries the caching markers: the system text and the task block
    assert body["system"] == [
        {"type": "text", "text": gen.system, "cache_control": {"type": "ephemeral"}}
    ]
    assert body["messages"] == [dict(m) for m in gen.messages]
    task, focus = body["messages"][0]["content"]
    assert task["cache_control"] == {"type": "ephemeral"} and "cache_control" not in focus
    assert seen[1].body["model"] == "check-model-y" and seen[1].body["max_tokens"] == 2000
    assert r_gen.ok and r_gen.text == CODE and r_gen.model == "gen-model-x"
    assert r_gen.usage == usage and r_gen.raw["id"].startswith("msg_") and r_gen.latency_s > 0
    assert r_check.model == "check-model-y" and r_check.usage == usage


def test_usage_counted_by_the_server_reaches_the_response(info):
    with LLMTestServer(lambda seen: "reply text of 24 chars..") as server:
        (resp,) = provider(server).generate(requests_for(info, 1))
        (seen,) = server.requests
    assert resp.usage["input_tokens"] == seen.prompt_chars() // 4
    assert resp.usage["output_tokens"] == len("reply text of 24 chars..") // 4 == 6
    assert resp.usage["cache_read_input_tokens"] == 0


def test_retries_429_and_529_then_succeeds(info):
    answers = iter([error(429, "rate_limit_error"), error(529, "overloaded_error"), "done"])
    with LLMTestServer(lambda seen: next(answers)) as server:
        (resp,) = provider(server, max_retries=3).generate(requests_for(info, 1))
        assert resp.ok and resp.text == "done" and len(server.requests) == 3
        retry_counts = [s.headers.get("x-stainless-retry-count") for s in server.requests]
    assert retry_counts == ["0", "1", "2"]


@pytest.mark.parametrize(
    "status, kind, cls",
    [
        (429, "rate_limit_error", "RateLimitError"),
        (529, "overloaded_error", "OverloadedError"),
        (500, "api_error", "InternalServerError"),
    ],
)
def test_transient_errors_fail_only_their_slot(info, status, kind, cls):
    def respond(seen):
        return error(status, kind) if seen.slot() == 1 else f"slot {seen.slot()}"

    with LLMTestServer(respond) as server:
        out = provider(server, max_retries=2).generate(requests_for(info, 3))
        slots = [s.slot() for s in server.requests]
    assert [r.ok for r in out] == [True, False, True]
    assert out[1].error.startswith(cls) and "\n" not in out[1].error and out[1].text == ""
    assert slots.count(1) == 3 and slots.count(0) == slots.count(2) == 1  # two SDK retries


def test_timeout_fails_only_its_slot(info):
    def respond(seen):
        return Reply(text="late", delay=1.0) if seen.slot() == 0 else "in time"

    with LLMTestServer(respond) as server:
        out = provider(server, max_retries=1, timeout=0.25).generate(requests_for(info, 2))
        slots = [s.slot() for s in server.requests]
    assert out[0].error.startswith("APITimeoutError") and out[1].text == "in time"
    assert slots.count(0) == 2  # the SDK retried the timed-out request once


@pytest.mark.parametrize(
    "raw", [b"this is not json", b'{"id": "x", "type": "message", "model": "m"}']
)
def test_malformed_reply_fails_only_its_slot(info, raw):
    def respond(seen):
        return Reply(raw=raw) if seen.slot() == 1 else "fine"

    with LLMTestServer(respond) as server:
        out = provider(server).generate(requests_for(info, 2))
    assert out[0].text == "fine" and out[1].error.startswith("MalformedReply")


def test_connection_refused_fails_the_slot(info):
    with LLMTestServer() as server:
        url = server.url
    closed = AnthropicProvider("g", "c", api_key=KEY, base_url=url, max_retries=1, timeout=2)
    (resp,) = closed.generate(requests_for(info, 1))
    assert resp.error.startswith("APIConnectionError") and resp.text == ""


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
    with LLMTestServer(lambda seen: error(status, kind)) as server:
        with pytest.raises(LLMConfigError, match=match) as exc:
            provider(server, max_retries=3).generate(requests_for(info, 4))
        n = len(server.requests)
    assert "\n" not in str(exc.value) and f"({status})" in str(exc.value)
    assert n == 1  # no retries, and request 0 failing stops the batch before the others


def test_auth_failure_mid_batch_aborts(info):
    def respond(seen):
        return error(401, "authentication_error") if seen.slot() == 2 else "x"

    with LLMTestServer(respond) as server:
        with pytest.raises(LLMConfigError, match="401"):
            provider(server).generate(requests_for(info, 4))


def test_missing_credentials_abort(info, monkeypatch):
    for var in ("API_KEY", "AUTH_TOKEN", "PROFILE", "CONFIG_DIR"):
        monkeypatch.delenv(f"ANTHROPIC_{var}", raising=False)
    with LLMTestServer() as server:
        with pytest.raises(LLMConfigError, match="ANTHROPIC_API_KEY"):
            AnthropicProvider(base_url=server.url).generate(requests_for(info, 1))
        assert server.requests == []  # nothing was sent


def test_k_concurrent_requests_answered_in_slot_order(info):
    def respond(seen):
        return Reply(text=f"reply for slot {seen.slot()}", delay=0.3)

    k = 6
    with LLMTestServer(respond) as server:
        out = provider(server, max_concurrency=8).generate(requests_for(info, k))
        seen = server.requests
    assert [r.text for r in out] == [f"reply for slot {s}" for s in range(k)]
    first = next(s for s in seen if s.slot() == 0)
    assert all(s.start >= first.end for s in seen if s.slot() != 0)  # 0 alone warms the cache
    assert peak_concurrency(seen) == k - 1  # the other five at once


def test_max_concurrency_limits_requests_in_flight(info):
    with LLMTestServer(lambda seen: Reply(text="x", delay=0.2)) as server:
        provider(server, max_concurrency=2).generate(requests_for(info, 7))
        assert peak_concurrency(server.requests) == 2 and len(server.requests) == 7


def test_tell_is_a_no_op(info):
    with LLMTestServer() as server:
        provider(server).tell(1, [SlotResult(0, None, None)])
        assert server.requests == []
