"""What a mask check speaks in: its limits, its rejections and its result record.

:class:`Rejected` is raised by every check stage (static, trace, abstract, values) with a one-line
message and a hint for the LLM; :class:`MaskCheckResult` is what a check returns, JSON-ready so
that the sandbox child can send it to the parent; :class:`CheckLimits` bounds the checks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from espark_jax.masks.safe import MaskFn

MAX_REASON_CHARS = 400


class Rejected(ValueError):
    """A candidate failed a check.

    Attributes:
        stage: where it failed (``extract``, ``syntax``, ``static``, ``trace``, ``abstract``,
            ``values``, ...).
        message: one line, LLM-readable, with the line number where known.
        hint: how to fix it.
        line: 1-based line in the extracted code, or None.
    """

    def __init__(self, stage: str, message: str, hint: str = "", line: int | None = None) -> None:
        self.stage = stage
        self.line = line
        self.message = f"line {line}: {message}" if line else message
        self.hint = hint
        super().__init__(f"{stage}: {self.message}" + (f" (hint: {hint})" if hint else ""))


class SandboxViolation(RuntimeError):
    """Raised by the sandbox child's audit hook when a candidate tries I/O, processes or imports."""


@dataclasses.dataclass(frozen=True)
class CheckLimits:
    """Bounds for the abstract and value checks.

    Attributes:
        max_equations: jaxpr equations, sub-jaxprs included.
        max_intermediate_elements: elements of any one intermediate array (one environment).
        empty_row_reject_frac: reject when more than this fraction of agent rows allows nothing.
        n_random: random sample contexts.
        max_recorded: recorded contexts used (evenly subsampled beyond this).
        seed: seed of the random contexts.
        max_flops_per_agent: XLA's FLOPs estimate of one environment step's mask, per agent.
        max_bytes_per_agent: XLA's estimate of the bytes one environment step's mask accesses,
            per agent.
        learners: K, the run's learners that apply masks (for the budget's message).
        envs: E, environments per learner (for the budget's message).
    """

    max_equations: int = 4000
    max_intermediate_elements: int = 2**22
    empty_row_reject_frac: float = 0.9
    n_random: int = 16
    max_recorded: int = 256
    seed: int = 0
    max_flops_per_agent: float = 1e6
    max_bytes_per_agent: float = 1e6
    learners: int = 1
    envs: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "CheckLimits":
        """Inverse of :meth:`to_dict` (missing keys take defaults)."""
        return cls(**dict(d or {}))


@dataclasses.dataclass
class MaskCheckResult:
    """The outcome of checking one candidate.

    Attributes:
        ok: True when every check passed.
        stage: ``"ok"`` or the failing stage (``extract``, ``syntax``, ``static``, ``trace``,
            ``abstract``, ``values``, ``memory``, ``timeout``, ``crash``, ``sandbox``).
        message: what went wrong (one line, with the code line where known).
        hint: how to fix it.
        reason: one line for the LLM: ``"<stage>: <message> Hint: <hint>"`` (empty when ok).
        code: the extracted source.
        stats: mask statistics and check facts (see :func:`espark_jax.masks.checks.value_check`
            and :func:`espark_jax.masks.checks.abstract_check`).
        seconds: wall time of the whole check.
        fn: the exported mask (an :class:`~espark_jax.masks.export.ExportedMask`, only when
            ok), else None.
        artefact: the serialised ``jax.export`` bytes of ``fn`` (only when ok); its hash and
            facts are in ``stats["export"]``.
    """

    ok: bool
    stage: str
    message: str = ""
    hint: str = ""
    reason: str = ""
    code: str = ""
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    fn: MaskFn | None = dataclasses.field(default=None, repr=False, compare=False)
    artefact: bytes | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def rejected(
        cls,
        stage: str,
        message: str,
        hint: str = "",
        code: str = "",
        stats: dict[str, Any] | None = None,
        seconds: float = 0.0,
    ) -> "MaskCheckResult":
        """A failed result with the one-line ``reason`` filled in."""
        return cls(
            False,
            stage,
            message,
            hint,
            one_line_reason(stage, message, hint),
            code,
            dict(stats or {}),
            seconds,
        )

    @classmethod
    def from_rejection(
        cls,
        rej: Rejected,
        code: str = "",
        stats: dict[str, Any] | None = None,
        seconds: float = 0.0,
    ) -> "MaskCheckResult":
        """The failed result for a :class:`Rejected`."""
        return cls.rejected(rej.stage, rej.message, rej.hint, code, stats, seconds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (without ``fn`` and ``artefact``)."""
        d = dataclasses.asdict(dataclasses.replace(self, fn=None, artefact=None))
        d.pop("fn")
        d.pop("artefact")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MaskCheckResult":
        """Inverse of :meth:`to_dict`."""
        keys = {f.name for f in dataclasses.fields(cls)} - {"fn", "artefact"}
        return cls(**{k: d[k] for k in keys if k in d})


def one_line_reason(stage: str, message: str, hint: str) -> str:
    """``"<stage>: <message> Hint: <hint>"`` on one line, at most 400 characters."""
    text = f"{stage}: {message}" + (f" Hint: {hint}" if hint else "")
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."
