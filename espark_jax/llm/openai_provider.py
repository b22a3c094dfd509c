"""Candidates from any OpenAI-compatible Chat Completions server, through the ``openai`` SDK.

That covers the OpenAI API itself and the servers that speak its protocol: vLLM, Ollama,
llama.cpp's server, LM Studio, SGLang and hosted gateways. The prompt (system text plus
Anthropic-style text blocks) becomes a system message and one string per turn, the shared prefix
first, so that servers with automatic prefix caching reuse it. The key comes from
``OPENAI_API_KEY``; a server at ``--base-url`` that needs none gets a stand-in key (local servers
ignore it). With a ``base_url`` and no model named, the one model the server lists is used.

Failures after the SDK's retries (429, 5xx, connection, timeout) and malformed replies become a
per-slot :attr:`~espark_jax.llm.base.LLMResponse.error`; authentication, permission,
bad-request, not-found and unprocessable-request errors abort with
:class:`~espark_jax.llm.base.LLMConfigError`. Usage is recorded with the Anthropic key names:
``input_tokens`` = prompt tokens not read from the cache, ``cache_read_input_tokens`` = cached
prompt tokens, ``output_tokens`` = completion tokens.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from espark_jax.llm.base import LLMConfigError, LLMRequest, LLMResponse
from espark_jax.llm.remote import DEFAULT_MAX_CONCURRENCY, RemoteProvider, config_error, one_line
from espark_jax.llm.usage import chat_tokens

DEFAULT_GENERATOR_MODEL = "gpt-4.1"
DEFAULT_CHECKER_MODEL = "gpt-4.1-mini"
STAND_IN_KEY = "no-key-needed"


def chat_messages(system: str, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Chat Completions messages: the system text, then each turn's text blocks joined by a blank
    line (cache markers dropped)."""
    out = [{"role": "system", "content": system}]
    for m in messages:
        content = m["content"]
        if not isinstance(content, str):
            content = "\n\n".join(str(b.get("text", "")) for b in content)
        out.append({"role": str(m["role"]), "content": content})
    return out


def _sdk() -> Any:
    try:
        import openai
    except ImportError:
        raise LLMConfigError(
            "the openai provider needs the SDK: pip install 'espark-jax[llm]'"
        ) from None
    return openai


def served_models(base_url: str, api_key: str | None = None, timeout: float = 30.0) -> list[str]:
    """The model ids an OpenAI-compatible server lists at ``GET {base_url}/models``.

    Raises:
        LLMConfigError: the server cannot be reached or refuses the request.
    """
    openai = _sdk()
    client = openai.OpenAI(
        base_url=base_url, api_key=api_key or STAND_IN_KEY, max_retries=1, timeout=timeout
    )
    try:
        return sorted(m.id for m in client.models.list())
    except openai.APIConnectionError as err:
        raise LLMConfigError(
            f"cannot reach the OpenAI-compatible server at {base_url} ({one_line(err, 120)}); "
            "start it or fix --base-url"
        ) from None
    except openai.APIStatusError as err:
        raise LLMConfigError(
            config_error("openai", err, {}, "pass --generator-model (and --checker-model)")
        ) from None


class OpenAIProvider(RemoteProvider):
    """Candidates from an OpenAI-compatible Chat Completions endpoint.

    Args:
        generator_model: model for generator and repair requests.
        checker_model: model for checker requests.
        base_url: API root ending in ``/v1`` (None: the SDK's default, api.openai.com).
        api_key: the key (None: a stand-in, which the SDK requires, for keyless servers).
        max_tokens: reply limit for generator/repair requests; ``checker_max_tokens`` for checks.
        max_retries: the SDK's own retries (429, 5xx, connection errors, timeouts) per request.
        timeout: seconds per request attempt.
        max_concurrency: requests in flight at once.
        token_limit_param: ``max_tokens`` or ``max_completion_tokens`` (default: the latter for
            the OpenAI API, the former, which every compatible server knows, for a base_url).
        client: a ready ``openai.OpenAI`` client (then the connection options are unused).
    """

    name = "openai"

    def __init__(
        self,
        generator_model: str = DEFAULT_GENERATOR_MODEL,
        checker_model: str = DEFAULT_CHECKER_MODEL,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 8000,
        checker_max_tokens: int = 2000,
        max_retries: int = 4,
        timeout: float = 300.0,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        token_limit_param: str | None = None,
        client: Any = None,
    ) -> None:
        openai = _sdk()
        super().__init__(
            generator_model,
            checker_model,
            max_tokens=max_tokens,
            checker_max_tokens=checker_max_tokens,
            timeout=timeout,
            max_concurrency=max_concurrency,
            base_url=base_url,
        )
        self._sdk = openai
        self.token_limit_param = token_limit_param or (
            "max_tokens" if base_url else "max_completion_tokens"
        )
        if self.token_limit_param not in ("max_tokens", "max_completion_tokens"):
            raise LLMConfigError(
                f"token_limit_param must be max_tokens or max_completion_tokens, "
                f"got {self.token_limit_param!r}"
            )
        if client is None:
            client = openai.OpenAI(
                api_key=api_key or STAND_IN_KEY,
                base_url=self.base_url,
                max_retries=int(max_retries),
                timeout=self.timeout,
            )
        self.client = client
        where = f" at {self.base_url}" if self.base_url else ""
        self.label = f"LLM ({generator_model}{where})"
        self._abort = (
            openai.AuthenticationError,
            openai.PermissionDeniedError,
            openai.BadRequestError,
            openai.NotFoundError,
            openai.UnprocessableEntityError,
        )
        self._slot_errors = (
            openai.RateLimitError,
            openai.InternalServerError,
            openai.APIConnectionError,
            openai.APIStatusError,
            openai.APIResponseValidationError,
        )

    def describe(self) -> dict:
        """Manifest entry."""
        return {**super().describe(), "token_limit_param": self.token_limit_param}

    def _send(self, request: LLMRequest, model: str, limit: int) -> LLMResponse:
        reply = self.client.chat.completions.create(
            model=model,
            messages=chat_messages(request.system, request.messages),
            timeout=self.timeout,
            **{self.token_limit_param: limit},
        )
        raw = reply.model_dump(mode="json") if hasattr(reply, "model_dump") else {}
        usage = chat_tokens(getattr(reply, "usage", None))
        choices = getattr(reply, "choices", None) or []
        text = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
        if not isinstance(text, str):
            why = "no choices" if not choices else "no message content"
            error = f"MalformedReply: the server's reply has {why}"
            return LLMResponse("", model, usage, 0.0, error, raw)
        return LLMResponse(text, str(reply.model or model), usage, 0.0, None, raw)

    def _config_message(self, err: BaseException, model: str) -> str:
        """The one-line abort message for an OpenAI status error, with its fix."""
        fixes = {
            401: "set a valid OPENAI_API_KEY (or the key the server expects)",
            403: "the key lacks permission for this model; use another key or model",
            400: "the request was rejected; check the model name and max-token settings",
            404: f"model {model!r} or the endpoint is unknown; pass a valid --generator-model / "
            "--checker-model and a --base-url ending in /v1",
            422: "the server rejected the request body; check the model name and --base-url",
        }
        default = "fix the configuration or use --provider template"
        return config_error("openai", err, fixes, default)
