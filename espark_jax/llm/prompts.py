"""The prompts of the eSpark generator, checker and repair rounds, built from the templates.

Every function returns a :class:`Prompt` (system text + Anthropic-style message list). Stable
content comes first and carries ``cache_control`` markers, slot-specific content (the per-slot
focus) comes last, so that K requests of one iteration share a prompt-cache prefix::

    info = EnvPromptInfo.from_env(env)
    p = generator_messages(info, iteration=1, slot=0, n_slots=16)
    p = repair_messages(p, reply_text, "shape: expected (1, 100, 34), got (100, 34)")
    q = checker_messages(info, code)

The template files are found and filled by :mod:`espark_jax.llm.prompt_text`; the scenario
description is :class:`~espark_jax.llm.env_info.EnvPromptInfo` (both re-exported here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Literal, Mapping, Sequence

from espark_jax.llm.env_info import EnvPromptInfo
from espark_jax.llm.prompt_text import (
    PROMPTS_ENV_VAR,
    PromptError,
    focuses,
    load_template,
    prompt_hashes,
    prompts_dir,
    render,
)

__all__ = [
    "FUNCTION_NAME",
    "PROMPTS_ENV_VAR",
    "EnvPromptInfo",
    "Prompt",
    "PromptError",
    "checker_messages",
    "focuses",
    "generator_messages",
    "hash_prompt",
    "load_template",
    "prompt_hashes",
    "prompts_dir",
    "render",
    "repair_messages",
]

FUNCTION_NAME = "compute_mask"
Formulation = Literal["code", "lang"]
_CACHE = {"type": "ephemeral"}


def _block(text: str, cache: bool = False) -> dict:
    block: dict[str, Any] = {"type": "text", "text": text}
    if cache:
        block["cache_control"] = dict(_CACHE)
    return block


def _strip_cache(messages: Sequence[Mapping[str, Any]]) -> list[dict]:
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        out.append(
            {
                "role": m["role"],
                "content": [{k: v for k, v in b.items() if k != "cache_control"} for b in content],
            }
        )
    return out


def hash_prompt(system: str, messages: Sequence[Mapping[str, Any]]) -> str:
    """A short sha256 of a prompt's text (cache markers ignored), to detect drift on replay."""
    payload = json.dumps(
        {"system": system, "messages": _strip_cache(messages)}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A system text plus Anthropic-style messages (``{"role", "content": [text blocks]}``).

    Text blocks may carry ``cache_control``; providers without prompt caching ignore it.
    """

    system: str
    messages: tuple[dict, ...]

    def hash(self) -> str:
        """See :func:`hash_prompt`."""
        return hash_prompt(self.system, self.messages)

    def as_text(self) -> str:
        """The whole prompt as readable text (for run records and debugging)."""
        parts = [f"[system]\n{self.system}"]
        for m in _strip_cache(self.messages):
            parts.append(f"[{m['role']}]\n" + "\n\n".join(b["text"] for b in m["content"]))
        return "\n\n".join(parts)


def _action_table(info: EnvPromptInfo, per_line: int = 6) -> str:
    cells = [
        f"{i}: {n} = {v:g}" for i, (n, v) in enumerate(zip(info.action_names, info.action_values))
    ]
    return "\n".join(" | ".join(cells[i : i + per_line]) for i in range(0, len(cells), per_line))


def _function_signature(info: EnvPromptInfo) -> str:
    return render(
        "common/function_signature.txt",
        agent_axes=", ".join(info.agent_axes),
        n_actions=info.n_actions,
        action_space_doc=load_template(f"{info.family}/action_space.txt").strip(),
        agent_axes_and_a=", ".join((*info.agent_axes, "A")),
        mask_shape=list(info.mask_shape),
    )


def _formulation(info: EnvPromptInfo, formulation: Formulation) -> str:
    if formulation == "code":
        if not info.formulation_source.strip():
            raise PromptError(
                "EnvPromptInfo has no formulation source; "
                "build it with EnvPromptInfo.from_env(env) or use formulation='lang'"
            )
        return render("common/formulation_code.txt", source=info.formulation_source.rstrip())
    if formulation == "lang":
        return render(
            "common/formulation_lang.txt",
            description=load_template(f"{info.family}/formulation_lang.txt").strip(),
        )
    raise PromptError(f"formulation must be 'code' or 'lang', got {formulation!r}")


def _task_block(info: EnvPromptInfo, formulation: Formulation) -> str:
    return render(
        "common/initial_user.txt",
        formulation=_formulation(info, formulation),
        context_doc=info.context_doc,
        action_table=_action_table(info),
        task_description=info.task_description,
    )


def generator_system(info: EnvPromptInfo) -> str:
    """The generator's system prompt (role, signature, output rules); stable for a whole run."""
    return render(
        "common/generator_system.txt",
        function_signature=_function_signature(info),
        code_output_tip=load_template("common/code_output_tip.txt").rstrip(),
    )


def slot_focus(info: EnvPromptInfo, iteration: int, slot: int, n_slots: int | None = None) -> str:
    """The slot-specific focus paragraph: focus line ``(slot + iteration) mod len(focuses)``."""
    lines = focuses(info.family)
    if not lines:
        raise PromptError(f"prompts/{info.family}/focuses.txt has no focus lines")
    return render(
        "common/slot_focus.txt",
        slot_number=slot + 1,
        n_slots=n_slots if n_slots is not None else "several",
        focus=lines[(slot + iteration) % len(lines)],
    )


def generator_messages(
    env_info: EnvPromptInfo,
    iteration: int,
    slot: int,
    feedback: str | None = None,
    previous_best_code: str | None = None,
    formulation: Formulation = "code",
    *,
    n_slots: int | None = None,
) -> Prompt:
    """The prompt asking slot ``slot`` of ``iteration`` for a new exploration function.

    Without feedback: one user message (task, cached; then the slot's focus). With the previous
    best code and its feedback: the fixed 4-part history of Eureka/eSpark - task (cached), the
    best code as the assistant's turn, then the policy feedback with reflection tips (cached,
    shared by all slots) and the slot's focus. Feedback without code (every slot of the last
    round failed) is appended to the task message.

    Raises:
        PromptError: previous code without feedback, or an invalid formulation.
    """
    if previous_best_code is not None and feedback is None:
        raise PromptError("previous_best_code needs its policy feedback; pass feedback=... as well")
    task = _block(
        _task_block(env_info, formulation)
        + "\n\n"
        + load_template("common/initial_request.txt").strip(),
        cache=True,
    )
    focus = _block(slot_focus(env_info, iteration, slot, n_slots))
    tips = load_template("common/reflection_tips.txt").strip()
    if feedback is None:
        messages = ({"role": "user", "content": [task, focus]},)
    elif previous_best_code is None:
        fb = render("common/no_best_feedback.txt", iteration=iteration, feedback=feedback.strip())
        messages = (
            {"role": "user", "content": [task, _block(fb + "\n\n" + tips, cache=True), focus]},
        )
    else:
        fb = render("common/policy_feedback.txt", iteration=iteration, feedback=feedback.strip())
        code = f"```python\n{previous_best_code.strip()}\n```"
        messages = (
            {"role": "user", "content": [task]},
            {"role": "assistant", "content": [_block(code)]},
            {"role": "user", "content": [_block(fb + "\n\n" + tips, cache=True), focus]},
        )
    return Prompt(generator_system(env_info), messages)


def checker_messages(
    env_info: EnvPromptInfo, code: str, formulation: Formulation = "code"
) -> Prompt:
    """The prompt asking the checker to review ``code`` (task first, cached; the code last)."""
    system = render(
        "common/checker_system.txt",
        function_signature=_function_signature(env_info),
        checker_output_tip=load_template("common/checker_output_tip.txt").rstrip(),
    )
    task = _block(_task_block(env_info, formulation), cache=True)
    review = _block(render("common/checker_user.txt", code=code.strip()))
    return Prompt(system, ({"role": "user", "content": [task, review]},))


def repair_messages(
    prompt: Prompt,
    failed_reply: str,
    error_reason: str | Sequence[str],
    kind: Literal["compile", "check"] = "compile",
) -> Prompt:
    """``prompt`` continued by the failed reply and a request to fix it.

    ``kind="compile"``: ``error_reason`` is the compiler's (or extractor's) one-line reason;
    ``kind="check"``: the checker's reasons (a string or a list). Call again on the result for a
    further round.
    """
    if kind == "compile":
        ask = render("common/execution_error_feedback.txt", error=str(error_reason).strip())
    elif kind == "check":
        reasons = [error_reason] if isinstance(error_reason, str) else list(error_reason)
        listed = "\n".join(f"- {r.strip()}" for r in reasons if r.strip()) or "- (no reasons given)"
        ask = render("common/checker_feedback.txt", reasons=listed)
    else:
        raise PromptError(f"repair kind must be 'compile' or 'check', got {kind!r}")
    reply = failed_reply.strip() or "(empty reply)"
    messages = prompt.messages + (
        {"role": "assistant", "content": [_block(reply)]},
        {"role": "user", "content": [_block(ask)]},
    )
    return Prompt(prompt.system, messages)
