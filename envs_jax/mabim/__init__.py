"""MABIM: multi-echelon inventory management in pure JAX.

Modules: ``config`` (scenario settings), ``data`` (tables and the loader of the original CSV
layout), ``files`` (the per-file cache that notices edits, hashes, announcements),
``sku_lists``, ``original`` (original MABIM YAML configs), ``synthetic`` (seeded look-alike
data), ``params`` (device arrays of a split, the state), ``window`` (lookback-window
statistics, the one ``demand_mean``), ``env`` (``MabimEnv``: the dynamics), ``features``
(observations, mask context), ``scenarios`` (registry entries ``mabim/...``), ``policies`` /
``episodes`` / ``baselines`` (operations-research baselines).
"""
