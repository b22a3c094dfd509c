"""The in-process checks of one candidate: trace, abstract and value checks, in one pipeline.

Stages in order (the first failure is the result):

1. ``extract`` / ``syntax`` / ``static``: :mod:`espark_jax.masks.static` (nothing runs); a
   task with ``interface="released"`` first translates the program
   (:mod:`espark_jax.masks.released`, stage ``adapter``).
2. ``trace``: the program is executed in the restricted namespace
   (:mod:`espark_jax.masks.restricted`) and traced with ``jax.make_jaxpr`` on the task's
   abstract shapes; Python errors and JAX tracer errors become hints.
3. ``abstract``: one array output of shape ``(*agent_shape, n_actions)`` and a bool/int/float
   dtype; at most ``max_equations`` equations (sub-jaxprs included) and
   ``max_intermediate_elements`` per intermediate (checked before anything is allocated); no
   callback/while/infeed primitives.
4. ``export``: traced under the trainer's calling convention (``vmap`` over a symbolic batch
   axis, the run's x64 flag) and serialised with ``jax.export``
   (:mod:`espark_jax.masks.export`); the bytes are deserialised and verified as the trainer
   will, and every later check runs THAT artefact.
5. ``cost``: XLA's cost analysis of the compiled artefact: FLOPs and bytes per environment step
   within the budget per agent (:class:`~espark_jax.masks.result.CheckLimits`).
6. ``values``: on random, zero, extreme (and recorded) contexts the output is finite and 0/1;
   statistics for feedback; rejected when too many agents have no allowed action.

:func:`check_in_process` runs all of this in the current process; it is meant for the sandbox
child (:mod:`espark_jax.masks.sandbox`) and for tests. The trainer's process goes through
:func:`espark_jax.masks.compile.check_candidates` instead.
"""

from __future__ import annotations

import math
import re
import time
import traceback
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from envs_jax.core import MaskContext
from espark_jax.masks.export import Convention, ExportedMask, export_mask, load_exported, sha256
from espark_jax.masks.released import translate_released
from espark_jax.masks.restricted import exec_program
from espark_jax.masks.result import CheckLimits, MaskCheckResult, Rejected, SandboxViolation
from espark_jax.masks.safe import MaskFn
from espark_jax.masks.static import extract_program, validate_source
from espark_jax.masks.task import MaskTask, normalize_samples, sample_contexts

_BANNED_PRIMITIVE = re.compile(r"callback|infeed|outfeed|while|io_|debug")


def _code_line(err: BaseException) -> int | None:
    lines = [fr.lineno for fr in traceback.extract_tb(err.__traceback__) if fr.filename == "<mask>"]
    return lines[-1] if lines else None


def _first_line(err: BaseException, limit: int = 200) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _is_out_of_memory(err: BaseException) -> bool:
    return (
        isinstance(err, MemoryError)
        or "RESOURCE_EXHAUSTED" in str(err)
        or "Out of memory" in str(err)
    )


def rejection_from_error(err: BaseException, stage: str) -> Rejected:
    """Turn an exception raised while tracing or running the candidate into a hinted rejection."""
    line = _code_line(err)
    if isinstance(err, Rejected):
        return err
    if isinstance(err, SandboxViolation):
        return Rejected(
            "sandbox", str(err), "mask programs may not touch files, processes or modules", line
        )
    if _is_out_of_memory(err):
        return Rejected(
            "memory",
            f"the check ran out of memory ({type(err).__name__})",
            "avoid huge Python lists, numbers or arrays; keep intermediates the size of the mask",
            line,
        )
    name = type(err).__name__
    msg = f"{name}: {_first_line(err)}"
    if isinstance(err, jax.errors.TracerBoolConversionError) or "truth value of an array" in str(
        err
    ):
        return Rejected(
            stage,
            "a Python bool was taken of an array (if/and/or/not/bool()/min()/max() on arrays)",
            "use jnp.where, jnp.logical_and/or/not, jnp.minimum/maximum",
            line,
        )
    if isinstance(err, jax.errors.NonConcreteBooleanIndexError):
        return Rejected(
            stage,
            "boolean-mask indexing x[cond] has a data-dependent shape",
            "use jnp.where(cond, x, 0) so the shape stays fixed",
            line,
        )
    if isinstance(
        err,
        (
            jax.errors.ConcretizationTypeError,
            jax.errors.TracerIntegerConversionError,
            jax.errors.TracerArrayConversionError,
        ),
    ):
        return Rejected(
            stage,
            "an array value was used where Python needs a concrete number "
            "(int()/float(), range(), a shape or a slice bound computed from data)",
            "keep shapes and loop bounds fixed; use jnp.where / jnp.clip instead",
            line,
        )
    if isinstance(err, NameError):
        return Rejected(
            stage,
            msg,
            "define the variable before use; only np/jnp, a few builtins and your helpers exist",
            line,
        )
    if isinstance(err, AttributeError):
        return Rejected(
            stage, msg, "use ctx fields, allowed jnp functions and array methods only", line
        )
    if isinstance(err, IndexError):
        return Rejected(stage, msg, "check the array shapes in the context description", line)
    if isinstance(err, TypeError):
        return Rejected(
            stage,
            msg,
            "check argument types and shapes (ctx fields are arrays; action_space is [A])",
            line,
        )
    if isinstance(err, RecursionError):
        return Rejected(stage, "maximum recursion depth exceeded", "flatten the computation", line)
    return Rejected(stage, msg, "fix the error; the function must be traceable by jax.jit", line)


