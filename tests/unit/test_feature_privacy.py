"""No stored range bound or profile edge is a training patient's exact value; range warnings
still flag unusual values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metapredict import schema
from metapredict.feature_encoder import FeatureEncoder
from metapredict.feature_profile import build_profile, private_edges, private_range
from metapredict.predictor import Predictor


@pytest.fixture(scope="module")
def cohort(simulated_cohort: pd.DataFrame) -> pd.DataFrame:
    """Simulated patients, with integer ages and platelet counts as clinics record them."""
    frame = simulated_cohort.head(1500).copy()
    frame["age_years"] = frame["age_years"].round()
    if "platelet_count" in frame.columns:
        frame["platelet_count"] = frame["platelet_count"].round()
    return frame


def _schema_bounds(name: str) -> set[float]:
    info = schema.column_info(name)
    return {float(b) for b in (info.minimum, info.maximum) if b is not None}


def _training_values(frame: pd.DataFrame, name: str) -> set[float]:
    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
    return set(values[np.isfinite(values)].tolist())


def test_no_stored_range_bound_is_a_training_value(cohort: pd.DataFrame) -> None:
    ranges = FeatureEncoder().fit(cohort).feature_ranges_
    assert "age_years" in ranges and len(ranges) > 20
    for name, (low, high) in ranges.items():
        seen = _training_values(cohort, name) - _schema_bounds(name)
        assert low not in seen and high not in seen, name
        assert low <= high


def test_no_stored_profile_edge_is_a_training_value(cohort: pd.DataFrame) -> None:
    profile = build_profile(cohort)
    checked = 0
    for name, entry in profile["numeric"].items():
        seen = _training_values(cohort, name) - _schema_bounds(name)
        for edge in entry["edges"]:
            assert edge not in seen, (name, edge)
            checked += 1
        assert sum(entry["counts"]) + entry["missing"] == len(cohort)
    assert checked > 100


def test_integer_values_give_bounds_between_them() -> None:
    ages = np.arange(20.0, 91.0).repeat(3)
    low, high = private_range(ages) or (0.0, 0.0)
    assert low < 20.0 + 1 and high > 90.0 - 1
    assert low not in set(ages.tolist()) and high not in set(ages.tolist())
    assert low == float(int(low)) and high == float(int(high))  # whole years, not 24.999...
    edges = private_edges(ages, 10)
    assert len(edges) == 9 and not set(edges.tolist()) & set(ages.tolist())
    assert np.all(np.diff(edges) > 0)


def test_one_extreme_patient_does_not_set_the_range() -> None:
    values = np.concatenate([np.linspace(40.0, 80.0, 999), [118.0]])
    low, high = private_range(values) or (0.0, 0.0)
    assert high < 118.0 and low <= 40.0


def test_a_bound_is_clipped_to_the_schema() -> None:
    fractions = np.linspace(0.0, 1.0, 400)
    assert private_range(fractions, minimum=0.0, maximum=1.0) == (0.0, 1.0)


def test_range_warnings_still_flag_unusual_values(cohort: pd.DataFrame) -> None:
    ranges = FeatureEncoder().fit(cohort).feature_ranges_
    predictor = Predictor(task="tropism", model=None, feature_ranges=ranges)  # type: ignore[arg-type]
    typical = {"age_years": float(cohort["age_years"].median())}
    low, high = ranges["age_years"]
    assert predictor.out_of_range([typical, {"age_years": high + 5}, {"age_years": low - 5}]) == [
        [],
        ["age_years"],
        ["age_years"],
    ]
