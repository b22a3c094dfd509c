"""Build hook only; the project's metadata lives in pyproject.toml.

The prompt templates live in the repository's top-level ``prompts/`` folder (text, not code). A
non-editable install copies them into the package as ``espark_jax/llm/prompt_files/`` so that
``espark_jax.llm.prompts`` finds them outside a source checkout.
"""

import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithPrompts(build_py):
    """``build_py`` that also copies ``prompts/**/*.txt`` into ``espark_jax/llm/prompt_files``."""

    def run(self) -> None:
        super().run()
        src = pathlib.Path(__file__).resolve().parent / "prompts"
        dst = pathlib.Path(self.build_lib) / "espark_jax" / "llm" / "prompt_files"
        for path in sorted(src.rglob("*.txt")):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


setup(cmdclass={"build_py": BuildPyWithPrompts})
