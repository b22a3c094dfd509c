"""MABIM observations (per-agent features for a shared policy) and the mask context.

The mask context is what an LLM-written mask function may read. Every field is documented here
because the documentation goes verbatim into the prompts. Shapes: ``W`` warehouses (head first,
the tail sells to consumers), ``N`` SKUs, ``L`` = 21 lookback days, ``A`` actions.
"""

from __future__ import annotations

from envs_jax.core import ContextField

MASK_CONTEXT_FIELDS: tuple[ContextField, ...] = (
    ContextField("in_stock", ("W", "N"), "float32",
                 "units on hand in each warehouse at the end of the last simulated day (after today's receipts)"),
    ContextField("in_transit", ("W", "N"), "float32",
                 "units ordered by (head) or shipped to (other warehouses) this warehouse that have not arrived yet"),
    ContextField("demand_mean", ("W", "N"), "float32",
                 "mean daily demand over the last 21 days (for a non-tail warehouse its demand is the downstream "
                 "warehouse's orders); action a orders floor(action_space[a] * demand_mean) units"),
    ContextField("demand_std", ("W", "N"), "float32", "standard deviation of daily demand over the last 21 days"),
    ContextField("demand_history", ("W", "N", "L"), "float32",
                 "daily demand of the last 21 days, oldest first (index -1 is the most recent day)"),
    ContextField("sale_mean", ("W", "N"), "float32",
                 "mean daily units sold over the last 21 days (sales are capped by stock; unmet demand is lost)"),
    ContextField("replenish_history", ("W", "N", "L"), "float32",
                 "units this warehouse ordered on each of the last 21 days, oldest first"),
    ContextField("selling_price", ("W", "N"), "float32", "today's selling price per unit at this warehouse"),
    ContextField("procurement_cost", ("W", "N"), "float32",
                 "today's purchase price per unit (the upstream warehouse's selling price)"),
    ContextField("holding_cost", ("W", "N"), "float32", "holding cost per unit in stock per day"),
    ContextField("unit_order_cost", ("W", "N"), "float32",
                 "fixed cost charged for every day on which a positive quantity is ordered"),
    ContextField("vlt", ("W", "N"), "float32",
                 "lead time in days: goods ordered today arrive after vlt days and can be sold the day after"),
    ContextField("capacity", ("W",), "float32",
                 "storage capacity of each warehouse in units (all SKUs together); arrivals beyond the free "
                 "space are destroyed at a cost of 0.5 x procurement_cost per unit"),
    ContextField("total_stock", ("W",), "float32", "sum of in_stock over all SKUs of each warehouse"),
    ContextField("total_in_transit", ("W",), "float32", "sum of in_transit over all SKUs of each warehouse"),
    ContextField("echelon", ("W", "N"), "int32", "warehouse index of each agent: 0 = head (buys from the "
                 "super vendor), W-1 = tail (sells to consumers)"),
    ContextField("day", (), "int32", "decisions already taken in this episode"),
    ContextField("days_left", (), "int32", "decisions left in this episode, including the current one"),
)
