"""The training job: cohort -> schema -> evaluation of every family -> logged, registered model."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metapredict import __version__, assessment, feature_profile, features, plots, schema, sizing
from metapredict.cohort_io import read_table
from metapredict.evaluation import (
    FamilyResult,
    TaskData,
    add_oracle_ratios,
    cross_validate,
    evaluate_oracle,
    prepare,
)
from metapredict.feature_encoder import FeatureEncoder
from metapredict.models.baselines import CoxBaseline, LogisticTropism
from metapredict.models.dormancy import DiscreteTimeHazard, survival_arrays
from metapredict.models.ensemble import IntervalConfig, fit_ensemble
from metapredict.models.tropism import TropismClassifier
from metapredict.predictor import RISK_GROUPS, Predictor
from metapredict.registry import (
    REFERENCE_PROFILE_ARTIFACT,
    JobRun,
    RegisteredVersion,
    start_job_run,
)
from metapredict.settings import StoreSettings
from metapredict.simulator import (
    SIMULATOR_VERSION,
    complete_patients,
    default_config,
    simulate_cohort,
)
from metapredict.training_config import SIZED, DormancyConfig, TrainingConfig, TropismConfig

logger = logging.getLogger(__name__)
Progress = Callable[[str], None]

LIGHTGBM = "lightgbm"
BASELINE = {"tropism": "logistic_regression", "dormancy": "cox_ph"}


@dataclass(frozen=True)
class LoadedCohort:
    frame: pd.DataFrame
    source: str
    digest: str
    tags: dict[str, str]


@dataclass(frozen=True)
class TrainingOutcome:
    task: str
    registered: RegisteredVersion
    results: dict[str, FamilyResult]
    oracle: FamilyResult | None
    n_train: int
    n_test: int
    seconds: float
    #: tropism: the sites the model predicts; dormancy: empty.
    sites: tuple[str, ...] = ()
    #: what the task's row and site selection left out, in words.
    notes: tuple[str, ...] = ()
    #: why the model was not made champion (the guard's one line), or None.
    refusal: str | None = None
    #: the values the size rule chose for "auto" settings (metapredict.sizing).
    sizing: dict[str, int] = field(default_factory=dict)
    #: CV repeats used (5 x 5 folds below 2,000 patients by default).
    repeats: int = 1
    #: warnings about the evaluation (few test events), in words.
    warnings: tuple[str, ...] = ()


def frame_digest(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def load_cohort(data: Path | None, config: TrainingConfig) -> LoadedCohort:
    """The user's cohort file, validated, or the default simulated cohort."""
    if data is None:
        n, seed = config.data.simulate_patients, config.data.simulate_seed
        frame = simulate_cohort(n, seed, default_config())
        tags = {
            "data_source": "simulator",
            "simulator_version": SIMULATOR_VERSION,
            "simulator_seed": str(seed),
            "simulator_patients": str(n),
        }
        source = f"metapredict-simulator:{SIMULATOR_VERSION}?patients={n}&seed={seed}"
        model: Any = schema.SimulatedCohort
    else:
        frame = read_table(data)
        tags = {"data_source": str(data.resolve())}
        source = str(data.resolve())
        model = cohort_model(frame)
    validated = schema.validate(frame, model)
    return LoadedCohort(validated, source, frame_digest(validated), tags)


def cohort_model(frame: pd.DataFrame) -> Any:
    """Simulated (oracle columns present), absolute (LM22 rows not summing to 1) or relative.

    The models see centred log-ratios, which are the same for absolute scores and relative
    fractions of a sample, so a model trained on either serves relative fractions.
    """
    if all(c in frame.columns for c in schema.oracle_columns()):
        return schema.SimulatedCohort
    lm22 = [c for c in schema.lm22_columns() if c in frame.columns]
    if len(lm22) == len(schema.lm22_columns()):
        sums = frame[lm22].apply(pd.to_numeric, errors="coerce").sum(axis=1)
        if ((sums - 1.0).abs() > schema.FRACTION_SUM_TOLERANCE).mean() > 0.5:
            logger.info("LM22 columns do not sum to 1: validating as CIBERSORTx absolute mode")
            return schema.AbsoluteCohort
    return schema.Cohort


def _sizes(config: TrainingConfig, data: TaskData) -> sizing.Sizes:
    from metapredict.models.dormancy import survival_arrays as _survival

    events = len(data.train)
    if isinstance(config, DormancyConfig):
        events = int(_survival(data.y[data.train])[1].sum())
    return sizing.Sizes(rows=len(data.train), events=events, patients=len(data.frame))


