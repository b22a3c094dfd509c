"""The provider contract: requests, responses, slot results, the Provider protocol, errors.

Every candidate source (:mod:`espark_jax.llm.anthropic_provider`, :mod:`espark_jax.llm.offline`)
answers :class:`LLMRequest` objects with :class:`LLMResponse` objects and is told each slot's
score as a :class:`SlotResult`; :mod:`espark_jax.llm.providers` builds one by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

from espark_jax.llm.prompts import hash_prompt

Role = Literal["generator", "checker", "repair"]
ROLES = ("generator", "checker", "repair")


class LLMConfigError(RuntimeError):
    """A configuration problem that no retry can fix (bad key, unknown model, missing package)."""


class ReplayError(RuntimeError):
    """A replay cannot serve a request (missing or unreadable record)."""


@dataclasses.dataclass(frozen=True)
class LLMRequest:
    """One call to a provider.

    Attributes:
        iteration: eSpark iteration (as numbered by the loop).
        slot: candidate index k in ``0..K-1``.
        role: ``"generator"`` (a new candidate), ``"repair"`` (fix a failed one) or ``"checker"``.
        system: system prompt (stable, cached by the anthropic provider).
        messages: Anthropic-style messages, already including any repair turns.
        history: the slot's earlier ``(reply, reason)`` pairs in this iteration, for records.
        round: repair / re-check round, 0 for the first call of a role (part of the record key).
    """

    iteration: int
    slot: int
    role: Role
    system: str
    messages: tuple[dict, ...]
    history: tuple[tuple[str, str], ...] = ()
    round: int = 0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(
                f"LLMRequest.role must be one of {', '.join(ROLES)}, got {self.role!r}"
            )
        if self.iteration < 0 or self.slot < 0 or self.round < 0:
            raise ValueError("LLMRequest iteration, slot and round must be non-negative")
        object.__setattr__(self, "messages", tuple(self.messages))

    @classmethod
    def from_prompt(
        cls,
        prompt: Any,
        iteration: int,
        slot: int,
        role: Role,
        *,
        round: int = 0,
        history: Sequence[tuple[str, str]] = (),
    ) -> "LLMRequest":
        """A request from a :class:`espark_jax.llm.prompts.Prompt`."""
        return cls(
            iteration, slot, role, prompt.system, tuple(prompt.messages), tuple(history), round
        )

    def prompt_hash(self) -> str:
        """Hash of the prompt text (see :func:`espark_jax.llm.prompts.hash_prompt`)."""
        return hash_prompt(self.system, self.messages)


@dataclasses.dataclass(frozen=True)
class LLMResponse:
    """A provider's answer to one request.

    Attributes:
        text: the reply text ("" on error).
        model: the model that answered (``"template-mutation"``/``"static-only"`` offline).
        usage: token counts: input_tokens, output_tokens, cache_read_input_tokens,
            cache_creation_input_tokens.
        latency_s: wall time of the call including the SDK's retries.
        error: one-line reason when the slot failed (rate limit, overload, connection...).
        raw: the raw API body (or provider-specific details) for the record.
        prompt_drift: True when a replayed record was made from a different prompt.
    """

    text: str
    model: str
    usage: dict = dataclasses.field(default_factory=dict)
    latency_s: float = 0.0
    error: str | None = None
    raw: dict = dataclasses.field(default_factory=dict)
    prompt_drift: bool = False

    @property
    def ok(self) -> bool:
        """True when the call produced a reply."""
        return self.error is None


@dataclasses.dataclass(frozen=True)
class SlotResult:
    """What the loop tells a provider about one slot after training.

    Attributes:
        slot: candidate index.
        code: the source that was trained (None for a fallback / failed slot).
        score: its selection score, higher is better (None or NaN for a failure).
    """

    slot: int
    code: str | None
    score: float | None


@runtime_checkable
class Provider(Protocol):
    """What the eSpark loop needs from a candidate source."""

    name: str
    label: str

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """Answer every request; the result is in request order."""

    def tell(self, iteration: int, results: Sequence[SlotResult]) -> None:
        """Report each slot's trained code and selection score (used by the template search)."""

    def describe(self) -> dict:
        """Provider facts for the run manifest (name, label, models...)."""
