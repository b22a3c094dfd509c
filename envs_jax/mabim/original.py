"""Original MABIM YAML configs (``ReplenishmentEnv/config/*.yml``) as scenario settings.

:func:`read_original_config` reads one into the :class:`~envs_jax.mabim.config.MabimConfig` fields
it decides (warehouses and their chain, tables, capacities, per-warehouse costs, splits, horizon,
lookback, SKU list, action mode, data directory); :func:`original_config` builds the config.
Settings this environment does not reproduce are refused, all in one line naming each key: dynamic
lead times, ``reward1``, acceptance rules other than ``equal_accept``, unfloored quantities, other
warm-ups, raw-quantity action modes, random windows outside the train split, per-SKU values in
``shared_data``, a non-zero ``init_balance``, warehouses not listed head first. Ignored as the
original ignores them or as they only shape its outputs: ``initial_balance`` (the code reads
``init_balance``), ``profit_function``, ``output_state`` (the observations are the MARL
features), ``visualization``.

File paths are resolved like the original (relative to the repository root holding
``ReplenishmentEnv/config/``, or to the current directory); with ``data_dir`` every file is looked
up by its name in that directory instead. The data directory is the demand file's; a SKU list
``X.sku_list.csv`` found nowhere is the list ``X`` of the data directory or the bundled one
(announced), as for the registry scenarios.
"""

from __future__ import annotations

import datetime as _dt
import numbers
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from envs_jax.mabim.config import MabimConfig
from envs_jax.mabim.data import PRICE_TABLES, format_date, info_file, parse_date, price_file

SHARED = ("unit_order_cost", "volume", "basic_holding_cost", "backlog_ratio", "overflow_cost_ratio")
WAREHOUSE_KEYS = {
    "name",
    "initial_balance",
    "init_balance",
    "capacity",
    "unit_storage_cost",
    "accept_sku",
    "upstream",
    "downstream",
    "sku",
}
ENV_KEYS = {"mode", "horizon", "lookback_len", "integerization_sku", "warmup", "sku_list"}
TOP_KEYS = {
    "env",
    "warehouse",
    "profit_function",
    "reward_function",
    "action",
    "output_state",
    "visualization",
}
SPLIT_NAMES = ("train", "validation", "test")


class OriginalConfigError(ValueError):
    """An original MABIM config that cannot be read or asks for what is not supported."""


def read_original_config(path: str | Path, data_dir: str | Path | None = None) -> dict[str, Any]:
    """The :class:`MabimConfig` fields an original MABIM YAML config decides (all but ``name``,
    ``precision``, ``clip_negative_stock`` and ``seed``), as keyword overrides for a scenario.

    ``data_dir``: look every file up by its name there (default: resolve the config's paths).
    Raises :class:`OriginalConfigError` (one line) naming each unsupported key.
    """
    p = Path(path)
    if not p.is_file():
        raise OriginalConfigError(f"MABIM config {p} not found")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0]
        raise OriginalConfigError(f"{p}: not valid YAML ({first})") from None
    if not isinstance(doc, dict):
        raise OriginalConfigError(f"{p}: expected a mapping with 'env' and 'warehouse'")
    reader = _Reader(p, data_dir)
    fields = reader.read(doc)
    if reader.unsupported:
        raise OriginalConfigError(
            f"{p}: unsupported MABIM config key(s): {'; '.join(reader.unsupported)}"
        )
    if reader.problems:
        raise OriginalConfigError(f"{p}: {'; '.join(reader.problems)}")
    return reader.place_files(fields)


def original_config(
    path: str | Path, name: str | None = None, data_dir: str | Path | None = None, **overrides: Any
) -> MabimConfig:
    """The scenario of an original MABIM YAML config (``name`` default ``mabim/<file stem>``);
    ``overrides`` set further fields (``precision``, ``clip_negative_stock``, ...)."""
    fields = read_original_config(path, data_dir)
    return MabimConfig(name=name or f"mabim/{Path(path).stem}", **{**fields, **overrides})


