"""Prompt templates for the eSpark generator, checker and repair rounds.

The templates are plain text files under the repository's ``prompts/`` folder (``common/`` plus one
folder per environment family), filled with :class:`string.Template` (``${name}`` substitution fields).
A non-editable install ships them inside the package as ``espark_jax/llm/prompt_files`` (see
``setup.py``); ``ESPARK_PROMPTS_DIR`` overrides both.

Every function returns a :class:`Prompt` (system text + Anthropic-style message list). Stable
content comes first and carries ``cache_control`` markers, slot-specific content (the per-slot
focus) comes last, so that K requests of one iteration share a prompt-cache prefix::

    info = EnvPromptInfo.from_env(env)
    p = generator_messages(info, iteration=1, slot=0, n_slots=16)
    p = repair_messages(p, reply_text, "shape: expected (1, 100, 34), got (100, 34)")
    q = checker_messages(info, code)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import os
import string
import sys
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from envs_jax.core import ContextField, EnvSpec

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
PROMPTS_ENV_VAR = "ESPARK_PROMPTS_DIR"
Formulation = Literal["code", "lang"]
_CACHE = {"type": "ephemeral"}
_MARKER = "common/generator_system.txt"


class PromptError(ValueError):
    """A prompt cannot be built (missing template, unknown family, missing value)."""


# --------------------------------------------------------------------------------------------
# Template files
# --------------------------------------------------------------------------------------------


def prompts_dir() -> Path:
    """The folder holding the prompt templates.

    Order: ``$ESPARK_PROMPTS_DIR``; the repository's ``prompts/`` next to the package (source
    checkout, editable install); ``espark_jax/llm/prompt_files`` (non-editable install).
    """
    override = os.environ.get(PROMPTS_ENV_VAR)
    if override:
        path = Path(override).expanduser()
        if not (path / _MARKER).is_file():
            raise PromptError(
                f"{PROMPTS_ENV_VAR}={override} has no {_MARKER}; point it at a prompts/ folder or unset it"
            )
        return path
    here = Path(__file__).resolve().parent
    for path in (here.parents[1] / "prompts", here / "prompt_files"):
        if (path / _MARKER).is_file():
            return path
    raise PromptError(
        f"prompt templates not found (looked for {_MARKER} in the repository's prompts/ and in the package); "
        f"reinstall espark-jax or set {PROMPTS_ENV_VAR}"
    )


@functools.lru_cache(maxsize=None)
def _read(root: str, relpath: str) -> str:
    path = Path(root) / relpath
    if not path.is_file():
        raise PromptError(f"missing prompt template {relpath} under {root}")
    return path.read_text(encoding="utf-8")


def load_template(relpath: str) -> str:
    """The raw text of one template, e.g. ``"common/generator_system.txt"``."""
    return _read(str(prompts_dir()), relpath)


def render(relpath: str, **values: Any) -> str:
    """A template filled with ``values`` (every ``${name}`` must be given); trailing whitespace stripped."""
    try:
        return string.Template(load_template(relpath)).substitute(values).rstrip()
    except KeyError as err:
        raise PromptError(f"template {relpath} needs a value for {err.args[0]!r}") from None


def prompt_hashes() -> dict[str, str]:
    """``{relative path: sha256 prefix}`` of every template file, for the run manifest."""
    root = prompts_dir()
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        for p in sorted(root.rglob("*.txt"))
    }


def focuses(family: str) -> list[str]:
    """The per-slot focus hints of an environment family (``prompts/<family>/focuses.txt``)."""
    lines = [ln.strip() for ln in load_template(f"{family}/focuses.txt").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


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
    """A short sha256 of a prompt's text (cache markers ignored), used to detect prompt drift on replay."""
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


