"""Metric functions shared by the oracle, the evaluation of every model family and retraining.

The names returned here are the metric names logged to MLflow, identical across model families
so runs compare side by side.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import suppress

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from metapredict.tasks import HORIZONS as HORIZONS

FloatArray = NDArray[np.float64]

#: The horizon whose cumulative risk orders patients for concordance.
CONCORDANCE_HORIZON = 120


def _both_classes(y: NDArray[np.bool_]) -> bool:
    return bool(y.any() and (~y).any())


def auroc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y = np.asarray(y_true, dtype=bool)
    return float(roc_auc_score(y, np.asarray(score))) if _both_classes(y) else float("nan")


def auprc(y_true: ArrayLike, score: ArrayLike) -> float:
    y = np.asarray(y_true, dtype=bool)
    return (
        float(average_precision_score(y, np.asarray(score))) if _both_classes(y) else float("nan")
    )


def brier(y_true: ArrayLike, proba: ArrayLike) -> float:
    return float(brier_score_loss(np.asarray(y_true, dtype=bool), np.asarray(proba)))


def calibration_error(y_true: ArrayLike, proba: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins of predicted probability."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(proba, dtype=float)
    if y.size == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, min(bins, y.size)):
        if chunk.size:
            total += chunk.size * abs(y[chunk].mean() - p[chunk].mean())
    return float(total / y.size)


def tropism_metrics(
    y_true: NDArray[np.bool_], proba: FloatArray, sites: Sequence[str]
) -> dict[str, float]:
    """Per-site AUROC, AUPRC, Brier, calibration error, and their macro averages."""
    out: dict[str, float] = {}
    for j, site in enumerate(sites):
        out[f"auroc_{site}"] = auroc(y_true[:, j], proba[:, j])
        out[f"auprc_{site}"] = auprc(y_true[:, j], proba[:, j])
        out[f"brier_{site}"] = brier(y_true[:, j], proba[:, j])
        out[f"calibration_error_{site}"] = calibration_error(y_true[:, j], proba[:, j])
    for name in ("auroc", "auprc", "brier", "calibration_error"):
        values = [out[f"{name}_{s}"] for s in sites]
        out[f"macro_{name}"] = float(np.nanmean(values)) if not all(np.isnan(values)) else np.nan
    return out


def _structured(time: ArrayLike, event: ArrayLike) -> NDArray[np.void]:
    from sksurv.util import Surv

    result: NDArray[np.void] = Surv.from_arrays(
        event=np.asarray(event, dtype=bool), time=np.asarray(time, dtype=float)
    )
    return result


def harrell_c(time: ArrayLike, event: ArrayLike, risk: ArrayLike) -> float:
    """Harrell's concordance index (higher risk should relapse earlier)."""
    from sksurv.metrics import concordance_index_censored

    e = np.asarray(event, dtype=bool)
    if not e.any():
        return float("nan")
    return float(concordance_index_censored(e, np.asarray(time, dtype=float), np.asarray(risk))[0])


def survival_metrics(
    train_time: ArrayLike,
    train_event: ArrayLike,
    test_time: ArrayLike,
    test_event: ArrayLike,
    cumulative_risk: FloatArray,
) -> dict[str, float]:
    """Harrell's C, Uno's C, time-dependent AUC per horizon, integrated Brier score.

    ``cumulative_risk`` is (n, len(HORIZONS)): P(relapse by each horizon). Uno's C, the
    time-dependent AUC and the Brier score weight by the censoring distribution estimated on the
    training outcomes (scikit-survival); horizons beyond the test follow-up are skipped.
    """
    from sksurv.metrics import (
        concordance_index_ipcw,
        cumulative_dynamic_auc,
        integrated_brier_score,
    )

    y_train = _structured(train_time, train_event)
    y_test = _structured(test_time, test_event)
    risk_c = cumulative_risk[:, HORIZONS.index(CONCORDANCE_HORIZON)]
    out = {"harrell_c": harrell_c(test_time, test_event, risk_c)}
    t_test = np.asarray(test_time, dtype=float)
    e_test = np.asarray(test_event, dtype=bool)
    t_train_max = float(np.asarray(train_time, dtype=float).max())
    tau = min(float(t_test[e_test].max()) if e_test.any() else 0.0, t_train_max)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out["uno_c"] = float(concordance_index_ipcw(y_train, y_test, risk_c, tau=tau)[0])
        except ValueError:
            out["uno_c"] = float("nan")
        usable = [
            i for i, h in enumerate(HORIZONS) if t_test.min() < h < min(t_test.max(), t_train_max)
        ]
        for h in HORIZONS:
            out[f"td_auc_{h}"] = float("nan")
        if usable:
            times = np.array([float(HORIZONS[i]) for i in usable])
            try:  # every usable horizon in one call (one IPCW fit); the same AUCs as one by one
                auc, _ = cumulative_dynamic_auc(y_train, y_test, cumulative_risk[:, usable], times)
                for i, value in zip(usable, auc, strict=True):
                    out[f"td_auc_{HORIZONS[i]}"] = float(value)
            except ValueError:
                for i in usable:
                    with suppress(ValueError):
                        auc, _ = cumulative_dynamic_auc(
                            y_train, y_test, cumulative_risk[:, i], np.array([float(HORIZONS[i])])
                        )
                        out[f"td_auc_{HORIZONS[i]}"] = float(auc[0])
        out["integrated_brier"] = float("nan")
        if len(usable) >= 2:
            times = np.array([float(HORIZONS[i]) for i in usable])
            survival = 1.0 - cumulative_risk[:, usable]
            with suppress(ValueError):
                out["integrated_brier"] = float(
                    integrated_brier_score(y_train, y_test, survival, times)
                )
    return out