def _walk_eqns(jaxpr: Any) -> Iterator[Any]:
    """All equations of a jaxpr, sub-jaxprs (pjit, cond, scan, custom_jvp ...) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, "eqns"):
                    yield from _walk_eqns(inner)


def abstract_check(fn: MaskFn, task: MaskTask, limits: CheckLimits) -> dict[str, Any]:
    """Trace ``fn`` on abstract shapes (allocating nothing) and check its graph and output.

    Returns facts for ``stats``: ``equations``, ``max_intermediate``, ``out_dtype``, ``primitives``.

    Raises:
        Rejected: stage ``trace`` (the program failed while tracing), ``abstract`` (shape, dtype,
            size, primitives, vmap) or ``memory``.
    """
    ctx = task.abstract_context()
    act = jax.ShapeDtypeStruct((task.n_actions,), np.dtype(task.action_dtype))
    try:
        closed, out = jax.make_jaxpr(fn, return_shape=True)(ctx, act)
    except Exception as err:  # the candidate's own error, turned into a hint
        raise rejection_from_error(err, "trace") from None
    expected = task.out_shape
    if not isinstance(out, jax.ShapeDtypeStruct):
        kind = "None" if out is None else type(out).__name__
        raise Rejected(
            "abstract",
            f"{task.function_name} returned {kind}, not one array",
            f"return a single array of shape {expected} (use jnp.stack to combine parts)",
        )
    if tuple(out.shape) != expected:
        what = "a scalar" if out.shape == () else f"shape {tuple(out.shape)}"
        raise Rejected(
            "abstract",
            f"the mask has {what}; expected {expected} = (*agent_shape, n_actions)",
            f"return one row of {task.n_actions} actions per agent; "
            "broadcast with jnp.broadcast_to if the rule does not depend on every axis",
        )
    if np.dtype(out.dtype).kind not in "biuf":
        raise Rejected(
            "abstract", f"the mask has dtype {out.dtype}", "return bool (or 0/1 int/float) values"
        )
    n_eqns, biggest, prims = 0, 0, set()
    for eqn in _walk_eqns(closed.jaxpr):
        n_eqns += 1
        prims.add(eqn.primitive.name)
        if _BANNED_PRIMITIVE.search(eqn.primitive.name):
            raise Rejected(
                "abstract",
                f"the primitive {eqn.primitive.name!r} is not allowed in masks",
                "use plain jnp array operations",
            )
        for var in eqn.outvars:
            size = math.prod(getattr(var.aval, "shape", ()))
            biggest = max(biggest, size)
            if size > limits.max_intermediate_elements:
                raise Rejected(
                    "abstract",
                    f"an intermediate array of shape {tuple(var.aval.shape)} ({size:,} elements) "
                    f"exceeds the limit of {limits.max_intermediate_elements:,}",
                    "avoid huge temporary arrays; keep intermediates about the size of the mask",
                )
    if n_eqns > limits.max_equations:
        raise Rejected(
            "abstract",
            f"the traced program has {n_eqns} operations; "
            f"at most {limits.max_equations} are allowed",
            "vectorise instead of unrolling Python loops",
        )
    return {
        "equations": n_eqns,
        "max_intermediate": int(biggest),
        "out_dtype": str(out.dtype),
        "primitives": sorted(prims),
    }


def export_check(
    fn: MaskFn, task: MaskTask, convention: Convention
) -> tuple[ExportedMask, dict[str, Any]]:
    """Export ``fn`` under the calling convention; the loaded artefact and its ``export`` facts.

    Raises:
        Rejected: stage ``abstract`` when the program cannot be traced for any number of
            environments (``vmap`` over a symbolic batch axis).
    """
    try:
        data = export_mask(fn, task, convention)
    except Exception as err:
        rej = rejection_from_error(err, "abstract")
        raise Rejected(
            rej.stage,
            f"the function fails under jax.vmap over environments: {rej.message}",
            "do not depend on the exact shapes beyond the documented ones; "
            "avoid Python conversions",
        ) from None
    digest = sha256(data)
    loaded = load_exported(data, task, digest=digest, x64=convention.x64)
    facts = {"sha256": digest, "bytes": len(data), **convention.to_dict(), "jax": jax.__version__}
    return loaded, facts


def cost_check(compiled: Any, batch: int, task: MaskTask, limits: CheckLimits) -> dict[str, Any]:
    """XLA's cost estimate of ``compiled`` (the artefact on ``batch`` environments) per
    environment step, checked against the per-agent budgets scaled to the run.

    Raises:
        Rejected: stage ``cost``, naming the estimate and the budget.
    """
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jaxlibs: one dict per program
        cost = cost[0] if cost else {}
    agents = math.prod(task.agent_shape)
    k, e = limits.learners, limits.envs
    facts: dict[str, Any] = {"agents": agents, "learners": k, "envs": e}
    for key, what, limit in (
        ("flops", "FLOPs", limits.max_flops_per_agent),
        ("bytes accessed", "bytes accessed", limits.max_bytes_per_agent),
    ):
        per_env = float((cost or {}).get(key, 0.0)) / max(batch, 1)
        name = key.split()[0]
        facts[f"{name}_per_env"] = round(per_env, 1)
        facts[f"{name}_budget_per_env"] = limit * agents
        if per_env > limit * agents:
            raise Rejected(
                "cost",
                f"the mask needs {per_env:.3g} {what} per environment step ({per_env * k * e:.3g}"
                f" for K x E = {k} x {e} environments), over the budget of {limit:g} {what} per "
                f"agent ({limit * agents * k * e:.3g} for {k} x {e} environments x {agents} "
                "agents)",
                "compute less per step: no large matrix products, outer products or sorts over "
                "big axes; keep intermediates about the size of the mask",
            )
    return facts


def _row_stats(rows: np.ndarray) -> dict[str, Any]:
    allowed = rows.sum(axis=-1)
    return {
        "rows": int(rows.shape[0]),
        "none_allowed_frac": round(float(np.mean(allowed == 0)), 6),
        "all_allowed_frac": round(float(np.mean(allowed == rows.shape[-1])), 6),
        "mean_allowed": round(float(np.mean(allowed)), 6),
    }


def value_check(
    fn: ExportedMask,
    task: MaskTask,
    limits: CheckLimits,
    recorded: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Compile the artefact ``fn`` on sample contexts, check its cost (:func:`cost_check`, before
    it runs), run it and check the values; returns the mask statistics (``cost`` included).

    Contexts: ``random`` (``limits.n_random``), ``zeros``, ``extreme`` and, when given,
    ``recorded`` (already normalised, see :func:`normalize_samples`). Statistics over all agent
    rows: ``none_allowed_frac``, ``all_allowed_frac``, ``mean_allowed``, ``allowed_rate``
    (per action) and the same three fractions ``by_kind``. Emptiness is judged on the recorded
    contexts when given, else on all of them.

    Raises:
        Rejected: stage ``values`` (NaN/inf, values other than 0/1, nothing allowed almost
            everywhere), ``cost``, ``trace`` or ``memory`` for run-time errors.
    """
    kinds = sample_contexts(task, limits.n_random, limits.seed)
    if recorded is not None:
        rec = dict(recorded)
        n = next(iter(rec.values())).shape[0] if rec else 0
        if n > limits.max_recorded:
            pick = np.linspace(0, n - 1, limits.max_recorded).astype(int)
            rec = {k: v[pick] for k, v in rec.items()}
        kinds["recorded"] = rec
    names = list(kinds)
    sizes = [next(iter(kinds[k].values())).shape[0] for k in names]
    stacked = {f.name: np.concatenate([kinds[k][f.name] for k in names]) for f in task.fields}
    args = (MaskContext(stacked), jnp.asarray(task.action_space()))
    try:
        compiled = jax.jit(fn.raw).lower(*args).compile()
    except Exception as err:
        raise rejection_from_error(err, "trace") from None
    cost = cost_check(compiled, sum(sizes), task, limits)
    try:
        out = np.asarray(compiled(*args))
    except Exception as err:
        raise rejection_from_error(err, "trace") from None
    bounds = np.cumsum([0, *sizes])
    by_kind = {k: out[bounds[i] : bounds[i + 1]] for i, k in enumerate(names)}
    for k, vals in by_kind.items():
        if vals.dtype.kind == "f" and not np.all(np.isfinite(vals)):
            raise Rejected(
                "values",
                f"the mask contains NaN or inf on the {k} contexts",
                "return booleans; guard divisions and logs, e.g. x / jnp.maximum(d, 1e-6)",
            )
        if vals.dtype.kind != "b" and not np.all((vals == 0) | (vals == 1)):
            bad = vals[(vals != 0) & (vals != 1)].flat[0]
            raise Rejected(
                "values",
                f"the mask has values other than 0 and 1 (e.g. {bad:g}) on the {k} contexts",
                "return a boolean array, or (condition).astype(jnp.float32)",
            )
    rows = {k: (v != 0).reshape(-1, task.n_actions) for k, v in by_kind.items()}
    all_rows = np.concatenate(list(rows.values()))
    stats = _row_stats(all_rows)
    stats["allowed_rate"] = [round(float(r), 4) for r in all_rows.mean(axis=0)]
    stats["by_kind"] = {k: _row_stats(r) for k, r in rows.items()}
    stats["cost"] = cost
    judged = "recorded" if "recorded" in rows else "all"
    frac = (
        stats["by_kind"]["recorded"]["none_allowed_frac"]
        if judged == "recorded"
        else stats["none_allowed_frac"]
    )
    if frac > limits.empty_row_reject_frac:
        raise Rejected(
            "values",
            f"the mask allows no action at all for {frac:.0%} of agents on the "
            f"{'recorded' if judged == 'recorded' else 'sample'} contexts",
            "keep at least one action allowed for every agent (e.g. a moderate or zero order)",
        )
    return stats


