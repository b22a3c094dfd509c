"""The prompt template files: where they are, reading and filling them, and their hashes.

The templates are plain text files under the repository's ``prompts/`` folder (``common/`` plus
one folder per environment family), filled with :class:`string.Template` (``${name}`` fields).
A non-editable install ships them inside the package as ``espark_jax/llm/prompt_files`` (see
``setup.py``); ``ESPARK_PROMPTS_DIR`` overrides both.
"""

from __future__ import annotations

import functools
import hashlib
import os
import string
from pathlib import Path
from typing import Any

PROMPTS_ENV_VAR = "ESPARK_PROMPTS_DIR"
_MARKER = "common/generator_system.txt"


class PromptError(ValueError):
    """A prompt cannot be built (missing template, unknown family, missing value)."""


def prompts_dir() -> Path:
    """The folder holding the prompt templates.

    Order: ``$ESPARK_PROMPTS_DIR``; the repository's ``prompts/`` next to the package (source
    checkout, editable install); ``espark_jax/llm/prompt_files`` (non-editable install).
    """
    override = os.environ.get(PROMPTS_ENV_VAR)
    if override:
        path = Path(override).expanduser()
        if not (path / _MARKER).is_file():
            raise PromptError(
                f"{PROMPTS_ENV_VAR}={override} has no {_MARKER}; "
                "point it at a prompts/ folder or unset it"
            )
        return path
    here = Path(__file__).resolve().parent
    for path in (here.parents[1] / "prompts", here / "prompt_files"):
        if (path / _MARKER).is_file():
            return path
    raise PromptError(
        f"prompt templates not found (looked for {_MARKER} in the repository's prompts/ "
        "and in the package); "
        f"reinstall espark-jax or set {PROMPTS_ENV_VAR}"
    )


@functools.lru_cache(maxsize=None)
def _read(root: str, relpath: str) -> str:
    path = Path(root) / relpath
    if not path.is_file():
        raise PromptError(f"missing prompt template {relpath} under {root}")
    return path.read_text(encoding="utf-8")


def load_template(relpath: str) -> str:
    """The raw text of one template, e.g. ``"common/generator_system.txt"``."""
    return _read(str(prompts_dir()), relpath)


def render(relpath: str, **values: Any) -> str:
    """A template filled with ``values`` (every ``${name}`` must be given), right-stripped."""
    try:
        return string.Template(load_template(relpath)).substitute(values).rstrip()
    except KeyError as err:
        raise PromptError(f"template {relpath} needs a value for {err.args[0]!r}") from None


def prompt_hashes() -> dict[str, str]:
    """``{relative path: sha256 prefix}`` of every template file, for the run manifest."""
    root = prompts_dir()
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        for p in sorted(root.rglob("*.txt"))
    }


def focuses(family: str) -> list[str]:
    """The per-slot focus hints of an environment family (``prompts/<family>/focuses.txt``)."""
    lines = [ln.strip() for ln in load_template(f"{family}/focuses.txt").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]
