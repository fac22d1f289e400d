"""How sure a training run's numbers are, and whether its model is fit to be champion.

* **Test intervals**: every test metric with a percentile bootstrap 95 % interval over
  resamples of the held-out split (the model is fixed; the patients are resampled).
* **CV intervals**: a cross-validated mean with the Nadeau-Bengio corrected t interval.
  Folds share training patients, so the plain standard error of the fold scores is too small;
  the correction inflates the variance by ``1/J + n_test/n_train`` (J fold scores) instead of
  ``1/J`` (Nadeau & Bengio, Machine Learning 2003).
* **Reasons for a missing metric**: a time-dependent AUC at a horizon nobody was followed to is
  NaN; the run says why instead.
* **Trivial references**: a metric worse than what a model with no features reaches is flagged
  (AUROC or C below 0.5; a Brier score above the prevalence's; an integrated Brier score above
  the Kaplan-Meier curve's, the same risk for everyone).
* **The champion guard** (:func:`degenerate_reason`): a model whose predictions are constant,
  whose CV metric cannot be told from chance (its interval covers 0.5), or that is clearly
  worse than its own baseline on the same folds (the interval of the paired difference lies
  below -:data:`CLEARLY_WORSE`) is not made champion.

Pure: no MLflow, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from metapredict import metrics
from metapredict.tasks import Task

FloatArray = NDArray[np.float64]

CONFIDENCE = 0.95
#: The metric each task's guard and headline read (higher is better; chance is 0.5).
MAIN_METRIC = {"tropism": "macro_auroc", "dormancy": "harrell_c"}
#: "Clearly worse than the baseline": the paired CV difference is below this with confidence.
CLEARLY_WORSE = 0.01
#: Fewer events than this in the test split make its metrics too noisy to lean on.
FEW_TEST_EVENTS = 20
#: Predictions whose spread across patients is below this are constant.
CONSTANT_SPREAD = 1e-9
#: Bootstrap budget: resamples x test patients stays under this (at least 50 resamples), so a
#: 3,000-patient test split gets 66 resamples instead of 200 (a survival metric set costs
#: ~0.4 s at that size). Small cohorts, whose intervals matter most, keep every resample.
MAX_RESAMPLED_PATIENTS = 200_000
MIN_RESAMPLES = 50
#: The censoring distribution behind the IPCW metrics of a resample is estimated from at most
#: this many training outcomes (a fixed, seeded subset: Kaplan-Meier on 12,000 rows costs
#: 0.15 s per metric and resample; the estimate barely moves).
IPCW_REFERENCE_ROWS = 2_000


def bounded_resamples(resamples: int, n_test: int) -> int:
    """The resamples to draw for a test split of ``n_test`` (see MAX_RESAMPLED_PATIENTS)."""
    return min(resamples, max(MIN_RESAMPLES, MAX_RESAMPLED_PATIENTS // max(n_test, 1)))


def ipcw_reference(y_train: Any, seed: int) -> Any:
    """At most IPCW_REFERENCE_ROWS training outcomes (all of them when fewer), seeded."""
    n = len(y_train)
    if n <= IPCW_REFERENCE_ROWS:
        return y_train
    rows = np.random.default_rng(seed).choice(n, IPCW_REFERENCE_ROWS, replace=False)
    return y_train[np.sort(rows)]


def corrected_interval(
    values: Sequence[float], test_fraction: float, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(mean, low, high) of fold scores with the Nadeau-Bengio corrected t interval.

    ``test_fraction`` is n_test / n_train of one fold (1 / (k - 1) for k-fold CV). NaN scores
    are left out; with fewer than two, the interval is NaN.
    """
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if x.size < 2:
        mean = float(x.mean()) if x.size else math.nan
        return mean, math.nan, math.nan
    mean = float(x.mean())
    variance = float(x.var(ddof=1)) * (1.0 / x.size + test_fraction)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1)) * math.sqrt(variance)
    return mean, mean - half, mean + half


