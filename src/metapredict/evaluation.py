"""Seeded splits, cross-validation and held-out evaluation of every model family.

Knows nothing of MLflow: it returns metric dictionaries whose names are identical across
families (``cv_macro_auroc``, ``test_harrell_c``, ...) so runs compare side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold, train_test_split

from metapredict import features, metrics, schema
from metapredict.models.dormancy import OUTPUT_NAMES as DORMANCY_OUTPUTS
from metapredict.tasks import Task, stages_for

FloatArray = NDArray[np.float64]
Progress = Callable[[str], None]

#: Metrics reported per cancer-type slice.
SLICE_METRIC = {"tropism": "macro_auroc", "dormancy": "harrell_c"}
#: Fewest patients a task trains on (after its own row selection).
MIN_TASK_ROWS = 50
#: A site is trained only when the tropism rows hold at least this many patients with it
#: involved and as many without (fewer cannot be cross-validated or calibrated).
MIN_SITE_PATIENTS = 10
#: Patients of a cancer type in the test split needed to report a per-type slice metric.
MIN_SLICE_PATIENTS = 20


class MissingLabels(ValueError):
    """The cohort lacks the labels of the task asked for (the message is one line)."""


def oracle_metrics(task: Task, sites: tuple[str, ...]) -> tuple[str, ...]:
    """Metrics compared to the oracle."""
    if task == "tropism":
        return ("macro_auroc", *(f"auroc_{s}" for s in sites))
    return ("harrell_c",)


def task_labels(cohort: pd.DataFrame) -> dict[Task, str | None]:
    """Per task, None when ``cohort`` carries its labels, else what is missing (one line)."""
    months, event = schema.survival_columns()
    present_sites = [c for c in schema.site_columns() if c in cohort.columns]
    tropism = None if present_sites else "no site column (site_<organ>, e.g. site_bone)"
    dormancy = None
    if months not in cohort.columns or event not in cohort.columns:
        absent = [c for c in (months, event) if c not in cohort.columns]
        dormancy = f"no relapse pair ({' and '.join(absent)} missing)"
    return {"tropism": tropism, "dormancy": dormancy}


class TaskEstimator(Protocol):
    def fit(self, X: Any, y: Any) -> Any: ...


@dataclass(frozen=True)
class TaskData:
    """The rows a task trains on, encoded, with targets and the train/test split."""

    task: Task
    frame: pd.DataFrame
    X: FloatArray
    y: Any  # (n, sites) bool for tropism; scikit-survival structured array for dormancy
    strata: NDArray[np.str_]
    train: NDArray[np.int64]
    test: NDArray[np.int64]
    #: tropism: the sites trained (columns of ``y``, in schema order); dormancy: empty.
    sites: tuple[str, ...] = ()
    #: per categorical column, the labels present in the task's rows (cancer types fix codes).
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: what the row and site selection left out, in words (for the report and the run).
    notes: tuple[str, ...] = ()

    @property
    def has_oracle(self) -> bool:
        return all(c in self.frame.columns for c in schema.oracle_columns())

    @property
    def cancer_types(self) -> tuple[str, ...]:
        return self.categories.get(features.CANCER_TYPE, ())


def _tropism_rows(cohort: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Patients whose metastatic sites are known: a distant relapse when the cohort records
    relapse, else at least one site flagged (a site-only study lists metastatic patients)."""
    event = schema.survival_columns()[1]
    present = [c for c in schema.site_columns() if c in cohort.columns]
    if event in cohort.columns:
        mask = cohort[event].astype(bool)
        why = "without a distant relapse"
    else:
        mask = cohort[present].astype(bool).any(axis=1)
        why = "with no site flagged (no relapse column: taken as not metastatic)"
    notes = [f"{int((~mask).sum())} patient(s) {why} left out"] if (~mask).any() else []
    return cohort[mask].reset_index(drop=True), notes


def _trainable_sites(frame: pd.DataFrame) -> tuple[tuple[str, ...], list[str]]:
    notes: list[str] = []
    sites: list[str] = []
    for column in schema.site_columns():
        if column not in frame.columns:
            continue
        involved = int(frame[column].astype(bool).sum())
        if min(involved, len(frame) - involved) < MIN_SITE_PATIENTS:
            notes.append(
                f"site {column.removeprefix('site_')} not trained: {involved} of {len(frame)} "
                f"patients involved (needs at least {MIN_SITE_PATIENTS} with and without)"
            )
            continue
        sites.append(column.removeprefix("site_"))
    return tuple(sites), notes


