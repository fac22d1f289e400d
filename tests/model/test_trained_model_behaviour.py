"""Behavioural tests on trained models: planted directions, invariance, minimum functionality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metapredict import registry, schema
from metapredict.predictor import Predictor
from metapredict.simulator import default_config, simulate_cohort
from tests.support import TrainedStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def probe_patients() -> pd.DataFrame:
    """Fresh simulated patients (not the training cohort), features only."""
    cohort = simulate_cohort(400, 2024, default_config())
    return cohort[list(schema.feature_columns())].reset_index(drop=True)


def _load(store: TrainedStore, task: str) -> Predictor:
    return registry.load(task, "champion", store.settings)


def _with_fraction(frame: pd.DataFrame, changes: dict[str, float]) -> pd.DataFrame:
    """Set some LM22 fractions, rescale the others so each row still sums to 1."""
    out = frame.copy()
    cells = list(schema.lm22_columns())
    fixed = list(changes)
    rest = [c for c in cells if c not in fixed]
    budget = 1.0 - sum(changes.values())
    scale = budget / out[rest].sum(axis=1)
    out[rest] = out[rest].mul(scale, axis=0)
    for cell, value in changes.items():
        out[cell] = value
    return out


def test_more_neutrophils_raise_lung_probability(
    trained_store: TrainedStore, probe_patients: pd.DataFrame
) -> None:
    predictor = _load(trained_store, "tropism")
    q10, q90 = probe_patients["neutrophils"].quantile([0.1, 0.9])
    low = predictor.predict(_with_fraction(probe_patients, {"neutrophils": q10}))["lung"]
    high = predictor.predict(_with_fraction(probe_patients, {"neutrophils": q90}))["lung"]
    assert high.mean() > low.mean() + 0.02
    assert (high >= low - 1e-9).mean() > 0.8


def test_more_m2_macrophages_and_fewer_active_nk_raise_liver_probability(
    trained_store: TrainedStore, probe_patients: pd.DataFrame
) -> None:
    predictor = _load(trained_store, "tropism")
    crc = probe_patients[probe_patients["cancer_type"] == "colorectal"]
    m2 = crc["macrophages_m2"].quantile([0.1, 0.9]).to_numpy()
    nk = crc["nk_cells_activated"].quantile([0.1, 0.9]).to_numpy()
    favourable = predictor.predict(
        _with_fraction(crc, {"macrophages_m2": m2[0], "nk_cells_activated": nk[1]})
    )["liver"]
    hostile = predictor.predict(
        _with_fraction(crc, {"macrophages_m2": m2[1], "nk_cells_activated": nk[0]})
    )["liver"]
    assert hostile.mean() > favourable.mean()


def test_high_cd8_and_active_nk_lower_late_relapse_risk(
    trained_store: TrainedStore, probe_patients: pd.DataFrame
) -> None:
    predictor = _load(trained_store, "dormancy")
    cd8 = probe_patients["t_cells_cd8"].quantile([0.1, 0.9]).to_numpy()
    nk = probe_patients["nk_cells_activated"].quantile([0.1, 0.9]).to_numpy()
    low = predictor.predict(
        _with_fraction(probe_patients, {"t_cells_cd8": cd8[0], "nk_cells_activated": nk[0]})
    )
    high = predictor.predict(
        _with_fraction(probe_patients, {"t_cells_cd8": cd8[1], "nk_cells_activated": nk[1]})
    )
    assert high["late_relapse"].mean() < low["late_relapse"].mean()
    assert (high["late_relapse"] <= low["late_relapse"] + 1e-9).mean() > 0.7
    assert high["risk_36"].mean() < low["risk_36"].mean()


@pytest.mark.parametrize("task", ["tropism", "dormancy"])
def test_row_order_does_not_change_a_rows_prediction(
    trained_store: TrainedStore, probe_patients: pd.DataFrame, task: str
) -> None:
    predictor = _load(trained_store, task)
    forward = predictor.predict(probe_patients)
    shuffled = probe_patients.sample(frac=1.0, random_state=0)
    backward = predictor.predict(shuffled).loc[forward.index]
    pd.testing.assert_frame_equal(forward, backward)
    single = predictor.predict(probe_patients.iloc[[17]])
    np.testing.assert_array_equal(single.to_numpy()[0], forward.iloc[17].to_numpy())


@pytest.mark.parametrize("task", ["tropism", "dormancy"])
def test_missing_extras_are_accepted_and_change_little(
    trained_store: TrainedStore, probe_patients: pd.DataFrame, task: str
) -> None:
    predictor = _load(trained_store, task)
    full = predictor.predict(probe_patients)
    without = predictor.predict(probe_patients.drop(columns=list(schema.extra_columns())))
    assert np.isfinite(without.to_numpy()).all()
    assert float(np.abs(full.to_numpy() - without.to_numpy()).mean()) < 0.1


def test_dormancy_outputs_are_ordered_probabilities(
    trained_store: TrainedStore, probe_patients: pd.DataFrame
) -> None:
    out = _load(trained_store, "dormancy").predict(probe_patients)
    assert ((out >= 0) & (out <= 1)).all().all()
    assert (out["risk_36"] <= out["risk_60"] + 1e-12).all()
    assert (out["risk_60"] <= out["risk_120"] + 1e-12).all()


@pytest.mark.parametrize("task", ["tropism", "dormancy"])
def test_contributions_add_up_to_the_log_odds(
    trained_store: TrainedStore, probe_patients: pd.DataFrame, task: str
) -> None:
    predictor = _load(trained_store, task)
    contributions = predictor.contributions(probe_patients.head(20))
    if task == "tropism":
        proba = predictor.predict(probe_patients.head(20))
        for site, frame in contributions.items():
            log_odds = np.log(proba[site] / (1 - proba[site]))
            np.testing.assert_allclose(frame.sum(axis=1), log_odds, atol=1e-8)
    else:
        (frame,) = contributions.values()
        assert list(frame.columns) == [*schema.feature_columns(), "bias"]
        assert np.isfinite(frame.to_numpy()).all()


def test_tropism_beats_chance_and_tracks_the_oracle(trained_store: TrainedStore) -> None:
    """Minimum functionality on the tiny training run's held-out split."""
    outcome = trained_store.outcomes["tropism"]
    lgbm = outcome.results["lightgbm"].test
    assert lgbm["macro_auroc"] > 0.62
    assert outcome.results["lightgbm"].ratio_to_oracle["macro_auroc"] > 0.9
    dormancy = trained_store.outcomes["dormancy"].results["lightgbm"]
    assert dormancy.test["harrell_c"] > 0.7
    assert dormancy.ratio_to_oracle["harrell_c"] > 0.95


@pytest.mark.parametrize("task", ["tropism", "dormancy"])
def test_a_model_trained_on_zero_rich_cohorts_does_not_warn_on_them(
    trained_store: TrainedStore, probe_patients: pd.DataFrame, task: str
) -> None:
    """CIBERSORT output is zero-rich; a zero is never 'outside the range seen in training'."""
    lm22 = list(schema.lm22_columns())
    assert (probe_patients[lm22] == 0).to_numpy().mean() > 0.3  # the probe is zero-rich
    predictor = _load(trained_store, task)
    records = probe_patients.to_dict("records")
    flagged = predictor.out_of_range(records)
    on_zero = [
        name for record, names in zip(records, flagged, strict=True) for name in names
        if name in lm22 and record[name] == 0.0
    ]  # fmt: skip
    assert on_zero == []
    warned = sum(any(name in lm22 for name in names) for names in flagged)
    assert warned / len(records) < 0.05  # fresh patients of the same kind rarely warn at all
