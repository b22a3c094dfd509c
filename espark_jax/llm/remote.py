"""What the remote (paid or self-hosted) providers share: :class:`RemoteProvider`, concurrent
answering, error lines.

:func:`answer_concurrently` sends request 0 alone (it writes the server's prompt cache for the
shared prefix), then the rest through a thread pool of at most ``max_concurrency`` requests at a
time; a :class:`~espark_jax.llm.base.LLMConfigError` from any of them cancels the pending ones
and ends the batch. :func:`one_line` and :func:`config_error` give the one-line reasons that end up
in slot records and in the message that aborts a run.
"""

from __future__ import annotations

import abc
import concurrent.futures as futures
import dataclasses
import time
from typing import Any, Callable, Sequence

from espark_jax.llm.base import LLMConfigError, LLMRequest, LLMResponse, SlotResult

DEFAULT_MAX_CONCURRENCY = 16


def one_line(err: BaseException, limit: int = 300) -> str:
    """``"ErrorType: message"`` on one line, cut at ``limit`` characters."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:limit]}"


def config_error(provider: str, err: BaseException, fixes: dict[int, str], default: str) -> str:
    """The one-line abort message for an SDK status error: provider, type, status, detail, fix."""
    status = getattr(err, "status_code", "?")
    detail = " ".join(str(getattr(err, "message", err)).split())[:200]
    return f"{provider} {type(err).__name__} ({status}): {detail} - {fixes.get(status, default)}"


def answer_concurrently(
    call: Callable[[LLMRequest], LLMResponse],
    requests: Sequence[LLMRequest],
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> list[LLMResponse]:
    """``[call(r) for r in requests]``: request 0 first and alone, the rest concurrently
    (at most ``max_concurrency`` at once), answers in request order.

    Raises:
        LLMConfigError: from any call (the pending ones are cancelled).
    """
    requests = list(requests)
    if not requests:
        return []
    results: list[LLMResponse | None] = [None] * len(requests)
    results[0] = call(requests[0])
    if len(requests) > 1:
        workers = max(1, min(int(max_concurrency), len(requests) - 1))
        with futures.ThreadPoolExecutor(max_workers=workers) as pool:
            pending = {pool.submit(call, r): i for i, r in enumerate(requests[1:], start=1)}
            try:
                for fut in futures.as_completed(pending):
                    results[pending[fut]] = fut.result()
            except LLMConfigError:
                for fut in pending:
                    fut.cancel()
                raise
    return [r for r in results if r is not None]


class RemoteProvider(abc.ABC):
    """What the SDK providers share: a model and a reply limit per role, K concurrent requests,
    and the sorting of failures (abort the run, fail the slot, or a malformed reply).

    A subclass sets ``name``, ``_sdk``, ``client``, ``label``, ``_abort`` and ``_slot_errors``
    (exception classes) and implements ``_send(request, model, limit) -> LLMResponse`` (latency
    is filled in here) and ``_config_message(err, model) -> str``.
    """

    name = "remote"
    remote = True  # paid or self-hosted: --resume answers recorded requests from their records
    _abort: tuple[type[BaseException], ...] = ()
    _slot_errors: tuple[type[BaseException], ...] = ()
    _sdk: Any = None

    def __init__(
        self,
        generator_model: str,
        checker_model: str,
        *,
        max_tokens: int,
        checker_max_tokens: int,
        timeout: float,
        max_concurrency: int,
        base_url: str | None,
    ) -> None:
        self.generator_model, self.checker_model = generator_model, checker_model
        self.max_tokens, self.checker_max_tokens = int(max_tokens), int(checker_max_tokens)
        self.timeout = float(timeout)
        self.max_concurrency = max(1, int(max_concurrency))
        self.base_url = base_url or None

    def describe(self) -> dict:
        """Manifest entry."""
        return {
            "name": self.name,
            "label": self.label,
            "generator_model": self.generator_model,
            "checker_model": self.checker_model,
            "base_url": self.base_url,
            "max_concurrency": self.max_concurrency,
            "sdk_version": getattr(self._sdk, "__version__", "?"),
        }

    @abc.abstractmethod
    def _send(self, request: LLMRequest, model: str, limit: int) -> LLMResponse:
        """One SDK request; its reply (or a malformed-reply error) with latency 0."""

    @abc.abstractmethod
    def _config_message(self, err: BaseException, model: str) -> str:
        """The one-line abort message for an ``_abort`` error, with its fix."""

    def _call(self, request: LLMRequest) -> LLMResponse:
        checker = request.role == "checker"
        model = self.checker_model if checker else self.generator_model
        limit = self.checker_max_tokens if checker else self.max_tokens
        start = time.perf_counter()
        try:
            resp = self._send(request, model, limit)
        except self._abort as err:
            raise LLMConfigError(self._config_message(err, model)) from None
        except self._slot_errors as err:
            resp = LLMResponse("", model, {}, 0.0, one_line(err), {})
        except ValueError as err:  # a body that is not JSON
            resp = LLMResponse("", model, {}, 0.0, f"MalformedReply: {one_line(err, 200)}", {})
        return dataclasses.replace(resp, latency_s=time.perf_counter() - start)

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """Send all requests: the first alone (it fills the prompt cache), the rest concurrently.

        Raises:
            LLMConfigError: on an error that no retry can fix (pending requests are cancelled).
        """
        return answer_concurrently(self._call, requests, self.max_concurrency)

    def tell(self, iteration: int, results: Sequence[SlotResult]) -> None:
        """No-op: the LLM learns from the feedback prompt instead."""
