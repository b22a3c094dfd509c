"""Pull the candidate code and the checker's verdict out of raw LLM replies.

Two small, tolerant parsers used by the eSpark loop for its records:

* :func:`extract_code` - the last fenced block that defines the required function, else the last
  fenced block; a reply without any fenced block is an :class:`ExtractionError`.
* :func:`parse_verdict` - the checker's JSON verdict (``{"pass": bool, "reasons": [...],
  "suggestion": str}``), found among prose, in a ```json fence or bare.

Both raise :class:`ExtractionError` with a one-line message that can be sent back to the LLM.
"""

from __future__ import annotations

import dataclasses
import json
import re

__all__ = ["CheckerVerdict", "ExtractionError", "extract_code", "fenced_blocks", "parse_verdict"]


class ExtractionError(ValueError):
    """A reply did not contain what was asked for; the message says what to send instead."""


# An opening fence (``` or ~~~, optional language tag) at the start of a line, the body, and the
# matching closing fence at the start of a line - or the end of the text for a truncated reply.
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+.-]*)[^\n]*\n"
    r"(?P<body>.*?)(?:^[ \t]*(?P=fence)[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """All fenced code blocks of ``text`` in order, as ``(language tag, body)`` pairs.

    A final fence that is never closed (a reply cut off at the token limit) counts as a block
    running to the end of the text, so the compiler can report where the code breaks off.
    """
    return [
        (m.group("lang").lower(), m.group("body").rstrip() + "\n") for m in _FENCE.finditer(text)
    ]


def _defines(code: str, function_name: str) -> bool:
    return (
        re.search(rf"^def[ \t]+{re.escape(function_name)}[ \t]*\(", code, re.MULTILINE) is not None
    )


def extract_code(text: str, function_name: str = "compute_mask") -> str:
    """The candidate source in an LLM reply.

    Takes the last fenced block that defines ``function_name`` at top level; if no block does,
    the last fenced block (the compiler then says what is missing).

    Raises:
        ExtractionError: the reply has no fenced code block at all.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExtractionError(
            "the reply is empty; answer with one ```python block that defines "
            f"{function_name}(ctx, action_space)"
        )
    blocks = [body for _, body in fenced_blocks(text) if body.strip()]
    if not blocks:
        raise ExtractionError(
            f"the reply has no ```python code block; answer with one fenced block that defines "
            f"{function_name}(ctx, action_space)"
        )
    defining = [b for b in blocks if _defines(b, function_name)]
    return (defining or blocks)[-1]


@dataclasses.dataclass(frozen=True)
class CheckerVerdict:
    """The checker's decision on one candidate.

    Attributes:
        passed: True when the checker accepts the candidate.
        reasons: the problems it found (may be empty on a pass).
        suggestion: an optional short fix proposal.
    """

    passed: bool
    reasons: tuple[str, ...] = ()
    suggestion: str | None = None

    def to_dict(self) -> dict:
        """A JSON-serialisable form for run records."""
        return {"pass": self.passed, "reasons": list(self.reasons), "suggestion": self.suggestion}


_PASS_WORDS = {
    "pass": True,
    "passed": True,
    "true": True,
    "yes": True,
    "ok": True,
    "fail": False,
    "failed": False,
    "false": False,
    "no": False,
    "reject": False,
}


def _as_pass(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _PASS_WORDS.get(value.strip().lower())
    return None


def _verdict_from(obj: object) -> CheckerVerdict | None:
    if not isinstance(obj, dict):
        return None
    passed = None
    for key in ("pass", "passed", "verdict", "ok"):
        if key in obj:
            passed = _as_pass(obj[key])
            break
    if passed is None:
        return None
    reasons = obj.get("reasons", obj.get("issues", ()))
    if isinstance(reasons, str):
        reasons = (reasons,) if reasons.strip() else ()
    elif isinstance(reasons, (list, tuple)):
        reasons = tuple(str(r) for r in reasons if str(r).strip())
    else:
        reasons = ()
    suggestion = obj.get("suggestion")
    return CheckerVerdict(
        passed, reasons, str(suggestion) if suggestion not in (None, "") else None
    )


def _json_objects(text: str) -> list[object]:
    """Every JSON object that starts at some ``{`` of ``text`` (outermost first, in order)."""
    decoder = json.JSONDecoder()
    found: list[object] = []
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            pos = text.find("{", pos + 1)
            continue
        found.append(obj)
        pos = text.find("{", end)
    return found


def parse_verdict(text: str) -> CheckerVerdict:
    """The checker's verdict in a reply: the last JSON object with a ``pass`` (or ``verdict``) key.

    Prose around the object, a ```json fence and Python-style ``True``/``False`` are tolerated.

    Raises:
        ExtractionError: no such object in the reply.
    """
    text = text or ""
    for attempt in (text, re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", text))):
        verdicts = [v for v in map(_verdict_from, _json_objects(attempt)) if v is not None]
        if verdicts:
            return verdicts[-1]
    raise ExtractionError(
        "the checker reply has no JSON verdict; "
        'end the reply with {"pass": true or false, "reasons": [...]}'
    )
