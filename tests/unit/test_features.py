"""Feature encoding: the frame path and the record path build the identical matrix."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from metapredict import features, schema
from metapredict.feature_encoder import FeatureEncoder
from metapredict.feature_profile import private_range

LM22 = list(schema.lm22_columns())
N_LM22 = len(LM22)
#: The model's own cancer types (their order fixes the codes).
TYPES = (
    "breast",
    "colorectal",
    "gastric",
    "lung_adenocarcinoma",
    "melanoma",
    "pancreatic",
    "prostate",
    "renal",
)


def _column(name: str) -> int:
    index: int = features.feature_names().index(name)
    return index


@pytest.fixture
def simulated_rows(simulated_cohort: pd.DataFrame) -> pd.DataFrame:
    """200 simulated patients, features only (the extras have missing values)."""
    return simulated_cohort[list(schema.feature_columns())].head(200).copy()


def test_matrix_columns_are_the_schema_features_in_order() -> None:
    assert features.feature_names() == schema.feature_columns()
    cat = features.categorical_indices()
    assert [features.feature_names()[i] for i in cat] == list(schema.categorical_columns())


def test_records_and_frame_give_the_identical_matrix_on_simulated_rows(
    simulated_rows: pd.DataFrame,
) -> None:
    assert simulated_rows[list(schema.extra_columns())].isna().any().all(), "need NaN extras"
    records = simulated_rows.to_dict("records")
    from_frame = features.encode_frame(simulated_rows, TYPES)
    from_records = features.encode_records(records, TYPES)
    assert from_frame.shape == (200, len(features.feature_names()))
    np.testing.assert_array_equal(from_records, from_frame)  # NaN in the same places


def test_none_and_absent_extras_encode_like_nan(simulated_rows: pd.DataFrame) -> None:
    extras = list(schema.extra_columns())
    rows = simulated_rows.head(5)
    without = rows.drop(columns=extras)
    expected = features.encode_frame(rows.assign(**{c: np.nan for c in extras}), TYPES)
    as_none: list[dict[str, Any]] = [
        {**r, **dict.fromkeys(extras)} for r in rows.to_dict("records")
    ]
    absent = without.to_dict("records")

    np.testing.assert_array_equal(features.encode_frame(without, TYPES), expected)
    np.testing.assert_array_equal(features.encode_records(as_none, TYPES), expected)
    np.testing.assert_array_equal(features.encode_records(absent, TYPES), expected)
    np.testing.assert_array_equal(features.encode_frame(pd.DataFrame(as_none), TYPES), expected)
    assert np.isnan(expected[:, [_column(c) for c in extras]]).all()


def test_clr_rows_sum_to_zero_and_zero_fractions_stay_finite() -> None:
    fractions = np.array([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    clr = features.clr_rows(fractions)
    assert np.isfinite(clr).all()
    np.testing.assert_allclose(clr.sum(axis=1), 0.0, atol=1e-12)
    # worked by hand: logs of (0.501, 0.501, 0.001, 0.001) minus their mean
    half = (math.log(0.501) - math.log(0.001)) / 2
    np.testing.assert_allclose(clr[0], [half, half, -half, -half], rtol=1e-12)
    np.testing.assert_allclose(clr[2], 0.0, atol=1e-12)  # a uniform composition is the centre


def test_clr_rows_is_bit_for_bit_the_textbook_formula() -> None:
    """The cheap numpy calls in clr_rows give exactly what clip + log + mean give."""
    rng = np.random.default_rng(5)
    fractions = rng.dirichlet(np.ones(N_LM22), size=50)
    fractions[fractions < 0.02] = 0.0
    fractions[0, 0], fractions[1, 1], fractions[2, 2] = -0.0, -0.25, np.nan
    logs = np.log(np.clip(fractions, 0.0, None) + features.CLR_PSEUDOCOUNT)
    expected = logs - logs.mean(axis=1, keepdims=True)
    for given in (fractions, np.asfortranarray(fractions), fractions[:1]):
        clr = features.clr_rows(given)
        assert clr.tobytes() == expected[: len(given)].tobytes()


def test_lm22_block_is_the_clr_of_the_fractions(simulated_rows: pd.DataFrame) -> None:
    X = features.encode_frame(simulated_rows, TYPES)
    np.testing.assert_allclose(X[:, :N_LM22].sum(axis=1), 0.0, atol=1e-9)
    expected = features.clr_rows(simulated_rows[LM22].to_numpy(dtype=float))
    np.testing.assert_array_equal(X[:, :N_LM22], expected)
    age = _column("age_years")
    np.testing.assert_array_equal(X[:, age], simulated_rows["age_years"].to_numpy(dtype=float))


def test_codes_follow_the_model_types_and_the_schema_stage_order(make_valid_frame: Any) -> None:
    frame = make_valid_frame(n=len(TYPES))
    frame["cancer_type"] = list(TYPES)
    frame["stage"] = [schema.STAGES[i % len(schema.STAGES)] for i in range(len(frame))]
    frame.loc[7, "stage"] = None
    for X in (
        features.encode_frame(frame, TYPES),
        features.encode_records(frame.to_dict("records"), TYPES),
    ):
        np.testing.assert_array_equal(X[:, _column("cancer_type")], np.arange(8.0))
        np.testing.assert_array_equal(
            X[:, _column("stage")], [0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, np.nan]
        )
    # another model's own list gives other codes for the same labels
    X = features.encode_frame(frame, ("renal", "breast"))
    np.testing.assert_array_equal(X[[0, 7], _column("cancer_type")], [1.0, 0.0])


def test_an_unknown_category_encodes_as_nan(make_valid_frame: Any) -> None:
    frame = make_valid_frame(n=2)
    frame["cancer_type"] = ["glioma", "breast"]
    for X in (
        features.encode_frame(frame, TYPES),
        features.encode_records(frame.to_dict("records"), TYPES),
    ):
        codes = X[:, _column("cancer_type")]
        assert math.isnan(codes[0])
        assert codes[1] == 0.0


def test_encoder_ranges_are_raw_training_values_without_categoricals(
    simulated_rows: pd.DataFrame,
) -> None:
    frame = simulated_rows.drop(columns=["leukocyte_fraction"]).assign(mdsc_score=np.nan)
    encoder = FeatureEncoder().fit(frame)
    ranges = encoder.feature_ranges_
    # an LM22 range starts at 0: CIBERSORT reports exact zeros, never unusual
    # the central 99 % rounded outwards, never a patient's value (feature_profile.private_range)
    cd8 = private_range(frame["t_cells_cd8"].to_numpy(float), minimum=0.0, maximum=1.0)
    assert cd8 is not None and ranges["t_cells_cd8"] == (0.0, cd8[1])
    assert ranges["t_cells_cd8"][1] <= 1.0  # fractions, not CLR
    platelets = frame["platelet_count"].to_numpy(float)
    assert np.isnan(platelets).any()
    info = schema.column_info("platelet_count")
    assert ranges["platelet_count"] == private_range(
        platelets, minimum=info.minimum, maximum=info.maximum
    )  # NaN ignored
    assert "cancer_type" not in ranges and "stage" not in ranges
    assert "mdsc_score" not in ranges  # all missing
    seen = tuple(sorted(frame["cancer_type"].unique()))
    assert encoder.categories_["cancer_type"] == seen
    assert "leukocyte_fraction" not in ranges  # absent
    np.testing.assert_array_equal(encoder.transform(frame), features.encode_frame(frame, seen))
    assert list(encoder.get_feature_names_out()) == list(features.feature_names())


def test_an_lm22_range_starts_at_zero_even_when_training_saw_no_zero(
    make_valid_frame: Any,
) -> None:
    """A model trained without zeros (an old, smooth cohort) still takes a 0 as in range."""
    frame = make_valid_frame(n=4)  # every fraction 1/22, no zeros
    encoder = FeatureEncoder().fit(frame)
    low, high = encoder.feature_ranges_["t_cells_cd8"]
    assert low == 0.0 and 1 / N_LM22 < high <= 0.1
    assert encoder.feature_ranges_["age_years"][0] > 0  # other features keep their minimum
