"""espark-jax environments: MABIM in pure JAX and a SUMO bridge, behind one registry.

>>> import envs_jax
>>> env = envs_jax.make("mabim/standard-100")
>>> envs_jax.list_scenarios("mabim")[:2]
>>> envs_jax.check_env(env)  # the contract of envs_jax.core, checked (envs_jax.contract)
"""

from envs_jax.contract import ContractError, check_env, check_spec
from envs_jax.core import (
    ContextField,
    EnvSpec,
    HostEnv,
    JaxEnv,
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
    "ContractError",
    "EnvSpec",
    "HostEnv",
    "JaxEnv",
    "MaskContext",
    "MultiAgentEnv",
    "UnknownScenarioError",
    "check_env",
    "check_scenario",
    "check_spec",
    "describe_scenario",
    "list_scenarios",
    "make",
    "register",
]
