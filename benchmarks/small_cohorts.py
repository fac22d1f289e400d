"""Small cohorts: the default config on 150, 500 and 2,000 simulated patients, before and after
the size rule (metapredict.sizing), against the simulator's oracle.

"before" is the config as it was tuned for 20,000 patients (fixed hyperparameters, one 5-fold
CV); "after" is the packaged default ("auto": the size rule, 5 x 5 folds below 2,000 patients).
Each run is the training pipeline's own evaluation (``evaluation.prepare`` and
``cross_validate`` with the pipeline's estimators and the champion guard), without MLflow
logging. Run alone: ``python -m benchmarks.small_cohorts [--quick]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.common import PartOptions, Report, Target, log, md_table, options, parser

SIZES = (150, 500, 2_000)
SEEDS = (1, 2, 3)
RESAMPLES = 100
#: Patients simulated afresh (another seed) to measure what each trained model really learned:
#: a 150-patient cohort's test split holds about 30 patients, too few to tell 0.55 from 0.5.
FRESH_PATIENTS = 6_000
FRESH_SEED = 10_001
METRIC = {"tropism": "macro_auroc", "dormancy": "harrell_c"}
BASELINE = {"tropism": "logistic_regression", "dormancy": "cox_ph"}
#: The packaged values before the size rule (tuned on 20,000 patients).
BEFORE = {
    "tropism": {"n_estimators": 400, "min_child_samples": 50, "num_leaves": 3},
    "dormancy": {"n_estimators": 300, "min_child_samples": 300, "num_leaves": 7},
}


@dataclass(frozen=True)
class Run:
    task: str
    patients: int
    seed: int
    config: str  # "before" | "after"
    lightgbm: float
    lightgbm_ci: tuple[float, float] | None
    baseline: float
    oracle: float
    #: the same metric on FRESH_PATIENTS new patients: the fitted models and the oracle.
    fresh_lightgbm: float
    fresh_baseline: float
    fresh_oracle: float
    constant: bool
    refusal: str | None
    sizing: dict[str, int]
    seconds: float


def _config(task: str, before: bool) -> Any:
    from metapredict.training_config import load_training_config

    raw = load_training_config(task).model_dump()  # type: ignore[arg-type]
    raw["cv"]["bootstrap_resamples"] = RESAMPLES
    if before:
        raw["model"] |= BEFORE[task]
        raw["cv"]["repeats"] = 1
    return type(load_training_config(task)).model_validate(raw)  # type: ignore[arg-type]


def fresh_scores(task: str, data: Any, results: dict[str, Any], fresh: Any) -> dict[str, float]:
    """The main metric of each fitted family (and of the oracle) on fresh simulated patients of
    the cancer types the model saw, for the sites it predicts."""
    from metapredict import features
    from metapredict.evaluation import _predict, oracle_prediction, prepare, score

    rows = prepare(task, fresh, test_size=0.2, seed=0)  # type: ignore[arg-type]
    known = rows.frame["cancer_type"].isin(data.cancer_types).to_numpy()
    frame = rows.frame[known]
    X = features.encode_frame(frame, data.cancer_types)
    y = rows.y[known]
    if task == "tropism":
        y = y[:, [list(rows.sites).index(s) for s in data.sites]]
    y_train = data.y[data.train]
    metric = METRIC[task]
    out = {
        family: score(task, y_train, y, _predict(task, r.estimator, X), data.sites)[metric]  # type: ignore[arg-type]
        for family, r in results.items()
    }
    truth = oracle_prediction(task, frame, data.sites)  # type: ignore[arg-type]
    out["oracle"] = score(task, y_train, y, truth, data.sites)[metric]  # type: ignore[arg-type]
    return out


def one_run(task: str, patients: int, seed: int, before: bool, fresh: Any) -> Run:
    from metapredict import assessment
    from metapredict.evaluation import evaluate_oracle, prepare
    from metapredict.pipeline import (
        _estimators,
        champion_refusal,
        evaluate_family,
        resolve_model,
        resolve_repeats,
    )
    from metapredict.simulator import default_config, simulate_cohort

    config = _config(task, before)
    started = time.perf_counter()
    cohort = simulate_cohort(patients, seed, default_config())
    data = prepare(task, cohort, test_size=config.data.test_size, seed=config.seed)  # type: ignore[arg-type]
    args, chosen = resolve_model(config, data)
    repeats = resolve_repeats(config, data)
    results = {
        family: evaluate_family(config, data, family, make, repeats)
        for family, make in _estimators(config, args).items()
    }
    oracle = evaluate_oracle(data)
    best, base = results["lightgbm"], results[BASELINE[task]]
    metric = METRIC[task]
    assert best.test_prediction is not None and oracle is not None
    refusal = champion_refusal(task, results)
    on_fresh = fresh_scores(task, data, results, fresh)
    spread = float(np.max(best.test_prediction.std(axis=0)))
    return Run(
        task=task,
        patients=patients,
        seed=seed,
        config="before" if before else "after",
        lightgbm=best.test.get(metric, float("nan")),
        lightgbm_ci=best.test_ci.get(metric),
        baseline=base.test.get(metric, float("nan")),
        oracle=oracle.test.get(metric, float("nan")),
        fresh_lightgbm=on_fresh["lightgbm"],
        fresh_baseline=on_fresh[BASELINE[task]],
        fresh_oracle=on_fresh["oracle"],
        constant=spread < assessment.CONSTANT_SPREAD,
        refusal=refusal,
        sizing=chosen,
        seconds=time.perf_counter() - started,
    )


def _ratio(value: float, oracle: float) -> float:
    return value / oracle if oracle > 0 and np.isfinite(value) else float("nan")


def run(opts: PartOptions) -> Report:
    report = Report("small_cohorts", "Small cohorts: before and after the size rule", opts.quick)
    report.command = opts.command
    sizes = SIZES[:2] if opts.quick else SIZES
    seeds = SEEDS[:1] if opts.quick else SEEDS
    from metapredict.simulator import default_config, simulate_cohort

    fresh = simulate_cohort(FRESH_PATIENTS, FRESH_SEED, default_config())
    runs: list[Run] = []
    for task in ("tropism", "dormancy"):
        for patients in sizes:
            for seed in seeds:
                for before in (True, False):
                    r = one_run(task, patients, seed, before, fresh)
                    log(
                        f"  small cohorts: {task} {patients} seed {seed} {r.config}: "
                        f"{r.lightgbm:.3f} (oracle {r.oracle:.3f}), fresh {r.fresh_lightgbm:.3f} "
                        f"(oracle {r.fresh_oracle:.3f}) in {r.seconds:.0f} s"
                    )
                    runs.append(r)

    for task in ("tropism", "dormancy"):
        rows = []
        for r in (r for r in runs if r.task == task):
            ci = "-"
            if r.lightgbm_ci:
                low, high = (_ratio(v, r.oracle) for v in r.lightgbm_ci)
                ci = f"[{low:.2f}, {high:.2f}]"
            rows.append(
                (
                    f"{r.patients:,}",
                    r.seed,
                    r.config,
                    f"{_ratio(r.lightgbm, r.oracle):.3f} {ci}",
                    f"{_ratio(r.baseline, r.oracle):.3f}",
                    f"{r.oracle:.3f}",
                    f"{r.fresh_lightgbm:.3f}",
                    f"{r.fresh_baseline:.3f}",
                    f"{r.fresh_oracle:.3f}",
                    "yes" if r.constant else "no",
                    r.refusal or "champion",
                    ", ".join(f"{k}={v}" for k, v in r.sizing.items()) or "-",
                    f"{r.seconds:.0f}",
                )
            )
        report.add(
            f"{task}: test {METRIC[task]} as a ratio to the oracle",
            md_table(
                [
                    "patients",
                    "seed",
                    "config",
                    "LightGBM / oracle [95 % CI]",
                    "baseline / oracle",
                    "oracle",
                    "fresh: LightGBM",
                    "fresh: baseline",
                    "fresh: oracle",
                    "constant",
                    "guard",
                    "size rule",
                    "s",
                ],
                rows,
            ),
        )
        after = [r for r in runs if r.task == task and r.config == "after"]
        ok = [not r.constant and r.fresh_lightgbm > 0.5 for r in after]
        report.targets.append(
            Target(
                f"{task}: the default config gives a non-constant, better-than-chance model",
                f"every size and seed ({METRIC[task]} on {FRESH_PATIENTS:,} fresh patients > 0.5, "
                "predictions vary)",
                ", ".join(
                    f"{r.patients}/{r.seed}: {r.fresh_lightgbm:.3f}"
                    f"{' constant' if r.constant else ''}"
                    for r in after
                ),
                None if opts.quick else all(ok),
                "quick mode: one seed, two sizes" if opts.quick else "",
            )
        )
    report.add(
        "Method",
        f"- Simulated cohorts (default simulator) of {', '.join(f'{n:,}' for n in sizes)} "
        f"patients, seeds {', '.join(map(str, seeds))}; the task's own rows (tropism: metastatic "
        "patients; dormancy: resected stage I-III) split 80/20, CV on the training split.\n"
        f'- before: {BEFORE}; one 5-fold CV. after: the packaged default ("auto").\n'
        f"- Test metric with a 95 % bootstrap interval ({RESAMPLES} resamples of the test "
        "split), divided by the oracle's test metric on the same split; 'guard': the champion "
        "guard's verdict (metapredict.assessment.degenerate_reason).\n"
        f"- fresh: the same fitted models (and the simulator's true probabilities) scored on "
        f"{FRESH_PATIENTS:,} new simulated patients (seed {FRESH_SEED}; the task's rows, cancer "
        "types the model saw, sites it predicts). A 150-patient cohort's test split holds about "
        "30 patients (tropism: about 12 metastatic ones), whose interval spans 0.5 whatever the "
        "model; the fresh patients measure what the model learned, and judge the target.",
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser("small cohorts before and after the size rule").parse_args(argv)
    opts = options(args, "benchmarks.small_cohorts")
    path = run(opts).write(opts.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
