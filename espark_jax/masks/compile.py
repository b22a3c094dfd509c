"""The compile entry point: LLM replies in, checked jnp mask functions (or one-line reasons) out.

:func:`check_candidates` checks K replies in sandboxed children (:mod:`espark_jax.masks.sandbox`,
which run the pipeline of :mod:`espark_jax.masks.checks`) and compiles only the accepted ones in
this process with :func:`load_mask_fn`: the same text, extracted and statically validated again,
executed in the restricted namespace and wrapped with :func:`~espark_jax.masks.safe.safe_mask`.
Text that failed in a child is never executed here. :func:`compile_mask` does it for one reply.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from espark_jax.masks.restricted import exec_program
from espark_jax.masks.result import CheckLimits, MaskCheckResult, Rejected
from espark_jax.masks.safe import MaskFn, safe_mask
from espark_jax.masks.sandbox import check_in_children
from espark_jax.masks.static import extract_program, validate_source
from espark_jax.masks.task import MaskTask


def load_mask_fn(code: str, task: MaskTask) -> MaskFn:
    """Re-validate code that passed the sandbox, exec it here and wrap it with ``safe_mask``.

    Raises:
        Rejected: (a ``ValueError``) when the code does not pass the static checks.
    """
    return safe_mask(exec_program(validate_source(code, task), task))


def _compile_accepted(text: str, task: MaskTask, result: MaskCheckResult) -> MaskCheckResult:
    """Compile an accepted candidate in this process: same text, static validation again, exec."""
    if not result.ok:
        return result
    code = extract_program(text, task.function_name)
    try:
        result.fn = load_mask_fn(code, task)
    except Rejected as rej:  # cannot normally happen: the child ran the same validation
        return MaskCheckResult.rejected(
            rej.stage,
            f"parent re-validation failed: {rej.message}",
            rej.hint,
            code,
            result.stats,
            result.seconds,
        )
    result.code = code
    return result


def check_candidates(
    texts: Sequence[str],
    task: MaskTask,
    *,
    max_workers: int = 2,
    samples: Mapping[str, Any] | None = None,
    timeout_s: float = 60.0,
    memory_mb: int = 3072,
    limits: CheckLimits | None = None,
) -> list[MaskCheckResult]:
    """Check K candidates concurrently in sandboxed children (at most ``max_workers`` at once).

    ``samples`` are recorded contexts (field -> ``[batch..., *shape]``) added to the value checks;
    ``timeout_s`` and ``memory_mb`` apply to each candidate. Results come in input order: accepted
    ones with ``fn`` compiled in this process, the others with ``fn=None`` and a one-line
    ``reason`` for the LLM. ``seconds`` is the candidate's own check time (its ``stats`` hold
    ``timings`` per stage and ``child_startup_s``).

    Raises:
        ValueError: bad arguments (worker count, timeout, memory, samples that do not match the
            task).
    """
    texts = list(texts)
    limits = limits or CheckLimits()
    results = check_in_children(texts, task, samples, limits, max_workers, timeout_s, memory_mb)
    return [_compile_accepted(text, task, r) for text, r in zip(texts, results)]


def compile_mask(
    text: str,
    task: MaskTask,
    *,
    samples: Mapping[str, Any] | None = None,
    timeout_s: float = 60.0,
    memory_mb: int = 3072,
    limits: CheckLimits | None = None,
) -> MaskCheckResult:
    """Check one LLM response in a sandboxed child and, when it passes, compile it here.

    Returns a :class:`~espark_jax.masks.result.MaskCheckResult`; ``result.fn`` is the
    ``safe_mask``-wrapped function ``fn(ctx, action_space) -> bool[*agent_shape, n_actions]``
    for one environment, or None.
    """
    return check_candidates(
        [text],
        task,
        max_workers=1,
        samples=samples,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        limits=limits,
    )[0]
