"""What a run will ask of its LLM before it asks: ``espark run --dry-run``.

:func:`estimate` counts the requests of a configuration (K slots x iterations; every slot one
generator request and, with the checker, one review; at most ``repair_rounds`` compile repairs plus
one checker-requested repair and review per check round) and estimates their tokens from the
actual prompts of iteration 1 (characters / :data:`CHARS_PER_TOKEN`) and assumed reply sizes.
:func:`format_estimate` prints it, with a cost range when the models are in the price table.
"""

from __future__ import annotations

from typing import Any, Mapping

from espark_jax.llm.prompts import EnvPromptInfo, Prompt, checker_messages, generator_messages
from espark_jax.llm.usage import PRICES_NOTE, price_for

CHARS_PER_TOKEN = 4
REPLY_TOKENS = {"generator": 1500, "checker": 300}  # assumed reply lengths
FEEDBACK_TOKENS = 800  # assumed policy feedback in the prompts of iterations after the first
ERROR_TOKENS = 100  # assumed compiler / checker reason in a repair prompt


def prompt_tokens(prompt: Prompt) -> int:
    """Estimated tokens of a prompt (characters / :data:`CHARS_PER_TOKEN`)."""
    return -(-len(prompt.as_text()) // CHARS_PER_TOKEN)


def estimate(cfg: Any, info: EnvPromptInfo) -> dict[str, Any]:
    """Request counts and token ranges of a run (``cfg``: a SearchConfig), fewest to most.

    Returns ``{"requests": (lo, hi), "generator": {"requests", "input", "output"}: (lo, hi)
    each, "checker": {...}}``; generator counts include the repairs.
    """
    k, iters = int(cfg.k), int(cfg.iterations)
    checks = int(cfg.check_rounds) if cfg.checker else 0
    repairs = int(cfg.repair_rounds) + checks  # compile repairs + checker-requested repairs
    reply = REPLY_TOKENS["generator"]
    first = [
        prompt_tokens(generator_messages(info, 1, s, None, None, cfg.formulation, n_slots=k))
        for s in range(k)
    ]
    later = [t + reply + FEEDBACK_TOKENS for t in first]
    review_in = prompt_tokens(checker_messages(info, "", cfg.formulation)) + reply
    gen = {"requests": [0, 0], "input": [0, 0], "output": [0, 0]}
    chk = {"requests": [0, 0], "input": [0, 0], "output": [0, 0]}
    for it in range(1, iters + 1):
        for base in first if it == 1 else later:
            repair_in = sum(base + r * (reply + ERROR_TOKENS) for r in range(1, repairs + 1))
            review_out = REPLY_TOKENS["checker"]
            for d, lo, hi in (
                (gen["requests"], 1, 1 + repairs),
                (gen["input"], base, base + repair_in),
                (gen["output"], reply, (1 + repairs) * reply),
                (chk["requests"], min(checks, 1), checks),
                (chk["input"], min(checks, 1) * review_in, checks * review_in),
                (chk["output"], min(checks, 1) * review_out, checks * review_out),
            ):
                d[0] += lo
                d[1] += hi
    total = tuple(g + c for g, c in zip(gen["requests"], chk["requests"]))
    roles = (("generator", gen), ("checker", chk))
    return {"requests": total, **{r: {key: tuple(v) for key, v in d.items()} for r, d in roles}}


def paid_models(provider: Any) -> dict[str, str | None]:
    """The model of each role whose provider is remote (None: an offline one answers it)."""
    parts = {"generator": provider, "checker": provider}
    parts.update({r: getattr(provider, r) for r in parts if hasattr(provider, r)})  # routed
    return {
        role: getattr(p, f"{role}_model", None) if getattr(p, "remote", False) else None
        for role, p in parts.items()
    }


def _cost(est: Mapping, models: Mapping[str, str | None], prices: Mapping) -> tuple | None:
    lo = hi = 0.0
    for role in ("generator", "checker"):
        if not est[role]["requests"][1] or models[role] is None:
            continue
        price = price_for(models[role], prices)
        if price is None:
            return None
        for key, pkey in (("input", "input"), ("output", "output")):
            lo += est[role][key][0] * float(price[pkey]) / 1e6
            hi += est[role][key][1] * float(price[pkey]) / 1e6
    return lo, hi


def _span(lo: float, hi: float, fmt: str = "{:,.0f}") -> str:
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)} to {fmt.format(hi)}"


def format_estimate(
    cfg: Any, est: Mapping[str, Any], provider: Any, announcement: str, prices: Mapping
) -> str:
    """The dry-run report: requests, token ranges, cost range (or why there is none)."""
    models = paid_models(provider)
    checks = int(cfg.check_rounds) if cfg.checker else 0
    g, c = est["generator"], est["checker"]
    tokens_in = (g["input"][0] + c["input"][0], g["input"][1] + c["input"][1])
    tokens_out = (g["output"][0] + c["output"][0], g["output"][1] + c["output"][1])
    lines = [
        f"dry run (nothing is sent, nothing is trained): {cfg.scenario}, K {cfg.k}, "
        f"{cfg.iterations} iterations, repair rounds {cfg.repair_rounds}, check rounds {checks}",
        announcement,
        f"LLM requests: {_span(*est['requests'])} (generator and repairs "
        f"{_span(*g['requests'])}, checker {_span(*c['requests'])})",
        f"input tokens: about {_span(*tokens_in)}",
        f"output tokens: about {_span(*tokens_out)}",
    ]
    if not getattr(provider, "remote", False):
        lines.append(f"cost: none ({provider.label} sends no API request)")
    else:
        usd = _cost(est, models, prices)
        if usd is None:
            named = " / ".join(m for m in models.values() if m)
            lines.append(f"cost: unknown (no price for {named}; give one with --prices FILE)")
        else:
            lines.append(
                f"cost: about {_span(*usd, fmt='${:,.2f}')} without prompt caching ({PRICES_NOTE})"
            )
    lines.append(
        f"assumptions: tokens = prompt characters / {CHARS_PER_TOKEN} from iteration 1's actual "
        f"prompts; replies of {REPLY_TOKENS['generator']:,} (generator) and "
        f"{REPLY_TOKENS['checker']:,} (checker) tokens; later iterations' prompts add the best "
        f"code and {FEEDBACK_TOKENS:,} tokens of feedback; fewest = every reply compiles and "
        "passes, most = every repair and check round is used"
    )
    return "\n".join(lines)
