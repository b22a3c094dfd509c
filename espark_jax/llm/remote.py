"""What the remote (paid or self-hosted) providers share: concurrent answering, error lines.

:func:`answer_concurrently` sends request 0 alone (it writes the server's prompt cache for the
shared prefix), then the rest through a thread pool of at most ``max_concurrency`` requests at a
time; a :class:`~espark_jax.llm.base.LLMConfigError` from any of them cancels the pending ones
and ends the batch. :func:`one_line` and :func:`config_error` give the one-line reasons that end up
in slot records and in the message that aborts a run.
"""

from __future__ import annotations

import concurrent.futures as futures
from typing import Callable, Sequence

from espark_jax.llm.base import LLMConfigError, LLMRequest, LLMResponse

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
