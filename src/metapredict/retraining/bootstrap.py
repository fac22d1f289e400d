"""Paired bootstrap of the gate metrics on one held-out split (pure numpy; seeded, bounded).

Champion and challenger are scored on the *same* resamples, so the interval of their
difference reflects the models, not the luck of the draw. Only the metrics a gate can use are
resampled, each computed with a vectorised form that equals the project's reference
implementation on the full split (:mod:`metapredict.metrics`; checked in the tests):

* tropism: ``macro_auroc`` (Mann-Whitney ranks, ties count one half, as ``roc_auc_score``),
  ``macro_brier``, ``macro_calibration_error``;
* dormancy: ``harrell_c`` (scikit-survival's comparable pairs and tie rules, on the
  120-month cumulative risk) and ``integrated_brier`` (IPCW weights from the training outcomes,
  over the horizons the held-out follow-up covers). A resample is a vector of multiplicities,
  so both are weighted sums over fixed pairs or patients: 200 resamples cost one matrix product.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

from metapredict import metrics
from metapredict.training_config import Task

FloatArray = NDArray[np.float64]

#: The metrics a gate may use, and whether higher is better.
GATE_METRICS: Mapping[str, Mapping[str, bool]] = {
    "tropism": {"macro_auroc": True, "macro_brier": False, "macro_calibration_error": False},
    "dormancy": {"harrell_c": True, "integrated_brier": False},
}
#: Risk pairs closer than this count as tied (scikit-survival's default).
TIED_TOLERANCE = 1e-8
_CHUNK = 256


@dataclass(frozen=True)
class Estimate:
    """A point estimate on the whole split with a percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class PairedComparison:
    champion: dict[str, Estimate]
    challenger: dict[str, Estimate]
    #: challenger minus champion, per metric.
    difference: dict[str, Estimate]
    resamples: int
    confidence: float
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "resamples": self.resamples,
            "confidence": self.confidence,
            "n": self.n,
            "champion": {k: v.as_dict() for k, v in self.champion.items()},
            "challenger": {k: v.as_dict() for k, v in self.challenger.items()},
            "difference": {k: v.as_dict() for k, v in self.difference.items()},
        }


