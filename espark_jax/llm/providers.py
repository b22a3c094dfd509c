"""Where candidate exploration functions come from: the one door, :func:`make_provider`.

Four providers share one interface (:class:`~espark_jax.llm.base.Provider`):

* ``anthropic`` - :class:`~espark_jax.llm.anthropic_provider.AnthropicProvider` (Claude through
  the official SDK);
* ``openai`` - :class:`~espark_jax.llm.openai_provider.OpenAIProvider` (any OpenAI-compatible
  Chat Completions server through the official SDK: the OpenAI API, vLLM, Ollama, llama.cpp,
  LM Studio, SGLang);
* ``replay:DIR`` - :class:`~espark_jax.llm.offline.ReplayProvider` (the responses recorded in an
  earlier run directory);
* ``template`` - :class:`~espark_jax.llm.offline.TemplateProvider` (no LLM: parametric mask
  templates under an evolutionary search, the paper's "w/o LLM" ablation).

:func:`make_provider` turns a ``--provider`` string into a provider plus a one-line
announcement (:func:`provider_from_config` does it for a run's configuration); with a different
``checker_provider`` the checker requests go to a second provider
(:class:`~espark_jax.llm.routed.RoutedProvider`). Every response is recorded with
:func:`~espark_jax.llm.recording.record_response`, which doubles as a replay recording. The
contract types, the providers and the record functions are importable from here as well.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from espark_jax.llm import openai_provider as oai
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
from espark_jax.llm.openai_provider import OpenAIProvider
from espark_jax.llm.recording import read_record, record_path, record_response
from espark_jax.llm.routed import RoutedProvider

__all__ = [
    "DEFAULT_CHECKER_MODEL",
    "DEFAULT_GENERATOR_MODEL",
    "AnthropicProvider",
    "LLMConfigError",
    "LLMRequest",
    "LLMResponse",
    "OpenAIProvider",
    "Provider",
    "ReplayError",
    "ReplayProvider",
    "RoutedProvider",
    "SlotResult",
    "TemplateProvider",
    "api_key_present",
    "make_provider",
    "provider_from_config",
    "read_record",
    "record_path",
    "record_response",
]


SPECS = "auto, anthropic, openai, replay:DIR or template"
NO_LLM_HINT = "set ANTHROPIC_API_KEY, OPENAI_API_KEY or --base-url to use an LLM"


def resolve_auto(environ: Mapping[str, str], base_url: str | None = None) -> tuple[str, str]:
    """What ``auto`` means here: ``(spec, why)``. Anthropic when its key is set, then an
    OpenAI-compatible endpoint (``--base-url``, OPENAI_BASE_URL or OPENAI_API_KEY), else the
    template provider."""
    if api_key_present(environ):
        return "anthropic", "an Anthropic key is set"
    if base_url:
        return "openai", "--base-url is given and no Anthropic key is set"
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        if environ.get(var):
            return "openai", f"{var} is set and no Anthropic key is set"
    return "template", "no ANTHROPIC_API_KEY, OPENAI_API_KEY, OPENAI_BASE_URL or --base-url is set"


def _openai(
    env: Mapping[str, str],
    generator_model: str | None,
    checker_model: str | None,
    base_url: str | None,
    remote_kw: dict[str, Any],
) -> OpenAIProvider:
    key = env.get("OPENAI_API_KEY") or None
    url = base_url or env.get("OPENAI_BASE_URL") or None
    if not key and not url:
        raise LLMConfigError(
            "--provider openai needs OPENAI_API_KEY (the OpenAI API) or --base-url URL (an "
            "OpenAI-compatible server such as vLLM or Ollama); set one or use --provider template"
        )
    if url:
        if generator_model is None:
            models = oai.served_models(url, key)
            if len(models) != 1:
                listed = ", ".join(models[:8]) or "none"
                raise LLMConfigError(
                    f"the server at {url} lists {len(models)} models ({listed}); "
                    "pass --generator-model (and --checker-model)"
                )
            generator_model = models[0]
        checker_model = checker_model or generator_model
    gen = generator_model or oai.DEFAULT_GENERATOR_MODEL
    chk = checker_model or oai.DEFAULT_CHECKER_MODEL
    return OpenAIProvider(gen, chk, base_url=url, api_key=key, **remote_kw)


def _build(
    spec: str,
    *,
    env_family: str,
    seed: int,
    generator_model: str | None,
    checker_model: str | None,
    env_info: EnvPromptInfo | None,
    env: Mapping[str, str],
    base_url: str | None,
    remote_kw: dict[str, Any],
) -> tuple[Provider, str]:
    """One provider by its (resolved) spec and the note of its announcement."""
    if spec == "anthropic":
        if not api_key_present(env):
            raise LLMConfigError(
                "--provider anthropic needs ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) "
                "in the environment; set it or use --provider template"
            )
        provider: Provider = AnthropicProvider(
            generator_model or DEFAULT_GENERATOR_MODEL,
            checker_model or DEFAULT_CHECKER_MODEL,
            base_url=base_url,
            **remote_kw,
        )
    elif spec == "openai":
        provider = _openai(env, generator_model, checker_model, base_url, remote_kw)
    elif spec == "template":
        provider = TemplateProvider(env_family, seed, env_info)
        return provider, f"the paper's 'w/o LLM' ablation; {NO_LLM_HINT}"
    elif spec.startswith("replay:"):
        provider = ReplayProvider(spec[len("replay:") :])
        return provider, "recorded replies; they do not react to this run's feedback"
    else:
        raise LLMConfigError(f"unknown provider {spec!r}; use {SPECS}")
    return provider, f"generator {provider.generator_model}, checker {provider.checker_model}"


def make_provider(
    spec: str,
    *,
    env_family: str,
    seed: int = 0,
    generator_model: str | None = None,
    checker_model: str | None = None,
    env_info: EnvPromptInfo | None = None,
    environ: Mapping[str, str] | None = None,
    base_url: str | None = None,
    checker_provider: str | None = None,
    checker_base_url: str | None = None,
    max_concurrency: int | None = None,
    **remote_kw: Any,
) -> tuple[Provider, str]:
    """Build the provider named by ``spec`` and a one-line announcement of the choice.

    ``spec``: ``auto`` (see :func:`resolve_auto`), ``anthropic``, ``openai``, ``replay:DIR`` or
    ``template``. Models default per provider (anthropic: claude-sonnet-4-6 / claude-haiku-4-5;
    openai: gpt-4.1 / gpt-4.1-mini, or the one model a ``base_url`` server lists).
    ``checker_provider`` (a spec, default: the same provider) answers the checker requests, at
    ``checker_base_url``. ``environ`` replaces ``os.environ`` for keys and URLs; ``max_concurrency``
    and ``remote_kw`` go to the remote providers.

    Raises:
        LLMConfigError: a remote provider without its key or URL, an unreachable model listing,
            or an unknown spec.
        ReplayError: ``replay:DIR`` with a missing or empty directory.
    """
    env = os.environ if environ is None else environ
    if max_concurrency is not None:
        remote_kw = {**remote_kw, "max_concurrency": max_concurrency}
    spec = (spec or "auto").strip()
    why = "requested"
    if spec == "auto":
        spec, why = resolve_auto(env, base_url)
    common = dict(env_family=env_family, seed=seed, env_info=env_info, env=env, remote_kw=remote_kw)
    chk_spec = (checker_provider or "").strip() or spec
    if chk_spec == "auto":
        chk_spec = resolve_auto(env, checker_base_url)[0]
    if chk_spec == spec and not checker_base_url:
        provider, note = _build(
            spec,
            generator_model=generator_model,
            checker_model=checker_model,
            base_url=base_url,
            **common,
        )
        return provider, f"provider: {provider.label} ({why}; {note})"
    gen, _ = _build(
        spec, generator_model=generator_model, checker_model=None, base_url=base_url, **common
    )
    chk, _ = _build(
        chk_spec,
        generator_model=checker_model,
        checker_model=checker_model,
        base_url=checker_base_url,
        **common,
    )
    provider = RoutedProvider(gen, chk)
    gen_model = getattr(gen, "generator_model", gen.label)
    chk_model = getattr(chk, "checker_model", chk.label)
    note = f"generator {gen_model} ({gen.name}), checker {chk_model} ({chk.name})"
    return provider, f"provider: {provider.label} ({why}; {note})"


def provider_from_config(
    cfg: Any, env_info: EnvPromptInfo | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Provider, str]:
    """:func:`make_provider` for a run's :class:`~espark_jax.search_config.SearchConfig`."""
    return make_provider(
        cfg.provider,
        env_family=cfg.scenario.split("/", 1)[0],
        seed=cfg.seed,
        generator_model=cfg.generator_model,
        checker_model=cfg.checker_model,
        env_info=env_info,
        environ=environ,
        base_url=getattr(cfg, "base_url", None),
        checker_provider=getattr(cfg, "checker_provider", None),
        checker_base_url=getattr(cfg, "checker_base_url", None),
        max_concurrency=getattr(cfg, "max_concurrency", None),
    )
