"""Where candidate exploration functions come from: an LLM, a recorded run, or a template search.

Three providers share one interface (:class:`Provider`):

* :class:`AnthropicProvider` - the official ``anthropic`` SDK (2.x: httpx2, no temperature, its
  own retries). K requests run concurrently, request 0 first so the prompt cache is warm.
  Rate-limit / overload / server / connection failures after the SDK's retries become a per-slot
  :attr:`LLMResponse.error`; authentication, permission, bad-request, not-found and payment
  errors abort with :class:`LLMConfigError`.
* :class:`ReplayProvider` - serves the responses recorded in an earlier run directory, keyed by
  (iteration, slot, role, round); warns about prompt drift.
* :class:`TemplateProvider` - no LLM: parametric mask templates under an evolutionary search
  (:mod:`espark_jax.llm.templates`), the paper's "w/o LLM" ablation.

:func:`make_provider` turns a ``--provider`` string into a provider plus a one-line announcement.
Every response is recorded with :func:`record_response` as
``iter_XX/cand_KK/<role>[_rN].json``, which doubles as a replay recording.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Literal, Mapping, Protocol, Sequence, runtime_checkable

from espark_jax.llm.prompts import EnvPromptInfo, hash_prompt
from espark_jax.llm.templates import Genome, TemplateSearch, prepare_families, render_genome

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

DEFAULT_GENERATOR_MODEL = "claude-sonnet-4-6"
DEFAULT_CHECKER_MODEL = "claude-haiku-4-5"
Role = Literal["generator", "checker", "repair"]
ROLES = ("generator", "checker", "repair")
KEY_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")


class LLMConfigError(RuntimeError):
    """A configuration problem that no retry can fix (bad key, unknown model, missing package)."""


class ReplayError(RuntimeError):
    """A replay cannot serve a request (missing or unreadable record)."""


# --------------------------------------------------------------------------------------------
# Requests, responses, records
# --------------------------------------------------------------------------------------------


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


def record_path(
    run_dir: str | os.PathLike, iteration: int, slot: int, role: str, round: int = 0
) -> Path:
    """``run_dir/iter_XX/cand_KK/<role>[_rN].json``."""
    name = role + (f"_r{round}" if round else "")
    return Path(run_dir) / f"iter_{iteration:02d}" / f"cand_{slot:02d}" / f"{name}.json"


def record_response(
    run_dir: str | os.PathLike,
    request: LLMRequest,
    response: LLMResponse,
    *,
    include_prompt: bool = True,
) -> Path:
    """Write one request/response record (atomically) and return its path.

    The record holds the key, the prompt hash, the reply text, model, usage, latency, error and the
    raw body; with ``include_prompt`` also the system text and messages.
    """
    path = record_path(run_dir, request.iteration, request.slot, request.role, request.round)
    data: dict[str, Any] = {
        "iteration": request.iteration,
        "slot": request.slot,
        "role": request.role,
        "round": request.round,
        "prompt_hash": request.prompt_hash(),
        "text": response.text,
        "model": response.model,
        "usage": response.usage,
        "latency_s": response.latency_s,
        "error": response.error,
        "history": [list(h) for h in request.history],
        "raw": response.raw,
    }
    if include_prompt:
        data["system"] = request.system
        data["messages"] = list(request.messages)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_record(
    run_dir: str | os.PathLike, iteration: int, slot: int, role: str, round: int = 0
) -> dict:
    """Read a record written by :func:`record_response`.

    Raises:
        ReplayError: the record is missing or not valid JSON.
    """
    path = record_path(run_dir, iteration, slot, role, round)
    if not path.is_file():
        raise ReplayError(
            f"replay of {Path(run_dir).name}: no record for iteration {iteration}, slot {slot}, {role} round {round} "
            f"({path}); replay only runs with the recorded K, iterations and repair rounds, or use another provider"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ReplayError(
            f"replay record {path} is unreadable ({err}); delete it or record the run again"
        ) from None
    if not isinstance(data, dict) or "text" not in data:
        raise ReplayError(f"replay record {path} has no 'text'; delete it or record the run again")
    return data


# --------------------------------------------------------------------------------------------
# Provider protocol
# --------------------------------------------------------------------------------------------


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


def _usage(raw_usage: Any) -> dict:
    keys = (
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    )
    return {k: int(getattr(raw_usage, k, 0) or 0) for k in keys}


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


# --------------------------------------------------------------------------------------------
# Anthropic
# --------------------------------------------------------------------------------------------


def api_key_present(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``ANTHROPIC_API_KEY`` or ``ANTHROPIC_AUTH_TOKEN`` is set (non-empty)."""
    env = os.environ if environ is None else environ
    return any(env.get(k) for k in KEY_VARS)


