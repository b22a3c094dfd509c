"""Token usage and cost of a run: totals from the records, and a price table.

Every record (``iter_XX/cand_KK/<role>[_rN].json``) holds the usage its API reported.
:func:`write_usage` sums them into ``iter_XX/usage.json`` and the run's ``usage.json``::

    {"replies": 8, "requests": 8, "failed": 0, "offline": 0,
     "tokens": {"input_tokens": ..., "output_tokens": ..., "cache_read_input_tokens": ...,
                "cache_creation_input_tokens": ...},
     "by_model": {model: {"requests": n, <tokens>}}, "by_role": {role: {...}},
     "cost_usd": 0.0123 or null, "unpriced_models": [...],
     "iterations": {"1": {same, per iteration}}}              # the run's file only

``requests`` are replies whose API reported usage, ``failed`` records that hold an error,
``offline`` replies of the template or replay providers (no tokens). The price table
(:data:`DEFAULT_PRICES`, USD per million tokens; a run's ``prices.json`` and ``--prices FILE``
override it row by row) turns tokens into ``cost_usd``; a model is priced by the longest table
key that is the model name or its prefix followed by ``-``, ``:`` or ``@``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

TOKEN_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
PRICE_KEYS = ("input", "output", "cache_read", "cache_write")
PRICES_FILE = "prices.json"
USAGE_FILE = "usage.json"
PRICES_NOTE = (
    "list prices in USD per million tokens as published in 2025; check them and override "
    "with --prices FILE"
)

# USD per million tokens: input, output, cache read, cache write (list prices published in 2025).
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "claude-opus-4": {"input": 15.0, "output": 75.0, "cache_read": 1.5, "cache_write": 18.75},
    "claude-opus-4-5": {"input": 5.0, "output": 25.0, "cache_read": 0.5, "cache_write": 6.25},
    "claude-sonnet-4": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
    "claude-haiku-4-5": {"input": 1.0, "output": 5.0, "cache_read": 0.1, "cache_write": 1.25},
    "claude-3-5-haiku": {"input": 0.8, "output": 4.0, "cache_read": 0.08, "cache_write": 1.0},
    "gpt-4.1": {"input": 2.0, "output": 8.0, "cache_read": 0.5, "cache_write": 0.0},
    "gpt-4.1-mini": {"input": 0.4, "output": 1.6, "cache_read": 0.1, "cache_write": 0.0},
    "gpt-4.1-nano": {"input": 0.1, "output": 0.4, "cache_read": 0.025, "cache_write": 0.0},
    "gpt-4o": {"input": 2.5, "output": 10.0, "cache_read": 1.25, "cache_write": 0.0},
    "gpt-4o-mini": {"input": 0.15, "output": 0.6, "cache_read": 0.075, "cache_write": 0.0},
    "o4-mini": {"input": 1.1, "output": 4.4, "cache_read": 0.275, "cache_write": 0.0},
    "gpt-5": {"input": 1.25, "output": 10.0, "cache_read": 0.125, "cache_write": 0.0},
    "gpt-5-mini": {"input": 0.25, "output": 2.0, "cache_read": 0.025, "cache_write": 0.0},
}


class PriceTableError(ValueError):
    """A price table file that cannot be used."""


def load_prices(path: str | os.PathLike | None) -> dict[str, dict[str, float]]:
    """A user price table: ``{model: {"input": X, "output": Y[, "cache_read", "cache_write"]}}``
    in USD per million tokens (cache prices default to the input price); ``{}`` for None.

    Raises:
        PriceTableError: unreadable JSON or a row without numeric input and output prices.
    """
    if path is None:
        return {}
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise PriceTableError(f"--prices {path}: cannot read a JSON price table ({err})") from None
    if not isinstance(raw, dict):
        raise PriceTableError(f"--prices {path}: expected an object {{model: {{input, output}}}}")
    table = {}
    for model, row in raw.items():
        try:
            price = {k: float(row[k]) for k in ("input", "output")}
            for k in ("cache_read", "cache_write"):
                price[k] = float(row.get(k, price["input"]))
        except (TypeError, KeyError, ValueError, AttributeError):
            raise PriceTableError(
                f"--prices {path}: model {model!r} needs numeric 'input' and 'output' prices "
                "(USD per million tokens)"
            ) from None
        table[str(model)] = price
    return table


def price_table(run_dir: str | os.PathLike | None = None, extra: Mapping | None = None) -> dict:
    """The defaults, overridden by a run's ``prices.json`` and then by ``extra``."""
    table = dict(DEFAULT_PRICES)
    if run_dir is not None and (Path(run_dir) / PRICES_FILE).is_file():
        table.update(json.loads((Path(run_dir) / PRICES_FILE).read_text(encoding="utf-8")))
    table.update(extra or {})
    return table


