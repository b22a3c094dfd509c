"""The sandbox: child processes with timeout and memory limit; the parent never runs bad code.

One batch of candidates goes through ``check_candidates`` once (module fixture, two workers) and
the tests read its results; a second small test drives the audit-hook tripwire directly.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mask_tasks import mabim_task

import espark_jax.masks.checks as checks_mod
from envs_jax.core import MaskContext
from espark_jax.masks import check_candidates, compile_mask
from espark_jax.masks.sandbox import _PACKAGE_ROOT, Zygote, _result_from_reply

TASK = mabim_task()
ONES = "jnp.ones((2, 3, 34))"
GOOD = """```python
import numpy as np

def compute_mask(ctx, action_space):
    order = np.floor(action_space[None, None, :] * ctx.demand_mean[:, :, None])
    room = (ctx.capacity - ctx.total_stock - ctx.total_in_transit)[:, None, None]
    return order <= room
```"""
NEEDS_VALUES = "def compute_mask(ctx, action_space):\n    return jnp.full((2, 3, 34), 0.5)\n"
SLOW = (
    "def compute_mask(ctx, action_space):\n    x = 3\n"
    + "    x = x * x\n" * 40
    + f"    return {ONES}\n"
)
MEMORY_HOG = (
    "def compute_mask(ctx, action_space):\n    x = [1, 2, 3]\n"
    "    for i in range(60):\n        x = x + x\n"
    f"    return {ONES}\n"
)
TIMEOUT_S = 60.0
MEMORY_MB = 2048  # the JAX CPU backend alone reserves about 1.5 GB of address space


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sandbox")
    targets = {name: tmp / name for name in ("saved.npy", "opened.txt", "written.txt")}
    writers = [
        "def compute_mask(ctx, action_space):\n"
        f"    x = jnp.save({str(targets['saved.npy'])!r}, ctx.in_stock)\n"
        f"    return {ONES}\n",
        "def compute_mask(ctx, action_space):\n"
        f"    f = open({str(targets['opened.txt'])!r}, 'w')\n    return {ONES}\n",
        "import os\ndef compute_mask(ctx, action_space):\n"
        f"    x = os.system('touch {targets['written.txt']}')\n"
        f"    return {ONES}\n",
    ]
    texts = [GOOD, NEEDS_VALUES, MEMORY_HOG, *writers]
    rng = np.random.default_rng(0)
    recorded = {f.name: rng.uniform(0, 10, (2, 5, *f.shape)).astype(f.dtype) for f in TASK.fields}
    recorded["capacity"] = np.full_like(recorded["capacity"], 1e5)
    executed: list[str] = []
    real_exec = checks_mod.exec_program
    patch = pytest.MonkeyPatch()

    def spy(module: ast.Module, task):
        executed.append(ast.unparse(module))
        return real_exec(module, task)

    patch.setattr(checks_mod, "exec_program", spy)  # the only caller, in the child
    try:
        results = check_candidates(
            texts, TASK, max_workers=2, samples=recorded, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB
        )
    finally:
        patch.undo()
    return {"results": results, "executed": executed, "targets": targets}


def test_results_come_back_in_order(batch) -> None:
    stages = [r.stage for r in batch["results"]]
    assert stages == ["ok", "values", "memory", "static", "static", "static"], [
        r.reason for r in batch["results"]
    ]
    for r in batch["results"][1:]:
        assert r.fn is None and r.reason and "\n" not in r.reason


def test_good_candidate_is_loaded_in_the_parent(batch) -> None:
    good = batch["results"][0]
    assert good.ok and good.fn is not None and good.code.startswith("import numpy as np")
    assert (
        good.stats["by_kind"]["recorded"]["rows"] == 10 * 6
    )  # recorded contexts reached the child
    assert good.stats["by_kind"]["recorded"]["all_allowed_frac"] == 1.0
    assert good.stats["child_startup_s"] > 0 and good.seconds > 0
    fields = {f.name: jnp.zeros(f.shape, f.dtype) for f in TASK.fields}
    fields["capacity"] = jnp.array([10.0, 0.0])
    fields["demand_mean"] = jnp.full((2, 3), 4.0)
    out = np.asarray(jax.jit(good.fn)(MaskContext(fields), jnp.asarray(TASK.action_values)))
    order = np.floor(np.float32(TASK.action_values) * np.float32(4.0))
    np.testing.assert_array_equal(out[0, 0], order <= 10.0)
    np.testing.assert_array_equal(out[1, 2], order == 0)  # a full warehouse: only orders of 0 units
    assert out[1].sum(axis=-1).tolist() == [2, 2, 2]  # multipliers 0 and 0.16 (floor(0.64) = 0)


def test_parent_never_executes_candidate_code(batch) -> None:
    assert batch["executed"] == []  # not even the accepted program: the parent loads its artefact
    for path in batch["targets"].values():
        assert not path.exists(), f"{path} was written"


def test_memory_limit(batch) -> None:
    hog = batch["results"][2]
    assert "ran out of memory" in hog.message or f"memory limit of {MEMORY_MB} MB" in hog.message


def test_slow_code_is_killed_at_the_timeout() -> None:
    slow = compile_mask(SLOW, TASK, timeout_s=3)
    assert slow.stage == "timeout" and slow.fn is None
    assert slow.message == "the check did not finish within 3 s" and "x * x" in slow.hint
    assert slow.code.startswith("def compute_mask") and slow.seconds == 3


def test_one_zygote_serves_many_batches_and_is_replaced_when_it_dies() -> None:
    """A run keeps one zygote: a timed-out or memory-hungry candidate kills only its child, the
    next batch is checked by the same zygote exactly as a fresh one checks it, and a zygote that
    died between batches is replaced."""
    fresh = check_candidates([GOOD, NEEDS_VALUES], TASK, memory_mb=MEMORY_MB)
    with Zygote() as zygote:
        pid = zygote._proc.pid
        slow = check_candidates([SLOW], TASK, timeout_s=3, zygote=zygote)
        hog = check_candidates([MEMORY_HOG], TASK, memory_mb=MEMORY_MB, zygote=zygote)
        assert [slow[0].stage, hog[0].stage] == ["timeout", "memory"]
        again = check_candidates([GOOD, NEEDS_VALUES], TASK, memory_mb=MEMORY_MB, zygote=zygote)
        assert zygote._proc.pid == pid  # the same process checked both batches
        assert [r.stage for r in again] == [r.stage for r in fresh] == ["ok", "values"]
        assert again[0].artefact == fresh[0].artefact and again[1].message == fresh[1].message
        zygote._proc.kill()
        zygote._proc.wait()
        revived = check_candidates([GOOD], TASK, memory_mb=MEMORY_MB, zygote=zygote)
        assert revived[0].ok and zygote._proc.pid != pid
    zygote.close()  # idempotent
    with pytest.raises(RuntimeError, match="start a new Zygote"):
        check_candidates([GOOD], TASK, zygote=zygote)


def test_static_rejections_come_from_the_child(batch) -> None:
    saved, opened, system = batch["results"][3:]
    assert "jnp.save is not allowed" in saved.message
    assert "open is not allowed" in opened.message
    assert "imports are not allowed" in system.message


def test_tripwire_blocks_writes_processes_and_new_imports(tmp_path) -> None:
    target = tmp_path / "x.txt"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {_PACKAGE_ROOT!r})
        from espark_jax.masks.zygote import _install_tripwire
        _install_tripwire()
        attempts = [lambda: open({str(target)!r}, "w"), lambda: os.system("true"),
                    lambda: __import__("wave"), lambda: os.remove({str(tmp_path)!r})]
        for attempt in attempts:
            try:
                attempt()
                print("ALLOWED")
            except RuntimeError as err:
                print(type(err).__name__, err)
        print(open({str(tmp_path / "readable")!r}).read())
    """)
    (tmp_path / "readable").write_text("reads are fine")
    out = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"JAX_PLATFORMS": "cpu", "OPENBLAS_NUM_THREADS": "1"},
    )
    lines = out.stdout.splitlines()
    assert lines[:4] == [
        f"SandboxViolation sandbox blocked writing {str(target)!r}",
        "SandboxViolation sandbox blocked os.system",
        "SandboxViolation sandbox blocked importing 'wave'",
        "SandboxViolation sandbox blocked os.remove",
    ], out.stdout + out.stderr
    assert lines[4] == "reads are fine" and not target.exists()


def test_failure_mapping_without_a_result() -> None:
    text = "def compute_mask(ctx, action_space):\n    return 1\n"
    oom = _result_from_reply(
        {"status": -6, "result": None, "stderr": "std::bad_alloc"}, text, TASK, 5, 512
    )
    assert oom.stage == "memory" and "512 MB" in oom.message
    died = _result_from_reply(
        {"status": -11, "result": None, "stderr": "boom\nSegmentation fault"}, text, TASK, 5, 512
    )
    assert (
        died.stage == "crash"
        and "exit status -11" in died.message
        and "Segmentation fault" in died.message
    )
    late = _result_from_reply(
        {"status": -9, "timed_out": True, "result": None, "stderr": ""}, text, TASK, 5, 512
    )
    assert late.stage == "timeout" and late.code == text


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_workers must be >= 1"):
        check_candidates(["x"], TASK, max_workers=0)
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        compile_mask("x", TASK, timeout_s=0)
    with pytest.raises(ValueError, match="lack fields"):
        compile_mask("x", TASK, samples={"in_stock": np.zeros((1, 2, 3))})
    assert check_candidates([], TASK) == []
