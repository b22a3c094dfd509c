"""Sample efficiency of plain IPPO: test-split return vs environment steps, old vs new settings.

Per scenario and arm, the seeds train as K parallel plain IPPO learners (all-ones masks, learner
k from ``PRNGKey(seed_k)``) in one trainer with the quick preset's network; one training serves
all budgets (environment steps per learner): at each it stops to evaluate every learner on the
test split without masks, greedy and sampled. ``before`` = the quick preset's settings at its own
budget; ``after`` = ``SearchConfig.from_preset("quick", steps=largest budget)`` (the budget
settings of ``espark_jax.presets.BUDGET_SETTINGS``: more environments, the learning rate annealed
to zero over the largest budget). Base stock (static, dynamic) and (S, s):
``espark_jax.baselines.reference_baselines`` on the same test split, as in ``results.json``.

    python benchmarks/sample_efficiency.py                       # the full benchmark
    python benchmarks/sample_efficiency.py --smoke               # seconds, mabim/tiny, to /tmp
    python benchmarks/sample_efficiency.py --scenarios mabim/lowest-100 --budgets 2e4 --seeds 0,1
    python benchmarks/sample_efficiency.py --max-steps before=25000   # cap an arm's budgets

Writes ``results/sample_efficiency.json`` (after every scenario x arm; ``--resume`` keeps them)
and ``.png``, prints a table, refreshes its section of ``benchmarks/README.md`` (``--report``:
only that, from the JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_sections import write_readme_section  # noqa: E402

import envs_jax  # noqa: E402
from espark_jax import ippo  # noqa: E402
from espark_jax.baselines import LABELS, reference_baselines  # noqa: E402
from espark_jax.masks.safe import all_ones  # noqa: E402
from espark_jax.runs import device_info, package_versions, write_json  # noqa: E402
from espark_jax.search_config import PRESETS, SearchConfig  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "sample_efficiency.json"
SCENARIOS = ("mabim/standard-100", "mabim/lowest-100", "mabim/3-echelons-100")
BUDGETS = (0, 10_000, 25_000, 50_000, 100_000, 200_000)
ARMS = ("before", "after")
ARM_LABELS = {
    "before": "before (quick at its budget, no reward normalisation)",
    "after": "after (quick planned for it)",
}
KEYS = ("num_envs", "eval_envs", "hidden", "lr", "update_epochs", "num_minibatches")
OR_LINES = ("base_stock_static", "base_stock_dynamic", "sS_static")
EVAL_KEY = 10_000
HEADING = "## IPPO sample efficiency"


def arm_settings(arm: str, max_budget: int) -> dict[str, Any]:
    """The arm's training settings: the quick preset (``before``: at its own budget, as before
    this round; ``after``: planned for ``max_budget`` steps per learner)."""
    steps = max_budget if arm == "after" else PRESETS["quick"]["steps"]
    cfg = SearchConfig.from_preset("quick", steps=max(1, steps))
    out = {k: getattr(cfg, k) for k in (*KEYS, "mask_distill", "anneal_lr", "reward_norm")}
    if arm == "before":  # as measured before per-agent reward normalisation entered the preset
        out["reward_norm"] = "none"
    return {**out, "hidden": list(out["hidden"])}


def same_settings(recorded: dict[str, Any], arm: str, max_budget: int) -> bool:
    """Whether a recorded run used the arm's settings (records older than ``reward_norm``
    ran without it)."""
    return {"reward_norm": "none", **recorded} == arm_settings(arm, max_budget)


def parse_list(text: str, kind: type, name: str, prog: str = "sample_efficiency") -> list:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (``2.5e4`` is accepted for integers); one-line error."""
    try:
        values = [kind(float(x)) if kind is int else kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"{prog}: --{name} takes a comma list, got {text!r}") from None
    if not values:
        raise SystemExit(f"{prog}: --{name} is empty")
    return values


