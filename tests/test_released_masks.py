"""Mask programs in the authors' released interface (``compute_mask(agent_states, supply_chain,
action_space)``): translated, checked and exported like native ones, they give the same masks
as the native form of the same rule on visited MABIM states; parts we cannot supply are
one-line errors."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs_jax
from envs_jax.core import MaskContext
from espark_jax.cli import main
from espark_jax.masks import check_in_process, compile_mask
from espark_jax.masks.released import released_task, translate_released

# the rule of the released prompt's examples: capacity over all SKUs and a cover limit per SKU,
# written as their LLM writes it (numpy, loops over warehouses and actions, in-place writes)
RELEASED_CAPACITY_COVER = '''
"""An exploration function in the released interface."""
import numpy as np
from ReplenishmentEnv.env.agent_states import AgentStates

def compute_mask(agent_states: AgentStates, supply_chain, action_space: list):
    """Prune orders that overflow the warehouse or cover far more than the lead time."""
    warehouse_list = agent_states.warehouse_list
    num_sku = len(agent_states.sku_ids)
    capacity_mask = np.ones((len(warehouse_list), num_sku, len(action_space)))
    cover_mask = np.ones((len(warehouse_list), num_sku, len(action_space)))
    for i, warehouse_name in enumerate(warehouse_list):
        in_stock = agent_states[warehouse_name, "in_stock", "today", "all_skus"]
        in_transit = agent_states[warehouse_name, "in_transit", "today", "all_skus"]
        history = agent_states[warehouse_name, "demand", "lookback", "all_skus"]
        demand_mean = np.average(history, axis=0)
        vlt = agent_states[warehouse_name, "vlt", "today", "all_skus"]
        capacity = supply_chain[warehouse_name, "capacity"]
        for a, action in enumerate(action_space):
            replenishment = demand_mean * action
            total_after = np.sum(in_stock) + np.sum(in_transit) + np.sum(replenishment)
            capacity_mask[i, :, a] = total_after <= capacity
            cover = (in_stock + in_transit + replenishment) / (demand_mean + 1e-6)
            cover_mask[i, :, a] = np.where(cover > 3 * (vlt + 7), 0, 1)
    total_mask = capacity_mask * cover_mask
    total_mask[:, :, 0] = 1
    return total_mask, {"capacity": capacity_mask, "cover": cover_mask}
'''

NATIVE_CAPACITY_COVER = """
def compute_mask(ctx, action_space):
    demand_mean = ctx.demand_history.mean(axis=-1)
    replenishment = demand_mean[..., None] * action_space
    total_after = (
        ctx.in_stock.sum(axis=1)[:, None]
        + ctx.in_transit.sum(axis=1)[:, None]
        + replenishment.sum(axis=1)
    )
    capacity_ok = (total_after <= ctx.capacity[:, None])[:, None, :]
    cover = (ctx.in_stock[..., None] + ctx.in_transit[..., None] + replenishment) / (
        demand_mean[..., None] + 1e-6
    )
    cover_ok = cover <= 3 * (ctx.vlt[..., None] + 7)
    mask = capacity_ok & cover_ok
    return mask.at[:, :, 0].set(True)
"""

# a multi-echelon rule: a tighter limit at the tail (an `if` on the warehouse), sales and
# yesterday's demand, low-margin SKUs pruned by a boolean index, no biggest order at the head
RELEASED_ECHELONS = """
def compute_mask(agent_states, supply_chain, action_space):
    n_w = supply_chain.get_warehouse_count()
    total_mask = np.ones((n_w, agent_states.skus_count, len(action_space)))
    for i, w in enumerate(supply_chain.get_warehouse_list()):
        sales = np.mean(agent_states[w, "sale", "lookback"], axis=0)
        stock = agent_states[w, "in_stock"]
        last_demand = agent_states[w, "demand", "yesterday", "all_skus"]
        order = np.outer(sales, np.array(action_space))
        if w == supply_chain.get_tail():
            limit = 4.0
        else:
            limit = 6.0
        too_much = (stock[:, None] + order) > limit * (last_demand[:, None] + sales[:, None] + 1.0)
        total_mask[i] = np.where(too_much, 0, 1)
    price = agent_states["all_warehouses", "selling_price"]
    margin = price - agent_states["all_warehouses", "procurement_cost"]
    low_margin = margin < 0.05 * price
    total_mask[low_margin] *= 0
    total_mask[:, :, 0] = 1
    if supply_chain["store1", "upstream"] != "super_vendor":
        total_mask[supply_chain.get_head(), :, -1] = 0
    return total_mask, {}
