"""Where candidate exploration functions come from: the one door, :func:`make_provider`.

Three providers share one interface (:class:`~espark_jax.llm.base.Provider`):

* ``anthropic`` - :class:`~espark_jax.llm.anthropic_provider.AnthropicProvider` (Claude through
  the official SDK);
* ``replay:DIR`` - :class:`~espark_jax.llm.offline.ReplayProvider` (the responses recorded in an
  earlier run directory);
* ``template`` - :class:`~espark_jax.llm.offline.TemplateProvider` (no LLM: parametric mask
  templates under an evolutionary search, the paper's "w/o LLM" ablation).

:func:`make_provider` turns a ``--provider`` string into a provider plus a one-line
announcement. Every response is recorded with
:func:`~espark_jax.llm.recording.record_response`, which doubles as a replay recording. The
contract types, the providers and the record functions are importable from here as well.
"""

from __future__ import annotations

from typing import Any, Mapping

from espark_jax.llm.anthropic_provider import (
    DEFAULT_CHECKER_MODEL,
    DEFAULT_GENERATOR_MODEL,
    AnthropicProvider,
    api_key_present,
)
from espark_jax.llm.base import (
    LLMConfigError,
    LLMRequest,
    LLMResponse,
    Provider,
    ReplayError,
    SlotResult,
)
from espark_jax.llm.env_info import EnvPromptInfo
from espark_jax.llm.offline import ReplayProvider, TemplateProvider
from espark_jax.llm.recording import read_record, record_path, record_response

__all__ = [
    "DEFAULT_CHECKER_MODEL",
    "DEFAULT_GENERATOR_MODEL",
    "AnthropicProvider",
    "LLMConfigError",
    "LLMRequest",
    "LLMResponse",
    "Provider",
    "ReplayError",
    "ReplayProvider",
    "SlotResult",
    "TemplateProvider",
    "api_key_present",
    "make_provider",
    "read_record",
    "record_path",
    "record_response",
]


def make_provider(
    spec: str,
    *,
    env_family: str,
    seed: int = 0,
    generator_model: str = DEFAULT_GENERATOR_MODEL,
    checker_model: str = DEFAULT_CHECKER_MODEL,
    env_info: EnvPromptInfo | None = None,
    environ: Mapping[str, str] | None = None,
    **anthropic_kw: Any,
) -> tuple[Provider, str]:
    """Build the provider named by ``spec`` and a one-line announcement of the choice.

    ``spec``: ``auto`` (anthropic when ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN is set, else
    template), ``anthropic``, ``replay:DIR`` or ``template``. ``environ`` replaces ``os.environ``
    for the key check; ``anthropic_kw`` go to :class:`AnthropicProvider`.

    Raises:
        LLMConfigError: ``anthropic`` without a key, or an unknown spec.
        ReplayError: ``replay:DIR`` with a missing or empty directory.
    """
    spec = (spec or "auto").strip()
    have_key = api_key_present(environ)
    if spec == "auto":
        spec = "anthropic" if have_key else "template"
        why = "an Anthropic key is set" if have_key else "no ANTHROPIC_API_KEY is set"
    else:
        why = "requested"
    if spec == "anthropic":
        if not have_key:
            raise LLMConfigError(
                "--provider anthropic needs ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) "
                "in the environment; "
                "set it or use --provider template"
            )
        provider: Provider = AnthropicProvider(generator_model, checker_model, **anthropic_kw)
        note = f"generator {generator_model}, checker {checker_model}"
    elif spec == "template":
        provider = TemplateProvider(env_family, seed, env_info)
        note = "the paper's 'w/o LLM' ablation; set ANTHROPIC_API_KEY to use an LLM"
    elif spec.startswith("replay:"):
        provider = ReplayProvider(spec[len("replay:") :])
        note = "recorded replies; they do not react to this run's feedback"
    else:
        raise LLMConfigError(
            f"unknown provider {spec!r}; use auto, anthropic, replay:DIR or template"
        )
    return provider, f"provider: {provider.label} ({why}; {note})"