def check_in_process(
    text: str,
    task: MaskTask,
    *,
    samples: Mapping[str, Any] | None = None,
    limits: CheckLimits | None = None,
    convention: Convention | None = None,
) -> MaskCheckResult:
    """Run every check in THIS process and return the result (``fn`` and ``artefact`` set when
    ok: the exported mask that passed the checks, and its bytes).

    Only for the sandbox child and for tests: the trainer's process uses
    :func:`espark_jax.masks.compile.compile_mask`, which runs this in a child process first.
    ``samples`` are recorded contexts (field -> ``[batch..., *shape]``); ``convention`` is the
    trainer's (default: this process's, see :class:`~espark_jax.masks.export.Convention`).
    """
    limits = limits or CheckLimits()
    convention = convention or Convention.current()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    code = source = ""
    recorded = normalize_samples(task, samples) if samples is not None else None
    try:
        code = extract_program(text, task.function_name)
        if task.interface == "released":  # the authors' interface: translated, then checked
            source, code = code, translate_released(code, task)
            timings["translate"] = time.perf_counter() - t0
        module = validate_source(code, task)
        timings["static"] = time.perf_counter() - t0
        raw = exec_program(module, task)
        t1 = time.perf_counter()
        facts = abstract_check(raw, task, limits)
        timings["abstract"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        fn, facts["export"] = export_check(raw, task, convention)
        timings["export"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        stats = value_check(fn, task, limits, recorded)
        timings["values"] = time.perf_counter() - t3
    except Exception as err:  # a Rejected, or anything else from exec (not expected after checks)
        return MaskCheckResult.from_rejection(
            rejection_from_error(err, "trace"),
            code,
            {"timings": _rounded(timings)},
            time.perf_counter() - t0,
        )
    stats.update(facts)
    if task.interface == "released":
        stats["adapter"] = {"interface": "released", "source": source}
    stats["timings"] = _rounded(timings)
    seconds = time.perf_counter() - t0
    return MaskCheckResult(
        True, "ok", code=code, stats=stats, seconds=seconds, fn=fn, artefact=fn.data
    )


def _rounded(d: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in d.items()}