def parse_runs(
    args: argparse.Namespace, prog: str, min_budget: int
) -> tuple[list[str], list[int], list[int]]:
    """``(scenarios, seeds, budgets)`` from ``--scenarios/--seeds/--budgets``, checked: known
    scenarios, distinct seeds, budgets of at least ``min_budget``; one-line errors."""
    scenarios = parse_list(args.scenarios, str, "scenarios", prog)
    seeds = parse_list(args.seeds, int, "seeds", prog)
    budgets = parse_list(args.budgets, int, "budgets", prog)
    for name in set(scenarios) - set(envs_jax.list_scenarios()):
        raise SystemExit(f"{prog}: unknown scenario {name!r}; see list_scenarios()")
    if len(set(seeds)) != len(seeds) or min(budgets) < min_budget:
        raise SystemExit(f"{prog}: --seeds must be distinct and --budgets >= {min_budget}")
    return scenarios, seeds, budgets


def parse_caps(text: str) -> dict[str, int]:
    """``"before=25000"`` -> ``{"before": 25000}``; one-line error otherwise."""
    try:
        caps = {a: int(float(v)) for a, _, v in (x.partition("=") for x in text.split(",") if x)}
    except ValueError:
        caps = {"": 0}
    if not set(caps) <= set(ARMS):
        raise SystemExit(f"sample_efficiency: --max-steps takes ARM=STEPS ({', '.join(ARMS)})")
    return caps


def source_state() -> dict[str, Any]:
    """The commit this tree is at and its uncommitted library files (the code under test)."""
    import shutil
    import subprocess

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], capture_output=True, text=True).stdout

    if shutil.which("git") is None:
        return {"commit": None, "uncommitted": None}
    dirty = git("status", "--porcelain", "--", "espark_jax", "envs_jax").splitlines()
    return {"commit": git("rev-parse", "HEAD").strip(), "uncommitted": [x[3:] for x in dirty]}


def make_learners(
    scenario: str, s: dict[str, Any], seeds: list[int], max_budget: int
) -> tuple[Any, Any, Any, int]:
    """``(env, trainer, state, steps per update)``: ``len(seeds)`` plain IPPO learners under the
    settings ``s`` (of :func:`arm_settings`), the learning rate annealed over ``max_budget``
    steps per learner when ``s`` anneals."""
    env = envs_jax.make(scenario)
    per_update = int(env.spec.episode_length["train"]) * s["num_envs"]
    planned = math.ceil(max_budget / per_update)  # the updates the annealed rate spans
    cfg = ippo.TrainConfig(
        num_envs=s["num_envs"],
        hidden=tuple(s["hidden"]),
        eval_envs=s["eval_envs"],
        ppo=ippo.PPOConfig(
            lr=s["lr"],
            update_epochs=s["update_epochs"],
            num_minibatches=s["num_minibatches"],
            mask_distill_coef=s["mask_distill"],
            anneal_updates=planned if s["anneal_lr"] else 0,
            reward_norm=s["reward_norm"],
        ),
    )
    trainer = ippo.make(env, cfg, [all_ones(env.spec)] * len(seeds))
    state = trainer.init_from_keys(jnp.stack([jax.random.PRNGKey(seed) for seed in seeds]))
    return env, trainer, state, per_update


def train_until(trainer: Any, state: Any, done: int, target: int) -> tuple[Any, int, Any]:
    """Train from ``done`` to ``target`` updates in chunks of at most 25: ``(state, updates done,
    the last update's training return per learner or None)``."""
    train_return = None
    while done < target:
        n = min(25, target - done)
        state, metrics = trainer.train_chunk(state, n)
        done += n
        train_return = np.asarray(metrics["train_return"])[-1].tolist()
    jax.block_until_ready(state.n_updates)
    return state, done, train_return


