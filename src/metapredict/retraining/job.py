"""The retraining job: new cohort -> validation -> drift -> challenger -> gate -> promotion.

Every job is recorded as a ``<task>-retrain`` run in the task's experiment (tags
``retrain_decision=promoted|kept|refused`` and ``retrain_outcome``, which also distinguishes
``champion_changed``); the challenger's training is the usual ``<task>-train`` run (parent +
one child per model family), linked both ways by tags. Promotion is the last step and a single
compare-and-set of the ``champion`` alias (:mod:`metapredict.registry.promotion`).
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metapredict import registry, schema
from metapredict.cohort_io import read_table
from metapredict.evaluation import TaskData, prepare
from metapredict.pipeline import LIGHTGBM, LoadedCohort, cohort_model, frame_digest, run_training
from metapredict.predictor import Predictor
from metapredict.registry import promotion
from metapredict.retraining import bootstrap, drift, gate
from metapredict.retraining.config import RetrainConfig
from metapredict.settings import StoreSettings
from metapredict.training_config import TrainingConfig

logger = logging.getLogger(__name__)
Progress = Callable[[str], None]


class Outcome(StrEnum):
    PROMOTED = "promoted"
    KEPT = "kept"
    REFUSED = "refused"
    CHAMPION_CHANGED = "champion_changed"

    @property
    def decision(self) -> str:
        """The ``retrain_decision`` tag: champion_changed is a kind of kept."""
        return "kept" if self is Outcome.CHAMPION_CHANGED else self.value


#: What the exit code tells a scheduler (1: error, 2: bad command line or config).
EXIT_CODES: dict[Outcome, int] = {
    Outcome.PROMOTED: 0,
    Outcome.KEPT: 3,
    Outcome.REFUSED: 4,
    Outcome.CHAMPION_CHANGED: 5,
}


@dataclass(frozen=True)
class RejectionReport:
    """Rows of the new cohort that failed the schema (dropped), and why."""

    n_rows: int
    n_rejected: int
    #: rule -> number of violations (e.g. "age_years: must be at most 100 years")
    reasons: dict[str, int] = field(default_factory=dict)
    #: problems with the table itself (missing column, wrong type): nothing is usable
    table_errors: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.n_rejected / self.n_rows if self.n_rows else 1.0


@dataclass(frozen=True)
class RetrainResult:
    task: str
    outcome: Outcome
    reason: str
    run_id: str
    rejection: RejectionReport
    challenger_version: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    comparison: bootstrap.PairedComparison | None = None
    verdict: gate.GateResult | None = None
    drift_report: drift.DriftReport | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]


def validate_rows(
    frame: pd.DataFrame, model: Any, *, max_passes: int = 3
) -> tuple[pd.DataFrame | None, RejectionReport]:
    """Drop the rows that break the schema; None when the table itself is unusable."""
    reasons: Counter[str] = Counter()
    rejected: set[Any] = set()
    current = frame
    for _ in range(max_passes):
        try:
            validated = schema.validate(current, model)
        except schema.CohortValidationError as err:
            table = [v.describe() for v in err.violations if v.row is None]
            if table:
                return None, RejectionReport(len(frame), len(frame), dict(reasons), table)
            for v in err.violations:
                reasons[f"{v.column or 'row'}: {v.rule}"] += 1
                rejected.add(v.row)
            current = frame.drop(index=[r for r in rejected if r in frame.index])
            continue
        return validated, RejectionReport(len(frame), len(rejected), dict(reasons))
    return None, RejectionReport(
        len(frame), len(frame), dict(reasons), ["rows still fail the schema after dropping"]
    )


def _load(data: Path) -> tuple[LoadedCohort | None, RejectionReport]:
    frame = read_table(data)
    clean, report = validate_rows(frame, cohort_model(frame))
    if clean is None:
        return None, report
    clean = clean.reset_index(drop=True)
    source = str(data.resolve())
    return LoadedCohort(clean, source, frame_digest(clean), {"data_source": source}), report


def _metrics(comparison: bootstrap.PairedComparison) -> dict[str, float]:
    out: dict[str, float] = {}
    for who, estimates in (
        ("champion", comparison.champion),
        ("challenger", comparison.challenger),
        ("difference", comparison.difference),
    ):
        for name, est in estimates.items():
            out[f"{who}_{name}"] = est.value
            out[f"{who}_{name}_ci_low"] = est.low
            out[f"{who}_{name}_ci_high"] = est.high
    return {k: v for k, v in out.items() if np.isfinite(v)}


def _log_drift(
    run: promotion.DecisionRun, report: drift.DriftReport, retrain: RetrainConfig
) -> None:
    buffer = io.StringIO()
    report.table().to_csv(buffer, index=False)
    run.log_text(buffer.getvalue(), "drift/drift.csv")
    run.log_dict(report.as_dict(), "drift/drift.json")
    run.log_figure(drift.drift_figure(report, retrain.drift), "drift/drift.png")
    run.log_metrics({"drift_flagged_features": float(len(report.flagged))})
    run.set_tags({"drift_flagged": ",".join(report.flagged) or "none"})


def _champion(task: str, settings: StoreSettings | None) -> Predictor | None:
    try:
        return registry.load(task, registry.CHAMPION, settings)
    except registry.ModelNotFoundError:
        return None


def run_retrain(
    task_config: TrainingConfig,
    data: Path,
    retrain: RetrainConfig,
    *,
    settings: StoreSettings | None = None,
    progress: Progress | None = None,
) -> RetrainResult:
    """Retrain ``task_config.task`` on the cohort at ``data`` and gate the promotion."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _run(task_config, data, retrain, settings=settings, progress=progress)


