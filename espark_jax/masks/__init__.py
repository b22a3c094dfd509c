"""Mask programs: LLM text -> validated, sandbox-checked, exported jnp mask functions.

>>> from espark_jax.masks import MaskTask, compile_mask
>>> task = MaskTask.from_env_spec(env.spec)
>>> result = compile_mask(llm_text, task)
>>> result.ok, result.reason, result.stats["none_allowed_frac"]
>>> mask = result.fn(ctx, jnp.asarray(task.action_values))   # bool [*agent_shape, n_actions]

Modules, in the order a candidate meets them: ``compile`` (the entry point), ``sandbox`` and
``zygote`` (child processes) with ``harden`` (their OS protections), ``static`` /
``function_check`` / ``rules`` (the AST allow-list), ``restricted`` (the namespace it runs in),
``checks`` (trace, abstract, export, cost and value checks; ``released`` with
``released_reads`` / ``released_exprs`` / ``released_alias`` first translates programs written
against the authors' released interface), ``export`` (the ``jax.export``
artefact, the calling convention, and the loader the trainer's process uses instead of the
program's text), ``result`` (limits, rejections, result records); ``task`` describes what is
compiled against, ``safe`` holds the mask-function type and the empty-row fallback, ``builtin``
and ``sumo_pruning`` the hand-written baseline masks (trusted code, plain functions), ``fallback``
the released code's rule for masks that leave an agent nothing.
"""

from espark_jax.masks.checks import check_in_process
from espark_jax.masks.compile import check_candidates, check_key, compile_mask, load_accepted
from espark_jax.masks.export import ArtefactError, Convention, ExportedMask, load_exported
from espark_jax.masks.result import CheckLimits, MaskCheckResult, Rejected
from espark_jax.masks.safe import MaskFn, all_ones, apply_mask_fn, fallback_empty_rows, safe_mask
from espark_jax.masks.static import extract_program, validate_source
from espark_jax.masks.task import FieldInfo, MaskTask, sample_contexts

__all__ = [
    "ArtefactError",
    "CheckLimits",
    "Convention",
    "ExportedMask",
    "FieldInfo",
    "MaskCheckResult",
    "MaskFn",
    "MaskTask",
    "Rejected",
    "all_ones",
    "apply_mask_fn",
    "check_candidates",
    "check_key",
    "check_in_process",
    "compile_mask",
    "extract_program",
    "fallback_empty_rows",
    "load_accepted",
    "load_exported",
    "safe_mask",
    "sample_contexts",
    "validate_source",
]
