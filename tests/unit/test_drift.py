"""Drift against a row-free training profile: quiet on a fresh draw, loud on a shifted one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from metapredict import schema
from metapredict.feature_profile import build_profile
from metapredict.retraining.config import DriftConfig
from metapredict.retraining.drift import compare, drift_figure, ks_at_edges, psi
from metapredict.simulator import SimulatorConfig, default_config, simulate_cohort

CONFIG = DriftConfig()


@pytest.fixture(scope="module")
def reference() -> dict[str, object]:
    return build_profile(simulate_cohort(4_000, seed=1, config=default_config()))


def _shifted_config() -> SimulatorConfig:
    """More neutrophils in every tumour and a cohort rich in melanoma."""
    raw = default_config().model_dump()
    raw["composition"]["base_fraction"]["neutrophils"] *= 4
    raw["clinical"]["cancer_type_weights"]["melanoma"] = 2.0
    return SimulatorConfig.model_validate(raw)


def test_profile_holds_bins_and_counts_but_no_patient_rows(reference: dict[str, object]) -> None:
    text = json.dumps(reference)
    assert "patient_id" not in text and "P0" not in text
    assert len(text) < 20_000
    numeric = reference["numeric"]
    assert isinstance(numeric, dict)
    assert set(numeric) | set(reference["categorical"]) == set(schema.feature_columns())  # type: ignore[arg-type]
    m2 = numeric["macrophages_m2"]  # almost never zero: ten deciles
    assert sum(m2["counts"]) + m2["missing"] == 4_000
    assert len(m2["counts"]) == len(m2["edges"]) + 1 == 10
    # zero in most samples (CIBERSORT's clipping): the decile edges at 0 collapse into one
    neutrophils = numeric["neutrophils"]
    assert neutrophils["edges"][0] == 0.0 and len(neutrophils["edges"]) < 9
    assert sum(neutrophils["counts"]) + neutrophils["missing"] == 4_000
    assert numeric["platelet_count"]["missing"] > 0  # extras are sometimes missing


def test_a_fresh_draw_from_the_same_simulator_flags_nothing(
    reference: dict[str, object],
) -> None:
    report = compare(reference, simulate_cohort(3_000, seed=2, config=default_config()), CONFIG)
    assert report.flagged == []
    assert max(f.psi for f in report.features) < 0.05
    assert len(report.features) == len(schema.feature_columns())


def test_a_shifted_cohort_flags_neutrophils_and_the_cancer_type_mix(
    reference: dict[str, object],
) -> None:
    shifted = simulate_cohort(3_000, seed=2, config=_shifted_config())
    report = compare(reference, shifted, CONFIG)
    assert {"neutrophils", "cancer_type"} <= set(report.flagged)
    rows = {f.feature: f for f in report.features}
    assert rows["neutrophils"].psi > 1.0 and rows["neutrophils"].test == "ks"
    assert rows["cancer_type"].test == "chi2" and rows["cancer_type"].p_value < 1e-6
    assert "stage" not in report.flagged
    table = report.table()
    assert list(table.columns[:3]) == ["feature", "kind", "psi"]
    assert table.set_index("feature").loc["neutrophils", "flagged"]


def test_a_large_cohort_does_not_flag_a_significant_but_tiny_shift(
    large_simulated_cohort: pd.DataFrame,
) -> None:
    base = large_simulated_cohort.iloc[:30_000]
    other = large_simulated_cohort.iloc[30_000:].copy()
    profile = build_profile(base)
    other["age_years"] = np.clip(other["age_years"] + 1.0, 18, 100)  # one year older
    tiny = {f.feature: f for f in compare(profile, other, CONFIG).features}["age_years"]
    assert tiny.p_value < CONFIG.ks_alpha  # detectable with 30,000 patients ...
    assert not tiny.flagged  # ... but below the minimum effect
    other["age_years"] = np.clip(other["age_years"] + 9.0, 18, 100)  # ten years older
    large = {f.feature: f for f in compare(profile, other, CONFIG).features}["age_years"]
    assert large.flagged and large.effect >= CONFIG.ks_min_statistic


def test_extras_going_missing_count_as_drift(reference: dict[str, object]) -> None:
    new = simulate_cohort(3_000, seed=2, config=default_config())
    new["platelet_count"] = np.nan
    row = {f.feature: f for f in compare(reference, new, CONFIG).features}["platelet_count"]
    assert row.new_missing_share == 1.0
    assert row.flagged and "PSI" in row.reason


def test_psi_and_ks_on_hand_made_counts() -> None:
    assert psi(np.array([10, 20, 30]), np.array([1, 2, 3])) == pytest.approx(0.0)
    expected = (0.5 - 0.25) * np.log(0.5 / 0.25) + (0.5 - 0.75) * np.log(0.5 / 0.75)
    assert psi(np.array([25, 75]), np.array([50, 50])) == pytest.approx(expected)
    statistic, p_value = ks_at_edges(np.array([50, 50]), np.array([50, 50]))
    assert statistic == 0.0 and p_value == pytest.approx(1.0)
    statistic, p_value = ks_at_edges(np.array([500, 500]), np.array([800, 200]))
    assert statistic == pytest.approx(0.3) and p_value < 1e-10


def test_unknown_profile_version_is_refused(reference: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="profile version"):
        compare({**reference, "profile_version": 99}, pd.DataFrame(), CONFIG)


def test_drift_figure_is_an_object_api_figure(reference: dict[str, object]) -> None:
    report = compare(reference, simulate_cohort(500, seed=3, config=_shifted_config()), CONFIG)
    fig = drift_figure(report, CONFIG)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert f"{len(report.flagged)} of {len(report.features)} features flagged" in (
        fig.get_suptitle()
    )
