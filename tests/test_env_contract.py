"""Every registered scenario keeps the environment contract (envs_jax.contract.check_env), and
the checker rejects broken environments and specs with a one-line message naming the problem."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs_jax
from envs_jax.contract import ContractError, check_env, check_spec
from envs_jax.core import ContextField, EnvSpec, HostEnv, JaxEnv, MaskContext, MultiAgentEnv
from envs_jax.sumo import deps

ABSTRACT_FROM_AGENTS = 20  # MABIM scenarios this large: jax.eval_shape only (compiles cost)
SUMO_SECONDS = 30  # two decisions: the second ends the episode, so the metrics are checked too


def _scenario_params() -> list:
    return [
        pytest.param(name, marks=pytest.mark.sumo) if name.startswith("sumo/") else name
        for name in envs_jax.list_scenarios()
    ]


@pytest.mark.parametrize("name", _scenario_params())
def test_every_registered_scenario_keeps_the_contract(name):
    if name.startswith("sumo/"):
        n_envs = 2 if name == "sumo/grid2x2" else 1
        try:
            env = envs_jax.make(name, n_envs=n_envs, episode_seconds=SUMO_SECONDS)
        except deps.SumoNotInstalledError as err:
            pytest.skip(str(err))
        with env:
            assert isinstance(env, HostEnv) and not env.spec.is_jax
            check_env(env, steps=2)
        return
    env = envs_jax.make(name)
    assert isinstance(env, JaxEnv) and env.spec.is_jax
    check_env(env, steps=3, abstract=env.spec.n_agents >= ABSTRACT_FROM_AGENTS)


def test_the_registry_has_both_kinds():
    names = envs_jax.list_scenarios()
    assert any(n.startswith("mabim/") for n in names)
    assert any(n.startswith("sumo/") for n in names)


def test_float64_mabim_keeps_the_contract_in_x64_mode():
    with jax.enable_x64(True):
        env = envs_jax.make("mabim/tiny-2-echelons", precision="float64")
        check_env(env, abstract=True)
        ctx = jax.eval_shape(env.mask_context, *_abstract_state(env))
        assert ctx.demand_mean.dtype == jnp.float64


def _abstract_state(env):
    params = env.default_params("train")
    _, state = jax.eval_shape(env.reset, jax.random.key(0), params)
    return state, params


# --------------------------------------------------------------------------- toy environments

FIELDS = (
    ContextField("level", ("N",), "float32", "stock of each agent"),
    ContextField("open", ("N",), "bool", "True where the agent may order"),
    ContextField("day", (), "int32", "decisions taken"),
)
N_AGENTS, OBS_DIM, EPISODE = 3, 2, 2


def toy_spec(**changes) -> EnvSpec:
    spec = dict(
        name="toy/contract",
        n_agents=N_AGENTS,
        obs_dim=OBS_DIM,
        n_actions=2,
        agent_shape=(N_AGENTS,),
        action_values=(0.0, 1.0),
        action_names=("keep", "order"),
        reward_components=("gain", "cost"),
        group_names=("all",),
        agent_group=np.zeros(N_AGENTS, dtype=np.int32),
        episode_length={"train": EPISODE, "validation": EPISODE, "test": EPISODE},
        context_fields=FIELDS,
        dims={"N": N_AGENTS},
    )
    spec.update(changes)
    return EnvSpec(**spec)


def _outputs(xp, level, day, actions, broken: str):
    """obs, reward, done, components and context fields of a toy state; ``broken`` breaks one.

    ``xp`` is jax.numpy or numpy; ``level`` and ``actions`` are ``[*B, 3]``, ``day`` ``[*B]``.
    """
    f32 = xp.float32
    obs = xp.stack([level, xp.broadcast_to(day[..., None], level.shape).astype(f32)], axis=-1)
    gain = actions.astype(f32)
    comps = {"gain": gain, "cost": 0.5 * gain}
    reward = comps["gain"] - comps["cost"]
    done = day >= EPISODE
    ctx = {"level": level, "open": level < 5.0, "day": day}
    if broken == "obs shape":
        obs = obs[..., :1]
    elif broken == "obs dtype":
        obs = obs.astype(xp.int32)
    elif broken == "reward shape":
        reward = reward[..., :1]
    elif broken == "reward nan":
        reward = reward * xp.nan
    elif broken == "done shape":
        done = xp.broadcast_to(done[..., None], level.shape)
    elif broken == "done dtype":
        done = done.astype(f32)
    elif broken == "done early":
        done = day >= 1
    elif broken == "component missing":
        del comps["cost"]
    elif broken == "component extra":
        comps["bonus"] = gain
    elif broken == "component shape":
        comps["cost"] = comps["cost"][..., None]
    elif broken == "context missing":
        del ctx["open"]
    elif broken == "context extra":
        ctx["secret"] = level
    elif broken == "context shape":
        ctx["level"] = level[..., :2]
    elif broken == "context dtype":
        ctx["day"] = day.astype(f32)
    return obs, reward, done, comps, ctx


class ToyJaxEnv:
    """A three-agent JAX environment keeping the contract unless ``broken`` names a breach."""

    def __init__(self, broken: str = "", spec: EnvSpec | None = None):
        self.spec, self.broken = spec or toy_spec(), broken

    def default_params(self, split: str = "train"):
        return jnp.float32(1.0)

    def reset(self, key, params):
        state = (jnp.zeros(N_AGENTS, jnp.float32), jnp.int32(0))
        return _outputs(jnp, *state, jnp.zeros(N_AGENTS, jnp.int32), self.broken)[0], state

    def step(self, key, state, actions, params):
        level, day = state[0] + actions * params, state[1] + 1
        obs, reward, done, comps, _ = _outputs(jnp, level, day, actions, self.broken)
        if self.broken == "step tuple":
            return obs, (level, day), reward, done
        return obs, (level, day), reward, done, {"components": comps}

    def mask_context(self, state, params):
        ctx = _outputs(jnp, *state, jnp.zeros(N_AGENTS, jnp.int32), self.broken)[4]
        return ctx if self.broken == "context dict" else MaskContext(ctx)


class ToyHostEnv:
    """The same dynamics for ``n_envs`` simulations in numpy, with the host API."""

    def __init__(self, broken: str = "", n_envs: int = 2):
        self.spec, self.broken, self.n_envs = toy_spec(is_jax=False), broken, n_envs
        self.level = np.zeros((n_envs, N_AGENTS), np.float32)
        self.day = np.zeros(n_envs, np.int32)

    @property
    def avail_actions(self):
        avail = np.ones((self.n_envs, N_AGENTS, 2), bool)
        if self.broken == "avail empty":
            avail[0, 1] = False
        return avail

    def _out(self, actions):
        return _outputs(np, self.level, self.day, actions, self.broken)

    def reset(self, seeds):
        self.level[:], self.day[:] = 0.0, 0
        return self._out(np.zeros((self.n_envs, N_AGENTS), np.int32))[0], None

    def step(self, actions):
        self.level += actions
        self.day += 1
        obs, reward, done, comps, _ = self._out(actions)
        info = {"components": comps}
        if bool(np.all(done)) and self.broken != "metrics missing":
            info["metrics"] = {"avg_delay": np.zeros(self.n_envs)}
        return obs, reward, done, info

    def mask_context(self):
        ctx = self._out(np.zeros((self.n_envs, N_AGENTS), np.int32))[4]
        if self.broken == "context unbatched":
            ctx = {k: v[0] for k, v in ctx.items()}
        return MaskContext(ctx)

    def close(self):
        pass


def _one_line_error(env, match: str, **kwargs) -> str:
    with pytest.raises(ContractError, match=match) as err:
        check_env(env, **kwargs)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{env.spec.name}: "), message
    return message


def test_the_toy_environments_keep_the_contract():
    check_env(ToyJaxEnv())
    check_env(ToyHostEnv())
    assert isinstance(ToyJaxEnv(), MultiAgentEnv) and MultiAgentEnv is JaxEnv
    assert isinstance(ToyHostEnv(), HostEnv) and not isinstance(ToyHostEnv(), JaxEnv)


JAX_BREAKS = {
    "obs shape": r"reset obs has shape \(3, 1\), expected \(3, 2\)",
    "obs dtype": r"reset obs has dtype int32, expected float32",
    "reward shape": r"step reward has shape \(1,\), expected \(3,\)",
    "reward nan": r"step 1 reward has non-finite entries",
    "done shape": r"step done has shape \(3,\), expected \(\)",
    "done dtype": r"step done has dtype float32, expected bool",
    "done early": r"done after 1 decision\(s\), but spec.episode_length\['train'\] is 2",
    "component missing": r"step info\['components'\] lacks cost \(spec.reward_components\)",
    "component extra": r"step info\['components'\] has undocumented bonus",
    "component shape": r"step component cost has shape \(3, 1\), expected \(3,\)",
    "context missing": r"mask_context after reset lacks documented field\(s\) open",
    "context extra": r"mask_context after reset has undocumented field\(s\) secret",
    "context shape": r"mask_context after reset field level has shape \(2,\), expected \(3,\)",
    "context dtype": r"mask_context after reset field day has dtype float32, expected int32",
    "context dict": r"mask_context after reset must return a MaskContext",
    "step tuple": r"step must return a 5-tuple, got a 4-tuple",
}


@pytest.mark.parametrize("broken", sorted(JAX_BREAKS))
def test_a_broken_jax_environment_is_rejected(broken):
    _one_line_error(ToyJaxEnv(broken), JAX_BREAKS[broken])


HOST_BREAKS = {
    "avail empty": r"avail_actions leaves an agent without any action",
    "obs shape": r"reset obs has shape \(2, 3, 1\), expected \(2, 3, 2\)",
    "reward nan": r"step 1 reward has non-finite entries",
    "done shape": r"step 1 done has shape \(2, 3\), expected \(2,\)",
    "done early": r"step 1 done is \[True, True\], expected all False",
    "component missing": r"step 1 info\['components'\] lacks cost",
    "context unbatched": r"after reset field level has shape \(3,\), expected \(2, 3\)",
    "metrics missing": r"step 2 ends the episode but info has no 'metrics' dict",
}


@pytest.mark.parametrize("broken", sorted(HOST_BREAKS))
def test_a_broken_host_environment_is_rejected(broken):
    _one_line_error(ToyHostEnv(broken), HOST_BREAKS[broken])


def test_an_environment_missing_a_protocol_member_is_rejected():
    env = type("Partial", (), {"spec": toy_spec(), "reset": None, "step": None})()
    _one_line_error(env, r"lacks default_params, mask_context \(envs_jax.core.JaxEnv\)")
    host = type("Partial", (), {"spec": toy_spec(is_jax=False), "n_envs": 2})()
    _one_line_error(host, r"is False but the environment lacks avail_actions, close, mask_context")


SPEC_BREAKS = {
    "name": (dict(name="toy-contract"), r"spec.name must look like 'family/scenario'"),
    "group range": (
        dict(agent_group=np.array([0, 0, 1], np.int32)),
        r"agent_group must lie in \[0, 0\]",
    ),
    "episode splits": (
        dict(episode_length={"train": 2}),
        r"episode_length must have exactly the keys train, validation, test, got train",
    ),
    "context dtype": (
        dict(context_fields=(ContextField("level", ("N",), "float16", "x"),)),
        r"context field level has dtype 'float16'; use one of float32, int32, bool",
    ),
    "dims": (
        dict(context_fields=(*FIELDS, ContextField("hist", ("N", "L"), "float32", "x"))),
        r"context field hist has shape \('N', 'L'\) but spec.dims lacks L",
    ),
    "components": (
        dict(reward_components=("gain", "gain")),
        r"spec.reward_components must be non-empty and unique",
    ),
}


@pytest.mark.parametrize("broken", sorted(SPEC_BREAKS))
def test_a_broken_spec_is_rejected(broken):
    changes, match = SPEC_BREAKS[broken]
    spec = toy_spec(**changes)
    with pytest.raises(ContractError, match=match):
        check_spec(spec)
    _one_line_error(ToyJaxEnv(spec=spec), match)


def test_layout_breaks_are_rejected_when_the_spec_is_built_and_when_checked():
    with pytest.raises(ValueError, match=r"agent_shape \(2,\) does not hold 3 agents"):
        toy_spec(agent_shape=(2,))
    with pytest.raises(ValueError, match="action_values/action_names must have 2 entries"):
        toy_spec(action_names=("keep",))
    spec = toy_spec()
    object.__setattr__(spec, "agent_shape", (2,))  # changed after construction
    with pytest.raises(ContractError, match=r"toy/contract: agent_shape \(2,\) does not hold"):
        check_spec(spec)
    assert dataclasses.replace(toy_spec(), name="toy/other").name == "toy/other"
