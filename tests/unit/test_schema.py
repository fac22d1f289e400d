"""The pandera schema: every rule rejects a row that breaks it, in words a researcher can read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from metapredict import schema

Frame = pd.DataFrame
Mutation = Callable[[Frame], Frame]

BROKEN_ROW = 1


def set_value(column: str, value: Any, row: int = BROKEN_ROW) -> Mutation:
    def mutate(frame: Frame) -> Frame:
        out = frame.copy()
        out.loc[row, column] = value
        return out

    return mutate


def site_without_relapse(frame: Frame) -> Frame:
    out = frame.copy()
    out.loc[BROKEN_ROW, "site_lung"] = True
    out.loc[BROKEN_ROW, "distant_relapse"] = False
    return out


def duplicate_patient_id(frame: Frame) -> Frame:
    out = frame.copy()
    out.loc[BROKEN_ROW, "patient_id"] = out.loc[0, "patient_id"]
    return out


def fractions_times(factor: float, row: int | None = BROKEN_ROW) -> Mutation:
    def mutate(frame: Frame) -> Frame:
        out = frame.copy()
        cells = list(schema.lm22_columns())
        rows = out.index if row is None else [row]
        out.loc[rows, cells] = out.loc[rows, cells] * factor
        return out

    return mutate


@dataclass(frozen=True)
class Case:
    mutate: Mutation
    row: int | None  # None: a table-level problem (column missing or unknown)
    column: str | None  # None: a rule over the whole row
    words: tuple[str, ...]  # must appear in the rule text
    allowed_columns: tuple[str, ...] | None = None  # validate(..., extra_columns_allowed=)
    also_blamed: tuple[int, ...] = ()  # other rows the rule rightly reports


CASES = {
    "fraction_above_1": Case(set_value("neutrophils", 1.5), 1, "neutrophils", ("at most 1",)),
    "fraction_below_0": Case(set_value("t_cells_cd8", -0.05), 1, "t_cells_cd8", ("at least 0",)),
    "fractions_not_summing_to_1": Case(fractions_times(1.5), 1, None, ("LM22", "sum to 1")),
    "mdsc_score_above_10": Case(set_value("mdsc_score", 11.0), 1, "mdsc_score", ("at most 10",)),
    "mdsc_score_below_-10": Case(
        set_value("mdsc_score", -11.0), 1, "mdsc_score", ("at least -10",)
    ),
    "platelet_count_below_5": Case(
        set_value("platelet_count", 1.0), 1, "platelet_count", ("at least 5",)
    ),
    "platelet_count_above_2000": Case(
        set_value("platelet_count", 2500.0), 1, "platelet_count", ("at most 2000",)
    ),
    "nlr_below_0.05": Case(
        set_value("neutrophil_lymphocyte_ratio", 0.01),
        1,
        "neutrophil_lymphocyte_ratio",
        ("at least 0.05",),
    ),
    "nlr_above_100": Case(
        set_value("neutrophil_lymphocyte_ratio", 150.0),
        1,
        "neutrophil_lymphocyte_ratio",
        ("at most 100",),
    ),
    "leukocyte_fraction_above_1": Case(
        set_value("leukocyte_fraction", 1.2), 1, "leukocyte_fraction", ("at most 1",)
    ),
    "leukocyte_fraction_below_0": Case(
        set_value("leukocyte_fraction", -0.1), 1, "leukocyte_fraction", ("at least 0",)
    ),
    "nan_lm22_fraction": Case(
        set_value("t_cells_cd8", np.nan), 1, "t_cells_cd8", ("required", "empty")
    ),
    "nan_relapse_months": Case(
        set_value("distant_relapse_months", np.nan),
        1,
        "distant_relapse_months",
        ("required", "empty"),
    ),
    "cancer_type_not_a_label": Case(
        set_value("cancer_type", "Breast Cancer"), 1, "cancer_type", ("lowercase snake-case",)
    ),
    "stage_V": Case(set_value("stage", "V"), 1, "stage", ("one of", "I, II, III, IV")),
    "age_17": Case(set_value("age_years", 17.0), 1, "age_years", ("at least 18",)),
    "age_101": Case(set_value("age_years", 101.0), 1, "age_years", ("at most 100",)),
    "negative_relapse_months": Case(
        set_value("distant_relapse_months", -1.0), 1, "distant_relapse_months", ("at least 0",)
    ),
    "site_without_distant_relapse": Case(
        site_without_relapse, 1, None, ("metastatic site", "distant_relapse is false")
    ),
    "duplicate_patient_id": Case(
        duplicate_patient_id, 1, "patient_id", ("unique",), also_blamed=(0,)
    ),
    "missing_required_column": Case(
        lambda f: f.drop(columns=["cancer_type"]),
        None,
        "cancer_type",
        ("required column", "missing"),
    ),
    "half_a_relapse_pair": Case(
        lambda f: f.drop(columns=["distant_relapse"]),
        None,
        "distant_relapse",
        ("relapse pair comes together",),
    ),
    "unknown_extra_column": Case(
        lambda f: f.assign(batch=1), None, "batch", ("not a column the schema knows",), ()
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_rule_rejects_a_row_that_breaks_it(
    case: Case, make_valid_frame: Callable[..., Frame]
) -> None:
    frame = make_valid_frame(3, schema.Cohort)
    schema.validate(frame, schema.Cohort, extra_columns_allowed=())  # the baseline is valid
    broken = case.mutate(frame)

    with pytest.raises(schema.CohortValidationError) as caught:
        schema.validate(broken, schema.Cohort, extra_columns_allowed=case.allowed_columns)

    err = caught.value
    matching = [
        v
        for v in err.violations
        if v.row == case.row and v.column == case.column and all(w in v.rule for w in case.words)
    ]
    assert matching, f"no violation of {case.column!r} with {case.words} in:\n{err}"
    message = str(err)
    for word in case.words:
        assert word in message
    if case.column is not None:
        assert f"'{case.column}'" in message
    if case.row is not None:
        assert f"row {case.row}" in message
        # Only the broken row is reported: valid neighbours are not blamed.
        assert {v.row for v in err.violations} <= {case.row, *case.also_blamed}


def test_duplicate_patient_id_blames_both_rows(make_valid_frame: Callable[..., Frame]) -> None:
    broken = duplicate_patient_id(make_valid_frame(3))
    with pytest.raises(schema.CohortValidationError) as caught:
        schema.validate(broken, schema.Cohort)
    assert {(v.row, v.column) for v in caught.value.violations} == {
        (0, "patient_id"),
        (1, "patient_id"),
    }


def test_out_of_range_value_is_quoted_in_the_message(
    make_valid_frame: Callable[..., Frame],
) -> None:
    broken = set_value("age_years", 101.0)(make_valid_frame(3))
    with pytest.raises(schema.CohortValidationError) as caught:
        schema.validate(broken, schema.Cohort)
    (violation,) = caught.value.violations
    assert violation.value == 101.0
    assert "found 101" in str(caught.value)


def test_several_violations_are_reported_at_once(make_valid_frame: Callable[..., Frame]) -> None:
    frame = make_valid_frame(5)
    frame.loc[1, "cancer_type"] = "Glioma"
    frame.loc[2, "stage"] = "Stage IV"
    frame.loc[3, "age_years"] = 17.0
    frame.loc[3, "platelet_count"] = 1.0
    frame.loc[4, "site_bone"] = True
    frame = frame.drop(columns=["neutrophil_lymphocyte_ratio"])  # optional: not a violation
    frame = frame.assign(batch="x")

    with pytest.raises(schema.CohortValidationError) as caught:
        schema.validate(frame, schema.Cohort, extra_columns_allowed=())

    err = caught.value
    found = {(v.row, v.column) for v in err.violations}
    assert found == {
        (1, "cancer_type"),
        (2, "stage"),
        (3, "age_years"),
        (3, "platelet_count"),
        (4, None),
        (None, "batch"),
    }
    message = str(err)
    assert message.startswith("6 schema violations in 4 rows")
    for text in ("'cancer_type'", "'stage'", "'age_years'", "'platelet_count'", "'batch'"):
        assert text in message
    assert "distant_relapse is false" in message


def test_long_error_lists_are_truncated_but_keep_every_violation(
    make_valid_frame: Callable[..., Frame],
) -> None:
    frame = make_valid_frame(30)
    frame["age_years"] = 17.0
    with pytest.raises(schema.CohortValidationError) as caught:
        schema.validate(frame, schema.Cohort)
    assert len(caught.value.violations) == 30
    assert "... and 10 more" in str(caught.value)


def test_one_valid_feature_row_passes(valid_feature_row: dict[str, Any]) -> None:
    frame = pd.DataFrame([valid_feature_row])
    schema.validate(frame, schema.Features, extra_columns_allowed=())


def test_simulated_cohort_without_oracle_is_a_valid_training_cohort(
    simulated_cohort: Frame,
) -> None:
    cohort = simulated_cohort.drop(columns=list(schema.oracle_columns()))
    schema.validate(cohort, schema.Cohort, extra_columns_allowed=())
    with pytest.raises(schema.CohortValidationError) as caught:
        schema.validate(cohort, schema.SimulatedCohort)
    assert {v.column for v in caught.value.violations} == set(schema.oracle_columns())


# ------------------------------------------------------------------------------------------------
# Relative versus absolute mode


def test_absolute_mode_accepts_rows_that_relative_mode_rejects(
    make_valid_frame: Callable[..., Frame],
) -> None:
    features = fractions_times(0.4, row=None)(make_valid_frame(3, schema.Features))

    schema.validate(features, schema.AbsoluteFeatures, extra_columns_allowed=())
    with pytest.raises(schema.CohortValidationError) as caught:
        schema.validate(features, schema.Features)
    assert {v.row for v in caught.value.violations} == {0, 1, 2}
    assert "use absolute mode" in str(caught.value)

    cohort = fractions_times(0.4, row=None)(make_valid_frame(3, schema.Cohort))
    schema.validate(cohort, schema.AbsoluteCohort, extra_columns_allowed=())
    with pytest.raises(schema.CohortValidationError):
        schema.validate(cohort, schema.Cohort)


def test_absolute_mode_still_rejects_negative_scores(
    make_valid_frame: Callable[..., Frame],
) -> None:
    frame = set_value("neutrophils", -0.1)(make_valid_frame(3, schema.Features))
    with pytest.raises(schema.CohortValidationError) as caught:
        schema.validate(frame, schema.AbsoluteFeatures)
    assert [(v.row, v.column) for v in caught.value.violations] == [(1, "neutrophils")]


def test_absolute_mode_accepts_a_score_above_1(make_valid_frame: Callable[..., Frame]) -> None:
    frame = set_value("neutrophils", 1.5)(make_valid_frame(3, schema.Features))
    schema.validate(frame, schema.AbsoluteFeatures)


# ------------------------------------------------------------------------------------------------
# Optional extras


def test_extras_may_be_absent(make_valid_frame: Callable[..., Frame]) -> None:
    frame = make_valid_frame(3).drop(columns=list(schema.extra_columns()))
    schema.validate(frame, schema.Cohort, extra_columns_allowed=())


def test_extras_may_be_nan(make_valid_frame: Callable[..., Frame]) -> None:
    frame = make_valid_frame(3).assign(**{c: np.nan for c in schema.extra_columns()})
    schema.validate(frame, schema.Cohort, extra_columns_allowed=())


def test_unknown_columns_are_ignored_or_allowed_by_name(
    make_valid_frame: Callable[..., Frame],
) -> None:
    frame = make_valid_frame(3).assign(batch="x")
    schema.validate(frame, schema.Cohort)  # None: unknown columns are not checked
    schema.validate(frame, schema.Cohort, extra_columns_allowed=("batch",))


def test_missing_lm22_column_is_named_without_a_spurious_second_error(
    make_valid_frame: Callable[..., Frame],
) -> None:
    frame = make_valid_frame(3).drop(columns=["t_cells_cd8"])
    with pytest.raises(schema.CohortValidationError) as caught:
        schema.validate(frame, schema.Cohort)
    assert (None, "t_cells_cd8") in {(v.row, v.column) for v in caught.value.violations}


def test_missing_column_is_the_only_violation_reported(
    make_valid_frame: Callable[..., Frame],
) -> None:
    frame = make_valid_frame(3).drop(columns=["t_cells_cd8"])
    with pytest.raises(schema.CohortValidationError) as caught:
        schema.validate(frame, schema.Cohort)
    assert [(v.row, v.column) for v in caught.value.violations] == [(None, "t_cells_cd8")]


# ------------------------------------------------------------------------------------------------
# Column lists derived from the schema

#: CIBERSORT LM22 output labels -> metapredict columns, in CIBERSORT's order (biology.md).
LM22 = {
    "B cells naive": "b_cells_naive",
    "B cells memory": "b_cells_memory",
    "Plasma cells": "plasma_cells",
    "T cells CD8": "t_cells_cd8",
    "T cells CD4 naive": "t_cells_cd4_naive",
    "T cells CD4 memory resting": "t_cells_cd4_memory_resting",
    "T cells CD4 memory activated": "t_cells_cd4_memory_activated",
    "T cells follicular helper": "t_cells_follicular_helper",
    "T cells regulatory (Tregs)": "t_cells_regulatory",
    "T cells gamma delta": "t_cells_gamma_delta",
    "NK cells resting": "nk_cells_resting",
    "NK cells activated": "nk_cells_activated",
    "Monocytes": "monocytes",
    "Macrophages M0": "macrophages_m0",
    "Macrophages M1": "macrophages_m1",
    "Macrophages M2": "macrophages_m2",
    "Dendritic cells resting": "dendritic_cells_resting",
    "Dendritic cells activated": "dendritic_cells_activated",
    "Mast cells resting": "mast_cells_resting",
    "Mast cells activated": "mast_cells_activated",
    "Eosinophils": "eosinophils",
    "Neutrophils": "neutrophils",
}


def test_lm22_columns_are_the_22_cibersort_types_in_order() -> None:
    assert schema.lm22_columns() == tuple(LM22.values())
    assert schema.lm22_labels() == LM22


def test_feature_columns_exclude_labels_and_oracle() -> None:
    features = schema.feature_columns()
    assert features == schema.lm22_columns() + schema.extra_columns() + schema.clinical_columns()
    assert set(schema.extra_columns()) == {
        "mdsc_score",
        "platelet_count",
        "neutrophil_lymphocyte_ratio",
        "leukocyte_fraction",
    }
    assert set(schema.clinical_columns()) == {"cancer_type", "stage", "age_years"}
    not_inputs = (
        set(schema.site_columns())
        | set(schema.survival_columns())
        | set(schema.oracle_columns())
        | {"patient_id"}
    )
    assert not_inputs.isdisjoint(features)
    assert len(set(features)) == len(features)


def test_sites_are_the_eight_default_organs() -> None:
    assert schema.sites() == (
        "bone",
        "lung",
        "liver",
        "brain",
        "distant_lymph_node",
        "pleura",
        "adrenal_gland",
        "intra_abdominal",
    )
    assert schema.site_columns() == tuple(f"site_{s}" for s in schema.sites())
    assert schema.column_info("site_brain").label == "CNS_BRAIN"
    assert schema.survival_columns() == ("distant_relapse_months", "distant_relapse")
    assert set(schema.oracle_columns()) == {f"oracle_{c}" for c in schema.site_columns()} | {
        "oracle_risk_36",
        "oracle_risk_60",
        "oracle_risk_120",
        "oracle_late_relapse",
    }


def test_open_vocabulary_missing_covariates_and_labels_per_task(
    make_valid_frame: Callable[..., Frame],
) -> None:
    """Any label, stage IV or missing, missing age; a cohort needs one task's labels only."""
    frame = make_valid_frame(4)
    frame["cancer_type"] = ["gastric", "head_and_neck", "ovarian", "renal"]
    frame["stage"] = ["IV", None, "I", "IV"]
    frame["age_years"] = [np.nan, 50.0, np.nan, 70.0]
    schema.validate(frame, schema.Cohort, extra_columns_allowed=())
    sites_only = frame.drop(columns=list(schema.survival_columns()))
    schema.validate(sites_only, schema.Cohort, extra_columns_allowed=())
    relapse_only = frame.drop(columns=list(schema.site_columns()))
    schema.validate(relapse_only, schema.Cohort, extra_columns_allowed=())
    some_sites = frame.drop(columns=list(schema.site_columns())[2:])
    schema.validate(some_sites, schema.Cohort, extra_columns_allowed=())
