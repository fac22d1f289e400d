"""Quality: LightGBM vs its baseline vs the simulator's oracle, on simulated seeds 7 and 11.

Both tasks are trained with the packaged default config (20,000 patients, 5-fold CV) through
``pipeline.run_training`` with ``data.simulate_seed`` set to 7 or 11, into a throwaway store; the
table reads the outcome's own CV and test metrics and oracle scores, nothing re-implemented.
Run alone: ``python -m benchmarks.quality [--quick]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    PartOptions,
    Report,
    Target,
    fmt_num,
    log,
    md_table,
    options,
    parser,
    store_settings,
    training_config,
    work_dir,
)

SEEDS = (7, 11)
RATIO_GOAL = 0.97
TIME_GOAL_S = 180.0
METRIC = {"tropism": "macro_auroc", "dormancy": "harrell_c"}
LABEL = {"tropism": "macro AUROC", "dormancy": "Harrell's C"}
BASELINE = {"tropism": "logistic_regression", "dormancy": "cox_ph"}
BASELINE_LABEL = {"tropism": "logistic", "dormancy": "Cox"}


@dataclass(frozen=True)
class Row:
    task: str
    seed: int
    lightgbm: Any  # FamilyResult
    baseline: Any
    oracle: Any
    seconds: float
    patients: int
    folds: int


def _quick_overrides() -> dict[str, Any]:
    return {"patients": 2_000, "folds": 2, "model": {"n_estimators": 60}}


def train_seed(seed: int, store: Path, quick: bool) -> list[Row]:
    """Both tasks on one simulated seed, registered into ``store``."""
    from metapredict.pipeline import run_training

    settings = store_settings(store)
    rows = []
    for task in ("tropism", "dormancy"):
        overrides = _quick_overrides() if quick else {}
        config = training_config(task, simulate_seed=seed, **overrides)
        started = time.perf_counter()
        outcome = run_training(config, settings=settings)
        seconds = time.perf_counter() - started
        log(f"  quality: {task} seed {seed} trained in {seconds:.0f} s")
        rows.append(
            Row(
                task=task,
                seed=seed,
                lightgbm=outcome.results["lightgbm"],
                baseline=outcome.results[BASELINE[task]],
                oracle=outcome.oracle,
                seconds=seconds,
                patients=config.data.simulate_patients,
                folds=config.cv.folds,
            )
        )
    return rows


def _cv(result: Any, metric: str) -> str:
    mean, sd = result.cv.get(metric), result.cv.get(f"{metric}_std")
    if mean is None:
        return "-"
    return f"{mean:.3f} ± {sd:.3f}" if sd is not None else f"{mean:.3f}"


def _ratio(result: Any, oracle: Any, metric: str) -> float:
    ours = result.test.get(metric)
    best = oracle.test.get(metric) if oracle is not None else None
    if ours is None or best is None or best <= 0:
        return float("nan")
    return float(ours / best)


def run(opts: PartOptions, store_root: Path | None = None) -> Report:
    """``store_root``/seed-<s> keeps each seed's store (``run_all`` serves seed 7's champion)."""
    report = Report("quality", "Quality: model vs baseline vs oracle", opts.quick)
    report.command = opts.command
    seeds = SEEDS[:1] if opts.quick else SEEDS
    rows: list[Row] = []
    with work_dir("metapredict-bench-quality-") as tmp:
        root = store_root or tmp
        for seed in seeds:
            rows += train_seed(seed, root / f"seed-{seed}", opts.quick)

    for task in ("tropism", "dormancy"):
        metric = METRIC[task]
        table = []
        for r in (r for r in rows if r.task == task):
            table.append(
                (
                    r.seed,
                    fmt_num(r.lightgbm.test.get(metric), 3),
                    fmt_num(r.baseline.test.get(metric), 3),
                    fmt_num(r.oracle.test.get(metric) if r.oracle else None, 3),
                    fmt_num(_ratio(r.lightgbm, r.oracle, metric), 3),
                    fmt_num(_ratio(r.baseline, r.oracle, metric), 3),
                    _cv(r.lightgbm, metric),
                    _cv(r.baseline, metric),
                    f"{r.seconds:.0f}",
                )
            )
        report.add(
            f"{task}: {LABEL[task]}",
            md_table(
                [
                    "seed",
                    "LightGBM test",
                    f"{BASELINE_LABEL[task]} test",
                    "oracle test",
                    "LightGBM / oracle",
                    f"{BASELINE_LABEL[task]} / oracle",
                    "LightGBM CV mean ± sd",
                    f"{BASELINE_LABEL[task]} CV mean ± sd",
                    "train s",
                ],
                table,
            ),
        )

    quick_note = "quick mode: small cohort and model, not the target's conditions"
    for task in ("tropism", "dormancy"):
        metric = METRIC[task]
        mine = [r for r in rows if r.task == task]
        ratios = [_ratio(r.lightgbm, r.oracle, metric) for r in mine]
        met = all(x >= RATIO_GOAL for x in ratios) if ratios else None
        report.targets.append(
            Target(
                f"{task}: LightGBM {LABEL[task]} / oracle",
                f">= {RATIO_GOAL} (every seed)",
                ", ".join(f"seed {r.seed}: {x:.3f}" for r, x in zip(mine, ratios, strict=True)),
                None if opts.quick else met,
                quick_note if opts.quick else "",
            )
        )
    for task in ("tropism", "dormancy"):
        metric = METRIC[task]
        mine = [r for r in rows if r.task == task]
        pairs = [(r.lightgbm.test.get(metric), r.baseline.test.get(metric)) for r in mine]
        met = all(a is not None and b is not None and a >= b for a, b in pairs)
        baseline_ratios = [_ratio(r.baseline, r.oracle, metric) for r in mine]
        why = ""
        if not met and not opts.quick:
            why = (
                f"{BASELINE_LABEL[task]} reaches the oracle here ("
                + ", ".join(f"{x:.3f}" for x in baseline_ratios)
                + " x oracle): the simulator plants effects in the baseline's own form "
                "(additive on the log-odds / log-hazard scale), so no model can beat it beyond "
                "noise; LightGBM stays within the 0.97 x oracle target"
            )
        report.targets.append(
            Target(
                f"{task}: LightGBM at least as good as {BASELINE_LABEL[task]} (test {LABEL[task]})",
                ">= baseline (every seed)",
                ", ".join(
                    f"seed {r.seed}: {fmt_num(a, 3)} vs {fmt_num(b, 3)}"
                    for r, (a, b) in zip(mine, pairs, strict=True)
                ),
                None if opts.quick else met,
                quick_note if opts.quick else why,
            )
        )
    for seed in seeds:
        total = sum(r.seconds for r in rows if r.seed == seed)
        patients = next(r.patients for r in rows if r.seed == seed)
        folds = next(r.folds for r in rows if r.seed == seed)
        report.targets.append(
            Target(
                f"both tasks, {folds}-fold CV, {patients:,} patients (seed {seed})",
                f"< {TIME_GOAL_S:.0f} s",
                f"{total:.0f} s",
                None if opts.quick else total < TIME_GOAL_S,
                quick_note if opts.quick else "in process: run_training, no interpreter start",
            )
        )
    report.add(
        "Method",
        "- `pipeline.run_training(config)` per task and seed, config = the packaged default "
        "with `data.simulate_seed` = the seed"
        + (" (quick: 2,000 patients, 2 folds, 60 trees)" if opts.quick else "")
        + "; split and model seeds stay at the config's default. 'test' columns: the held-out "
        "test split (20 %); 'CV': mean ± sd over folds on the training split; oracle: the "
        "simulator's true probabilities scored on the same test split. Ratios are test metric / "
        "oracle test metric.\n"
        "- Training time is wall time of `run_training` in this process (simulation, validation, "
        "CV of both families, final fits, plots, MLflow logging, registration).",
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser("model vs baseline vs oracle").parse_args(argv)
    opts = options(args, "benchmarks.quality")
    path = run(opts).write(opts.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
