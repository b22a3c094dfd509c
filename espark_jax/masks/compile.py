"""The compile entry point: LLM replies in, checked and exported mask functions (or reasons) out.

:func:`check_candidates` checks K replies in sandboxed children (:mod:`espark_jax.masks.sandbox`,
which run the pipeline of :mod:`espark_jax.masks.checks`). A child exports every accepted
program with ``jax.export`` under this process's calling convention; this process only
deserialises and verifies that artefact (:func:`~espark_jax.masks.export.load_exported`) and
never executes, compiles or even parses the candidate's Python text. A reply whose check was
recorded before (same code, task, limits, samples, convention and JAX version: :func:`check_key`)
is answered from the record and its artefact without checking again (``--resume``, replay).
:func:`compile_mask` does it for one reply.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Mapping, Sequence

import jax

from espark_jax.masks.export import ArtefactError, Convention, load_exported
from espark_jax.masks.result import CheckLimits, MaskCheckResult, Rejected
from espark_jax.masks.sandbox import Zygote, check_in_children
from espark_jax.masks.static import extract_program
from espark_jax.masks.task import MaskTask, normalize_samples

#: ``lookup(key) -> (recorded result dict, artefact bytes)`` or None: earlier checks to reuse.
Recorded = Callable[[str], "tuple[Mapping[str, Any], bytes] | None"]


def check_key(
    code: str,
    task: MaskTask,
    limits: CheckLimits,
    convention: Convention,
    samples: Mapping[str, Any] | None = None,
) -> str:
    """The hash that names one check: everything its verdict and artefact depend on."""
    h = hashlib.sha256()
    meta = {
        "code": code,
        "task": task.to_dict(),
        "limits": limits.to_dict(),
        "convention": convention.to_dict(),
        "jax": jax.__version__,
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    if samples is not None:
        for name, arr in sorted(normalize_samples(task, samples).items()):
            h.update(f"{name}:{arr.dtype}:{arr.shape}".encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def load_accepted(result: MaskCheckResult, task: MaskTask) -> MaskCheckResult:
    """Set ``fn`` of an accepted result from its artefact (hash and x64 flag as recorded);
    an artefact that cannot be loaded turns the result into a ``sandbox`` rejection."""
    if not result.ok:
        return result
    export = result.stats.get("export") or {}
    try:
        result.fn = load_exported(
            result.artefact or b"", task, digest=export.get("sha256"), x64=export.get("x64")
        )
    except ArtefactError as err:
        return MaskCheckResult.rejected(
            "sandbox",
            f"the checked program's artefact is unusable: {err}",
            "this is a checker error, not necessarily the candidate's",
            result.code,
            result.stats,
            result.seconds,
        )
    return result


def _key(text: str, task: MaskTask, *args: Any) -> str | None:
    try:
        return check_key(extract_program(text, task.function_name), task, *args)
    except Rejected:  # no code: nothing to look up (the child says why)
        return None


def check_candidates(
    texts: Sequence[str],
    task: MaskTask,
    *,
    max_workers: int = 2,
    samples: Mapping[str, Any] | None = None,
    timeout_s: float = 60.0,
    memory_mb: int = 3072,
    limits: CheckLimits | None = None,
    recorded: Recorded | None = None,
    zygote: Zygote | None = None,
) -> list[MaskCheckResult]:
    """Check K candidates concurrently in sandboxed children (at most ``max_workers`` at once).

    ``samples`` are recorded contexts (field -> ``[batch..., *shape]``) added to the value checks;
    ``timeout_s`` and ``memory_mb`` apply to each candidate; ``recorded`` looks up earlier checks
    by :func:`check_key` (their artefacts are reused, marked ``stats["export"]["reused"]``);
    ``zygote`` is the sandbox process to fork the children from (a fresh one when None).
    Results come in input order: accepted ones with ``fn`` (the exported mask, loaded here),
    ``artefact`` and ``stats["export"]`` (hash, key, x64, platforms), the others with
    ``fn=None`` and a one-line ``reason`` for the LLM. ``seconds`` is the candidate's own check
    time (its ``stats`` hold ``timings`` per stage, ``child_startup_s`` and the active
    protections, ``sandbox``).

    Raises:
        ValueError: bad arguments (worker count, timeout, memory, samples that do not match the
            task).
    """
    texts = list(texts)
    limits = limits or CheckLimits()
    convention = Convention.current()
    keys = [_key(t, task, limits, convention, samples) for t in texts]
    results: list[MaskCheckResult | None] = [None] * len(texts)
    for i, key in enumerate(keys):
        hit = recorded(key) if recorded is not None and key is not None else None
        if hit is not None:
            results[i] = MaskCheckResult.from_dict(hit[0])
            results[i].artefact = hit[1]
            results[i].stats.setdefault("export", {})["reused"] = True
    todo = [i for i, r in enumerate(results) if r is None]
    fresh = check_in_children(
        [texts[i] for i in todo],
        task,
        samples,
        limits,
        max_workers,
        timeout_s,
        memory_mb,
        convention,
        zygote,
    )
    for i, result in zip(todo, fresh):
        if result.ok:
            result.stats.setdefault("export", {})["key"] = keys[i]
        results[i] = result
    return [load_accepted(r, task) for r in results if r is not None]


def compile_mask(
    text: str,
    task: MaskTask,
    *,
    samples: Mapping[str, Any] | None = None,
    timeout_s: float = 60.0,
    memory_mb: int = 3072,
    limits: CheckLimits | None = None,
) -> MaskCheckResult:
    """Check one LLM response in a sandboxed child and, when it passes, load its artefact here.

    Returns a :class:`~espark_jax.masks.result.MaskCheckResult`; ``result.fn`` is the exported
    mask ``fn(ctx, action_space) -> bool[*batch, *agent_shape, n_actions]`` (any leading batch
    axes, none for one environment), or None.
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