def price_for(model: str, prices: Mapping[str, Mapping[str, float]]) -> Mapping | None:
    """The row for ``model``: an exact key, else the longest key followed by ``-``, ``:`` or
    ``@`` in the model name (``claude-sonnet-4-6-2026`` takes ``claude-sonnet-4``); else None."""
    if model in prices:
        return prices[model]
    keys = [k for k in prices if len(model) > len(k) and model.startswith(k)]
    keys = [k for k in keys if model[len(k)] in "-:@"]
    return prices[max(keys, key=len)] if keys else None


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _count(obj: Any, name: str) -> int:
    return int(_field(obj, name) or 0)


def reported_tokens(usage: Any) -> dict[str, int]:
    """The four :data:`TOKEN_KEYS` counts of a usage mapping or an SDK usage object with those
    names (Anthropic's); missing counts, or no usage (None), are 0."""
    return {k: _count(usage, k) for k in TOKEN_KEYS}


def chat_tokens(usage: Any) -> dict[str, int]:
    """The :data:`TOKEN_KEYS` counts of a Chat Completions ``usage`` (object, mapping or None):
    input = prompt tokens not read from the cache, cache reads = cached prompt tokens, output =
    completion tokens, no cache writes."""
    cached = _count(_field(usage, "prompt_tokens_details"), "cached_tokens")
    return {
        "input_tokens": max(0, _count(usage, "prompt_tokens") - cached),
        "output_tokens": _count(usage, "completion_tokens"),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def _add(into: dict, usage: Mapping[str, int]) -> None:
    into["requests"] = into.get("requests", 0) + 1
    for k in TOKEN_KEYS:
        into[k] = into.get(k, 0) + usage[k]


def tally(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts and token sums of records (see the module docstring), without cost."""
    out: dict[str, Any] = {
        "replies": 0,
        "requests": 0,
        "failed": 0,
        "offline": 0,
        "tokens": dict.fromkeys(TOKEN_KEYS, 0),
        "by_model": {},
        "by_role": {},
    }
    for rec in records:
        out["replies"] += 1
        usage = reported_tokens(rec.get("usage"))
        if rec.get("error"):
            out["failed"] += 1
        elif rec.get("usage"):
            out["requests"] += 1
        else:
            out["offline"] += 1
        for k in TOKEN_KEYS:
            out["tokens"][k] += usage[k]
        _add(out["by_model"].setdefault(str(rec.get("model") or "?"), {}), usage)
        _add(out["by_role"].setdefault(str(rec.get("role") or "?"), {}), usage)
    return out


def merge(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One tally from several (e.g. every iteration's)."""
    out = tally(())
    for part in parts:
        for k in ("replies", "requests", "failed", "offline"):
            out[k] += int(part.get(k, 0))
        for k in TOKEN_KEYS:
            out["tokens"][k] += int(part.get("tokens", {}).get(k, 0))
        for group in ("by_model", "by_role"):
            for name, row in part.get(group, {}).items():
                dst = out[group].setdefault(name, dict.fromkeys(("requests", *TOKEN_KEYS), 0))
                for k, v in row.items():
                    dst[k] = dst.get(k, 0) + int(v)
    return out


def cost(summary: Mapping[str, Any], prices: Mapping) -> tuple[float | None, list[str]]:
    """``(USD, unpriced models)`` of a tally: None when a model with tokens has no price."""
    total, missing = 0.0, []
    for model, row in summary.get("by_model", {}).items():
        if not any(row.get(k, 0) for k in TOKEN_KEYS):
            continue
        price = price_for(model, prices)
        if price is None:
            missing.append(model)
            continue
        for key, pkey in zip(TOKEN_KEYS, PRICE_KEYS):
            total += row.get(key, 0) * float(price.get(pkey, price["input"])) / 1e6
    return (None if missing else total), sorted(missing)


def with_cost(summary: dict[str, Any], prices: Mapping) -> dict[str, Any]:
    """``summary`` plus ``cost_usd`` and ``unpriced_models``."""
    usd, missing = cost(summary, prices)
    return {**summary, "cost_usd": usd, "unpriced_models": missing}


def _records(iter_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(iter_dir.glob("cand_*/*.json")):
        if path.name in ("check.json", "metrics.json"):
            continue
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and "text" in rec and "role" in rec:
            out.append(rec)
    return out


def _write(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def write_usage(run_dir: str | os.PathLike, iterations: Iterable[int] = ()) -> dict[str, Any]:
    """Re-sum ``iter_XX/usage.json`` of ``iterations`` from their records, then the run's
    ``usage.json`` from every iteration's file; returns the run's totals."""
    run_dir = Path(run_dir)
    prices = price_table(run_dir)
    for it in iterations:
        d = run_dir / f"iter_{it:02d}"
        if d.is_dir():
            _write(d / USAGE_FILE, with_cost(tally(_records(d)), prices))
    per_iter = {}
    for path in sorted(run_dir.glob(f"iter_*/{USAGE_FILE}")):
        per_iter[str(int(path.parent.name.split("_", 1)[1]))] = json.loads(path.read_text())
    total = with_cost(merge(per_iter.values()), prices)
    _write(run_dir / USAGE_FILE, {**total, "iterations": per_iter, "prices_note": PRICES_NOTE})
    return total


def run_usage(run_dir: str | os.PathLike, extra_prices: Mapping | None = None) -> dict | None:
    """A run's totals with cost under the current table (defaults, the run's ``prices.json``,
    ``extra_prices``); recomputed from the records when ``usage.json`` is missing; None when
    the run has no records."""
    run_dir = Path(run_dir)
    path = run_dir / USAGE_FILE
    if path.is_file():
        summary = json.loads(path.read_text(encoding="utf-8"))
    else:
        summary = merge(tally(_records(d)) for d in sorted(run_dir.glob("iter_*")))
        if not summary["replies"]:
            return None
    return with_cost(summary, price_table(run_dir, extra_prices))


def format_tokens(summary: Mapping[str, Any] | None) -> str:
    """``in / out`` token counts, plus cache reads and writes when there were any, for a table
    cell ("-" without records)."""
    if not summary:
        return "-"
    t = summary["tokens"]
    read, write = t["cache_read_input_tokens"], t["cache_creation_input_tokens"]
    text = f"{t['input_tokens']:,} / {t['output_tokens']:,}"
    return text + (f" (cache read {read:,}, write {write:,})" if read or write else "")


def format_cost(summary: Mapping[str, Any] | None) -> str:
    """``$0.0123``, or ``? (no price: m1, m2)``, or "-" without records."""
    if not summary:
        return "-"
    if summary.get("cost_usd") is None:
        return f"? (no price: {', '.join(summary.get('unpriced_models', []))})"
    return f"${summary['cost_usd']:,.4f}"


def total_line(run_dirs: Iterable[str | os.PathLike], prices: Mapping | None = None) -> str:
    """One line: the LLM tokens and cost of several runs together (e.g. a sweep)."""
    usages = [u for u in (run_usage(d, prices) for d in run_dirs) if u]
    total = merge(usages)
    costs = [u.get("cost_usd") for u in usages]
    known = all(c is not None for c in costs)
    total["cost_usd"] = sum(costs) if known else None
    total["unpriced_models"] = sorted({m for u in usages for m in u.get("unpriced_models", [])})
    return f"LLM tokens in / out: {format_tokens(total)}; cost: {format_cost(total)}"