"""

NATIVE_ECHELONS = """
def compute_mask(ctx, action_space):
    order = ctx.sale_mean[..., None] * action_space
    limit = jnp.where(ctx.echelon == 2, 4.0, 6.0)[..., None]
    last = ctx.demand_history[..., -1]
    too_much = (ctx.in_stock[..., None] + order) > limit * (
        last[..., None] + ctx.sale_mean[..., None] + 1.0
    )
    mask = jnp.where(too_much, 0, 1)
    low_margin = ctx.selling_price - ctx.procurement_cost < 0.05 * ctx.selling_price
    mask = jnp.where(low_margin[..., None], 0, mask)
    mask = mask.at[:, :, 0].set(1)
    return mask.at[0, :, -1].set(0)
"""


@functools.lru_cache(maxsize=None)
def visited_contexts(scenario: str, days: int = 40, envs: int = 3) -> dict[str, np.ndarray]:
    """Mask contexts of ``envs`` train episodes, day by day, under random orders of at most
    about the mean demand (multipliers 0 .. 1.16, so warehouses neither overflow nor empty)."""
    env = envs_jax.make(scenario)
    params = env.default_params("train")
    n_agents = env.spec.n_agents

    @jax.jit
    def run(key):
        obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(key, envs), params)

        def day(state, k):
            ctx = jax.vmap(env.mask_context, (0, None))(state, params)
            acts = jax.random.randint(k, (envs, n_agents), 0, 12)
            keys = jax.random.split(k, envs)
            _, state, *_ = jax.vmap(env.step, (0, 0, 0, None))(keys, state, acts, params)
            return state, ctx.as_dict()

        return jax.lax.scan(day, state, jax.random.split(key, days))[1]

    out = jax.device_get(run(jax.random.PRNGKey(3)))
    return {k: np.asarray(v).reshape(days * envs, *np.shape(v)[2:]) for k, v in out.items()}


def masks_on(fn, scenario: str, task) -> np.ndarray:
    ctx = MaskContext({k: jnp.asarray(v) for k, v in visited_contexts(scenario).items()})
    return np.asarray(fn.raw(ctx, jnp.asarray(task.action_values, jnp.float32)))


@pytest.mark.parametrize(
    "scenario, released, native",
    [
        ("mabim/standard-100", RELEASED_CAPACITY_COVER, NATIVE_CAPACITY_COVER),
        pytest.param(
            "mabim/2-echelons-100",
            RELEASED_CAPACITY_COVER,
            NATIVE_CAPACITY_COVER,
            marks=pytest.mark.slow,
        ),
        ("mabim/3-echelons-100", RELEASED_ECHELONS, NATIVE_ECHELONS),
    ],
)
def test_released_program_gives_the_native_rules_mask(scenario, released, native):
    env = envs_jax.make(scenario)
    task = released_task(env)
    native_task = task.__class__.from_env_spec(env.spec)
    got = check_in_process(released, task)
    want = check_in_process(native, native_task)
    assert got.ok, got.reason
    assert want.ok, want.reason
    assert got.stats["adapter"]["source"].strip() == released.strip()
    a, b = masks_on(got.fn, scenario, task), masks_on(want.fn, scenario, native_task)
    assert a.shape == b.shape == (120, *task.out_shape)
    np.testing.assert_array_equal(a != 0, b != 0)
    assert 0.05 < (b != 0).mean() < 0.95  # the rule prunes, and not everything


def test_translation_resolves_the_released_facts():
    env = envs_jax.make("mabim/3-echelons-100")
    text = translate_released(RELEASED_ECHELONS, released_task(env))
    assert text.startswith('"""translated from the released interface"""')
    assert "def compute_mask(ctx, action_space):" in text
    assert "agent_states" not in text and "supply_chain" not in text and "{" not in text
    assert "limit = 4.0" in text and "limit = 6.0" in text  # the loop unrolled for its `if`
    assert "jnp.where(jnp.broadcast_to(low_margin.T, total_mask.T.shape).T" in text
    assert "total_mask = total_mask.at[0, :, -1].set(0)" in text  # head = 0, `if` resolved


def test_released_program_through_the_sandbox():
    env = envs_jax.make("mabim/standard-100")
    res = compile_mask(RELEASED_CAPACITY_COVER, released_task(env), timeout_s=120)
    assert res.ok, res.reason
    assert res.stats["adapter"]["interface"] == "released"
    assert res.code.startswith('"""translated from the released interface"""')


HEAD = "def compute_mask(agent_states, supply_chain, action_space):\n"
ONES = "    m = np.ones((1, 100, 34))\n"


@pytest.mark.parametrize(
    "body, message",
    [
        ('    d = agent_states["store1", "demand", "today"]\n', "is the future demand"),
        (
            '    a = agent_states["store1", "arrived", agent_states.current_step + 2]\n',
            "(an absolute or future day) is not in the decision-time context",
        ),
        ('    e = agent_states["store1", "excess"]\n', "'excess' is not in the decision-time"),
        ('    s = agent_states["store1", "sale", "lookback"]\n', "the sale history is not in"),
        ('    x = agent_states["store1", "in_stock", "today", "SKU7"]\n', "'SKU7' by name"),
        ('    c = supply_chain["store1", "accept_sku"]\n', "'accept_sku'] is not in the context"),
        ('    x = agent_states["store1", "backorder"]\n', "has no state item 'backorder'"),
        (
            '    inv = agent_states["store1", "in_stock"]\n    inv[inv < 0] = 0\n',
            "read from the environment's state and written into",
        ),
        (ONES + "    n = m\n    n[0] = 0\n", "may share its array with 'm'"),
        (
            "    out = []\n    for i in range(2):\n        m = np.ones((100, 34))\n"
            "        out.append(m)\n        m[0] = 0\n",
            "'m' is written after it was put into a list",
        ),
        (ONES + "    m[m > 0] = np.zeros(3)\n", "x[cond] = <array>"),
    ],
)
def test_parts_we_cannot_supply_are_one_line_errors(body, message):
    task = released_task(envs_jax.make("mabim/standard-100"))
    res = check_in_process(HEAD + body + "    return np.ones((1, 100, 34)), {}\n", task)
    assert not res.ok and res.stage == "adapter", res.reason
    assert message in res.reason and "\n" not in res.reason, res.reason


def test_native_signature_is_named_in_the_error():
    task = released_task(envs_jax.make("mabim/standard-100"))
    res = check_in_process("def compute_mask(ctx, action_space):\n    return 1\n", task)
    assert res.stage == "adapter" and "the released interface has three" in res.reason
    assert "compute_mask(agent_states, supply_chain, action_space)" in res.reason


@pytest.mark.slow
def test_espark_train_under_a_released_program(tmp_path):
    program = tmp_path / "iter3_response5_maskonly.py"
    program.write_text(
        "import numpy as np\n"
        "def compute_mask(agent_states, supply_chain, action_space):\n"
        '    stock = agent_states["store1", "in_stock", "today", "all_skus"]\n'
        '    mean = np.mean(agent_states["store1", "demand", "lookback"], axis=0)\n'
        "    mask = np.ones((1, len(stock), len(action_space)))\n"
        "    mask[0][stock > 10 * mean] = 0\n"
        "    mask[:, :, 0] = 1\n"
        "    return mask, {}\n"
    )
    out = tmp_path / "run"
    argv = ["train", "--scenario", "mabim/tiny", "--mask-program", str(program)]
    argv += ["--mask-interface", "released", "--mask-fallback", "per_env", "--steps", "200"]
    argv += ["--num-envs", "2", "--hidden", "16,16", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["masks"] == ["iter3_response5_maskonly"]
    program.write_text(HEAD + '    d = agent_states["store1", "demand", "today"]\n')
    with pytest.raises(SystemExit, match="fails its checks: adapter: line 2: .*future demand"):
        main(argv)