def resolve_model(config: TrainingConfig, data: TaskData) -> tuple[dict[str, Any], dict[str, int]]:
    """The model keyword arguments with "auto" values set by the size rule, and those values."""
    m = config.model.model_dump()
    written = {k: m[k] for k in SIZED}
    values, chosen = sizing.resolve(config.task, written, _sizes(config, data))
    return m | values, chosen


def resolve_repeats(config: TrainingConfig, data: TaskData) -> int:
    repeats = config.cv.repeats
    return sizing.cv_repeats(len(data.frame)) if repeats == sizing.AUTO else int(repeats)


def evaluate_family(
    config: TrainingConfig,
    data: TaskData,
    family: str,
    make: Callable[[], Any],
    repeats: int,
    progress: Progress | None = None,
) -> FamilyResult:
    """One family's (repeated) CV and test evaluation; test intervals for the LightGBM model
    being registered (the baselines show their CV spread)."""
    resamples = config.cv.bootstrap_resamples if family == LIGHTGBM else 0
    return cross_validate(
        family,
        make,
        data,
        folds=config.cv.folds,
        seed=config.seed,
        progress=progress,
        repeats=repeats,
        resamples=resamples,
    )


def champion_refusal(task: str, results: dict[str, FamilyResult]) -> str | None:
    """The champion guard's verdict on the LightGBM model against its baseline's folds."""
    best, baseline = results[LIGHTGBM], results[BASELINE[task]]
    main = assessment.MAIN_METRIC[task]
    assert best.test_prediction is not None
    return assessment.degenerate_reason(
        task,  # type: ignore[arg-type]
        best.test_prediction,
        best.folds.get(main, []),
        baseline.folds.get(main, []),
        best.fold_test_fraction,
    )