def run_arm(scenario: str, arm: str, seeds: list[int], budgets: list[int]) -> dict[str, Any]:
    """Train ``len(seeds)`` learners under one arm, evaluating on the test split at each budget."""
    s, source = arm_settings(arm, max(budgets)), source_state()
    env, trainer, state, per_update = make_learners(scenario, s, seeds, max(budgets))
    key = jax.random.PRNGKey(EVAL_KEY)  # common random numbers: every budget, arm and seed
    points, done, t_start = [], 0, time.perf_counter()
    for budget in sorted(budgets):
        target = math.ceil(budget / per_update)
        t0 = time.perf_counter()
        state, done, train_return = train_until(trainer, state, done, target)
        t_train = time.perf_counter() - t0
        ev = {
            mode: trainer.evaluate(
                state.params, key, "test", greedy=mode == "greedy", num_envs=s["eval_envs"]
            )["return"]
            for mode in ("greedy", "sampled")
        }
        points.append(
            {
                "budget": budget,
                "updates": done,
                "env_steps": done * per_update,
                "greedy": ev["greedy"],
                "sampled": ev["sampled"],
                "train_return_last": train_return,
                "train_s": t_train,
                "eval_s": time.perf_counter() - t0 - t_train,
            }
        )
        greedy = " ".join(f"{x:,.0f}" for x in ev["greedy"])
        sampled = f"sampled mean {np.mean(ev['sampled']):,.0f}"
        print(f"  {scenario} {arm:6s} {done * per_update:>8,} steps: greedy {greedy} | {sampled} "
              f"| {t_train:.0f} s", flush=True)  # fmt: skip
    return {
        "scenario": scenario,
        "arm": arm,
        "settings": s,
        "seeds": seeds,
        "n_agents": env.spec.n_agents,
        "points": points,
        "seconds": time.perf_counter() - t_start,
        "compile_s": {k: sum(v) for k, v in trainer.compile_seconds.items()},
        "load_end": os.getloadavg(),
        "source": source,
    }


def references(scenario: str) -> dict[str, float]:
    """Test-split returns of the reference policies as in ``results.json`` (seed 0; cached)."""
    refs = reference_baselines(envs_jax.make(scenario), "test", 0, PRESETS["quick"]["eval_envs"])
    return {name: float(v["return"]) for name, v in refs.items()}


def fmt(x: float) -> str:
    """Thousands: 1,234k."""
    return f"{x / 1e3:,.0f}k"


