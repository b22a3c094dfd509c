"""Re-create ``tests/data/replay_run``: a tiny recorded eSpark run (K = 2, 2 iterations).

It serves the replay tests. The replies are hand-written LLM-style answers (prose plus a fenced
function, and checker verdicts in JSON), served by a scripted provider; the loop records them
exactly as it records real anthropic replies. Only the LLM records are kept (prompts dropped,
prompt hashes kept).

    python tests/data/make_replay_run.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from test_search import REPLAY_K, ScriptedProvider, new_run, tiny_config  # noqa: E402

from espark_jax.search import run_search  # noqa: E402

REPLIES = {
    0: """Orders that would push the inventory position beyond two weeks of cover only create \
holding and
overflow costs, so I prune them, but "order nothing" is always allowed.

```python
def compute_mask(ctx, action_space):
    dm = ctx.demand_mean[..., None]
    position = (ctx.in_stock + ctx.in_transit)[..., None]
    qty = np.floor(action_space * dm)
    return np.logical_or(position + qty <= 14 * dm, qty <= 0)
```""",
    1: """Large multipliers rarely pay off and risk destroying stock at the capacity limit. I keep \
multipliers up to
four days of demand and never allow orders that do not fit in the free capacity.

```python
def compute_mask(ctx, action_space):
    free = (ctx.capacity - ctx.total_stock - ctx.total_in_transit)[:, None, None]
    qty = np.floor(action_space * ctx.demand_mean[..., None])
    small = action_space <= 4.0
    return np.logical_or(np.logical_and(small, qty <= free), qty <= 0)
```""",
    2: """Ordering far less than the lead-time demand only causes lost sales, and far more \
only costs holding: I keep
order quantities between half and twice the demand expected over the lead time plus one day.

```python
def compute_mask(ctx, action_space):
    need = ctx.demand_mean * (ctx.vlt + 1) - ctx.in_stock - ctx.in_transit
    qty = np.floor(action_space * ctx.demand_mean[..., None])
    low = 0.5 * need[..., None]
    high = 2.0 * np.maximum(need[..., None], ctx.demand_mean[..., None])
    return np.logical_or(np.logical_and(qty >= low, qty <= high), qty <= 0)
```""",
    3: """SKUs with a thin margin cannot pay for large orders, so their multipliers are capped \
at two days of demand;
the others may order up to six days.

```python
def compute_mask(ctx, action_space):
    margin = (ctx.selling_price - ctx.procurement_cost) / np.maximum(ctx.selling_price, 1.0)
    cap = np.where(margin < 0.1, 2.0, 6.0)
    return action_space <= cap[..., None]
```""",
}


def reply(req):
    if req.role == "checker":
        return (
            '{"pass": true, "reasons": '
            '["the mask keeps order-nothing allowed and uses documented fields"]}'
        )
    return REPLIES[2 * (req.iteration - 1) + req.slot]  # four different answers over the run


def main() -> None:
    cfg = tiny_config(provider="scripted", k=REPLAY_K)
    with tempfile.TemporaryDirectory() as tmp:
        run = new_run(Path(tmp) / "rec", cfg)
        run_search(cfg, run, ScriptedProvider(reply), progress=False)
        out = HERE / "replay_run"
        if out.exists():
            shutil.rmtree(out)
        for rec in sorted(run.path.glob("iter_*/cand_*/*.json")):
            if rec.name not in ("generator.json", "checker.json"):
                continue
            data = json.loads(rec.read_text())
            data.pop("system", None)
            data.pop("messages", None)
            dest = out / rec.relative_to(run.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(json.dumps(data, indent=1) + "\n")
        (out / "README.md").write_text(
            "A tiny recorded eSpark run (mabim/tiny, K = 2, 2 iterations) for the replay tests.\n"
            "The replies are hand-written LLM-style answers, not real model output; "
            "re-create with\n"
            "`python tests/data/make_replay_run.py`.\n"
        )


if __name__ == "__main__":
    main()
