"""Run-directory records of LLM exchanges, and the provider wrapper that writes them.

Every request/response is one JSON file ``iter_XX/cand_KK/<role>[_rN].json``
(:func:`record_path`, :func:`record_response`, :func:`read_record`).
:class:`~espark_jax.llm.offline.ReplayProvider` serves them again, and ``--resume`` answers
the requests of remote (paid or self-hosted) providers from them (:class:`RecordingProvider`)
instead of asking twice. After every batch the wrapper re-sums the token usage of the iterations it
touched (:func:`espark_jax.llm.usage.write_usage`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from espark_jax.llm.base import LLMRequest, LLMResponse, Provider, ReplayError, SlotResult
from espark_jax.llm.usage import write_usage


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
            f"replay of {Path(run_dir).name}: no record for iteration {iteration}, slot {slot}, "
            f"{role} round {round} ({path}); replay only runs with the recorded K, iterations "
            "and repair rounds, or use another provider"
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


class RecordingProvider:
    """Wraps a provider: every request/response is written to the run directory.

    For a remote provider (``remote = True``: anthropic, openai, or a routed pair with one of
    them) a request whose successful record already exists is answered from the record
    (``--resume`` never repeats an LLM call); offline providers are deterministic and free, so
    they are always asked again (their internal state stays in step).
    """

    def __init__(self, inner: Provider, run_dir: str | os.PathLike) -> None:
        self.inner, self.run_dir = inner, Path(run_dir)
        self.name, self.label = inner.name, inner.label
        self.reuse = bool(getattr(inner, "remote", False))
        self.reused = 0

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """Answer requests (from records when allowed), recording new answers."""
        out: list[LLMResponse | None] = [None] * len(requests)
        todo = []
        for i, req in enumerate(requests):
            path = record_path(self.run_dir, req.iteration, req.slot, req.role, req.round)
            if self.reuse and path.is_file():
                rec = read_record(self.run_dir, req.iteration, req.slot, req.role, req.round)
                if not rec.get("error"):
                    out[i] = LLMResponse(
                        rec["text"],
                        rec.get("model", ""),
                        rec.get("usage", {}),
                        0.0,
                        None,
                        rec.get("raw", {}),
                    )
                    self.reused += 1
                    continue
            todo.append(i)
        if todo:
            answers = self.inner.generate([requests[i] for i in todo])
            for i, resp in zip(todo, answers):
                record_response(self.run_dir, requests[i], resp)
                out[i] = resp
            write_usage(self.run_dir, sorted({requests[i].iteration for i in todo}))
        return [r for r in out if r is not None]

    def tell(self, iteration: int, results: Sequence[SlotResult]) -> None:
        """Forward the scores to the wrapped provider."""
        self.inner.tell(iteration, results)