def table(data: dict[str, Any]) -> str:
    """Markdown: greedy test return per scenario x arm x budget (mean [min, max] over seeds),
    sampled mean at the largest budget, and the OR lines."""
    budgets = sorted({p["budget"] for r in data["runs"] for p in r["points"]})
    head = ["scenario", "arm"] + [f"{b:,} steps" for b in budgets] + ["sampled (last)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in data["runs"]:
        by = {p["budget"]: p for p in r["points"]}  # whole updates: env_steps >= budget
        g = {b: by[b]["greedy"] for b in budgets if b in by}
        cells = [f"{fmt(np.mean(g[b]))} [{fmt(min(g[b]))}, {fmt(max(g[b]))}]" if b in g else "-"
                 for b in budgets]  # fmt: skip
        last = r["points"][-1]["sampled"]
        lines.append(
            f"| {r['scenario']} | {r['arm']} | " + " | ".join(cells) + f" | {fmt(np.mean(last))} |"
        )
    lines += ["", "| scenario | " + " | ".join(LABELS[n] for n in ("constant", *OR_LINES)) + " |"]
    lines.append("|---|" + "---:|" * (len(OR_LINES) + 1))
    for scenario, refs in data["baselines"].items():
        lines.append(
            f"| {scenario} | " + " | ".join(fmt(refs[n]) for n in ("constant", *OR_LINES)) + " |"
        )
    return "\n".join(lines)


def verdict(data: dict[str, Any], arm: str = "after") -> tuple[bool, list[str]]:
    """Whether ``arm`` at its largest budget beats base stock (both) and (S, s) on every
    scenario (mean over seeds), with the margin per scenario."""
    met, lines = True, []
    for r in data["runs"]:
        if r["arm"] != arm:
            continue
        refs = data["baselines"][r["scenario"]]
        best = max(OR_LINES, key=lambda n: refs[n])
        last = r["points"][-1]
        mean, low = float(np.mean(last["greedy"])), float(min(last["greedy"]))
        gap = mean - refs[best]
        met &= gap > 0
        peak = max(r["points"], key=lambda p: np.mean(p["greedy"]))
        collapsed = sum(g < refs["constant"] for g in last["greedy"])
        lines.append(
            f"{r['scenario']}: IPPO ({arm}) at {last['env_steps']:,} steps {fmt(mean)} "
            f"(worst seed {fmt(low)}) vs the best OR line, {LABELS[best]}, {fmt(refs[best])}: "
            f"{'above' if gap > 0 else 'below'} by {fmt(abs(gap))} "
            f"({100 * gap / abs(refs[best]):+.1f} %); best mean over the budgets "
            f"{fmt(np.mean(peak['greedy']))} at {peak['env_steps']:,} steps; {collapsed} of "
            f"{len(last['greedy'])} seeds end below the constant policy ({fmt(refs['constant'])}); "
            f"training return of the last update per seed (100-day train episodes) "
            + ", ".join(fmt(x) for x in last["train_return_last"] or ())
        )
    return met and bool(lines), lines


def compare(data: dict[str, Any]) -> list[str]:
    """Per scenario, the arms at the largest budget both reached (mean over seeds)."""
    lines = []
    for scenario in data["baselines"]:
        by = {r["arm"]: {p["budget"]: np.mean(p["greedy"]) for p in r["points"]}
              for r in data["runs"] if r["scenario"] == scenario}  # fmt: skip
        shared = set(by.get("before", ())) & set(by.get("after", ()))
        if shared:
            n = max(shared)
            b, a = by["before"][n], by["after"][n]
            lines.append(f"{scenario} at {n:,} steps: after {fmt(a)}, before {fmt(b)} "
                         f"(after - before {'+' if a >= b else '-'}{fmt(abs(a - b))})")  # fmt: skip
    return lines


def compact(value: float, _pos: Any = None) -> str:
    """Axis numbers: 1.2M, 350k, 12."""
    for scale, unit in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}" if unit == "M" else f"{value / scale:.0f}{unit}"
    return f"{value:g}"


