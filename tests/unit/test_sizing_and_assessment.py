"""The size rule behind "auto" hyperparameters, and how sure a run's numbers are."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sksurv.util import Surv

from metapredict import assessment, sizing
from metapredict.training_config import load_training_config


def test_the_rule_reproduces_the_tuned_values_on_the_default_cohort() -> None:
    # 20,000 simulated patients: ~6,300 metastatic training rows, ~3,100 training relapses
    assert sizing.tropism_params(sizing.Sizes(rows=6300, events=6300, patients=7900)) == {
        "min_child_samples": 42,
        "n_estimators": 315,
        "num_leaves": 3,
    }
    big = sizing.dormancy_params(sizing.Sizes(rows=12800, events=3100, patients=16000))
    assert big == {"min_child_samples": 300, "n_estimators": 300, "num_leaves": 7}


def test_the_rule_shrinks_with_a_small_cohort() -> None:
    small = sizing.dormancy_params(sizing.Sizes(rows=99, events=27, patients=124))
    assert small == {"min_child_samples": 5, "n_estimators": 50, "num_leaves": 3}
    assert sizing.tropism_params(sizing.Sizes(rows=60, events=60, patients=75)) == {
        "min_child_samples": 5,
        "n_estimators": 50,
        "num_leaves": 3,
    }
    assert sizing.cv_repeats(1999) == 5 and sizing.cv_repeats(2000) == 1


def test_values_written_in_a_config_override_the_rule() -> None:
    sizes = sizing.Sizes(rows=99, events=27, patients=124)
    values, chosen = sizing.resolve(
        "dormancy", {"n_estimators": 120, "num_leaves": "auto", "min_child_samples": "auto"}, sizes
    )
    assert values == {"n_estimators": 120, "num_leaves": 3, "min_child_samples": 5}
    assert chosen == {"num_leaves": 3, "min_child_samples": 5}  # what is logged as sizing.*


def test_the_packaged_configs_leave_the_sized_values_to_the_rule() -> None:
    for task in ("tropism", "dormancy"):
        config = load_training_config(task)  # type: ignore[arg-type]
        assert config.model.n_estimators == "auto"
        assert config.model.min_child_samples == "auto"
        assert config.cv.repeats == "auto"


def test_the_corrected_cv_interval_is_wider_than_the_naive_one() -> None:
    folds = [0.62, 0.70, 0.66, 0.58, 0.71]
    mean, low, high = assessment.corrected_interval(folds, test_fraction=0.25)
    assert mean == pytest.approx(np.mean(folds))
    naive = 2.776 * np.std(folds, ddof=1) / math.sqrt(5)
    assert high - mean > naive and mean - low == pytest.approx(high - mean)
    assert math.isnan(assessment.corrected_interval([0.7], 0.25)[1])  # one fold: no interval


def test_the_guard_refuses_a_constant_a_chance_and_a_clearly_worse_model() -> None:
    varied = np.linspace(0.1, 0.9, 50)[:, None]
    good = [0.72, 0.75, 0.70, 0.74, 0.73]
    assert assessment.degenerate_reason("dormancy", varied, good, good, 0.25) is None
    constant = np.full((50, 4), 0.478)
    assert "constant" in str(assessment.degenerate_reason("dormancy", constant, good, good, 0.25))
    chance = [0.48, 0.55, 0.52, 0.45, 0.51]
    reason = assessment.degenerate_reason("dormancy", varied, chance, chance, 0.25)
    assert reason is not None and "cannot be told from chance" in reason
    baseline = [b + 0.08 for b in good]
    worse = assessment.degenerate_reason("tropism", varied, good, baseline, 0.25)
    assert worse is not None and "clearly worse than its baseline" in worse
    slightly = [b + 0.003 for b in good]  # within the margin: not "clearly" worse
    assert assessment.degenerate_reason("tropism", varied, good, slightly, 0.25) is None


def test_bootstrap_intervals_hold_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    p = np.clip(0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.2, 300), 0, 1)

    def score(yy: np.ndarray, pp: np.ndarray) -> dict[str, float]:
        return {"mean_p": float(pp.mean()), "rate": float(yy.mean())}

    ci = assessment.bootstrap_intervals(score, y, p, resamples=200, seed=1)
    assert ci["mean_p"][0] < p.mean() < ci["mean_p"][1]
    assert ci["rate"][0] < y.mean() < ci["rate"][1]


def test_a_horizon_nobody_reached_gets_a_reason_not_a_bare_nan() -> None:
    y_train = Surv.from_arrays(np.array([True, False] * 50), np.linspace(1, 90, 100))
    y_test = Surv.from_arrays(np.array([True, False] * 20), np.linspace(2, 80, 40))
    values = {"harrell_c": 0.6, "td_auc_36": 0.6, "td_auc_60": 0.6, "td_auc_120": math.nan}
    reasons = assessment.nan_reasons("dormancy", y_train, y_test, values)
    assert list(reasons) == ["td_auc_120"]
    assert reasons["td_auc_120"].startswith("no patient followed beyond 120 months")


def test_an_integrated_brier_worse_than_the_kaplan_meier_curve_is_flagged() -> None:
    rng = np.random.default_rng(2)
    y_train = Surv.from_arrays(rng.random(300) < 0.5, rng.exponential(60, 300))
    y_test = Surv.from_arrays(rng.random(100) < 0.5, rng.exponential(60, 100))
    reference = assessment.km_integrated_brier(y_train, y_test)
    flags = assessment.trivial_flags(
        "dormancy", y_train, y_test, {"integrated_brier": reference + 0.1, "harrell_c": 0.45}, ()
    )
    assert any(f.startswith("integrated_brier") for f in flags)
    assert any(f.startswith("harrell_c 0.450 is below chance") for f in flags)
    fine = assessment.trivial_flags(
        "dormancy", y_train, y_test, {"integrated_brier": reference - 0.01}, ()
    )
    assert fine == []


def test_cv_means_worse_than_trivial_are_flagged() -> None:
    cv = {"harrell_c": 0.48, "integrated_brier": 0.52, "integrated_brier_std": 0.39}
    flags = assessment.cv_flags(cv, km_reference=[0.20, 0.22])
    assert flags == [
        "CV harrell_c 0.480 is below chance (0.5)",
        "CV integrated_brier 0.520 ± 0.390 is worse than the Kaplan-Meier curve given to "
        "everyone (0.210)",
    ]
    assert assessment.cv_flags({"harrell_c": 0.7, "integrated_brier": 0.15}, [0.2]) == []
