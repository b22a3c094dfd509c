"""espark-jax environments: MABIM in pure JAX and a SUMO bridge, behind one registry.

>>> import envs_jax
>>> env = envs_jax.make("mabim/standard-100")
>>> envs_jax.list_scenarios("mabim")[:2]
"""

from envs_jax.core import (
    ContextField,
    EnvSpec,
    MaskContext,
    MultiAgentEnv,
    UnknownScenarioError,
    check_scenario,
    describe_scenario,
    list_scenarios,
    make,
    register,
)

__all__ = [
    "ContextField",
    "EnvSpec",
    "MaskContext",
    "MultiAgentEnv",
    "UnknownScenarioError",
    "check_scenario",
    "describe_scenario",
    "list_scenarios",
    "make",
    "register",
]
