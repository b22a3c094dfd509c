"""What the prompts say about one scenario: :class:`EnvPromptInfo`, built from an environment.

It carries the family (the prompt folder), the task text, the documented mask-context fields,
the action table, the agent layout and, for the ``code`` formulation, the source of the
environment's dynamics (:func:`env_source`).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Any

from envs_jax.core import ContextField, EnvSpec
from espark_jax.llm.prompt_text import PromptError, load_template, prompts_dir


@dataclasses.dataclass(frozen=True)
class EnvPromptInfo:
    """What the prompts say about one scenario.

    Attributes:
        family: environment family, the prompt folder name (``"mabim"``, ``"sumo"``).
        scenario: scenario name, e.g. ``"mabim/standard-100"``.
        task_description: the family's task text plus this scenario's paragraph and sizes.
        context_doc: the documented mask-context fields (``EnvSpec.context_doc()``).
        context_fields: the fields themselves (names, symbolic shapes, dtypes).
        formulation_source: the environment's source code (step / reward), for
            ``formulation="code"``.
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
                f"add prompts/{family}/task_description.txt, action_space.txt, "
                "formulation_lang.txt and focuses.txt"
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
    """Source of the module defining ``type(env)`` and, if different, of the one defining its
    ``step``."""
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
                f"cannot read the source of {mod.__name__} ({err}); "
                "pass formulation_source=... or use formulation='lang'"
            ) from None
    if not parts:
        raise PromptError(
            f"cannot find the module of {cls.__qualname__}; pass formulation_source=..."
        )
    if len(parts) == 1:
        return parts[0][1]
    return "\n\n".join(f"# ---- module {name} ----\n{src}" for name, src in parts)