# --------------------------------------------------------------------------------------------
# Environment information
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EnvPromptInfo:
    """What the prompts say about one scenario.

    Attributes:
        family: environment family, the prompt folder name (``"mabim"``, ``"sumo"``).
        scenario: scenario name, e.g. ``"mabim/standard-100"``.
        task_description: the family's task text plus this scenario's paragraph and sizes.
        context_doc: the documented mask-context fields (``EnvSpec.context_doc()``).
        context_fields: the fields themselves (names, symbolic shapes, dtypes).
        formulation_source: the environment's source code (step / reward), for ``formulation="code"``.
        action_names: one short name per action.
        action_values: the value of each action (``action_space`` of the mask function).
        agent_shape: concrete agent axes (MABIM ``(W, N)``).
        agent_axes: symbolic names of the agent axes (MABIM ``("W", "N")``).
        n_actions: number of actions per agent.
        dims: concrete sizes of the symbolic dimensions, as ``(name, size)`` pairs.
    """

    family: str
    scenario: str
    task_description: str
    context_doc: str
    context_fields: tuple[ContextField, ...]
    formulation_source: str
    action_names: tuple[str, ...]
    action_values: tuple[float, ...]
    agent_shape: tuple[int, ...]
    agent_axes: tuple[str, ...]
    n_actions: int
    dims: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_spec(cls, spec: EnvSpec, formulation_source: str = "") -> "EnvPromptInfo":
        """Build from an :class:`EnvSpec`; the family is the part of ``spec.name`` before ``/``."""
        family = spec.name.split("/", 1)[0]
        root = prompts_dir()
        if not (root / family / "task_description.txt").is_file():
            known = sorted(p.name for p in root.iterdir() if (p / "task_description.txt").is_file())
            raise PromptError(
                f"no prompts for environment family {family!r} (known: {', '.join(known)}); "
                f"add prompts/{family}/task_description.txt, action_space.txt, formulation_lang.txt and focuses.txt"
            )
        agent_axes = next(
            (
                f.shape
                for f in spec.context_fields
                if spec.field_shape(f) == tuple(spec.agent_shape)
            ),
            tuple(f"agent_axis_{i}" for i in range(len(spec.agent_shape))),
        )
        sizes = ", ".join(f"{k} = {v}" for k, v in spec.dims.items())
        scenario = f"This scenario: {spec.name}." + (
            f" {spec.description.strip()}" if spec.description else ""
        )
        task = "\n\n".join(
            [
                load_template(f"{family}/task_description.txt").strip(),
                scenario,
                f"Sizes: {sizes}; {spec.n_agents} agents with {spec.n_actions} actions each.",
            ]
        )
        return cls(
            family=family,
            scenario=spec.name,
            task_description=task,
            context_doc=spec.context_doc(),
            context_fields=tuple(spec.context_fields),
            formulation_source=formulation_source,
            action_names=tuple(spec.action_names),
            action_values=tuple(float(v) for v in spec.action_values),
            agent_shape=tuple(int(s) for s in spec.agent_shape),
            agent_axes=tuple(agent_axes),
            n_actions=int(spec.n_actions),
            dims=tuple((str(k), int(v)) for k, v in spec.dims.items()),
        )

    @classmethod
    def from_env(cls, env: Any, formulation_source: str | None = None) -> "EnvPromptInfo":
        """Build from an environment object: ``env.spec`` plus the source of the module(s) that
        define its class and its ``step`` (``formulation_source`` overrides the latter)."""
        if formulation_source is None:
            formulation_source = env_source(env)
        return cls.from_spec(env.spec, formulation_source)

    def field_shapes(self) -> dict[str, tuple[int, ...]]:
        """Concrete shape of every context field."""
        dims = dict(self.dims)
        return {
            f.name: tuple(int(dims[d]) if isinstance(d, str) else int(d) for d in f.shape)
            for f in self.context_fields
        }

    @property
    def mask_shape(self) -> tuple[int, ...]:
        """The shape a mask function returns for one environment."""
        return (*self.agent_shape, self.n_actions)


def env_source(env: Any) -> str:
    """Source code of the module defining ``type(env)`` and, if different, of the one defining its ``step``."""
    cls = type(env)
    modules = [sys.modules.get(cls.__module__)]
    step = getattr(cls, "step", None)
    if step is not None:
        modules.append(inspect.getmodule(step))
    seen, parts = set(), []
    for mod in modules:
        if mod is None or mod.__name__ in seen:
            continue
        seen.add(mod.__name__)
        try:
            parts.append((mod.__name__, inspect.getsource(mod)))
        except (OSError, TypeError) as err:
            raise PromptError(
                f"cannot read the source of {mod.__name__} ({err}); pass formulation_source=... or use formulation='lang'"
            ) from None
    if not parts:
        raise PromptError(
            f"cannot find the module of {cls.__qualname__}; pass formulation_source=..."
        )
    if len(parts) == 1:
        return parts[0][1]
    return "\n\n".join(f"# ---- module {name} ----\n{src}" for name, src in parts)


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
                "EnvPromptInfo has no formulation source; build it with EnvPromptInfo.from_env(env) or use formulation='lang'"
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
