"""A plain-NumPy MABIM written the way the original ``ReplenishmentEnv`` is organised.

It keeps one float64 matrix per state item over all days ``[W, L + D, N]`` (day index = t + L),
loops over warehouses in config order, and uses the original's arithmetic in the same order:
``sale = where(stock >= demand, demand, stock)``, acceptance ratio ``min(free / sum(arrived), 1)``,
floors, ``reward2``. It exists only to check the JAX environment step for step; it is slow on
purpose (Python loops everywhere).
"""

from __future__ import annotations

import numpy as np


class ReferenceMabim:
    def __init__(
        self,
        price,
        cost,
        demand,
        vlt,
        init_stock,
        capacity,
        start,
        horizon,
        lookback=21,
        action_values=None,
        unit_order_cost=10.0,
        volume=1.0,
        basic_holding_cost=0.001,
        unit_storage_cost=0.002,
        backlog_ratio=0.1,
        overflow_cost_ratio=0.5,
    ):
        """price/cost: [W, T, N]; demand: [T, N] (tail); vlt/init_stock: [W, N]; capacity: [W];
        start: data row of day 0; horizon: D. The cost settings: one number, or one per warehouse
        (the original's per-warehouse shared_data)."""
        self.W, _, self.N = price.shape
        self.L, self.D = lookback, horizon
        days = self.L + self.D
        rows = slice(start - self.L, start + self.D)
        self.price = price[:, rows, :].astype(np.float64)
        self.cost = cost[:, rows, :].astype(np.float64)
        self.vlt = vlt.astype(np.float64)
        self.capacity = np.asarray(capacity, dtype=np.float64)
        self.action_values = (
            None if action_values is None else np.asarray(action_values, dtype=np.float64)
        )

        def per_warehouse(x):
            return np.broadcast_to(np.asarray(x, dtype=np.float64), (self.W,)).reshape(-1, 1)

        self.uoc, self.volume = per_warehouse(unit_order_cost), per_warehouse(volume)
        self.holding = per_warehouse(basic_holding_cost) + per_warehouse(unit_storage_cost) * (
            self.volume
        )
        self.backlog_ratio = per_warehouse(backlog_ratio)
        self.overflow = per_warehouse(overflow_cost_ratio)
        shape = (self.W, days, self.N)
        self.demand = np.zeros(shape)
        self.demand[self.W - 1] = demand[rows, :]
        self.in_stock = np.full(shape, np.nan)
        self.in_stock[:, 0] = init_stock
        self.in_transit = np.zeros(shape)
        self.arrived = np.zeros(shape)
        self.sale = np.full(shape, np.nan)
        self.replenish = np.full(shape, np.nan)
        self.excess = np.full(shape, np.nan)
        self.accepted = np.full(shape, np.nan)
        self.t = -self.L
        # warm-up: order yesterday's demand, continuous mode, rewards discarded
        last = np.zeros((self.W, self.N))
        for _ in range(self.L):
            self._step_quantity(np.floor(last))
            last = self.demand[:, self.t + self.L - 1]

    def _today(self):
        return self.t + self.L

    def _schedule(self, w, quantity):
        vlt = self.vlt[w]
        for n in range(self.N):
            if self.t + vlt[n] < self.D:
                self.arrived[w, int(self._today() + vlt[n]), n] += quantity[n]
        self.in_transit[w, self._today()] += quantity

    def _step_quantity(self, q):
        d = self._today()
        # replenish
        for w in range(self.W):
            self.replenish[w, d] = q[w]
            if w == 0:
                self._schedule(0, q[0])
            elif self.t < self.D - 1:
                self.demand[w - 1, d] = q[w]
        # sell
        for w in range(self.W):
            dem, stock = self.demand[w, d], self.in_stock[w, d]
            sale = np.where(stock >= dem, dem, stock)
            self.sale[w, d] = sale
            self.in_stock[w, d] = stock - sale
        for w in range(self.W - 1):
            self._schedule(w + 1, self.sale[w, d])
        # receive
        for w in range(self.W):
            arrived = self.arrived[w, d]
            self.in_transit[w, d] -= arrived
            total = sum(arrived)
            free = self.capacity[w] - np.sum(self.in_stock[w, d] * self.volume[w])
            ratio = min(free / total, 1.0) if total > 0 else 0
            accept = np.floor(arrived * ratio)
            self.excess[w, d] = arrived - accept
            self.accepted[w, d] = accept
            self.in_stock[w, d] += accept
        # reward2
        p, c = self.price[:, d], self.cost[:, d]
        sale, excess, rep = self.sale[:, d], self.excess[:, d], self.replenish[:, d]
        comps = {
            "profit": sale * (p - c),
            "excess_cost": c * excess * self.overflow,
            "order_cost": self.uoc * np.where(rep > 0, 1, 0),
            "holding_cost": self.holding * self.in_stock[:, d],
        }
        backlog = (p - c) * (self.demand[:, d] - sale) * self.backlog_ratio
        comps["backlog_cost"] = np.where(backlog > 0, backlog, 0)
        reward = (
            comps["profit"]
            - comps["excess_cost"]
            - comps["order_cost"]
            - comps["holding_cost"]
            - comps["backlog_cost"]
        )
        # advance
        self.t += 1
        if self.t < self.D:
            self.in_stock[:, d + 1] = self.in_stock[:, d]
            self.in_transit[:, d + 1] = self.in_transit[:, d]
        return reward, comps

    def demand_mean(self):
        d = self._today()
        return np.average(self.demand[:, max(d - self.L, 0) : d], 1)

    def step(self, actions):
        """actions: [W, N] indices into action_values (or multipliers if action_values is None)."""
        mult = actions if self.action_values is None else self.action_values[actions]
        q = np.floor(mult * self.demand_mean())
        reward, comps = self._step_quantity(q)
        return reward, comps, self.t >= self.D

    def state(self):
        """in_stock and in_transit after the last simulated day."""
        d = min(self._today(), self.L + self.D - 1)
        return self.in_stock[:, d], self.in_transit[:, d]


def reference_of(params, start=None, **settings):
    """A :class:`ReferenceMabim` over the arrays of a split's ``MabimParams`` (``start``: the data
    row of day 0, default the split's first; ``settings``: ``action_values`` and cost settings)."""
    start = int(params.start_lo) if start is None else int(start)
    return ReferenceMabim(
        np.asarray(params.price),
        np.asarray(params.cost),
        np.asarray(params.demand),
        np.asarray(params.vlt),
        np.asarray(params.init_stock),
        np.asarray(params.capacity),
        start,
        int(params.horizon),
        **settings,
    )
