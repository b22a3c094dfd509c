"""The environment contract shared by every espark-jax environment, and the scenario registry.

Two kinds of environment, both described by an :class:`EnvSpec` (see
``shared/design/ARCHITECTURE.md``):

* :class:`JaxEnv` (MABIM): pure functions in the gymnax / JaxMARL style, with one agent axis
  instead of per-agent dictionaries, jit- and vmap-able::

      obs, state = env.reset(key, params)                       # obs: [n_agents, obs_dim]
      obs, state, reward, done, info = env.step(key, state, actions, params)
      ctx = env.mask_context(state, params)                     # what a mask function may read

  ``reward`` is ``[n_agents]``; ``info["components"]`` maps every reward component name to
  ``[n_agents]``; ``done`` is a scalar bool.
* :class:`HostEnv` (SUMO): ``n_envs`` simulations stepped on the host; the same shapes with a
  leading batch axis ``B``, numpy in and out.

:func:`envs_jax.contract.check_env` checks an environment against its protocol. ``envs_jax``
knows nothing about masks, LLMs or PPO: ``espark_jax`` imports from here, never the reverse.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class ContextField:
    """One named array of a mask context, documented for the LLM prompt.

    Attributes:
        name: attribute name on the context object (``ctx.<name>``).
        shape: symbolic shape, e.g. ``("W", "N")``; concrete sizes come from ``EnvSpec.dims``.
        dtype: ``"float32"``, ``"int32"`` or ``"bool"`` (float64 in x64 mode).
        description: one or two sentences: meaning and unit.
    """

    name: str
    shape: tuple[str, ...]
    dtype: str
    description: str


@dataclasses.dataclass(frozen=True, eq=False)
class EnvSpec:
    """Static description of a scenario: agent layout, actions, rewards and mask context.

    Attributes:
        name: registry name, e.g. ``"mabim/standard-100"``.
        n_agents: total number of agents (MABIM: ``W * N``, warehouse-major).
        obs_dim: observation features per agent.
        n_actions: discrete actions per agent.
        agent_shape: the agent axes as a mask function sees them (MABIM ``(W, N)``,
            SUMO ``(n_intersections,)``); ``prod(agent_shape) == n_agents``.
        action_values: numeric meaning of each action (MABIM: demand-mean multipliers).
        action_names: short names of the actions, for prompts and plots.
        reward_components: names of the components in ``info["components"]``; the reward is
            ``profit - excess_cost - ...`` for MABIM (see the environment's docs).
        group_names: names of the agent groups used for reporting (MABIM: warehouses head first).
        agent_group: ``[n_agents]`` group index of every agent.
        episode_length: decisions per episode for each split (``train``, ``validation``, ``test``).
        context_fields: documented fields of ``mask_context`` (what the LLM may read).
        dims: concrete sizes of the symbolic dimensions used in ``context_fields``.
        is_jax: True when reset/step are jittable JAX functions.
        description: a paragraph describing the task, for prompts and reports.
        data_source: where the scenario's data comes from (e.g. ``"synthetic(seed=0)"``).
    """

    name: str
    n_agents: int
    obs_dim: int
    n_actions: int
    agent_shape: tuple[int, ...]
    action_values: tuple[float, ...]
    action_names: tuple[str, ...]
    reward_components: tuple[str, ...]
    group_names: tuple[str, ...]
    agent_group: np.ndarray
    episode_length: Mapping[str, int]
    context_fields: tuple[ContextField, ...]
    dims: Mapping[str, int]
    is_jax: bool = True
    description: str = ""
    data_source: str = ""

    def __post_init__(self) -> None:
        problem = layout_problem(self)
        if problem is not None:
            raise ValueError(f"EnvSpec {self.name}: {problem}")

    @property
    def n_groups(self) -> int:
        """Number of agent groups (MABIM: echelons)."""
        return len(self.group_names)

    def field_shape(self, field: ContextField) -> tuple[int, ...]:
        """Concrete shape of a context field for this scenario."""
        return tuple(int(self.dims[d]) if isinstance(d, str) else int(d) for d in field.shape)

    def context_doc(self) -> str:
        """A plain-text table of the mask-context fields with concrete shapes (for prompts)."""
        lines = []
        for f in self.context_fields:
            sym = ", ".join(f.shape) if f.shape else ""
            conc = ", ".join(str(s) for s in self.field_shape(f))
            lines.append(f"ctx.{f.name}: {f.dtype}[{sym}] (here [{conc}]) - {f.description}")
        return "\n".join(lines)


def layout_problem(spec: EnvSpec) -> str | None:
    """What is wrong with a spec's agent and action layout (None when it is consistent).

    Checked whenever an :class:`EnvSpec` is built: ``prod(agent_shape) == n_agents``, one value
    and one name per action, ``agent_group`` of shape ``[n_agents]``.
    """
    if int(np.prod(spec.agent_shape)) != spec.n_agents:
        return f"agent_shape {spec.agent_shape} does not hold {spec.n_agents} agents"
    if len(spec.action_values) != spec.n_actions or len(spec.action_names) != spec.n_actions:
        return (
            f"action_values/action_names must have {spec.n_actions} entries, got "
            f"{len(spec.action_values)}/{len(spec.action_names)}"
        )
    if np.shape(spec.agent_group) != (spec.n_agents,):
        return f"agent_group must have shape ({spec.n_agents},), got {np.shape(spec.agent_group)}"
    return None


@jax.tree_util.register_pytree_node_class
class MaskContext:
    """The named arrays a mask function may read, as a pytree with attribute access.

    ``ctx.in_stock`` reads a field; an unknown name raises ``AttributeError`` listing the valid
    ones. The same class serves every environment (the fields differ), so the mask compiler can
    build sample contexts from an ``EnvSpec`` alone. Leaves are flattened in sorted-name order, so
    ``jax.vmap`` / ``jax.jit`` treat it like a dict of arrays.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_fields", dict(fields))

    def __getattr__(self, name: str) -> Any:
        fields = object.__getattribute__(self, "_fields")
        try:
            return fields[name]
        except KeyError:
            raise AttributeError(
                f"mask context has no field {name!r}; valid fields: {', '.join(sorted(fields))}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("mask contexts are read-only")

    def __contains__(self, name: str) -> bool:
        return name in self._fields

    def keys(self) -> list[str]:
        """Field names, sorted."""
        return sorted(self._fields)

    def as_dict(self) -> dict[str, Any]:
        """A shallow copy of the fields."""
        return dict(self._fields)

    def replace(self, **updates: Any) -> "MaskContext":
        """A copy with some fields replaced."""
        return MaskContext({**self._fields, **updates})

    def tree_flatten(self) -> tuple[list[Any], tuple[str, ...]]:
        names = tuple(sorted(self._fields))
        return [self._fields[n] for n in names], names

    @classmethod
    def tree_unflatten(cls, names: tuple[str, ...], leaves: list[Any]) -> "MaskContext":
        return cls(dict(zip(names, leaves)))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(v, 'shape', v)}" for k, v in sorted(self._fields.items()))
        return f"MaskContext({inner})"


@runtime_checkable
class JaxEnv(Protocol):
    """A JAX environment (``spec.is_jax`` True): pure functions, jit- and vmap-able.

    Shapes of one environment (batch them with ``jax.vmap``): ``obs [n_agents, obs_dim]``
    floating, ``reward [n_agents]`` floating, ``done`` a scalar bool, ``info["components"]`` one
    ``[n_agents]`` array per name of ``spec.reward_components``; ``actions [n_agents]`` int32
    indices into ``spec.action_values``. The mask context holds exactly ``spec.context_fields``
    with shapes ``spec.field_shape(field)``.
    """

    spec: EnvSpec

    def default_params(self, split: str = "train") -> Any:
        """Parameters (device arrays) for one split: ``train``, ``validation`` or ``test``."""

    def reset(self, key: Any, params: Any) -> tuple[Any, Any]:
        """Start an episode: returns ``(obs [n_agents, obs_dim], state)``."""

    def step(
        self, key: Any, state: Any, actions: Any, params: Any
    ) -> tuple[Any, Any, Any, Any, dict]:
        """Advance one decision: returns ``(obs, state, reward [n_agents], done, info)``."""

    def mask_context(self, state: Any, params: Any) -> MaskContext:
        """The named arrays a mask function may read (``spec.context_fields``)."""


MultiAgentEnv = JaxEnv
"""The former name of :class:`JaxEnv`."""


@runtime_checkable
class HostEnv(Protocol):
    """A host environment (``spec.is_jax`` False, SUMO): ``n_envs`` simulations, numpy in and out.

    Every array has a leading batch axis ``B = n_envs``: ``obs [B, n_agents, obs_dim]`` float32,
    ``reward [B, n_agents]``, ``done [B]`` bool, ``info["components"]`` one ``[B, n_agents]``
    array per name of ``spec.reward_components`` and, at the episode's last decision,
    ``info["metrics"]`` (name -> ``[B]``); ``actions [B, n_agents]`` int indices, each allowed by
    ``avail_actions``. The mask context's leaves are ``[B, *spec.field_shape(field)]``.
    """

    spec: EnvSpec
    n_envs: int

    @property
    def avail_actions(self) -> np.ndarray:
        """``bool [B, n_agents, n_actions]``: the valid actions (at least one per agent)."""

    def reset(self, seeds: Any) -> tuple[np.ndarray, Any]:
        """Start an episode in every simulation (``B`` seeds): returns ``(obs, state)``."""

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Advance every simulation one decision: returns ``(obs, reward, done, info)``."""

    def mask_context(self) -> MaskContext:
        """The batched mask context of the latest ``reset`` / ``step``."""

    def close(self) -> None:
        """Release the simulations (idempotent)."""


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., Any]] = {}
_DESCRIPTIONS: dict[str, str] = {}
_BUILTIN_MODULES = ("envs_jax.mabim.scenarios", "envs_jax.sumo.scenarios")
_loaded = False


class UnknownScenarioError(KeyError):
    """Raised by :func:`make` for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register(name: str, factory: Callable[..., Any], description: str = "") -> None:
    """Register a scenario factory under ``name`` (``"family/scenario"``)."""
    if "/" not in name:
        raise ValueError(f"scenario names look like 'family/name', got {name!r}")
    _REGISTRY[name] = factory
    _DESCRIPTIONS[name] = description


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:  # an environment family that is not built yet
            if err.name is None or not err.name.startswith(mod.rsplit(".", 1)[0]):
                raise


def list_scenarios(family: str | None = None) -> list[str]:
    """Registered scenario names, sorted; optionally only those of one family (``"mabim"``)."""
    _load_builtin()
    names = sorted(_REGISTRY)
    if family is not None:
        names = [n for n in names if n.split("/", 1)[0] == family]
    return names


def describe_scenario(name: str) -> str:
    """The one-line description a scenario was registered with."""
    _load_builtin()
    return _DESCRIPTIONS.get(name, "")


def check_scenario(name: str) -> None:
    """Raise :class:`UnknownScenarioError` unless ``name`` is registered; builds nothing.

    The message lists the valid names and the closest match, in one line.
    """
    _load_builtin()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownScenarioError(
            f"unknown scenario {name!r}.{hint} Valid scenarios: {', '.join(sorted(_REGISTRY))}"
        )


def make(name: str, **kwargs: Any) -> Any:
    """Build the environment registered as ``name``; keyword arguments go to its factory.

    Raises:
        UnknownScenarioError: with the list of valid names (and the closest match) when
            ``name`` is not registered.
    """
    check_scenario(name)
    return _REGISTRY[name](**kwargs)
