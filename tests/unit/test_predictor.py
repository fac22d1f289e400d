"""Predictor: outputs named per task, request path = frame path, risk groups, range flags."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sksurv.util import Surv

from metapredict import features, schema
from metapredict.feature_encoder import FeatureEncoder
from metapredict.models.dormancy import OUTPUT_NAMES, DiscreteTimeHazard
from metapredict.models.hazard_model import HazardModel
from metapredict.models.intervals import BootstrapEnsemble
from metapredict.models.tropism import TropismClassifier
from metapredict.models.tropism_model import TropismModel
from metapredict.predictor import Predictor
from tests.support import types_of

CAT = features.categorical_indices()
MONTHS, EVENT = schema.survival_columns()


@pytest.fixture(scope="module")
def training_rows(simulated_cohort: pd.DataFrame) -> pd.DataFrame:
    return simulated_cohort.head(600)


@pytest.fixture(scope="module")
def probe(simulated_cohort: pd.DataFrame) -> pd.DataFrame:
    """Unseen patients, features only, with a non-default index."""
    rows = simulated_cohort[list(schema.feature_columns())].iloc[-12:]
    return rows.set_axis([f"p{i}" for i in range(12)])


@pytest.fixture(scope="module")
def tropism(training_rows: pd.DataFrame) -> Predictor:
    relapsed = training_rows[training_rows[EVENT]]
    model = TropismClassifier(
        n_estimators=10, calibration="sigmoid", calibration_folds=2, categorical_features=CAT
    )
    types = types_of(relapsed)
    model.fit(
        features.encode_frame(relapsed, types), relapsed[list(schema.site_columns())].to_numpy()
    )
    ranges = FeatureEncoder().fit(relapsed).feature_ranges_
    return Predictor(
        task="tropism",
        model=model.model_,
        feature_ranges=ranges,
        categories={"cancer_type": types, "stage": schema.STAGES},
        sites=schema.sites(),
    )


@pytest.fixture(scope="module")
def dormancy(training_rows: pd.DataFrame) -> Predictor:
    y = Surv.from_arrays(
        event=training_rows[EVENT].to_numpy(bool), time=training_rows[MONTHS].to_numpy(float)
    )
    model = DiscreteTimeHazard(n_estimators=10, min_child_samples=20, categorical_features=CAT)
    types = types_of(training_rows)
    model.fit(features.encode_frame(training_rows, types), y)
    ranges = FeatureEncoder().fit(training_rows).feature_ranges_
    return Predictor(
        task="dormancy",
        model=model.model_,
        feature_ranges=ranges,
        risk_cutoffs=(0.2, 0.5),
        categories={"cancer_type": types, "stage": schema.STAGES[:3]},
    )


def test_tropism_predictions_are_named_by_site(tropism: Predictor, probe: pd.DataFrame) -> None:
    out = tropism.predict(probe)
    assert list(out.columns) == list(schema.sites())
    assert list(out.index) == list(probe.index)
    expected = tropism.model.predict_proba(features.encode_frame(probe, tropism.cancer_types))
    np.testing.assert_allclose(out.to_numpy(), expected, rtol=1e-12)


def test_dormancy_predictions_are_named_by_output(dormancy: Predictor, probe: pd.DataFrame) -> None:
    out = dormancy.predict(probe)
    assert list(out.columns) == list(OUTPUT_NAMES)
    assert list(out.columns) == ["risk_36", "risk_60", "risk_120", "late_relapse"]
    assert list(out.index) == list(probe.index)
    assert isinstance(dormancy.model, HazardModel)
    expected = dormancy.model.predict_outputs(features.encode_frame(probe, dormancy.cancer_types))
    np.testing.assert_array_equal(out.to_numpy(), expected)


@pytest.mark.parametrize("task", ["tropism", "dormancy"])
def test_request_path_matches_the_frame_path_exactly(
    task: str, tropism: Predictor, dormancy: Predictor, probe: pd.DataFrame
) -> None:
    predictor = tropism if task == "tropism" else dormancy
    records = probe.to_dict("records")
    from_records = predictor.predict_matrix(predictor.encode_records(records))
    np.testing.assert_array_equal(from_records, predictor.predict(probe).to_numpy())


@pytest.mark.parametrize("task", ["tropism", "dormancy"])
def test_contributions_are_keyed_by_explained_output(
    task: str, tropism: Predictor, dormancy: Predictor, probe: pd.DataFrame
) -> None:
    predictor = tropism if task == "tropism" else dormancy
    contributions = predictor.contributions(probe)
    expected_keys = list(schema.sites()) if task == "tropism" else ["relapse_hazard_60"]
    assert list(contributions) == expected_keys
    for frame in contributions.values():
        assert list(frame.columns) == [*schema.feature_columns(), "bias"]
        assert list(frame.index) == list(probe.index)


def test_risk_groups_follow_the_cutoffs(dormancy: Predictor) -> None:
    risk = np.array([0.0, 0.19, 0.2, 0.35, 0.5, 0.99])
    # A risk equal to a cutoff belongs to the group above it.
    assert dormancy.risk_group(risk) == [
        "low",
        "low",
        "intermediate",
        "intermediate",
        "high",
        "high",
    ]


def test_risk_groups_exist_for_dormancy_only(tropism: Predictor) -> None:
    with pytest.raises(ValueError, match="dormancy task only"):
        tropism.risk_group(np.array([0.3]))


def test_out_of_range_flags_only_values_outside_the_training_range(tropism: Predictor) -> None:
    predictor = Predictor(
        task="tropism",
        model=tropism.model,
        feature_ranges={"t_cells_cd8": (0.01, 0.3), "platelet_count": (100.0, 400.0)},
    )
    records: list[dict[str, Any]] = [
        {"t_cells_cd8": 0.2, "platelet_count": 250},  # inside (an int is a number too)
        {"t_cells_cd8": 0.3, "platelet_count": 100.0},  # on the bounds
        {"t_cells_cd8": 0.5, "platelet_count": 250.0},  # one above
        {"t_cells_cd8": 0.0, "platelet_count": 900},  # both outside
        {"t_cells_cd8": 0.2, "platelet_count": None},  # missing is not out of range
        {"t_cells_cd8": 0.2},  # absent neither
        {"t_cells_cd8": float("nan"), "platelet_count": float("inf")},  # NaN is missing too
    ]
    assert predictor.out_of_range(records) == [
        [],
        [],
        ["t_cells_cd8"],
        ["t_cells_cd8", "platelet_count"],
        [],
        [],
        ["platelet_count"],
    ]


def test_training_patients_are_in_range_and_an_outlier_is_not(
    tropism: Predictor, training_rows: pd.DataFrame
) -> None:
    relapsed = training_rows[training_rows[EVENT]]
    records = relapsed[list(schema.feature_columns())].to_dict("records")
    flagged = [name for found in tropism.out_of_range(records) for name in found]
    # ranges span the central 99.8 % (rounded outwards): a few patients per feature at most
    for name in set(flagged):
        assert flagged.count(name) <= 0.02 * len(records) + 2, name
    typical = next(
        r for r, found in zip(records, tropism.out_of_range(records), strict=True) if not found
    )
    outlier = {**typical, "platelet_count": tropism.feature_ranges["platelet_count"][1] + 1}
    assert tropism.out_of_range([outlier]) == [["platelet_count"]]


def test_a_model_saved_before_schema_2_loads_with_what_it_was_trained_on(
    tropism: Predictor,
) -> None:
    """Schema 1.x predictors recorded no categories or sites: unpickling fills them in."""
    import pickle

    old = Predictor.__new__(Predictor)
    state = {k: v for k, v in tropism.__dict__.items() if k not in {"categories", "sites"}}
    state["schema_version"] = "1.1.0"
    state["feature_ranges"] = {"t_cells_cd8": (0.004, 0.3), "platelet_count": (100.0, 400.0)}
    old.__dict__.update(state)
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.cancer_types == (
        "breast",
        "colorectal",
        "lung_adenocarcinoma",
        "melanoma",
        "prostate",
        "pancreatic",
    )
    assert loaded.categories["stage"] == ("I", "II", "III")
    assert loaded.output_names == schema.sites()
    # a zero fraction is inside the range, as for new models
    assert loaded.feature_ranges["t_cells_cd8"] == (0.0, 0.3)
    assert loaded.out_of_range([{"t_cells_cd8": 0.0, "platelet_count": 250.0}]) == [[]]


def test_a_pickle_saved_before_the_fitted_models_predicts_the_same(
    training_rows: pd.DataFrame, probe: pd.DataFrame
) -> None:
    """Old pickles (unpickled only by ``metapredict convert-legacy``) hold the training
    estimator, without ``model_``: unpickled, the estimator rebuilds it, and the predictor and
    the interval ensemble take it, predicting what the estimator predicted."""
    relapsed = training_rows[training_rows[EVENT]]
    types = types_of(relapsed)
    estimator = TropismClassifier(n_estimators=5, calibration="sigmoid", calibration_folds=2)
    estimator.fit(
        features.encode_frame(relapsed, types), relapsed[list(schema.site_columns())].to_numpy()
    )
    X = features.encode_frame(probe, types)
    expected = estimator.predict_proba(X)
    del estimator.__dict__["model_"]  # as pickled before fitted models existed
    old_estimator = pickle.loads(pickle.dumps(estimator))
    assert isinstance(old_estimator.model_, TropismModel)

    predictor = Predictor.__new__(Predictor)
    predictor.__setstate__(
        {
            "task": "tropism",
            "estimator": old_estimator,
            "feature_ranges": {},
            "categories": {"cancer_type": types, "stage": schema.STAGES},
            "sites": schema.sites(),
        }
    )
    ensemble = BootstrapEnsemble.__new__(BootstrapEnsemble)
    ensemble.__setstate__({"members": [old_estimator, old_estimator], "level": 0.9})
    assert isinstance(predictor.model, TropismModel)
    assert all(isinstance(m, TropismModel) for m in ensemble.members)
    np.testing.assert_array_equal(predictor.predict_matrix(X), expected)
