"""Metric functions on tiny hand-made data whose answers can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metapredict import metrics

Y = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
PERFECT = np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])


def test_auroc_of_a_perfect_score_is_1_and_of_a_reversed_one_0() -> None:
    assert metrics.auroc(Y, PERFECT) == 1.0
    assert metrics.auroc(Y, -PERFECT) == 0.0
    assert metrics.auroc(Y, np.full(Y.size, 0.5)) == 0.5


def test_auroc_counts_pairs() -> None:
    # positives 0.4, 0.8; negatives 0.1, 0.5: concordant pairs 3 of 4.
    assert metrics.auroc([0, 1, 0, 1], [0.1, 0.4, 0.5, 0.8]) == pytest.approx(0.75)


@pytest.mark.parametrize("y", [np.zeros(4, dtype=bool), np.ones(4, dtype=bool)], ids=["neg", "pos"])
def test_auroc_and_auprc_are_nan_with_one_class(y: np.ndarray) -> None:
    assert math.isnan(metrics.auroc(y, [0.1, 0.2, 0.3, 0.4]))
    assert math.isnan(metrics.auprc(y, [0.1, 0.2, 0.3, 0.4]))


def test_auprc_of_a_perfect_score_is_1() -> None:
    assert metrics.auprc(Y, PERFECT) == pytest.approx(1.0)


def test_brier_by_hand() -> None:
    # squared errors 0.01, 0.04, 0.25, 0.09 -> mean 0.0975
    assert metrics.brier([0, 1, 1, 0], [0.1, 0.8, 0.5, 0.3]) == pytest.approx(0.0975)


def test_calibration_error_is_0_for_perfectly_calibrated_bins() -> None:
    proba = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert metrics.calibration_error(y, proba, bins=2) == pytest.approx(0.0)


def test_calibration_error_by_hand() -> None:
    # bins of 2: {0.1, 0.1} with no events -> gap 0.1; {0.9, 0.9} with one event -> gap 0.4.
    proba = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 0, 1, 0])
    assert metrics.calibration_error(y, proba, bins=2) == pytest.approx(0.25)
    assert metrics.calibration_error(np.zeros(4), np.full(4, 0.9)) == pytest.approx(0.9)


def test_calibration_error_is_nan_without_data() -> None:
    assert math.isnan(metrics.calibration_error([], []))


def test_harrell_c_on_a_hand_computed_example() -> None:
    # Comparable pairs (earlier time had the event): (0,1) (0,2) (0,3) (1,2) (1,3).
    time = [1.0, 2.0, 3.0, 4.0]
    event = [True, True, False, True]
    # risk 0.9 > 0.5, 0.7, 0.1 concordant; (1,2): 0.5 < 0.7 discordant; (1,3) concordant.
    assert metrics.harrell_c(time, event, [0.9, 0.5, 0.7, 0.1]) == pytest.approx(4 / 5)
    # A tie in risk counts one half: (1,2) tied.
    assert metrics.harrell_c(time, event, [0.9, 0.5, 0.5, 0.1]) == pytest.approx(4.5 / 5)
    # Higher risk relapsing later is discordant.
    assert metrics.harrell_c(time, event, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.0)


def test_harrell_c_is_nan_without_events() -> None:
    assert math.isnan(metrics.harrell_c([1.0, 2.0], [False, False], [0.2, 0.1]))


def test_tropism_metrics_names_every_site_and_macro_average() -> None:
    y = np.column_stack([Y, Y, np.zeros(Y.size, dtype=bool)])
    proba = np.column_stack([PERFECT, 1 - PERFECT, PERFECT])
    out = metrics.tropism_metrics(y, proba, ["bone", "lung", "brain"])
    assert out["auroc_bone"] == 1.0
    assert out["auroc_lung"] == 0.0
    assert math.isnan(out["auroc_brain"])  # one class: ignored by the macro average
    assert out["macro_auroc"] == pytest.approx(0.5)
    for name in ("auroc", "auprc", "brier", "calibration_error"):
        assert {f"{name}_{s}" for s in ("bone", "lung", "brain")} <= out.keys()
        assert f"macro_{name}" in out


def _survival_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exponential relapse times whose hazard rises with ``x``, uniform censoring to 150 m."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    rate = np.exp(-4.0 + 0.8 * x)  # per month
    relapse = rng.exponential(1.0 / rate)
    censor = rng.uniform(20.0, 150.0, n)
    time = np.minimum(relapse, censor)
    risk = 1.0 - np.exp(-np.outer(rate, metrics.HORIZONS))  # true P(relapse by horizon)
    return time, relapse <= censor, risk


def test_survival_metrics_returns_the_expected_keys() -> None:
    train_time, train_event, _ = _survival_data(400, seed=1)
    test_time, test_event, risk = _survival_data(300, seed=2)
    out = metrics.survival_metrics(train_time, train_event, test_time, test_event, risk)
    assert set(out) == {
        "harrell_c",
        "uno_c",
        *(f"td_auc_{h}" for h in metrics.HORIZONS),
        "integrated_brier",
    }
    for name, value in out.items():
        assert 0.0 <= value <= 1.0, name
    # The true risk orders patients well.
    assert out["harrell_c"] > 0.6
    assert out["uno_c"] > 0.6


def test_time_dependent_auc_of_all_horizons_at_once_equals_one_by_one() -> None:
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    rng = np.random.default_rng(4)
    t_train, e_train = rng.exponential(80, 400), rng.random(400) < 0.4
    t_test, e_test = rng.exponential(80, 150), rng.random(150) < 0.4
    risk = np.sort(rng.random((150, 3)), axis=1)
    out = metrics.survival_metrics(t_train, e_train, t_test, e_test, risk)
    y_train = Surv.from_arrays(e_train, t_train)
    y_test = Surv.from_arrays(e_test, t_test)
    for i, h in enumerate(metrics.HORIZONS):
        auc, _ = cumulative_dynamic_auc(y_train, y_test, risk[:, i], np.array([float(h)]))
        assert out[f"td_auc_{h}"] == pytest.approx(float(auc[0]), abs=1e-12)