def bootstrap_intervals(
    score: Any,
    y_test: Any,
    prediction: FloatArray,
    *,
    resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> dict[str, tuple[float, float]]:
    """Percentile interval of every metric ``score(y, prediction)`` returns, over resamples of
    the test rows. A metric that is NaN on more than half of the resamples gets no interval."""
    n = len(prediction)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        for name, value in score(y_test[idx], prediction[idx]).items():
            draws.setdefault(name, []).append(float(value))
    tail = (1.0 - confidence) / 2 * 100
    out: dict[str, tuple[float, float]] = {}
    for name, values in draws.items():
        finite = np.asarray([v for v in values if np.isfinite(v)])
        if finite.size * 2 > len(values):
            low, high = np.percentile(finite, [tail, 100 - tail])
            out[name] = (float(low), float(high))
    return out


def nan_reasons(task: Task, y_train: Any, y_test: Any, values: dict[str, float]) -> dict[str, str]:
    """Why each NaN metric is NaN, in words."""
    reasons: dict[str, str] = {}
    missing = [k for k, v in values.items() if not np.isfinite(v)]
    if not missing:
        return reasons
    if task == "tropism":
        for name in missing:
            reasons[name] = "the test split has only one class for this site"
        return reasons
    from metapredict.models.dormancy import survival_arrays

    t_train, _ = survival_arrays(y_train)
    t_test, e_test = survival_arrays(y_test)
    longest = min(float(t_test.max()), float(t_train.max()))
    for name in missing:
        if name.startswith("td_auc_"):
            h = int(name.removeprefix("td_auc_"))
            if h >= longest:
                reasons[name] = (
                    f"no patient followed beyond {h} months (longest follow-up {longest:.0f} "
                    "months in the test or training split)"
                )
            else:
                reasons[name] = f"no patient at risk or no relapse around {h} months"
        elif name == "integrated_brier":
            reasons[name] = "needs two horizons inside the follow-up of the test split"
        elif not e_test.any():
            reasons[name] = "no relapse in the test split"
        else:
            reasons[name] = "not computable on this split"
    return reasons


def trivial_flags(
    task: Task, y_train: Any, y_test: Any, values: dict[str, float], sites: tuple[str, ...]
) -> list[str]:
    """Metrics worse than a model without features reaches on the same split."""
    flags: list[str] = []
    for name in ("macro_auroc", "harrell_c", "uno_c", *(f"auroc_{s}" for s in sites)):
        value = values.get(name, math.nan)
        if np.isfinite(value) and value < 0.5:
            flags.append(f"{name} {value:.3f} is below chance (0.5)")
    if task == "tropism":
        y_tr, y_te = np.asarray(y_train, dtype=float), np.asarray(y_test, dtype=float)
        for j, site in enumerate(sites):
            value = values.get(f"brier_{site}", math.nan)
            rate = float(y_tr[:, j].mean())
            reference = float(np.mean((y_te[:, j] - rate) ** 2))
            if np.isfinite(value) and value > reference:
                flags.append(
                    f"brier_{site} {value:.3f} is worse than predicting the training rate for "
                    f"everyone ({reference:.3f})"
                )
        return flags
    value = values.get("integrated_brier", math.nan)
    if np.isfinite(value):
        reference = km_integrated_brier(y_train, y_test)
        if np.isfinite(reference) and value > reference:
            flags.append(
                f"integrated_brier {value:.3f} is worse than the Kaplan-Meier curve given to "
                f"everyone ({reference:.3f})"
            )
    return flags


def cv_flags(cv: dict[str, float], km_reference: Sequence[float]) -> list[str]:
    """Cross-validated means worse than a model without features (chance; the KM curve)."""
    flags = [
        f"CV {name} {cv[name]:.3f} is below chance (0.5)"
        for name in ("macro_auroc", "harrell_c", "uno_c")
        if name in cv and np.isfinite(cv[name]) and cv[name] < 0.5
    ]
    ibs = cv.get("integrated_brier", math.nan)
    if km_reference and np.isfinite(ibs):
        reference = float(np.mean(km_reference))
        if ibs > reference:
            flags.append(
                f"CV integrated_brier {ibs:.3f} ± {cv.get('integrated_brier_std', math.nan):.3f} "
                f"is worse than the Kaplan-Meier curve given to everyone ({reference:.3f})"
            )
    return flags


def km_integrated_brier(y_train: Any, y_test: Any) -> float:
    """The integrated Brier score of the training Kaplan-Meier risk given to every patient."""
    from sksurv.nonparametric import kaplan_meier_estimator

    from metapredict.models.dormancy import survival_arrays

    t_train, e_train = survival_arrays(y_train)
    times, survival = kaplan_meier_estimator(e_train, t_train)
    at = np.asarray(metrics.HORIZONS, dtype=float)
    index = np.searchsorted(times, at, side="right") - 1
    risk = np.where(index >= 0, 1.0 - survival[np.clip(index, 0, None)], 0.0)
    t_test, e_test = survival_arrays(y_test)
    constant = np.tile(risk, (len(t_test), 1))
    return metrics.survival_metrics(t_train, e_train, t_test, e_test, constant)["integrated_brier"]


def count_test_events(task: Task, y_test: Any) -> int:
    """Events in the test split: relapses (dormancy); the rarer class of the sparsest site."""
    if task == "dormancy":
        from metapredict.models.dormancy import survival_arrays

        return int(survival_arrays(y_test)[1].sum())
    y = np.asarray(y_test, dtype=bool)
    return int(np.minimum(y.sum(axis=0), (~y).sum(axis=0)).min())


def degenerate_reason(
    task: Task,
    prediction: FloatArray,
    folds: Sequence[float],
    baseline_folds: Sequence[float],
    test_fraction: float,
) -> str | None:
    """Why a model must not be champion (one line), or None."""
    spread = np.asarray(prediction, dtype=float).std(axis=0)
    if prediction.size and float(np.max(spread)) < CONSTANT_SPREAD:
        return "its predictions are constant: every patient gets the same answer"
    name = MAIN_METRIC[task]
    mean, low, high = corrected_interval(folds, test_fraction)
    if not np.isfinite(mean):
        return f"its cross-validated {name} could not be computed"
    if not (np.isfinite(low) and low > 0.5):
        return (
            f"its cross-validated {name} {mean:.3f} (95 % interval {low:.3f}-{high:.3f}) "
            "cannot be told from chance (0.5)"
        )
    paired = [a - b for a, b in zip(folds, baseline_folds, strict=True)]
    diff, _, diff_high = corrected_interval(paired, test_fraction)
    if np.isfinite(diff_high) and diff_high < -CLEARLY_WORSE:
        return (
            f"it is clearly worse than its baseline on the same folds: {name} "
            f"{diff:+.3f} (95 % interval up to {diff_high:+.3f})"
        )
    return None
