"""Candidates from Claude through the official ``anthropic`` SDK.

The SDK (2.x: httpx2, no temperature) does its own retries. K requests run concurrently, request
0 first so that the prompt cache is warm (:class:`~espark_jax.llm.remote.RemoteProvider`).
Rate-limit / overload / server / connection / timeout failures and malformed replies after the
SDK's retries become a per-slot :attr:`LLMResponse.error`; authentication, permission,
bad-request, not-found and payment errors abort the run with :class:`LLMConfigError`.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from espark_jax.llm.base import LLMConfigError, LLMRequest, LLMResponse
from espark_jax.llm.remote import DEFAULT_MAX_CONCURRENCY, RemoteProvider, config_error
from espark_jax.llm.usage import reported_tokens

DEFAULT_GENERATOR_MODEL = "claude-sonnet-4-6"
DEFAULT_CHECKER_MODEL = "claude-haiku-4-5"
KEY_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")


def api_key_present(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``ANTHROPIC_API_KEY`` or ``ANTHROPIC_AUTH_TOKEN`` is set (non-empty)."""
    env = os.environ if environ is None else environ
    return any(env.get(k) for k in KEY_VARS)


class AnthropicProvider(RemoteProvider):
    """Candidates from Claude through the official SDK.

    Args:
        generator_model: model for generator and repair requests.
        checker_model: model for checker requests.
        max_tokens: reply limit for generator/repair requests; ``checker_max_tokens`` for checks.
        max_retries: the SDK's own retries (429, 529, 5xx, connection errors) per request.
        timeout: seconds per request attempt.
        max_concurrency: requests in flight at once.
        api_key: explicit key; by default the SDK reads ANTHROPIC_API_KEY / ANTHROPIC_AUTH_TOKEN.
        base_url: API root (default: the SDK's, or ANTHROPIC_BASE_URL), e.g. a proxy.
        client: a ready ``anthropic.Anthropic`` client (then the connection options are unused).
    """

    name = "anthropic"

    def __init__(
        self,
        generator_model: str = DEFAULT_GENERATOR_MODEL,
        checker_model: str = DEFAULT_CHECKER_MODEL,
        *,
        max_tokens: int = 8000,
        checker_max_tokens: int = 2000,
        max_retries: int = 4,
        timeout: float = 300.0,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        api_key: str | None = None,
        base_url: str | None = None,
        client: Any = None,
    ) -> None:
        try:
            import anthropic
        except ImportError:
            raise LLMConfigError(
                "the anthropic provider needs the SDK: pip install 'espark-jax[llm]'"
            ) from None
        super().__init__(
            generator_model,
            checker_model,
            max_tokens=max_tokens,
            checker_max_tokens=checker_max_tokens,
            timeout=timeout,
            max_concurrency=max_concurrency,
            base_url=base_url,
        )
        self._sdk = anthropic
        if client is None:
            kwargs: dict[str, Any] = {"max_retries": int(max_retries), "timeout": self.timeout}
            if api_key is not None:
                kwargs["api_key"] = api_key
            if base_url:
                kwargs["base_url"] = base_url
            client = anthropic.Anthropic(**kwargs)
        self.client = client
        self.label = f"LLM ({generator_model})"
        # Errors that end the run: retrying or skipping a slot cannot fix them.
        self._abort = (
            anthropic.AuthenticationError,
            anthropic.PermissionDeniedError,
            anthropic.BadRequestError,
            anthropic.NotFoundError,
            anthropic.PaymentRequiredError,
            anthropic.CredentialsError,
        )
        self._slot_errors = (
            anthropic.RateLimitError,
            anthropic.InternalServerError,
            anthropic.APIConnectionError,
            anthropic.APIStatusError,
            anthropic.APIResponseValidationError,
        )

    def _send(self, request: LLMRequest, model: str, limit: int) -> LLMResponse:
        try:
            msg = self.client.messages.create(
                model=model,
                max_tokens=limit,
                system=[
                    {"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}
                ],
                messages=list(request.messages),
                timeout=self.timeout,
            )
        except TypeError as err:  # the SDK raises this before any I/O when no credential is found
            if "authentication" in str(err).lower():
                raise LLMConfigError(
                    "no Anthropic credential found; "
                    "set ANTHROPIC_API_KEY or use --provider template"
                ) from None
            raise
        raw = msg.model_dump(mode="json") if hasattr(msg, "model_dump") else {}
        if not isinstance(getattr(msg, "content", None), list):
            return LLMResponse(
                "", model, {}, 0.0, "MalformedReply: the server's reply has no content list", raw
            )
        text = "".join(
            getattr(b, "text", "") for b in msg.content if getattr(b, "type", "") == "text"
        )
        usage = reported_tokens(getattr(msg, "usage", None))
        return LLMResponse(text, str(getattr(msg, "model", model)), usage, 0.0, None, raw)

    def _config_message(self, err: BaseException, model: str) -> str:
        """The one-line abort message for an Anthropic status error, with its fix."""
        fixes = {
            401: "set a valid ANTHROPIC_API_KEY or use --provider template",
            403: "the key lacks permission for this model or API; use another key or model",
            400: "the request was rejected; check the model name and max_tokens settings",
            404: f"model {model!r} is unknown; pass a valid --generator-model / --checker-model",
            402: "the account needs billing set up; or use --provider template",
        }
        default = "fix the configuration or use --provider template"
        return config_error("anthropic", err, fixes, default)