def resample_indices(n: int, resamples: int, seed: int) -> NDArray[np.int64]:
    """(resamples, n) row indices drawn with replacement."""
    if n < 2:
        raise ValueError(f"the bootstrap needs at least 2 held-out rows, got {n}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


# -- tropism ---------------------------------------------------------------------------------


def _tropism_scores(y: NDArray[np.bool_], p: FloatArray) -> dict[str, float]:
    n_pos = y.sum(axis=0).astype(float)
    n_neg = y.shape[0] - n_pos
    ranks = rankdata(p, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * y).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    brier = ((p - y) ** 2).mean(axis=0)
    ece = [metrics.calibration_error(y[:, j], p[:, j]) for j in range(y.shape[1])]
    return {
        "macro_auroc": float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan"),
        "macro_brier": float(brier.mean()),
        "macro_calibration_error": float(np.mean(ece)),
    }


def _tropism(
    y_test: NDArray[np.bool_], prediction: FloatArray, draws: NDArray[np.int64]
) -> tuple[dict[str, float], dict[str, FloatArray]]:
    point = _tropism_scores(y_test, prediction)
    rows = [_tropism_scores(y_test[idx], prediction[idx]) for idx in draws]
    return point, {k: np.array([r[k] for r in rows]) for k in point}


# -- dormancy --------------------------------------------------------------------------------


def _harrell_weighted(
    time: FloatArray, event: NDArray[np.bool_], risk: FloatArray, weights: FloatArray
) -> FloatArray:
    """Harrell's C for each column of ``weights`` (n, k): multiplicities of each patient.

    A pair (i, j) is comparable when i relapsed and j was followed longer, or censored at the
    same time; it is concordant when i's risk is higher, half when tied (scikit-survival).
    """
    numerator = np.zeros(weights.shape[1])
    denominator = np.zeros(weights.shape[1])
    cases = np.flatnonzero(event)
    for start in range(0, cases.size, _CHUNK):
        i = cases[start : start + _CHUNK]
        t_i, r_i = time[i, None], risk[i, None]
        comparable = (time[None, :] > t_i) | ((time[None, :] == t_i) & ~event[None, :])
        tied = np.abs(risk[None, :] - r_i) <= TIED_TOLERANCE
        concordant = np.where(tied, 0.5, (risk[None, :] < r_i).astype(float)) * comparable
        w_i = weights[i]
        numerator += (w_i * (concordant @ weights)).sum(axis=0)
        denominator += (w_i * (comparable.astype(float) @ weights)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: FloatArray = numerator / denominator
    return result


def _brier_contributions(
    y_train: Any, y_test: Any, cumulative_risk: FloatArray
) -> tuple[FloatArray, FloatArray] | None:
    """Per patient and usable horizon, the IPCW Brier term; None if < 2 horizons usable."""
    from sksurv.nonparametric import CensoringDistributionEstimator

    from metapredict.models.dormancy import survival_arrays

    t_train, _ = survival_arrays(y_train)
    t_test, e_test = survival_arrays(y_test)
    t_max = min(float(t_test.max()), float(t_train.max()))
    usable = [i for i, h in enumerate(metrics.HORIZONS) if t_test.min() < h < t_max]
    if len(usable) < 2:
        return None
    times = np.array([float(metrics.HORIZONS[i]) for i in usable])
    cens = CensoringDistributionEstimator().fit(y_train)
    g_t = cens.predict_proba(times)
    g_t[g_t == 0] = np.inf
    # G(t_i) only matters for cases (t_i <= a horizon < the largest training time); computing
    # it for those only keeps the score defined when a test time exceeds the training times.
    g_y = np.ones_like(t_test)
    needed = t_test <= times[-1]
    g_y[needed] = cens.predict_proba(t_test[needed])
    g_y[g_y == 0] = np.inf
    survival = 1.0 - cumulative_risk[:, usable]
    case = (t_test[:, None] <= times[None, :]) & e_test[:, None]
    control = t_test[:, None] > times[None, :]
    terms = survival**2 * case / g_y[:, None] + (1.0 - survival) ** 2 * control / g_t[None, :]
    return terms, times


def _dormancy(
    y_train: Any, y_test: Any, prediction: FloatArray, draws: NDArray[np.int64]
) -> tuple[dict[str, float], dict[str, FloatArray]]:
    from metapredict.models.dormancy import survival_arrays

    n = prediction.shape[0]
    counts = np.zeros((n, draws.shape[0]))
    for b, idx in enumerate(draws):
        counts[:, b] = np.bincount(idx, minlength=n)
    weights = np.column_stack([np.ones(n), counts])  # column 0: the whole split
    time, event = survival_arrays(y_test)
    risk_c = prediction[:, metrics.HORIZONS.index(metrics.CONCORDANCE_HORIZON)]
    harrell = (
        _harrell_weighted(time, event, risk_c, weights)
        if event.any()
        else np.full(weights.shape[1], np.nan)
    )
    ibs = np.full(weights.shape[1], np.nan)
    brier = _brier_contributions(y_train, y_test, prediction[:, : len(metrics.HORIZONS)])
    if brier is not None:
        terms, times = brier
        per_time = (weights.T @ terms) / weights.sum(axis=0)[:, None]
        ibs = np.trapezoid(per_time, times, axis=1) / (times[-1] - times[0])
    point = {"harrell_c": float(harrell[0]), "integrated_brier": float(ibs[0])}
    return point, {"harrell_c": harrell[1:], "integrated_brier": ibs[1:]}


# -- both ------------------------------------------------------------------------------------


def metric_draws(
    task: Task, y_train: Any, y_test: Any, prediction: FloatArray, draws: NDArray[np.int64]
) -> tuple[dict[str, float], dict[str, FloatArray]]:
    """The gate metrics on the whole split, and on each resample (rows of ``draws``)."""
    if task == "tropism":
        return _tropism(np.asarray(y_test, dtype=bool), prediction, draws)
    return _dormancy(y_train, y_test, prediction, draws)


def gate_metrics(task: Task, y_train: Any, y_test: Any, prediction: FloatArray) -> dict[str, float]:
    """The gate metrics on the whole split (no resampling)."""
    empty = np.empty((0, prediction.shape[0]), dtype=np.int64)
    return metric_draws(task, y_train, y_test, prediction, empty)[0]


def _interval(point: float, draws: FloatArray, confidence: float) -> Estimate:
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return Estimate(point, float("nan"), float("nan"))
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return Estimate(point, float(low), float(high))


def paired_bootstrap(
    task: Task,
    y_train: Any,
    y_test: Any,
    champion: FloatArray,
    challenger: FloatArray,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> PairedComparison:
    """Both models' gate metrics with intervals, and the interval of their difference."""
    if champion.shape != challenger.shape:
        raise ValueError(
            f"champion and challenger predictions differ in shape: {champion.shape} vs "
            f"{challenger.shape}"
        )
    draws = resample_indices(champion.shape[0], resamples, seed)
    a_point, a_draws = metric_draws(task, y_train, y_test, champion, draws)
    b_point, b_draws = metric_draws(task, y_train, y_test, challenger, draws)
    return PairedComparison(
        champion={k: _interval(a_point[k], a_draws[k], confidence) for k in a_point},
        challenger={k: _interval(b_point[k], b_draws[k], confidence) for k in b_point},
        difference={
            k: _interval(b_point[k] - a_point[k], b_draws[k] - a_draws[k], confidence)
            for k in a_point
        },
        resamples=resamples,
        confidence=confidence,
        n=int(champion.shape[0]),
    )