def prepare(task: Task, cohort: pd.DataFrame, *, test_size: float, seed: int) -> TaskData:
    """Select the task's rows and targets, encode features, split stratified and seeded.

    Tropism trains on patients whose metastatic sites are known (stage IV included: patients
    metastatic at diagnosis are most of the site data there is), on the sites that have enough
    patients with and without; dormancy on resected stage I-III primaries (patients metastatic
    at diagnosis, stage IV or a distant relapse at month 0, are left out and counted; a missing
    stage is kept), with censoring. Strata: cancer type
    (tropism), cancer type x event (dormancy). Raises :class:`MissingLabels` when the cohort
    lacks the task's labels.
    """
    missing = task_labels(cohort)[task]
    if missing is not None:
        raise MissingLabels(f"this cohort cannot train {task}: {missing}")
    months, event = schema.survival_columns()
    notes: list[str] = []
    sites: tuple[str, ...] = ()
    if task == "tropism":
        frame, notes = _tropism_rows(cohort)
        sites, site_notes = _trainable_sites(frame)
        notes += site_notes
        if not sites:
            raise MissingLabels(
                f"this cohort cannot train tropism: no site has {MIN_SITE_PATIENTS} or more "
                "metastatic patients with it involved and without"
            )
        y: Any = frame[[f"site_{s}" for s in sites]].to_numpy(dtype=bool)
        strata = frame["cancer_type"].astype(str).to_numpy()
    else:
        from sksurv.util import Surv

        at_diagnosis = schema.metastatic_at_diagnosis(cohort)
        if at_diagnosis.any():
            notes.append(
                f"{int(at_diagnosis.sum())} patient(s) metastatic at diagnosis left out (stage IV, "
                "or a distant relapse at month 0): dormancy is for resected stage I-III primaries"
            )
        frame = cohort[~at_diagnosis].reset_index(drop=True)
        y = Surv.from_arrays(
            event=frame[event].to_numpy(dtype=bool), time=frame[months].to_numpy(dtype=float)
        )
        strata = (
            frame["cancer_type"].astype(str) + ":" + frame[event].astype(bool).astype(str)
        ).to_numpy()
    if len(frame) < MIN_TASK_ROWS:
        rows = "metastatic patients with known sites" if task == "tropism" else "patients"
        raise MissingLabels(
            f"the {task} task needs at least {MIN_TASK_ROWS} {rows}; this cohort has {len(frame)}"
        )
    strata = _merge_rare(strata, minimum=4)
    index = np.arange(len(frame))
    train, test = train_test_split(index, test_size=test_size, random_state=seed, stratify=strata)
    categories = features.observed_categories(frame)
    categories["stage"] = stages_for(task)
    return TaskData(
        task=task,
        frame=frame,
        X=features.encode_frame(frame, categories[features.CANCER_TYPE]),
        y=y,
        strata=strata,
        train=np.sort(train),
        test=np.sort(test),
        sites=sites,
        categories=categories,
        notes=tuple(notes),
    )


def _merge_rare(strata: NDArray[np.str_], minimum: int) -> NDArray[np.str_]:
    """Strata with fewer than ``minimum`` rows pooled as "other"; a pool still too small joins
    the largest stratum (a stratified split needs at least two rows per stratum)."""
    values, counts = np.unique(strata, return_counts=True)
    rare = set(values[counts < minimum])
    merged = np.array(["other" if s in rare else s for s in strata])
    pooled = int((merged == "other").sum())
    if 0 < pooled < minimum and len(rare) < len(values):
        kept, kept_counts = np.unique(merged[merged != "other"], return_counts=True)
        merged[merged == "other"] = kept[np.argmax(kept_counts)]
    return merged


def _predict(task: Task, estimator: Any, X: FloatArray) -> FloatArray:
    """Tropism: (n, sites) probabilities; dormancy: (n, 4) risks 36/60/120 and late relapse."""
    if task == "tropism":
        result: FloatArray = estimator.predict_proba(X)
        return result
    result = estimator.predict_outputs(X)
    return result


