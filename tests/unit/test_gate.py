"""The champion/challenger gate decides from hand-made estimates; its config is validated."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from metapredict.retraining.bootstrap import Estimate, PairedComparison
from metapredict.retraining.config import GateConfig, RetrainConfig, load_retrain_config
from metapredict.retraining.gate import decide

TROPISM_GATE = GateConfig(
    metric="macro_auroc",
    min_improvement=0.01,
    require_ci_above_zero=True,
    calibration={"macro_calibration_error": 0.01, "macro_brier": 0.002},
)


def _comparison(
    auroc_diff: tuple[float, float, float],
    ece_diff: float = -0.005,
    brier_diff: float = -0.001,
) -> PairedComparison:
    """Champion/challenger estimates whose differences are the given (value, low, high)."""
    champion = {
        "macro_auroc": Estimate(0.70, 0.68, 0.72),
        "macro_calibration_error": Estimate(0.05, 0.04, 0.06),
        "macro_brier": Estimate(0.15, 0.14, 0.16),
    }
    value, low, high = auroc_diff
    difference = {
        "macro_auroc": Estimate(value, low, high),
        "macro_calibration_error": Estimate(ece_diff, ece_diff - 0.01, ece_diff + 0.01),
        "macro_brier": Estimate(brier_diff, brier_diff - 0.002, brier_diff + 0.002),
    }
    challenger = {
        k: Estimate(champion[k].value + d.value, champion[k].low, champion[k].high)
        for k, d in difference.items()
    }
    return PairedComparison(champion, challenger, difference, 200, 0.95, 500)


def test_clearly_better_and_as_well_calibrated_challenger_is_promoted() -> None:
    result = decide(_comparison((0.03, 0.012, 0.05)), TROPISM_GATE)
    assert result.promote
    assert result.reason.startswith("promoted:")
    assert {c.name for c in result.checks} == {
        "improvement",
        "significant",
        "calibration:macro_calibration_error",
        "calibration:macro_brier",
    }
    assert all(c.passed for c in result.checks)


def test_improvement_below_the_margin_keeps_the_champion() -> None:
    result = decide(_comparison((0.008, 0.002, 0.014)), TROPISM_GATE)
    assert not result.promote
    failed = [c.name for c in result.checks if not c.passed]
    assert failed == ["improvement"]
    assert result.reason.startswith("kept:") and "macro_auroc +0.0080" in result.reason


def test_interval_touching_zero_keeps_unless_the_gate_waives_it() -> None:
    uncertain = _comparison((0.02, -0.004, 0.045))
    assert not decide(uncertain, TROPISM_GATE).promote
    assert [c.name for c in decide(uncertain, TROPISM_GATE).checks if not c.passed] == [
        "significant"
    ]
    waived = TROPISM_GATE.model_copy(update={"require_ci_above_zero": False})
    assert decide(uncertain, waived).promote


def test_better_ranking_but_worse_calibration_keeps_the_champion() -> None:
    result = decide(_comparison((0.05, 0.03, 0.07), ece_diff=0.02), TROPISM_GATE)
    assert not result.promote
    assert [c.name for c in result.checks if not c.passed] == [
        "calibration:macro_calibration_error"
    ]
    assert "may worsen by at most +0.0100" in result.reason


def test_worse_calibration_within_tolerance_is_accepted() -> None:
    assert decide(_comparison((0.05, 0.03, 0.07), ece_diff=0.009), TROPISM_GATE).promote


def test_a_metric_that_could_not_be_computed_never_promotes() -> None:
    result = decide(_comparison((math.nan, math.nan, math.nan)), TROPISM_GATE)
    assert not result.promote
    assert "could not be computed" in result.reason


def test_dormancy_gate_uses_harrell_c_and_integrated_brier() -> None:
    gate = RetrainConfig().gate["dormancy"]
    champion = {"harrell_c": Estimate(0.70, 0.68, 0.72), "integrated_brier": Estimate(0.1, 0, 0)}
    better = {"harrell_c": Estimate(0.03, 0.01, 0.05), "integrated_brier": Estimate(-0.01, 0, 0)}
    comparison = PairedComparison(champion, champion, better, 200, 0.95, 900)
    assert decide(comparison, gate).promote
    worse_ibs = {**better, "integrated_brier": Estimate(0.02, 0.01, 0.03)}
    comparison = PairedComparison(champion, champion, worse_ibs, 200, 0.95, 900)
    assert not decide(comparison, gate).promote


def test_packaged_retrain_config_is_the_documented_default() -> None:
    config = load_retrain_config()
    assert config == RetrainConfig()
    assert config.validation.max_rejected_share == 0.05
    assert config.bootstrap.resamples == 200
    assert config.gate["tropism"].metric == "macro_auroc"
    assert config.gate["dormancy"].calibration == {"integrated_brier": 0.005}


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"tropism": {"metric": "macro_brier"}}, "must be one of: macro_auroc"),
        ({"dormancy": {"metric": "uno_c"}}, "must be one of: harrell_c"),
        (
            {"tropism": {"metric": "macro_auroc", "calibration": {"macro_auroc": 0.1}}},
            "not among",
        ),
    ],
)
def test_gate_on_an_unknown_or_wrong_direction_metric_is_rejected(
    gate: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        RetrainConfig.model_validate({"gate": gate})


def test_one_task_configured_keeps_the_other_tasks_default_gate() -> None:
    config = RetrainConfig.model_validate({"gate": {"tropism": {"metric": "macro_auroc"}}})
    assert config.gate["dormancy"] == RetrainConfig().gate["dormancy"]


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(ValidationError, match="max_rejected"):
        RetrainConfig.model_validate({"validation": {"max_rejected": 0.1}})