def _estimators(config: TrainingConfig, m: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    cat = features.categorical_indices()
    if isinstance(config, TropismConfig):
        C = config.baseline.C
        return {
            LIGHTGBM: lambda: TropismClassifier(
                **m, categorical_features=cat, random_state=config.seed
            ),
            BASELINE["tropism"]: lambda: LogisticTropism(C=C, categorical_features=cat),
        }
    alpha = config.baseline.alpha
    return {
        LIGHTGBM: lambda: DiscreteTimeHazard(
            **m, categorical_features=cat, random_state=config.seed
        ),
        BASELINE["dormancy"]: lambda: CoxBaseline(alpha=alpha, categorical_features=cat),
    }


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= _flatten(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    return {prefix: value}


def input_example(predictor: Predictor, rows: int = 2) -> pd.DataFrame:
    """A synthetic, complete example request the model accepts (never a patient's row)."""
    example = complete_patients(rows, 0, draw=200, config=default_config())
    types, stages = predictor.cancer_types, predictor.categories.get("stage", schema.STAGES)
    example["cancer_type"] = [types[i % len(types)] for i in range(len(example))]
    example["stage"] = [stages[i % len(stages)] for i in range(len(example))]
    return example


def build_predictor(
    config: TrainingConfig,
    data: TaskData,
    estimator: Any,
    intervals: IntervalConfig | None = None,
) -> Predictor:
    """The servable model: ``estimator`` (fitted on the training split) with what serving needs,
    and its prediction intervals: a bootstrap ensemble refitted on the training split with the
    estimator's own hyperparameters, boosted for twice its rounds when bias-corrected
    (``intervals``, default :class:`IntervalConfig`; see ``models.ensemble``)."""
    train_frame = data.frame.iloc[data.train]
    ranges = FeatureEncoder().fit(train_frame).feature_ranges_
    predictor = Predictor(
        task=config.task,
        model=estimator.model_,
        feature_ranges=ranges,
        categories=dict(data.categories),
        sites=data.sites,
    )
    predictor.intervals = fit_ensemble(
        estimator,
        data.X[data.train],
        data.y[data.train],
        config=intervals or IntervalConfig(),
        seed=config.seed,
    )
    if predictor.intervals is not None:
        logger.info(
            "%s: %d bootstrap members for the prediction intervals in %.1f s",
            config.task,
            len(predictor.intervals.members),
            predictor.intervals.fit_seconds,
        )
    if isinstance(config, DormancyConfig):
        risk_120 = predictor.predict_matrix(data.X[data.train])[:, 2]
        low, high = np.quantile(risk_120, [1 / 3, 2 / 3])
        predictor.risk_cutoffs = (float(low), float(high))
    return predictor


def family_params(
    config: TrainingConfig, family: str, model_args: dict[str, Any]
) -> dict[str, Any]:
    """A family run's params under the parent's names: ``model.*`` (LightGBM, sizes resolved)
    or ``baseline.*``, and ``family``. Sorted, the params that differ between two families
    interleave (``baseline.*``, ``family``, ``model.*``), so the compare view's default
    parallel-coordinates axes show both families, not three of one family's settings."""
    if family == LIGHTGBM:
        own = {f"model.{k}": v for k, v in model_args.items()}
    else:
        own = {f"baseline.{k}": v for k, v in config.baseline.model_dump().items()}
    return {"family": family, **own}


def _param(value: Any) -> Any:
    return value if isinstance(value, bool | int | float | str) or value is None else str(value)


def _log_family_metrics(child: JobRun, result: FamilyResult, sites: tuple[str, ...]) -> None:
    """A family's metrics under the parent's names (the runs table and compare view line the
    families up), per-site values as the table ``metrics_per_site.json`` rather than metrics:
    the compare view lists metrics alphabetically and shows its first ~15 rows, which would
    otherwise all be per-site ones and hide the headline macro averages."""
    summary, per_site = result.split_by_site(sites)
    child.log_metrics(summary)
    if per_site:
        child.log_dict(per_site, "metrics_per_site.json")


def _log_family_plots(child: JobRun, data: TaskData, result: FamilyResult) -> None:
    """The family's own test-split plots, on its run (the compare view shows them side by
    side): ROC and calibration per site, or Kaplan-Meier curves by tertile of its risk."""
    prediction = result.test_prediction
    if prediction is None:
        return
    if data.task == "tropism":
        y = data.y[data.test]
        figs = {
            "plots/roc_per_site.png": plots.roc_curves(y, prediction, data.sites),
            "plots/calibration_per_site.png": plots.calibration_curves(y, prediction, data.sites),
        }
    else:
        time_, event = survival_arrays(data.y[data.test])
        risk = prediction[:, 2]
        cuts = np.quantile(risk, [1 / 3, 2 / 3])
        groups = [RISK_GROUPS[i] for i in np.searchsorted(cuts, risk, side="right")]
        figs = {
            "plots/kaplan_meier_by_risk_group.png": plots.kaplan_meier_by_group(
                time_, event, groups, RISK_GROUPS, cutoffs="test-split tertiles of its risk"
            )
        }
    for path, fig in figs.items():
        child.log_figure(fig, path)


def _log_plots(job: JobRun, data: TaskData, predictor: Predictor, result: FamilyResult) -> None:
    assert result.test_prediction is not None
    X_test = data.X[data.test]
    contrib = predictor.contributions_matrix(X_test)
    names = list(predictor.feature_names)
    if data.task == "tropism":
        y = data.y[data.test]
        figs = {
            "plots/roc_per_site.png": plots.roc_curves(y, result.test_prediction, data.sites),
            "plots/calibration_per_site.png": plots.calibration_curves(
                y, result.test_prediction, data.sites
            ),
        }
        mean_abs = np.abs(contrib[:, :, :-1]).mean(axis=(0, 1))
        title = "Mean |SHAP| over sites (held-out test split)"
    else:
        time_, event = survival_arrays(data.y[data.test])
        groups = predictor.risk_group(result.test_prediction[:, 2])
        figs = {
            "plots/kaplan_meier_by_risk_group.png": plots.kaplan_meier_by_group(
                time_, event, groups, RISK_GROUPS
            )
        }
        mean_abs = np.abs(contrib[:, 0, :-1]).mean(axis=0)
        title = "Mean |SHAP| on the relapse hazard at 60 months (held-out test split)"
    figs["plots/shap_summary.png"] = plots.contribution_summary(mean_abs, names, title)
    for path, fig in figs.items():
        job.log_figure(fig, path)
    job.log_dict(
        {n: float(v) for n, v in zip(names, mean_abs, strict=True)}, "feature_importance.json"
    )


def run_training(
    config: TrainingConfig,
    *,
    data: Path | None = None,
    settings: StoreSettings | None = None,
    progress: Progress | None = None,
    cohort: LoadedCohort | None = None,
    alias: str | None = None,
) -> TrainingOutcome:
    """Validate, evaluate every family, log everything, register the LightGBM model.

    A cohort that breaks the schema raises :class:`schema.CohortValidationError` before any
    run is created, so nothing is logged or registered. ``cohort`` (already loaded and
    validated, e.g. by the retraining job) replaces ``data``; ``alias`` forces the alias of the
    new version instead of the first-is-champion rule (see ``JobRun.log_and_register``).
    """
    from threadpoolctl import threadpool_limits

    # OpenBLAS threads spin after each linear-algebra call and starve LightGBM's OpenMP
    # threads (3x slower on 2 cores, measured); the linear baselines don't need them.
    with threadpool_limits(limits=1, user_api="blas"):
        return _run_training(
            config, data=data, settings=settings, progress=progress, cohort=cohort, alias=alias
        )


def _run_training(
    config: TrainingConfig,
    *,
    data: Path | None,
    settings: StoreSettings | None,
    progress: Progress | None,
    cohort: LoadedCohort | None = None,
    alias: str | None = None,
) -> TrainingOutcome:
    started = time.perf_counter()
    step = progress or (lambda message: None)
    step("loading and validating the cohort")
    if cohort is None:
        cohort = load_cohort(data, config)
    task_data = prepare(
        config.task, cohort.frame, test_size=config.data.test_size, seed=config.seed
    )
    oracle = evaluate_oracle(task_data)
    tags = {
        **cohort.tags,
        "task": config.task,
        "schema_version": schema.SCHEMA_VERSION,
        "data_digest": cohort.digest,
        "metapredict_version": __version__,
    }
    results: dict[str, FamilyResult] = {}
    model_args, chosen = resolve_model(config, task_data)
    repeats = resolve_repeats(config, task_data)
    warnings: list[str] = []
    test_events = assessment.count_test_events(config.task, task_data.y[task_data.test])
    if test_events < assessment.FEW_TEST_EVENTS:
        what = "relapses" if config.task == "dormancy" else "patients in a site's rarer class"
        warnings.append(
            f"the test split has only {test_events} {what} (fewer than "
            f"{assessment.FEW_TEST_EVENTS}): its metrics are noisy; read their intervals"
        )
    with start_job_run(
        config.task, run_name=f"{config.task}-train", tags=tags, settings=settings
    ) as job:
        job.log_params(
            {
                **_flatten("", config.model_dump()),
                **{f"sizing.{k}": v for k, v in chosen.items()},
                "cv.repeats_used": repeats,
                "n_patients": len(cohort.frame),
                "n_task_rows": len(task_data.frame),
                "n_train": len(task_data.train),
                "n_test": len(task_data.test),
                "n_features": task_data.X.shape[1],
                "sites": ",".join(task_data.sites) or "-",
                "cancer_types": ",".join(task_data.cancer_types),
            }
        )
        if task_data.notes:
            job.log_dict({"notes": list(task_data.notes)}, "task_rows.json")
        job.log_dict(config.model_dump(), "config.json")
        job.log_dataset(
            cohort.frame, name=f"{config.task}-cohort", source=cohort.source, digest=cohort.digest
        )
        # Row-free summary of the training features: the reference for drift reports.
        job.log_dict(
            feature_profile.build_profile(task_data.frame.iloc[task_data.train]),
            REFERENCE_PROFILE_ARTIFACT,
        )
        for family, make in _estimators(config, model_args).items():
            with job.child(family) as child:
                child.set_tags({**tags, "model_family": family})
                result = evaluate_family(config, task_data, family, make, repeats, step)
                add_oracle_ratios(result, oracle, config.task, task_data.sites)
                child.log_params(family_params(config, family, model_args))
                child.log_dict(
                    {k: _param(v) for k, v in make().get_params().items()},
                    "estimator_params.json",
                )
                _log_family_metrics(child, result, task_data.sites)
                _log_family_plots(child, task_data, result)
                results[family] = result
        if oracle is not None:
            with job.child("oracle") as child:
                child.set_tags({**tags, "model_family": "oracle"})
                _log_family_metrics(child, oracle, task_data.sites)
        best = results[LIGHTGBM]
        job.log_metrics(best.all_metrics())
        refusal = champion_refusal(config.task, results)
        job.log_dict(
            {
                "warnings": warnings,
                "nan_reasons": best.reasons,
                "worse_than_trivial": best.flags,
                "not_champion": refusal,
            },
            "assessment.json",
        )
        step("logging plots and registering the model")
        predictor = build_predictor(config, task_data, best.estimator, config.intervals)
        if predictor.intervals is not None:
            job.log_metrics({"intervals_fit_seconds": predictor.intervals.fit_seconds})
        _log_plots(job, task_data, predictor, best)
        registered = job.log_and_register(
            predictor, input_example(predictor), alias=alias, refusal=refusal
        )
        job.set_tags(
            {
                "registered_version": registered.version,
                "registered_alias": registered.alias or "none",
                **({"not_champion": refusal} if refusal else {}),
            }
        )
    return TrainingOutcome(
        task=config.task,
        registered=registered,
        results=results,
        oracle=oracle,
        n_train=len(task_data.train),
        n_test=len(task_data.test),
        seconds=time.perf_counter() - started,
        sites=task_data.sites,
        notes=task_data.notes,
        refusal=refusal,
        sizing=chosen,
        repeats=repeats,
        warnings=tuple(warnings),
    )
