"""Generator and checker from different providers (``--checker-provider``).

:class:`RoutedProvider` sends checker requests to one provider and generator / repair requests to
another, in one batch each, and puts the answers back in request order.
"""

from __future__ import annotations

from typing import Sequence

from espark_jax.llm.base import LLMRequest, LLMResponse, Provider, SlotResult


class RoutedProvider:
    """Generator and repair requests to ``generator``, checker requests to ``checker``.

    ``tell`` reaches both; the pair counts as remote (``--resume`` reuses its records) when either
    is remote.
    """

    def __init__(self, generator: Provider, checker: Provider) -> None:
        self.generator, self.checker = generator, checker
        self.name = f"{generator.name}+{checker.name}"
        self.label = f"{generator.label}; checker {checker.label}"
        self.remote = bool(getattr(generator, "remote", False) or getattr(checker, "remote", False))

    def describe(self) -> dict:
        """Manifest entry: both providers' entries."""
        return {
            "name": self.name,
            "label": self.label,
            "generator": self.generator.describe(),
            "checker": self.checker.describe(),
        }

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """Each provider answers its share; the result is in request order."""
        out: list[LLMResponse | None] = [None] * len(requests)
        for provider, want in ((self.generator, False), (self.checker, True)):
            idx = [i for i, r in enumerate(requests) if (r.role == "checker") == want]
            if idx:
                for i, resp in zip(idx, provider.generate([requests[i] for i in idx])):
                    out[i] = resp
        return [r for r in out if r is not None]

    def tell(self, iteration: int, results: Sequence[SlotResult]) -> None:
        """Forward the scores to both providers."""
        self.generator.tell(iteration, results)
        self.checker.tell(iteration, results)
