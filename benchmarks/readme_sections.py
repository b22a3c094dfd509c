"""Shared by the benchmark scripts: rewrite one ``## ...`` section of ``benchmarks/README.md``."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def write_readme_section(heading: str, body: str, readme: Path = README) -> None:
    """Replace the section that starts with ``heading`` (e.g. ``"## SUMO"``) by
    ``heading`` + ``body``, or append it; every other section is left as it is."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    start = text.find(f"\n{heading}\n")
    section = f"\n{heading}\n\n{body.strip()}\n"
    if start < 0:
        text = text.rstrip("\n") + "\n" + section
    else:
        nxt = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[nxt:] if nxt >= 0 else "")
    readme.write_text(text)
