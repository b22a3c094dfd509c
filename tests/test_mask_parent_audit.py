"""The trainer's process never executes candidate source: an audit hook sees a whole eSpark loop.

A fresh Python process installs an audit hook before importing espark_jax, then runs a small
template-provider loop on mabim/tiny (two iterations, K = 2). The hook records every ``compile``
event (``ast.parse`` and ``compile`` included) and every ``exec`` of a code object. Afterwards
the candidates' code is read from the run directory: none of it may appear in a recorded compile
source (but a module's own file, compiled on import), and no executed code object may come from
it; the loop trained with the exported masks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    compiled, executed = [], []

    def hook(event, args):
        if event == "compile":
            source = args[0]
            if isinstance(source, bytes):
                source = source.decode("utf-8", "replace")
            compiled.append((str(args[1]), source if isinstance(source, str) else repr(source)))
        elif event == "exec":
            code = args[0]
            executed.append((getattr(code, "co_filename", ""), getattr(code, "co_name", "")))

    sys.addaudithook(hook)
    sys.path.insert(0, sys.argv[1])
    from espark_jax.llm.providers import TemplateProvider
    from espark_jax.runs import RunDir
    from espark_jax.search import SearchConfig, run_search

    cfg = SearchConfig(scenario="mabim/tiny", k=2, iterations=2, steps=400, num_envs=2,
                       eval_checkpoints=1, select_last=1, eval_envs=2, updates_per_chunk=1,
                       hidden=(8, 8), repair_rounds=1, check_rounds=1, provider="template",
                       seed=0, control=False)
    run = RunDir.create(sys.argv[2], {"config": cfg.to_dict()})
    run_search(cfg, run, TemplateProvider("mabim", seed=0), progress=False, log=lambda s: None)
    with open(sys.argv[3], "w") as fh:
        json.dump({"compiled": compiled, "executed": executed}, fh)
""")


@pytest.mark.slow
def test_no_candidate_source_is_compiled_or_executed_in_the_parent(tmp_path) -> None:
    run_dir, events = tmp_path / "run", tmp_path / "events.json"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT), str(run_dir), str(events)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(events.read_text())
    codes = [p.read_text() for p in sorted(run_dir.glob("iter_*/cand_*/code.py"))]
    assert len(codes) == 4 and len(list(run_dir.glob("iter_*/cand_*/mask.jaxexport"))) == 4
    # every line of a candidate's body that is its own (the templates' rule lines)
    lines = {ln.strip() for code in codes for ln in code.splitlines() if len(ln.strip()) > 20}
    assert lines
    for filename, source in seen["compiled"]:
        assert filename != "<mask>", f"compiled candidate code: {source[:200]}"
        if Path(filename).is_file() and Path(filename).read_text(errors="replace") == source:
            continue  # a module imported from its source file (its .pyc was stale)
        hits = [ln for ln in lines if ln in source]
        assert not hits, f"candidate text compiled in the parent ({filename}): {hits[:2]}"
    for filename, name in seen["executed"]:
        assert filename != "<mask>" and name != "compute_mask", (filename, name)
    # the loop really trained with the candidates (their artefacts), not fallbacks
    for it in (1, 2):
        summary = json.loads((run_dir / f"iter_{it:02d}" / "summary.json").read_text())
        assert summary["statuses"] == ["ok", "ok"]