def _run(
    config: TrainingConfig,
    data: Path,
    retrain: RetrainConfig,
    *,
    settings: StoreSettings | None,
    progress: Progress | None,
) -> RetrainResult:
    task = config.task
    step = progress or (lambda message: None)
    tags = {"task": task, "job": "retrain", "schema_version": schema.SCHEMA_VERSION}
    with promotion.start_decision_run(
        task, run_name=f"{task}-retrain", tags=tags, settings=settings
    ) as run:
        run.log_dict(retrain.model_dump(), "retrain_config.json")
        run.log_params({"data": str(data.resolve()), "training_config": config.model_dump_json()})

        step("validating the new cohort")
        cohort, rejection = _load(data)
        run.log_dict(asdict(rejection), "validation/rejected.json")
        run.log_metrics(
            {
                "n_rows": float(rejection.n_rows),
                "n_rejected": float(rejection.n_rejected),
                "rejected_share": rejection.share,
            }
        )

        def finish(outcome: Outcome, reason: str, **extra: Any) -> RetrainResult:
            result = RetrainResult(task, outcome, reason, run.run_id, rejection, **extra)
            run.set_tags(
                {
                    "retrain_decision": outcome.decision,
                    "retrain_outcome": outcome.value,
                    "retrain_reason": reason,
                    "champion_version_before": result.champion_before or "none",
                    "champion_version_after": result.champion_after or "none",
                    "challenger_version": result.challenger_version or "none",
                }
            )
            run.log_text(reason + "\n", "decision.txt")
            logger.info("%s retrain: %s", task, reason)
            return result

        limit = retrain.validation.max_rejected_share
        if cohort is None:
            return finish(
                Outcome.REFUSED,
                "refused: the cohort is unusable: " + "; ".join(rejection.table_errors[:5]),
            )
        if rejection.share > limit:
            return finish(
                Outcome.REFUSED,
                f"refused: {rejection.n_rejected} of {rejection.n_rows} rows "
                f"({rejection.share:.1%}) fail the schema, above the limit of {limit:.1%}",
            )
        try:
            task_data = prepare(
                task, cohort.frame, test_size=config.data.test_size, seed=config.seed
            )
        except ValueError as err:
            return finish(Outcome.REFUSED, f"refused: {err}")

        champion = _champion(task, settings)
        before = champion.info.version if champion is not None else None
        run.set_tags({"champion_version_evaluated": before or "none"})
        report = _drift(run, champion, task_data, retrain, settings)

        step("training the challenger")
        outcome = run_training(
            config, settings=settings, progress=step, cohort=cohort, alias=registry.CHALLENGER
        )
        version = outcome.registered.version
        run.set_tags(
            {"challenger_version": version, "challenger_run_id": outcome.registered.run_id}
        )
        promotion.tag_run(outcome.registered.run_id, {"retrain_run_id": run.run_id}, settings)
        if outcome.n_test != len(task_data.test):
            raise RuntimeError("the challenger's held-out split differs from the job's")
        comparison: bootstrap.PairedComparison | None = None
        verdict: gate.GateResult | None = None
        if champion is None:
            reason = f"promoted: no champion yet, challenger version {version} becomes champion"
        else:
            step("scoring champion and challenger on the held-out split (bootstrap)")
            challenger_pred = outcome.results[LIGHTGBM].test_prediction
            assert challenger_pred is not None
            # The champion encodes with its own categories (its cancer-type codes).
            test_frame = task_data.frame.iloc[task_data.test]
            champion_pred = champion.predict_matrix(champion.encode_frame(test_frame))
            y_test = task_data.y[task_data.test]
            if task == "tropism":
                # Compared on the sites both models predict.
                common = [s for s in task_data.sites if s in champion.sites]
                if not common:
                    return finish(
                        Outcome.REFUSED,
                        "refused: the champion predicts none of the sites this cohort trains "
                        f"({', '.join(task_data.sites)})",
                    )
                ours = [task_data.sites.index(s) for s in common]
                y_test, challenger_pred = y_test[:, ours], challenger_pred[:, ours]
                champion_pred = champion_pred[:, [champion.sites.index(s) for s in common]]
            comparison = bootstrap.paired_bootstrap(
                task,
                task_data.y[task_data.train],
                y_test,
                champion_pred,
                challenger_pred,
                resamples=retrain.bootstrap.resamples,
                confidence=retrain.bootstrap.confidence,
                seed=retrain.bootstrap.seed,
            )
            verdict = gate.decide(comparison, retrain.gate[task])
            run.log_metrics(_metrics(comparison))
            run.log_dict(
                {"comparison": comparison.as_dict(), "gate": verdict.as_dict()}, "decision.json"
            )
            reason = verdict.reason
        extra: dict[str, Any] = {
            "challenger_version": version,
            "champion_before": before,
            "comparison": comparison,
            "verdict": verdict,
            "drift_report": report,
        }
        if outcome.refusal is not None:  # the champion guard, as in `train`
            result = finish(
                Outcome.KEPT,
                f"kept: challenger version {version} is not fit to be champion: {outcome.refusal}",
                champion_after=before,
                **extra,
            )
        elif verdict is not None and not verdict.promote:
            result = finish(Outcome.KEPT, reason, champion_after=before, **extra)
        else:
            step("promoting the challenger")
            moved = promotion.promote_if_unchanged(task, version, before, settings)
            if moved.promoted:
                result = finish(Outcome.PROMOTED, reason, champion_after=version, **extra)
            else:
                result = finish(
                    Outcome.CHAMPION_CHANGED,
                    f"kept: champion changed during the job (evaluated against "
                    f"{before or 'no champion'}, found {moved.champion_before}); "
                    f"the gate said: {reason}",
                    champion_after=moved.champion_before,
                    **extra,
                )
        _tag_versions(result, settings)
        return result