def figure(data: dict[str, Any], path: Path) -> None:
    """One panel per scenario: mean and min/max band over seeds per arm (trained budgets; the
    untrained return is written in the panel), the OR lines dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    scenarios = list(dict.fromkeys(r["scenario"] for r in data["runs"]))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.2 * len(scenarios), 4.4), squeeze=False)
    colours = {"before": "tab:gray", "after": "tab:blue"}
    lines = {
        "constant": ("silver", ":"),
        "base_stock_static": ("tab:red", "--"),
        "base_stock_dynamic": ("darkred", "-."),
        "sS_static": ("tab:purple", ":"),
    }
    for ax, scenario in zip(axes[0], scenarios):
        refs, untrained = data["baselines"][scenario], []
        for r in (r for r in data["runs"] if r["scenario"] == scenario):
            pts = [p for p in r["points"] if p["env_steps"] > 0]
            untrained += [np.mean(p["greedy"]) for p in r["points"] if p["env_steps"] == 0]
            x, g = [p["env_steps"] for p in pts], np.array([p["greedy"] for p in pts])
            c = colours.get(r["arm"])
            ax.plot(x, g.mean(1), "o-", color=c, label=f"IPPO {ARM_LABELS.get(r['arm'], '')}")
            ax.fill_between(x, g.min(1), g.max(1), color=c, alpha=0.2)
        for name, (colour, ls) in lines.items():
            ax.axhline(refs[name], color=colour, ls=ls, lw=1.4, label=LABELS[name])
        if untrained:
            ax.text(0.02, 0.03, f"untrained: {compact(untrained[0])}", transform=ax.transAxes,
                    fontsize=8, color="dimgray")  # fmt: skip
        ax.set_title(scenario)
        ax.set_xlabel("environment steps per learner")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_formatter(FuncFormatter(compact))
        ax.yaxis.set_major_formatter(FuncFormatter(compact))
    axes[0][0].set_ylabel("greedy test return (no masks)")
    axes[0][0].legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 0.08))
    seeds = ", ".join(str(s) for s in data["seeds"])
    fig.suptitle(f"Plain IPPO, test split: line = mean, band = min/max over seeds {seeds}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    names = [x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")]
    return names[0] if names else platform.processor()


def readme(data: dict[str, Any], out_json: Path) -> str:
    """The benchmark's section of ``benchmarks/README.md``."""
    met, lines = verdict(data)

    before, after = (data["arms"].get(a) or arm_settings(a, 0) for a in ("before", "after"))

    def describe(s: dict[str, Any]) -> str:
        lr = "annealed linearly to zero over the largest budget" if s["anneal_lr"] else "constant"
        return f"{s['num_envs']} environments per learner, lr {s['lr']:g} {lr}, " + (
            f"{s['update_epochs']} epoch(s) x {s['num_minibatches']} minibatches, reward "
            f"normalisation {s.get('reward_norm', 'none')}"
        )

    minutes = sum(r["seconds"] for r in data["runs"]) / 60
    load = data["load"]
    return (
        f"`benchmarks/sample_efficiency.py`: plain IPPO (all-ones mask), seeds "
        f"{', '.join(map(str, data['seeds']))} trained as K = {len(data['seeds'])} parallel "
        "learners in one program per scenario and arm, 2x64 torsos (the quick preset), greedy "
        f"test return (no masks, {after['eval_envs']} episodes) at each budget along one "
        f"training. **before** = the quick preset's settings at its own budget ({describe(before)}"
        '), the settings before this round; **after** = `SearchConfig.from_preset("quick", '
        f"steps=largest budget)` ({describe(after)}; `espark_jax.presets.BUDGET_SETTINGS`), "
        "one training evaluated along the way (the smaller budgets are points of a run planned "
        "for the largest, not runs planned for them). Budgets per arm: "
        + "; ".join(f"{arm} up to {max(b):,}" for arm, b in data["budgets"].items())
        + " environment steps per learner; a run stops at the first whole update at or past each "
        "budget (`env_steps` in the JSON). Cells: mean [min, max] over seeds. OR lines: "
        "`espark_jax.baselines.reference_baselines` on the same test split (synthetic data).\n\n"
        + table(data)
        + "\n\n![sample efficiency](results/sample_efficiency.png)\n\n"
        + "**Goal (IPPO at the largest budget above base stock and (S,s) on all three): "
        + ("met" if met else "not met")
        + ".**\n\n"
        + "\n".join(f"- {line}" for line in lines)
        + "\n\nWhere the return is lost (orders, destroyed arrivals, lost sales per warehouse): "
        "`## Where IPPO loses against base stock` (`benchmarks/ippo_diagnosis.py`)."
        + "\n\nSettings chosen on the validation split (`benchmarks/ippo_tuning.py`, sections "
        "`IPPO settings for CPU budgets` and `IPPO settings for larger budgets`).\n\n"
        "Before vs after at the largest budget both arms reached (greedy, mean over seeds):\n\n"
        + "\n".join(f"- {line}" for line in compare(data))
        + f"\n\nCPU: {data['cpu']}, {data['device']['cpus']} cores shared with other jobs; load "
        f"average {load['start'][0]:.1f} at the start, {load['end'][0]:.1f} at the end; "
        f"{minutes:.0f} min of training and evaluation. Command: `{data['command']}`; raw: "
        f"`results/{out_json.name}`."
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--seeds", default="0,1,2", help="one learner per seed, trained in parallel")
    ap.add_argument("--budgets", default=",".join(str(b) for b in BUDGETS),
                    help="environment steps per learner at which to evaluate")  # fmt: skip
    ap.add_argument("--arms", default="after,before", help=f"of {', '.join(ARMS)}, run in order")
    ap.add_argument("--max-steps", default="", help="ARM=STEPS: budgets above are skipped")
    ap.add_argument("--smoke", action="store_true", help="mabim/tiny, tiny budgets, to /tmp")
    ap.add_argument("--out", default=None, help=f"JSON path (default {RESULTS})")
    ap.add_argument("--resume", action="store_true", help="keep finished scenario x arm runs")
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--report", action="store_true", help="only table, figure, README from --out")
    args = ap.parse_args()
    if args.smoke:
        args.scenarios, args.budgets, args.seeds = "mabim/tiny", "0,200,400", "0,1"
        args.max_steps, args.no_readme = "before=200", True
        args.out = args.out or str(Path(tempfile.gettempdir()) / "sample_efficiency_smoke.json")
    out = Path(args.out or RESULTS)
    if args.report:
        if not out.is_file():
            raise SystemExit(f"sample_efficiency: --report needs {out}; run the benchmark first")
        return report(json.loads(out.read_text()), out, readme_too=not args.no_readme)
    scenarios, seeds, budgets = parse_runs(args, "sample_efficiency", 0)
    arms, caps = parse_list(args.arms, str, "arms"), parse_caps(args.max_steps)
    for arm in set(arms) - set(ARMS):
        raise SystemExit(f"sample_efficiency: unknown arm {arm!r}; use {', '.join(ARMS)}")
    arm_budgets = {a: sorted(b for b in budgets if b <= caps.get(a, max(budgets))) for a in arms}
    old = {}
    if args.resume and out.is_file():
        old = {
            (r["scenario"], r["arm"]): r
            for r in json.loads(out.read_text()).get("runs", [])
            if r["arm"] in arm_budgets
            and r["seeds"] == seeds
            and same_settings(r["settings"], r["arm"], max(arm_budgets[r["arm"]]))
            and [p["budget"] for p in r["points"]] == arm_budgets[r["arm"]]
        }
    data: dict[str, Any] = {
        "benchmark": "sample_efficiency",
        "command": "python " + " ".join(sys.argv),
        "scenarios": scenarios,
        "seeds": seeds,
        "budgets": arm_budgets,
        "arms": {arm: arm_settings(arm, max(arm_budgets[arm])) for arm in arms},
        "device": device_info(),
        "cpu": cpu_model(),
        "versions": package_versions(),
        "load": {"start": os.getloadavg(), "end": None},
        "baselines": {scenario: references(scenario) for scenario in scenarios},
        "runs": [],
    }
    for arm in arms:  # every scenario's "after" first: the goal's numbers come first
        for scenario in scenarios:
            run = old.get((scenario, arm))
            if run is None:
                run = run_arm(scenario, arm, seeds, arm_budgets[arm])
            else:
                print(f"  {scenario} {arm}: kept from {out}")
            data["runs"].append(run)
            data["load"]["end"] = os.getloadavg()
            write_json(out, data)
    order = {name: i for i, name in enumerate([*scenarios, *ARMS])}
    data["runs"].sort(key=lambda r: (order[r["scenario"]], order[r["arm"]]))
    write_json(out, data)
    report(data, out, readme_too=not args.no_readme)


def report(data: dict[str, Any], out: Path, readme_too: bool) -> None:
    """Print the table and the verdict, draw the figure, refresh the README section."""
    print("\n" + table(data) + "\n")
    for line in verdict(data)[1] + compare(data):
        print(line)
    figure(data, out.with_suffix(".png"))
    if readme_too:
        write_readme_section(HEADING, readme(data, out))
    print(f"results: {out}, figure: {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