class _Reader:
    """One pass over the YAML document: fields, unsupported keys, problems, files named."""

    def __init__(self, path: Path, data_dir: str | Path | None) -> None:
        self.path, self.data_dir = path, data_dir
        self.unsupported: list[str] = []
        self.problems: list[str] = []
        self.files: dict[str, Path] = {}  # role -> resolved path
        self.sku_list_name: str | None = None  # a list not found: looked up by name at build

    # ------------------------------------------------------------------ helpers

    def refuse(self, key: str, why: str) -> None:
        self.unsupported.append(f"{key} ({why})")

    def number(self, where: str, value: Any, default: float | None = None) -> float:
        if value is None and default is not None:
            return default
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.problems.append(f"{where} must be a number, got {value!r}")
            return 0.0
        return float(value)

    def extra(self, where: str, mapping: dict, known: set[str]) -> None:
        for key in mapping:
            if key not in known:
                self.refuse(f"{where}{key}", "not a setting of this environment")

    def locate(self, role: str, entry: Any) -> None:
        """Remember the file of ``role`` (resolved like the original, or in ``data_dir``)."""
        if not isinstance(entry, str) or not entry.strip():
            self.problems.append(f"{role} must be a file path, got {entry!r}")
            return
        entry = entry.strip()
        if self.data_dir is not None:
            self.files[role] = Path(self.data_dir) / PurePosixPath(entry).name
            return
        if Path(entry).is_absolute():
            self.files[role] = Path(entry)
            return
        roots = [Path.cwd(), *self.path.resolve().parents[:3]]
        found = next((r / entry for r in roots if (r / entry).is_file()), None)
        if found is None and role == "env.sku_list" and entry.endswith(".sku_list.csv"):
            self.sku_list_name = PurePosixPath(entry).name.removesuffix(".sku_list.csv")
        elif found is None:
            self.problems.append(
                f"{role} file {entry} not found (relative to {roots[0]} or to "
                f"{', '.join(str(r) for r in roots[1:])}); pass --data-dir DIR with the data files"
            )
        else:
            self.files[role] = found.resolve()

    # ------------------------------------------------------------------ sections

    def read(self, doc: dict) -> dict[str, Any]:
        for key in doc:
            if key not in TOP_KEYS:
                self.refuse(str(key), "not a MABIM config key")
        for key in ("env", "warehouse", "reward_function", "action"):
            if key not in doc:
                self.problems.append(f"'{key}' is missing")
        fields: dict[str, Any] = {}
        if isinstance(doc.get("env"), dict):
            fields.update(self.env(doc["env"]))
        if isinstance(doc.get("warehouse"), list) and doc["warehouse"]:
            fields.update(self.warehouses(doc["warehouse"]))
        elif "warehouse" in doc:
            self.problems.append("'warehouse' must be a non-empty list")
        if "reward_function" in doc and doc["reward_function"] != "reward2":
            self.refuse(f"reward_function {doc['reward_function']}", "only reward2")
        fields.update(self.action(doc.get("action") or {}))
        return fields

    def env(self, env: dict) -> dict[str, Any]:
        self.extra("env.", env, ENV_KEYS)
        if env.get("integerization_sku") is not True:
            self.refuse(
                f"env.integerization_sku {env.get('integerization_sku', '(absent: False)')}",
                "quantities are always floored",
            )
        if env.get("warmup", "replenish_by_last_demand") != "replenish_by_last_demand":
            self.refuse(f"env.warmup {env['warmup']}", "only replenish_by_last_demand")
        out: dict[str, Any] = {
            "horizon": int(self.number("env.horizon", env.get("horizon"), 100)),
            "lookback": int(self.number("env.lookback_len", env.get("lookback_len"), 7)),
            "n_skus": None,
        }
        skus = env.get("sku_list")
        if isinstance(skus, list):
            out["sku_list"] = tuple(str(s) for s in skus)
        elif skus is None:
            self.problems.append("env.sku_list is missing")
        else:
            self.locate("env.sku_list", skus)
        splits = {}
        for i, mode in enumerate(env.get("mode") or []):
            if not isinstance(mode, dict) or mode.get("name") not in SPLIT_NAMES:
                self.refuse(f"env.mode[{i}]", "modes are train, validation and test")
                continue
            name = mode["name"]
            self.extra(
                f"env.mode[{i}].", mode, {"name", "start_date", "end_date", "random_interception"}
            )
            random = bool(mode.get("random_interception", False))
            if random and name != "train":
                self.refuse(f"env.mode[{i}].random_interception", f"random windows in {name}")
            splits[name] = (random, self.date(mode, "start_date"), self.date(mode, "end_date"))
        missing = [s for s in SPLIT_NAMES if s not in splits]
        if missing:
            self.problems.append(f"env.mode has no {', '.join(missing)} entry")
            return out
        out["random_window"] = splits["train"][0]
        for name in SPLIT_NAMES:
            out[f"{name}_dates"] = splits[name][1:]
        return out

    def date(self, mode: dict, key: str) -> str:
        value = mode.get(key)
        try:
            if isinstance(value, _dt.date):
                return format_date(value)
            return format_date(parse_date(str(value)))
        except ValueError:
            self.problems.append(f"env.mode {mode.get('name')} {key} is not a date: {value!r}")
            return "2018/7/1"

    def warehouses(self, items: list) -> dict[str, Any]:
        names = [w.get("name") if isinstance(w, dict) else None for w in items]
        out: dict[str, list] = {k: [] for k in ("capacity", "unit_storage_cost", *SHARED)}
        for i, w in enumerate(items):
            if not isinstance(w, dict) or not isinstance(w.get("name"), str):
                self.problems.append(f"warehouse[{i}] needs a name")
                continue
            where = f"warehouse[{i}] {w['name']}"
            self.extra(f"{where}: ", w, WAREHOUSE_KEYS)
            up = "super_vendor" if i == 0 else names[i - 1]
            down = "consumer" if i == len(items) - 1 else names[i + 1]
            if w.get("upstream") != up or w.get("downstream") != down:
                self.refuse(
                    f"{where}: upstream {w.get('upstream')} / downstream {w.get('downstream')}",
                    "list the chain head first (upstream super_vendor) to tail (downstream "
                    "consumer)",
                )
            if w.get("init_balance", 0) != 0:
                self.refuse(f"{where}: init_balance {w['init_balance']}", "balances start at 0")
            if w.get("accept_sku", "equal_accept") != "equal_accept":
                self.refuse(f"{where}: accept_sku {w['accept_sku']}", "only equal_accept")
            if "capacity" not in w:
                self.problems.append(f"{where}: capacity is missing")
            out["capacity"].append(self.number(f"{where}: capacity", w.get("capacity", 0)))
            cost = w.get("unit_storage_cost", 0)
            out["unit_storage_cost"].append(self.number(f"{where}: unit_storage_cost", cost))
            shared = self.sku(where, i, i == len(items) - 1, w.get("sku"))
            for key in SHARED:
                out[key].append(self.number(f"{where}: sku.shared_data.{key}", shared.get(key)))
        return {"warehouses": tuple(str(n) for n in names), **{k: tuple(v) for k, v in out.items()}}

    def sku(self, where: str, i: int, tail: bool, sku: Any) -> dict:
        if not isinstance(sku, dict):
            self.problems.append(f"{where}: sku is missing")
            return {}
        self.extra(f"{where}: sku.", sku, {"dynamic_data", "static_data", "shared_data"})
        need = {"selling_price", "procurement_cost", *(("demand",) if tail else ())}
        for item in sku.get("dynamic_data") or []:
            name = item.get("name") if isinstance(item, dict) else None
            if name in need:
                self.locate(f"warehouse[{i}].{name}", item.get("file"))
                need.discard(name)
            elif name == "vlt":
                self.refuse(f"{where}: sku.dynamic_data vlt", "dynamic lead times")
            else:
                self.refuse(f"{where}: sku.dynamic_data {name}", "per-day data of that kind")
        shared = sku.get("shared_data") or {}
        for key in shared:
            if key not in SHARED:
                self.refuse(f"{where}: sku.shared_data.{key}", "not a shared setting here")
        if need:
            self.problems.append(f"{where}: sku.dynamic_data lacks {', '.join(sorted(need))}")
        if "static_data" in sku:
            self.locate(f"warehouse[{i}].static_data", sku["static_data"])
        else:
            self.problems.append(f"{where}: sku.static_data (the info file) is missing")
        return shared

    def action(self, action: dict) -> dict[str, Any]:
        mode = action.get("mode", "continuous")
        if mode == "demand_mean_continuous":
            return {"continuous": True}
        if mode == "demand_mean_discrete":
            space = action.get("space")
            if not isinstance(space, list) or not space:
                self.problems.append("action.space (the multipliers) is missing")
                return {"continuous": False}
            values = tuple(self.number("action.space", v) for v in space)
            return {"continuous": False, "action_values": values}
        self.refuse(
            f"action.mode {mode}", "raw quantities; use demand_mean_discrete or _continuous"
        )
        return {}

    # ------------------------------------------------------------------ files

    def place_files(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Table entries relative to the data directory (the demand file's), standard names
        shortened to what the registry scenarios use."""
        W = len(fields["warehouses"])
        demand = self.files[f"warehouse[{W - 1}].demand"]
        root = Path(self.data_dir) if self.data_dir is not None else demand.parent

        def entry(path: Path) -> str:
            return path.name if path.parent == root else str(path)

        prices, costs, infos = [], [], []
        for i, wh in enumerate(fields["warehouses"]):
            for role, out in (("selling_price", prices), ("procurement_cost", costs)):
                name = entry(self.files[f"warehouse[{i}].{role}"])
                short = [t for t in PRICE_TABLES if price_file(t) == name]
                out.append(short[0] if short else name)
            infos.append(entry(self.files[f"warehouse[{i}].static_data"]))
        fields.update(
            price_tables=tuple(prices),
            cost_tables=tuple(costs),
            demand_file=entry(demand),
            info_files=None
            if all(f == info_file(w) for f, w in zip(infos, fields["warehouses"]))
            else tuple(infos),
            data_dir=str(root),
        )
        if "env.sku_list" in self.files:
            path = self.files["env.sku_list"]
            listed = path.parent == root and path.name.endswith(".sku_list.csv")
            fields["sku_list"] = path.name.removesuffix(".sku_list.csv") if listed else str(path)
        elif self.sku_list_name is not None:
            fields["sku_list"] = self.sku_list_name
        return fields
