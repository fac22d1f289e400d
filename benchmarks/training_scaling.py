"""Training: wall time and peak memory of ``metapredict train`` at 1k, 10k and 100k patients.

Each run is a subprocess ``metapredict train <task> --config <tmp>.toml`` (the packaged default
config with only ``data.simulate_patients`` changed) against a throwaway store
(``METAPREDICT_TRACKING_URI=sqlite:///<tmp>/mlflow.db``); peak memory is the run's own
``ru_maxrss``, taken by the small launcher ``benchmarks/peak_rss.py`` (started directly, the run
would report at least this process's peak, see there). Every run has a deadline (what is left
of the budget); a repeat that would not fit (estimated from the same size's first run) is
skipped and reported as such.
Run alone: ``python -m benchmarks.training_scaling [--quick] [--budget-seconds S]``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    BENCH_DIR,
    VENV_BIN,
    PartOptions,
    Report,
    Spread,
    Target,
    fmt_num,
    log,
    md_table,
    options,
    parser,
    store_env,
    training_config,
    work_dir,
    write_config_toml,
)

TASKS = ("tropism", "dormancy")
TEN_K_GOAL_S = 180.0
#: Default time budget for the whole part (s); ``make bench`` passes what is left of its own.
DEFAULT_BUDGET_S = 1800.0


@dataclass(frozen=True)
class Run:
    task: str
    patients: int
    seconds: float
    peak_mib: float  # nan when the run was killed (its launcher writes nothing then)
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    repeats: dict[int, int]
    model: dict[str, int]
    folds: int | None = None


FULL = Plan((1_000, 10_000, 100_000), {1_000: 2, 10_000: 1, 100_000: 1}, {})
QUICK = Plan((500, 1_000), {500: 1, 1_000: 1}, {"n_estimators": 40}, folds=2)


def init_store(store: Path) -> None:
    """Create the SQLite store (schema migrations) once, before anything is timed."""
    from mlflow import MlflowClient

    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()


def train_once(task: str, patients: int, plan: Plan, store: Path, timeout_s: float) -> Run:
    """One ``metapredict train`` subprocess, ended by its process group id at the deadline."""
    import subprocess

    config = training_config(task, patients=patients, folds=plan.folds, model=plan.model)
    toml = write_config_toml(config, store / f"{task}-{patients}.toml")
    stamp = time.monotonic_ns()
    peak_path = store / f"peak-{task}-{patients}-{stamp}.kib"
    train = [str(VENV_BIN / "metapredict"), "train", task, "--config", str(toml)]
    argv = [sys.executable, str(BENCH_DIR / "peak_rss.py"), str(peak_path), *train]
    log_path = store / f"train-{task}-{patients}-{stamp}.log"
    with log_path.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=store_env(store),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = started + timeout_s
        while proc.poll() is None:
            if time.perf_counter() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                seconds = time.perf_counter() - started
                return Run(task, patients, seconds, float("nan"), False, "deadline")
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    ok = proc.returncode == 0
    detail = ""
    if not ok:
        detail = f"{_exit_reason(proc.returncode)}\n{log_path.read_text(errors='replace')[-400:]}"
    try:
        peak_mib = int(peak_path.read_text()) / 1024
    except (OSError, ValueError):
        peak_mib = float("nan")
    return Run(task, patients, seconds, peak_mib, ok, detail)


def _exit_reason(code: int) -> str:
    """The launcher passes a signal on as 128 + its number (a crash shows as SIGSEGV); a
    negative code is a signal that ended the launcher itself."""
    number = code - 128 if code > 128 else -code if code < 0 else 0
    if number:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(number).name}"
    return f"exit status {code}"


def _estimate(runs: list[Run], task: str, patients: int) -> float | None:
    """The median time of earlier runs of the same task and size (None before the first).

    Only repeats are skipped on an estimate: training time grows far less than linearly in
    patients here (fixed costs dominate small cohorts), so extrapolating from smaller sizes
    would skip runs that fit. A first run of a size gets whatever budget is left instead.
    """
    same = [r.seconds for r in runs if r.task == task and r.patients == patients and r.ok]
    return Spread.of(same).median if same else None


def run(opts: PartOptions, budget_s: float | None = None) -> Report:
    plan = QUICK if opts.quick else FULL
    budget = budget_s if budget_s is not None else DEFAULT_BUDGET_S
    limit = time.perf_counter() + budget
    report = Report("training_scaling", "Training: wall time and peak memory", opts.quick)
    report.command = opts.command
    runs: list[Run] = []
    skipped: list[str] = []
    # first pass: one run of every size that fits; then the remaining repeats
    schedule = [(size, task) for size in plan.sizes for task in TASKS]
    schedule += [
        (size, task) for size in plan.sizes for _ in range(plan.repeats[size] - 1) for task in TASKS
    ]
    with work_dir("metapredict-bench-train-") as tmp:
        store = tmp / "store"
        init_store(store)
        for size, task in schedule:
            remaining = limit - time.perf_counter()
            estimate = _estimate(runs, task, size)
            if estimate is not None and estimate > remaining:
                skipped.append(
                    f"{task} at {size:,} patients: estimated {estimate:.0f} s, "
                    f"{max(remaining, 0):.0f} s of the budget left"
                )
                log(f"  training {task} {size:,}: skipped ({skipped[-1]})")
                continue
            if remaining <= 0:
                skipped.append(f"{task} at {size:,} patients: the budget is spent")
                continue
            result = train_once(task, size, plan, store, timeout_s=remaining)
            runs.append(result)
            log(
                f"  training {task} {size:,}: {result.seconds:.1f} s, "
                f"peak {result.peak_mib:,.0f} MiB{'' if result.ok else ' FAILED: ' + result.detail}"
            )

    rows = []
    medians: dict[tuple[str, int], float] = {}
    for size in plan.sizes:
        for task in TASKS:
            mine = [r for r in runs if r.task == task and r.patients == size]
            good = [r for r in mine if r.ok]
            if not mine:
                rows.append((f"{size:,}", task, "skipped", "-", "-", "-"))
                continue
            secs, mem = Spread.of([r.seconds for r in good]), Spread.of([r.peak_mib for r in good])
            if good:
                medians[(task, size)] = secs.median
            per_1k = secs.median / size * 1000 if good else float("nan")
            failed = len(mine) - len(good)
            rows.append(
                (
                    f"{size:,}",
                    task,
                    secs.fmt(1) if good else "failed",
                    mem.fmt(0) if good else "-",
                    fmt_num(per_1k, 2),
                    f"{len(good)}" + (f" (+{failed} failed)" if failed else ""),
                )
            )
    report.add(
        "Scaling",
        md_table(["patients", "task", "wall s", "peak RSS MiB", "s per 1k patients", "runs"], rows),
    )
    ten_k = 1_000 if opts.quick else 10_000
    both = [medians.get((t, ten_k)) for t in TASKS]
    if all(v is not None for v in both):
        total = sum(v for v in both if v is not None)
        report.targets.append(
            Target(
                f"both tasks on {ten_k:,} patients",
                f"< {TEN_K_GOAL_S:.0f} s",
                f"{total:.0f} s (" + " + ".join(f"{v:.0f}" for v in both if v is not None) + ")",
                total < TEN_K_GOAL_S if not opts.quick else None,
                "quick mode: not the target's size" if opts.quick else "",
            )
        )
    else:
        report.targets.append(
            Target(
                f"both tasks on {ten_k:,} patients",
                f"< {TEN_K_GOAL_S:.0f} s",
                "-",
                None,
                "not measured (skipped or failed)",
            )
        )
    report.add(
        "Method",
        "- `metapredict train <task> --config <tmp>.toml` in a subprocess per run: the packaged "
        "config (K-fold CV, 5 folds by default, then a fit on the training split, test "
        "evaluation, plots, MLflow logging and registration) with `data.simulate_patients` "
        "overridden"
        + (f", cv.folds = {plan.folds}" if plan.folds else "")
        + (f" and model {plan.model}" if plan.model else "")
        + "; one throwaway SQLite store for the part, created before anything is timed.\n"
        "- Wall time includes interpreter start and imports (a few seconds). Peak RSS is the "
        "run's own `ru_maxrss`, read by a small launcher (`benchmarks/peak_rss.py`, about 10 MiB) "
        "that starts the run: Linux carries a parent's peak into a child it starts, so started "
        "from this process a run would report at least this process's peak. Values are medians "
        "[p10, p90] where a size ran more than once.\n"
        f"- Time budget for this part: {budget:.0f} s; runs are scheduled one of each size "
        "first (smallest first), then repeats; a repeat whose first run took longer than what "
        "is left is skipped, and every run is killed at the budget's end.",
    )
    for line in skipped:
        report.notes.append(f"Skipped: {line}.")
    for r in runs:
        if not r.ok:
            reason, _, log_tail = r.detail.partition("\n")
            ends = f"; log ends: {' '.join(log_tail.split())[-200:]}" if log_tail.strip() else ""
            report.notes.append(f"Failed: {r.task} at {r.patients:,} ({reason}{ends}).")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("training wall time and peak memory")
    p.add_argument(
        "--budget-seconds",
        type=float,
        default=None,
        help=f"time budget for this part (default {DEFAULT_BUDGET_S:.0f} s)",
    )
    args = p.parse_args(argv)
    opts = options(args, "benchmarks.training_scaling")
    path = run(opts, budget_s=args.budget_seconds).write(opts.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
