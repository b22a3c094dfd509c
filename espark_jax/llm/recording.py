"""The provider wrapper that records every LLM exchange in the run directory (replay data).

Records are the files of :func:`espark_jax.llm.providers.record_response`
(``iter_XX/cand_KK/<role>[_rN].json``); :class:`~espark_jax.llm.providers.ReplayProvider` serves
them again, and ``--resume`` answers paid requests from them instead of asking twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from espark_jax.llm.providers import (
    LLMRequest,
    LLMResponse,
    Provider,
    SlotResult,
    read_record,
    record_path,
    record_response,
)


class RecordingProvider:
    """Wraps a provider: every request/response is written to the run directory.

    For the paid ``anthropic`` provider a request whose successful record already exists is
    answered from the record (``--resume`` never repeats an LLM call); offline providers are
    deterministic and free, so they are always asked again (their internal state stays in step).
    """

    def __init__(self, inner: Provider, run_dir: str | os.PathLike) -> None:
        self.inner, self.run_dir = inner, Path(run_dir)
        self.name, self.label = inner.name, inner.label
        self.reuse = inner.name == "anthropic"
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
        return [r for r in out if r is not None]

    def tell(self, iteration: int, results: Sequence[SlotResult]) -> None:
        """Forward the scores to the wrapped provider."""
        self.inner.tell(iteration, results)
