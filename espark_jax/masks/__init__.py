"""Mask programs: LLM text -> validated, sandbox-checked, jit/vmap-able jnp mask functions.

>>> from espark_jax.masks import MaskTask, compile_mask
>>> task = MaskTask.from_env_spec(env.spec)
>>> result = compile_mask(llm_text, task)
>>> result.ok, result.reason, result.stats["none_allowed_frac"]
>>> mask = result.fn(ctx, jnp.asarray(task.action_values))   # bool [*agent_shape, n_actions]
"""

from espark_jax.masks.compile import CheckLimits, MaskCheckResult, check_in_process, load_mask_fn
from espark_jax.masks.safe import MaskFn, all_ones, apply_mask_fn, fallback_empty_rows, safe_mask
from espark_jax.masks.sandbox import check_candidates, compile_mask
from espark_jax.masks.static import Rejected, extract_code, validate_source
from espark_jax.masks.task import FieldInfo, MaskTask, sample_contexts

__all__ = [
    "CheckLimits",
    "FieldInfo",
    "MaskCheckResult",
    "MaskFn",
    "MaskTask",
    "Rejected",
    "all_ones",
    "apply_mask_fn",
    "check_candidates",
    "check_in_process",
    "compile_mask",
    "extract_code",
    "fallback_empty_rows",
    "load_mask_fn",
    "safe_mask",
    "sample_contexts",
    "validate_source",
]