class AnthropicProvider:
    """Candidates from Claude through the official SDK.

    Args:
        generator_model: model for generator and repair requests.
        checker_model: model for checker requests.
        max_tokens: reply limit for generator/repair requests; ``checker_max_tokens`` for checks.
        max_retries: the SDK's own retries (429, 529, 5xx, connection errors) per request.
        timeout: seconds per request attempt.
        max_workers: concurrent requests.
        api_key: explicit key; by default the SDK reads ANTHROPIC_API_KEY / ANTHROPIC_AUTH_TOKEN.
        client: a ready ``anthropic.Anthropic`` client (tests pass one built on httpx2.MockTransport).
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
        max_workers: int = 16,
        api_key: str | None = None,
        client: Any = None,
    ) -> None:
        try:
            import anthropic
        except ImportError:
            raise LLMConfigError(
                "the anthropic provider needs the SDK: pip install 'espark-jax[llm]'"
            ) from None
        self._sdk = anthropic
        self.generator_model = generator_model
        self.checker_model = checker_model
        self.max_tokens = int(max_tokens)
        self.checker_max_tokens = int(checker_max_tokens)
        self.max_workers = max(1, int(max_workers))
        self.timeout = float(timeout)
        if client is None:
            kwargs: dict[str, Any] = {"max_retries": int(max_retries), "timeout": self.timeout}
            if api_key is not None:
                kwargs["api_key"] = api_key
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

    def describe(self) -> dict:
        """Manifest entry."""
        return {
            "name": self.name,
            "label": self.label,
            "generator_model": self.generator_model,
            "checker_model": self.checker_model,
            "sdk_version": getattr(self._sdk, "__version__", "?"),
        }

    def _call(self, request: LLMRequest) -> LLMResponse:
        model = self.checker_model if request.role == "checker" else self.generator_model
        max_tokens = self.checker_max_tokens if request.role == "checker" else self.max_tokens
        start = time.perf_counter()
        try:
            msg = self.client.messages.create(
                model=model,
                max_tokens=max_tokens,
                system=[
                    {"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}
                ],
                messages=list(request.messages),
                timeout=self.timeout,
            )
        except self._abort as err:
            raise LLMConfigError(_config_message(err, model)) from None
        except self._slot_errors as err:
            return LLMResponse("", model, {}, time.perf_counter() - start, _one_line(err), {})
        except TypeError as err:  # the SDK raises this before any I/O when no credential is found
            if "authentication" in str(err).lower():
                raise LLMConfigError(
                    "no Anthropic credential found; set ANTHROPIC_API_KEY or use --provider template"
                ) from None
            raise
        text = "".join(
            getattr(b, "text", "") for b in msg.content if getattr(b, "type", "") == "text"
        )
        raw = msg.model_dump(mode="json") if hasattr(msg, "model_dump") else {}
        return LLMResponse(
            text,
            str(getattr(msg, "model", model)),
            _usage(getattr(msg, "usage", None)),
            time.perf_counter() - start,
            None,
            raw,
        )

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """Send all requests: the first alone (it writes the prompt cache), then the rest concurrently.

        Raises:
            LLMConfigError: on an authentication, permission, bad-request, not-found or payment error
                (pending requests are cancelled).
        """
        requests = list(requests)
        if not requests:
            return []
        results: list[LLMResponse | None] = [None] * len(requests)
        results[0] = self._call(requests[0])
        if len(requests) > 1:
            with futures.ThreadPoolExecutor(
                max_workers=min(self.max_workers, len(requests) - 1)
            ) as pool:
                pending = {
                    pool.submit(self._call, r): i for i, r in enumerate(requests[1:], start=1)
                }
                try:
                    for fut in futures.as_completed(pending):
                        results[pending[fut]] = fut.result()
                except LLMConfigError:
                    for fut in pending:
                        fut.cancel()
                    raise
        return [r for r in results if r is not None]

    def tell(self, iteration: int, results: Sequence[SlotResult]) -> None:
        """No-op: the LLM learns from the feedback prompt instead."""


def _config_message(err: BaseException, model: str) -> str:
    status = getattr(err, "status_code", "?")
    detail = " ".join(str(getattr(err, "message", err)).split())[:200]
    fix = {
        401: "set a valid ANTHROPIC_API_KEY or use --provider template",
        403: "the key lacks permission for this model or API; use another key or model",
        400: "the request was rejected; check the model name and max_tokens settings",
        404: f"model {model!r} is unknown; pass a valid --generator-model / --checker-model",
        402: "the account needs billing set up; or use --provider template",
    }.get(status, "fix the configuration or use --provider template")
    return f"anthropic {type(err).__name__} ({status}): {detail} - {fix}"


# --------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------


class ReplayProvider:
    """Serves the responses recorded in an earlier run directory.

    Training and selection stay real, but the replies do not react to this run's feedback, which
    the label says ("replay of run X"). A record whose prompt hash differs from the request's is
    served anyway with ``prompt_drift=True`` and one warning per :meth:`generate` call.
    """

    name = "replay"

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ReplayError(
                f"replay directory {self.run_dir} does not exist; pass replay:<an earlier run directory>"
            )
        if not any(self.run_dir.glob("iter_*/cand_*/*.json")):
            raise ReplayError(
                f"replay directory {self.run_dir} holds no iter_XX/cand_KK/*.json records"
            )
        self.label = f"replay of run {self.run_dir.resolve().name}"

    def describe(self) -> dict:
        """Manifest entry."""
        return {"name": self.name, "label": self.label, "run_dir": str(self.run_dir.resolve())}

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """The recorded responses, in request order.

        Raises:
            ReplayError: a needed record is missing or unreadable.
        """
        out, drifted = [], []
        for req in requests:
            rec = read_record(self.run_dir, req.iteration, req.slot, req.role, req.round)
            drift = rec.get("prompt_hash") != req.prompt_hash()
            if drift:
                drifted.append(
                    f"it{req.iteration}/k{req.slot}/{req.role}{'_r%d' % req.round if req.round else ''}"
                )
            out.append(
                LLMResponse(
                    str(rec["text"]),
                    str(rec.get("model", "?")),
                    dict(rec.get("usage") or {}),
                    0.0,
                    rec.get("error"),
                    dict(rec.get("raw") or {}),
                    drift,
                )
            )
        if drifted:
            warnings.warn(
                f"{self.label}: {len(drifted)} prompt(s) differ from the recorded ones ({', '.join(drifted[:4])}"
                f"{', ...' if len(drifted) > 4 else ''}); serving the recorded replies anyway",
                stacklevel=2,
            )
        return out

    def tell(self, iteration: int, results: Sequence[SlotResult]) -> None:
        """No-op: recorded replies do not change."""


# --------------------------------------------------------------------------------------------
# Template search (no LLM)
# --------------------------------------------------------------------------------------------

STATIC_VERDICT = json.dumps(
    {
        "pass": True,
        "reasons": [
            "static-only: the template provider has no LLM checker; the static compiler checks the code"
        ],
        "suggestion": "",
    }
)


class TemplateProvider:
    """No LLM: hand-written parametric mask templates under an evolutionary search.

    Generator requests get the search's genome for (iteration, slot), rendered to source and
    wrapped in a ```python fence; a repair request gets a random restart for that slot; a checker
    request gets a static pass verdict (model ``"static-only"``). :meth:`tell` feeds the selection
    scores back into the search. Deterministic for a seed and the told scores. On resume, call
    :meth:`tell` for every finished iteration (in order) before generating the next one.
    """

    name = "template"
    label = "template-mutation (no LLM)"

    def __init__(
        self,
        env_family: str,
        seed: int = 0,
        env_info: EnvPromptInfo | None = None,
        **search_kw: Any,
    ) -> None:
        self.env_family = env_family
        self.families, self.roles = prepare_families(env_family, env_info)
        self.search = TemplateSearch(self.families, seed, **search_kw)
        self._by_name = {f.name: f for f in self.families}
        self._issued: dict[tuple[int, int], Genome] = {}

    def describe(self) -> dict:
        """Manifest entry."""
        return {
            "name": self.name,
            "label": self.label,
            "env_family": self.env_family,
            "seed": self.search.seed,
            "families": [f.name for f in self.families],
            "checker": "static-only",
        }

    def source(self, genome: Genome) -> str:
        """The rendered source of ``genome`` for this environment."""
        return render_genome(genome, self._by_name, self.roles)

    def _reply(self, genome: Genome) -> str:
        fam = self._by_name[genome.family]
        idea = fam.summary + (
            f"; combined (AND) with: {self._by_name[genome.partner.family].summary}"
            if genome.partner is not None
            else ""
        )
        return f"Template-mutation candidate (no LLM): {genome.describe()}.\nIdea: {idea}.\n\n```python\n{self.source(genome)}```\n"

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """Rendered template candidates (generator / repair) or static verdicts (checker)."""
        out = []
        for req in requests:
            start = time.perf_counter()
            if req.role == "checker":
                out.append(
                    LLMResponse(
                        STATIC_VERDICT, "static-only", {}, 0.0, None, {"checker": "static-only"}
                    )
                )
                continue
            if req.role == "repair":
                genome = self.search.restart(req.iteration, req.slot, req.round)
            else:
                genome = self.search.propose(req.iteration, req.slot)
            self._issued[(req.iteration, req.slot)] = genome
            text = self._reply(genome)
            out.append(
                LLMResponse(
                    text,
                    "template-mutation",
                    {},
                    time.perf_counter() - start,
                    None,
                    {"genome": genome.to_dict()},
                )
            )
        return out

    def _genome_for(self, iteration: int, slot: int, code: str) -> Genome | None:
        """The genome whose source is ``code``: the one issued for the slot, else (after a resume)
        the search's proposal or one of its repair restarts."""
        want = _normalise(code)
        candidates = [self._issued.get((iteration, slot)), self.search.propose(iteration, slot)]
        candidates += [self.search.restart(iteration, slot, r) for r in range(1, 4)]
        return next(
            (g for g in candidates if g is not None and _normalise(self.source(g)) == want), None
        )

    def tell(self, iteration: int, results: Sequence[SlotResult]) -> None:
        """Feed one generation's selection scores to the search.

        A slot counts when its reported code is a source this provider issued for it; fallback
        slots report ``code=None`` and count as failures. Unrecognised code is ignored with a warning.
        """
        scores: dict[int, tuple[Genome, float | None]] = {}
        unknown = []
        for res in results:
            if res.code is None:
                continue
            genome = self._genome_for(iteration, res.slot, res.code)
            if genome is None:
                unknown.append(res.slot)
                continue
            ok = res.score is not None and math.isfinite(float(res.score))
            scores[res.slot] = (genome, float(res.score) if ok else None)
        if unknown:
            warnings.warn(
                f"template provider: iteration {iteration} slots {unknown} report code it did not issue; "
                "their scores are ignored",
                stacklevel=2,
            )
        self.search.tell(iteration, scores)


def _normalise(code: str) -> str:
    lines = (ln.rstrip() for ln in code.strip().splitlines())
    return "\n".join(ln for ln in lines if ln and not ln.lstrip().startswith("#"))


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


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
                "--provider anthropic needs ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) in the environment; "
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