def score(
    task: Task,
    y_train: Any,
    y_test: Any,
    prediction: FloatArray,
    sites: tuple[str, ...] = (),
) -> dict[str, float]:
    """The task's metrics for one set of predictions (names identical across families).

    ``sites`` names the tropism columns of ``y_test`` and ``prediction``.
    """
    if task == "tropism":
        return metrics.tropism_metrics(y_test, prediction, sites)
    from metapredict.models.dormancy import survival_arrays

    t_tr, e_tr = survival_arrays(y_train)
    t_te, e_te = survival_arrays(y_test)
    n_h = len(metrics.HORIZONS)
    return metrics.survival_metrics(t_tr, e_tr, t_te, e_te, prediction[:, :n_h])


@dataclass
class FamilyResult:
    family: str
    cv: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    slices: dict[str, float] = field(default_factory=dict)
    ratio_to_oracle: dict[str, float] = field(default_factory=dict)
    test_prediction: FloatArray | None = None
    estimator: Any = None
    #: every metric's score in each CV fold (repeats included), in fold order.
    folds: dict[str, list[float]] = field(default_factory=dict)
    #: n_test / n_train of one CV fold (for the corrected CV interval).
    fold_test_fraction: float = 0.25
    #: 95 % bootstrap interval of each test metric (resampled test patients).
    test_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: why a test metric is NaN, in words.
    reasons: dict[str, str] = field(default_factory=dict)
    #: test metrics worse than a model without features.
    flags: list[str] = field(default_factory=list)

    def cv_interval(self, name: str) -> tuple[float, float, float]:
        """(mean, low, high): the CV mean with its corrected 95 % interval."""
        from metapredict.assessment import corrected_interval

        return corrected_interval(self.folds.get(name, []), self.fold_test_fraction)

    def all_metrics(self) -> dict[str, float]:
        out = {f"cv_{k}": v for k, v in self.cv.items()}
        out |= {f"test_{k}": v for k, v in self.test.items()}
        for k, (low, high) in self.test_ci.items():
            out |= {f"test_{k}_ci95_low": low, f"test_{k}_ci95_high": high}
        out |= {f"test_{k}": v for k, v in self.slices.items()}
        out |= {f"test_{k}_ratio_to_oracle": v for k, v in self.ratio_to_oracle.items()}
        return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}

    def split_by_site(
        self, sites: Sequence[str]
    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """:meth:`all_metrics` in two parts: the summary metrics (macro averages, survival
        metrics, per-cancer-type slices) and ``{site: {metric: value}}`` for the per-site ones
        (``test_auroc_bone_ci95_low`` is ``{"bone": {"test_auroc_ci95_low": ...}}``)."""
        summary: dict[str, float] = {}
        per_site: dict[str, dict[str, float]] = {}
        for key, value in self.all_metrics().items():
            suffix = next((x for x in _METRIC_SUFFIXES if key.endswith(x)), "")
            stem = key[: len(key) - len(suffix)]
            site = next((s for s in sites if stem.endswith(f"_{s}")), None)
            if site is None:
                summary[key] = value
            else:
                per_site.setdefault(site, {})[stem[: -len(site) - 1] + suffix] = value
        return summary, per_site


#: What :meth:`FamilyResult.all_metrics` appends to a metric's name.
_METRIC_SUFFIXES = ("_std", "_ci95_low", "_ci95_high", "_ratio_to_oracle")


def _slices(task: Task, data: TaskData, prediction: FloatArray) -> dict[str, float]:
    out: dict[str, float] = {}
    types = data.frame["cancer_type"].astype(str).to_numpy()[data.test]
    name = SLICE_METRIC[task]
    for t in data.cancer_types:
        mask = types == t
        if mask.sum() < MIN_SLICE_PATIENTS:
            continue
        scored = score(
            task, data.y[data.train], data.y[data.test][mask], prediction[mask], data.sites
        )
        out[f"{name}_{t}"] = scored[name]
    return out


def cross_validate(
    family: str,
    make: Callable[[], Any],
    data: TaskData,
    *,
    folds: int,
    seed: int,
    progress: Progress | None = None,
    repeats: int = 1,
    resamples: int = 0,
) -> FamilyResult:
    """(Repeated) K-fold CV on the training split, then a fit on the whole training split scored
    on test, with a bootstrap interval per test metric (``resamples`` > 0) and the reasons for
    NaN metrics and the flags for metrics worse than trivial."""
    from metapredict import assessment

    X_train, y_train = data.X[data.train], data.y[data.train]
    splitter: Any = (
        RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
        if repeats > 1
        else StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    )
    total = folds * repeats
    per_fold: list[dict[str, float]] = []
    km_reference: list[float] = []  # dormancy: the Kaplan-Meier curve's IBS on each fold
    for k, (tr, va) in enumerate(splitter.split(X_train, data.strata[data.train]), start=1):
        if progress:
            progress(f"{data.task} {family}: fold {k}/{total}")
        est = make().fit(X_train[tr], y_train[tr])
        per_fold.append(
            score(
                data.task,
                y_train[tr],
                y_train[va],
                _predict(data.task, est, X_train[va]),
                data.sites,
            )
        )
        if data.task == "dormancy" and np.isfinite(per_fold[-1].get("integrated_brier", np.nan)):
            km_reference.append(assessment.km_integrated_brier(y_train[tr], y_train[va]))
    result = FamilyResult(family=family, fold_test_fraction=1.0 / (folds - 1))
    for name in per_fold[0]:
        values = np.array([f[name] for f in per_fold], dtype=float)
        result.folds[name] = values.tolist()
        if np.isfinite(values).any():
            result.cv[name] = float(np.nanmean(values))
            result.cv[f"{name}_std"] = float(np.nanstd(values))
    if progress:
        progress(f"{data.task} {family}: final fit on the training split")
    est = make().fit(X_train, y_train)
    y_test = data.y[data.test]
    prediction = _predict(data.task, est, data.X[data.test])
    result.test = score(data.task, y_train, y_test, prediction, data.sites)
    result.slices = _slices(data.task, data, prediction)
    result.test_prediction = prediction
    result.estimator = est
    if resamples > 0:
        if progress:
            progress(f"{data.task} {family}: bootstrap intervals of the test metrics")
        reference = assessment.ipcw_reference(y_train, seed) if data.task == "dormancy" else None
        result.test_ci = assessment.bootstrap_intervals(
            lambda y, p: score(data.task, reference, y, p, data.sites),
            y_test,
            prediction,
            resamples=assessment.bounded_resamples(resamples, len(y_test)),
            seed=seed,
        )
    result.reasons = assessment.nan_reasons(data.task, y_train, y_test, result.test)
    result.flags = assessment.trivial_flags(data.task, y_train, y_test, result.test, data.sites)
    result.flags += assessment.cv_flags(result.cv, km_reference)
    return result


def oracle_prediction(task: Task, frame: pd.DataFrame, sites: tuple[str, ...] = ()) -> FloatArray:
    if task == "tropism":
        cols = [f"oracle_site_{s}" for s in sites]
    else:
        cols = [f"oracle_risk_{h}" for h in metrics.HORIZONS] + ["oracle_late_relapse"]
        assert len(cols) == len(DORMANCY_OUTPUTS)
    result: FloatArray = frame[cols].to_numpy(dtype=float)
    return result


def evaluate_oracle(data: TaskData) -> FamilyResult | None:
    """The simulator's truth scored on the same test split (None for real cohorts)."""
    if not data.has_oracle:
        return None
    prediction = oracle_prediction(data.task, data.frame.iloc[data.test], data.sites)
    result = FamilyResult(family="oracle")
    result.test = score(data.task, data.y[data.train], data.y[data.test], prediction, data.sites)
    result.slices = _slices(data.task, data, prediction)
    result.test_prediction = prediction
    return result


def add_oracle_ratios(
    result: FamilyResult, oracle: FamilyResult | None, task: Task, sites: tuple[str, ...] = ()
) -> None:
    if oracle is None:
        return
    for name in oracle_metrics(task, sites):
        ours, best = result.test.get(name), oracle.test.get(name)
        if ours is not None and best is not None and np.isfinite(ours) and best > 0:
            result.ratio_to_oracle[name] = float(ours / best)
