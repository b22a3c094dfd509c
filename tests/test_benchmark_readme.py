"""``benchmarks/readme_sections.py``: one section is replaced, the others stay as they were."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from readme_sections import write_readme_section  # noqa: E402


def test_replace_append_and_keep(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n## A\n\nold a\n\n## B\n\nkeep b\n")
    write_readme_section("## A", "new a", readme)
    assert readme.read_text() == "# Benchmarks\n\n## A\n\nnew a\n\n## B\n\nkeep b\n"
    write_readme_section("## C", "\n\nc body\n\n", readme)
    assert readme.read_text().endswith("## B\n\nkeep b\n\n## C\n\nc body\n")
    write_readme_section("## B", "b2", readme)
    text = readme.read_text()
    assert "keep b" not in text and "## B\n\nb2\n" in text and text.count("## ") == 3


def test_missing_file_is_created(tmp_path):
    readme = tmp_path / "README.md"
    write_readme_section("## Only", "body", readme)
    assert readme.read_text() == "# Benchmarks\n\n## Only\n\nbody\n"
