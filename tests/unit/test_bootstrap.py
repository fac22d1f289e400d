"""The paired bootstrap: gate metrics equal the reference metrics; intervals behave."""

from __future__ import annotations

import numpy as np
import pytest
from sksurv.util import Surv

from metapredict.evaluation import score
from metapredict.retraining.bootstrap import GATE_METRICS, gate_metrics, paired_bootstrap


def _tropism(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random((n, 8)) < 0.3
    p = np.clip(0.25 * y + 0.75 * rng.random((n, 8)), 0, 1)
    p[:20, 0] = p[20, 0]  # tied scores
    return y, p


def _dormancy(seed: int = 0, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    risk = rng.random(n)
    time = np.round(rng.exponential(80, n) * (1.5 - risk))  # whole months: tied times
    event = rng.random(n) < 0.5
    cumulative = np.column_stack([risk * 0.3, risk * 0.5, risk * 0.8, risk * 0.2])
    cumulative[:10, 2] = cumulative[10, 2]  # tied risks
    train = Surv.from_arrays(rng.random(3000) < 0.5, rng.exponential(80, 3000))
    return train, Surv.from_arrays(event, time), cumulative


def test_tropism_gate_metrics_equal_the_reference_metrics() -> None:
    y, p = _tropism()
    reference = score("tropism", None, y, p, tuple(f"site{k}" for k in range(y.shape[1])))
    fast = gate_metrics("tropism", None, y, p)
    assert set(fast) == set(GATE_METRICS["tropism"])
    for name, value in fast.items():
        assert value == pytest.approx(reference[name], abs=1e-12), name


def test_dormancy_gate_metrics_equal_the_reference_metrics() -> None:
    train, test, cumulative = _dormancy()
    reference = score("dormancy", train, test, cumulative)
    fast = gate_metrics("dormancy", train, test, cumulative)
    assert set(fast) == set(GATE_METRICS["dormancy"])
    for name, value in fast.items():
        assert value == pytest.approx(reference[name], abs=1e-12), name


def test_same_seed_same_intervals_and_identical_models_differ_by_exactly_zero() -> None:
    y, p = _tropism()
    first = paired_bootstrap("tropism", None, y, p, p, resamples=50, confidence=0.9, seed=3)
    again = paired_bootstrap("tropism", None, y, p, p, resamples=50, confidence=0.9, seed=3)
    assert first == again
    for estimate in first.difference.values():
        assert (estimate.value, estimate.low, estimate.high) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("task", ["tropism", "dormancy"])
def test_a_better_model_has_a_difference_interval_above_zero(task: str) -> None:
    if task == "tropism":
        y, good = _tropism(n=600)
        noise = np.random.default_rng(9).random(good.shape)
        bad = np.clip(0.3 * good + 0.7 * noise, 0, 1)
        y_train, y_test, metric = None, y, "macro_auroc"
    else:
        y_train, y_test, good = _dormancy(n=800)
        bad = good[np.random.default_rng(9).permutation(len(good))]
        metric = "harrell_c"
    result = paired_bootstrap(
        task, y_train, y_test, bad, good, resamples=100, confidence=0.95, seed=1
    )
    diff = result.difference[metric]
    assert diff.low > 0
    assert diff.low <= diff.value <= diff.high
    assert result.champion[metric].low <= result.champion[metric].value
    assert result.champion[metric].value <= result.champion[metric].high
    assert result.resamples == 100 and result.n == len(good)


def test_mismatched_predictions_are_refused() -> None:
    y, p = _tropism()
    with pytest.raises(ValueError, match="differ in shape"):
        paired_bootstrap("tropism", None, y, p, p[:-1], resamples=20, confidence=0.9, seed=0)