def _drift(
    run: promotion.DecisionRun,
    champion: Predictor | None,
    task_data: TaskData,
    retrain: RetrainConfig,
    settings: StoreSettings | None,
) -> drift.DriftReport | None:
    if champion is None:
        run.set_tags({"drift": "no champion to compare with"})
        return None
    profile = promotion.reference_profile(champion.info.run_id, settings)
    if profile is None:
        run.set_tags({"drift": "the champion's training run has no feature profile"})
        return None
    report = drift.compare(profile, task_data.frame, retrain.drift)
    _log_drift(run, report, retrain)
    if report.flagged:
        logger.warning("features that moved: %s", ", ".join(report.flagged))
    return report


def _tag_versions(result: RetrainResult, settings: StoreSettings | None) -> None:
    summary = {}
    if result.comparison is not None:
        summary = {
            f"{who}_{k}": round(v.value, 4)
            for who, est in (
                ("champion", result.comparison.champion),
                ("challenger", result.comparison.challenger),
            )
            for k, v in est.items()
        }
    if result.challenger_version is not None:
        promotion.tag_version(
            result.task,
            result.challenger_version,
            {
                "retrain_decision": result.outcome.decision,
                "retrain_outcome": result.outcome.value,
                "retrain_reason": result.reason,
                "retrain_run_id": result.run_id,
                "retrain_compared_with": result.champion_before or "none",
                **({"retrain_metrics": json.dumps(summary, sort_keys=True)} if summary else {}),
            },
            settings,
        )
    if result.champion_before is not None:
        promotion.tag_version(
            result.task,
            result.champion_before,
            {
                "retrain_last_challenger": result.challenger_version or "none",
                "retrain_last_decision": result.outcome.value,
                "retrain_last_run_id": result.run_id,
            },
            settings,
        )
