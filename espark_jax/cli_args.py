"""Argument checks shared by the ``espark`` subcommands: one-line errors that name the fix."""

from __future__ import annotations

from typing import Iterable


def require_scenario(command: str, name: str) -> None:
    """Exit with ``"<command>: unknown scenario ... Valid scenarios: ..."`` unless ``name`` is
    registered (the message of :func:`envs_jax.check_scenario`, closest match included)."""
    import envs_jax

    try:
        envs_jax.check_scenario(name)
    except envs_jax.UnknownScenarioError as err:
        raise SystemExit(f"{command}: {err}") from None


def pick_names(text: str, valid: Iterable[str], what: str, command: str) -> list[str]:
    """The comma-separated names in ``text``; exits with one line listing the valid ones when a
    name is unknown or none is given."""
    valid = list(valid)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise SystemExit(
            f"{command}: unknown {what}(s) {', '.join(unknown) or '(none given)'}; "
            f"valid: {', '.join(valid)}"
        )
    return names
