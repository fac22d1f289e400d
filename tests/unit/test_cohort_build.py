"""The join of an immune table with clinical data: matching, drops with reasons, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cohort_fixtures import (
    dirichlet_fractions,
    patient_row,
    sample_row,
    write_cbioportal,
    write_cibersort_table,
)

from metapredict import schema
from metapredict.cohorts.build import assemble, build_cohort, validate
from metapredict.cohorts.cbioportal import load_cbioportal
from metapredict.cohorts.cibersort import read_immune_table
from metapredict.cohorts.errors import CohortInputError
from metapredict.cohorts.mapping import apply_mapping, load_mapping


def immune_table(tmp_path: Path, ids: list[str], **kwargs: object) -> Path:
    fractions = kwargs.pop("fractions", None)
    if fractions is None:
        fractions = dirichlet_fractions(len(ids), seed=len(ids))
    return write_cibersort_table(tmp_path / "cibersort.txt", ids, fractions, **kwargs)  # type: ignore[arg-type]


def cbio(
    tmp_path: Path, patients: list[dict[str, str]], samples: list[dict[str, str]]
) -> tuple[Path, Path]:
    return (
        write_cbioportal(tmp_path / "data_clinical_patient.txt", patients),
        write_cbioportal(tmp_path / "data_clinical_sample.txt", samples),
    )


def test_a_clean_join_gives_a_valid_cohort(tmp_path: Path) -> None:
    p, s = cbio(
        tmp_path,
        [patient_row("P1"), patient_row("P2", DFS_STATUS="0:DiseaseFree", DFS_MONTHS="80")],
        [sample_row("P1-T", "P1"), sample_row("P2-T", "P2", DMETS_DX_BONE="No")],
    )
    frame, report = build_cohort(
        read_immune_table(immune_table(tmp_path, ["P1-T", "P2-T"])), load_cbioportal(p, s)
    )
    assert report.valid is True
    assert frame["patient_id"].tolist() == ["P1", "P2"]
    assert frame["sample_id"].tolist() == ["P1-T", "P2-T"]
    assert frame["distant_relapse"].tolist() == [True, False]
    assert frame["distant_relapse_months"].tolist() == [40.5, 80.0]
    assert frame["site_bone"].tolist() == [True, False]
    assert frame[["cancer_type", "stage", "age_years"]].iloc[0].tolist() == ["breast", "II", 55.0]
    assert {"cibersort_p_value", "cibersort_correlation", "cibersort_rmse"} <= set(frame.columns)
    assert report.site_counts["site_bone"] == 1
    schema.validate(frame, schema.Cohort, extra_columns_allowed=())


def test_unmatched_ids_are_reported_on_both_sides(tmp_path: Path) -> None:
    p, s = cbio(
        tmp_path,
        [patient_row("P1"), patient_row("P2")],
        [sample_row("P1-T", "P1"), sample_row("P2-T", "P2")],
    )
    result = assemble(
        read_immune_table(immune_table(tmp_path, ["P1-T", "GHOST-9"])), load_cbioportal(p, s)
    )
    assert result.report.unmatched_immune == ["GHOST-9"]
    assert result.report.unmatched_clinical == ["P2"]
    assert [m.sample_id for m in result.report.matched] == ["P1-T"]
    assert len(result.frame) == 1


def test_duplicate_samples_keep_the_primary_and_report_the_rest(tmp_path: Path) -> None:
    p, s = cbio(
        tmp_path,
        [patient_row("P1")],
        [
            sample_row("P1-M", "P1", SAMPLE_TYPE="Metastasis"),
            sample_row("P1-T", "P1", SAMPLE_TYPE="Primary"),
            sample_row("P1-T2", "P1", SAMPLE_TYPE="Primary"),
        ],
    )
    result = assemble(
        read_immune_table(immune_table(tmp_path, ["P1-M", "P1-T", "P1-T2"])),
        load_cbioportal(p, s),
    )
    assert result.frame["sample_id"].tolist() == ["P1-T"]
    [dup] = result.report.duplicates
    assert dup.patient_id == "P1" and dup.kept == "P1-T" and dup.dropped == ["P1-T2", "P1-M"]


def test_tcga_barcodes_match_on_sample_and_patient_prefixes(tmp_path: Path) -> None:
    p, s = cbio(
        tmp_path,
        [patient_row("TCGA-A1-A0SB"), patient_row("TCGA-BH-A0B3")],
        [sample_row("TCGA-A1-A0SB-01", "TCGA-A1-A0SB")],
    )
    ids = [
        "TCGA.A1.A0SB.01A.11R.A144.07",  # R-mangled aliquot barcode -> sample TCGA-A1-A0SB-01
        "TCGA-A1-A0SB-11A-22R-A144-07",  # solid tissue normal -> dropped
        "TCGA-BH-A0B3-01A-11R-A056-07",  # no sample row -> patient by its first 12 characters
    ]
    result = assemble(
        read_immune_table(immune_table(tmp_path, ids)),
        load_cbioportal(p, s),
        default_cancer_type="breast",  # the patient without a sample row has no CANCER_TYPE
    )
    how = {m.sample_id: m.matched_by for m in result.report.matched}
    assert how[ids[0]] == "TCGA sample barcode"
    assert how[ids[2]] == "TCGA patient barcode"
    assert result.frame["patient_id"].tolist() == ["TCGA-A1-A0SB", "TCGA-BH-A0B3"]
    assert [(d.id, d.reason) for d in result.report.dropped] == [(ids[1], "normal tissue sample")]
    # its site flags live in the sample file, so all are missing: not involved, and counted
    assert result.report.missing_site_flags_relapsed == {s: 1 for s in schema.site_columns()}


def test_missing_covariates_and_stage_iv_are_kept_and_missing_labels_drop(
    tmp_path: Path,
) -> None:
    patients = [
        patient_row("P1"),
        patient_row("P2", AGE="NA"),
        patient_row("P3", AJCC_PATHOLOGIC_TUMOR_STAGE="[Not Available]"),
        patient_row("P4", DFS_STATUS="[Not Available]"),
        patient_row("P5", AJCC_PATHOLOGIC_TUMOR_STAGE="Stage IVA"),
        patient_row("P6", DFS_MONTHS="[Unknown]"),
        patient_row("P7", AGE="12"),
        patient_row("P9", AJCC_PATHOLOGIC_TUMOR_STAGE="stage iv", DFS_STATUS="", DFS_MONTHS=""),
    ]
    samples = [sample_row(f"{r['PATIENT_ID']}-T", r["PATIENT_ID"]) for r in patients]
    samples.append(sample_row("P8-T", "P8", CANCER_TYPE="Glioma", CANCER_TYPE_DETAILED="NA"))
    patients.append(patient_row("P8"))
    p, s = cbio(tmp_path, patients, samples)
    ids = [row["SAMPLE_ID"] for row in samples]
    result = assemble(read_immune_table(immune_table(tmp_path, ids)), load_cbioportal(p, s))
    reasons = {d.id: d.reason for d in result.report.dropped}
    assert reasons == {
        "P4": "relapse status missing",
        "P6": "follow-up months missing",
        "P7": "age outside 18-100 years",
    }
    frame = validate(result).set_index("patient_id")
    assert sorted(frame.index) == ["P1", "P2", "P3", "P5", "P8", "P9"]
    assert np.isnan(frame.loc["P2", "age_years"])
    assert pd.isna(frame.loc["P3", "stage"])
    assert frame.loc["P5", "stage"] == "IV"
    assert frame.loc["P8", "cancer_type"] == "glioma"  # any cancer type, as a label
    # stage IV without relapse data: metastatic at diagnosis
    assert frame.loc["P9", "distant_relapse"] and frame.loc["P9", "distant_relapse_months"] == 0
    assert result.report.stage_counts == {"II": 3, "IV": 2, "unknown": 1}
    assert result.report.missing_age == 1
    assert result.report.tasks["dormancy"].startswith("yes: 4 patient(s)")
    assert "2 stage IV patient(s) will be left out" in result.report.tasks["dormancy"]
    assert result.report.tasks["tropism"].startswith("yes: 6 metastatic patient(s)")


def test_unknown_site_flag_for_a_relapsed_patient_counts_as_not_involved(tmp_path: Path) -> None:
    p, s = cbio(
        tmp_path,
        [patient_row("P1"), patient_row("P2")],
        [
            sample_row("P1-T", "P1", DMETS_DX_LIVER="Unknown"),
            sample_row("P2-T", "P2", DMETS_DX_LIVER="NA", DMETS_DX_LUNG="Yes"),
        ],
    )
    result = assemble(
        read_immune_table(immune_table(tmp_path, ["P1-T", "P2-T"])), load_cbioportal(p, s)
    )
    assert result.frame["site_liver"].tolist() == [False, False]
    assert result.frame["site_lung"].tolist() == [False, True]
    assert result.report.missing_site_flags_relapsed == {"site_liver": 2}
    assert result.report.site_counts["site_lung"] == 1


def test_site_flag_for_a_censored_patient_drops_the_row(tmp_path: Path) -> None:
    p, s = cbio(
        tmp_path,
        [patient_row("P1", DFS_STATUS="0:DiseaseFree"), patient_row("P2")],
        [sample_row("P1-T", "P1"), sample_row("P2-T", "P2")],
    )
    result = assemble(
        read_immune_table(immune_table(tmp_path, ["P1-T", "P2-T"])), load_cbioportal(p, s)
    )
    [drop] = result.report.dropped
    assert (drop.id, drop.reason, drop.detail) == (
        "P1",
        "site marked but relapse status censored",
        "site_bone",
    )


def test_site_absent_from_the_files_is_left_out_and_reported(tmp_path: Path) -> None:
    row = sample_row("P1-T", "P1")
    del row["DMETS_DX_PLEURA"]
    p, s = cbio(tmp_path, [patient_row("P1")], [row])
    result = assemble(read_immune_table(immune_table(tmp_path, ["P1-T"])), load_cbioportal(p, s))
    assert result.report.sites_absent == ["site_pleura"]
    assert "site_pleura" not in result.frame.columns  # unknown, not "not involved"
    assert "site_pleura" not in result.report.site_counts


def test_p_value_filter_drops_poor_fits(tmp_path: Path) -> None:
    p, s = cbio(
        tmp_path,
        [patient_row("P1"), patient_row("P2")],
        [sample_row("P1-T", "P1"), sample_row("P2-T", "P2")],
    )
    immune = read_immune_table(immune_table(tmp_path, ["P1-T", "P2-T"], p_values=[0.01, 0.3]))
    result = assemble(immune, load_cbioportal(p, s), max_p_value=0.05)
    assert result.frame["sample_id"].tolist() == ["P1-T"]
    assert [(d.id, d.reason) for d in result.report.dropped] == [
        ("P2-T", "CIBERSORT P-value above 0.05")
    ]
    assert result.report.unmatched_clinical == []  # P2 matched; its sample failed the filter


def test_p_value_filter_without_p_values_is_an_error(tmp_path: Path) -> None:
    p, s = cbio(tmp_path, [patient_row("P1")], [sample_row("P1-T", "P1")])
    immune = read_immune_table(immune_table(tmp_path, ["P1-T"], p_values=[9999]))
    with pytest.raises(CohortInputError, match="needs P-values"):
        assemble(immune, load_cbioportal(p, s), max_p_value=0.05)


def test_default_cancer_type_fills_rows_without_one(tmp_path: Path) -> None:
    p, s = cbio(
        tmp_path,
        [patient_row("P1")],
        [sample_row("P1-T", "P1", CANCER_TYPE="NA", CANCER_TYPE_DETAILED="[Not Available]")],
    )
    immune = read_immune_table(immune_table(tmp_path, ["P1-T"]))
    missing = assemble(immune, load_cbioportal(p, s))
    assert [d.reason for d in missing.report.dropped] == ["cancer type missing"]
    filled = assemble(immune, load_cbioportal(p, s), default_cancer_type="melanoma")
    assert filled.frame["cancer_type"].tolist() == ["melanoma"]
    other = assemble(immune, load_cbioportal(p, s), default_cancer_type="Head and Neck Cancer")
    assert other.frame["cancer_type"].tolist() == ["head_and_neck"]
    with pytest.raises(CohortInputError, match="--cancer-type: not a cancer type label"):
        assemble(immune, load_cbioportal(p, s), default_cancer_type="???")


def test_invalid_fractions_fail_validation_listing_every_violation(tmp_path: Path) -> None:
    fractions = dirichlet_fractions(2, seed=0)
    fractions[0, 0] = -0.2
    fractions[1, 3] = 1.5
    p, s = cbio(
        tmp_path,
        [patient_row("P1"), patient_row("P2")],
        [sample_row("P1-T", "P1"), sample_row("P2-T", "P2")],
    )
    immune = read_immune_table(
        immune_table(tmp_path, ["P1-T", "P2-T"], fractions=fractions), mode="relative"
    )
    result = assemble(immune, load_cbioportal(p, s))
    with pytest.raises(schema.CohortValidationError) as err:
        validate(result)
    described = [v.describe() for v in err.value.violations]
    assert any("'P1'" in d and "b_cells_naive" in d for d in described)
    assert any("'P2'" in d and "t_cells_cd8" in d for d in described)
    assert result.report.valid is False


def test_absolute_tables_validate_as_absolute_cohorts(tmp_path: Path) -> None:
    p, s = cbio(tmp_path, [patient_row("P1")], [sample_row("P1-T", "P1")])
    immune = read_immune_table(
        immune_table(
            tmp_path, ["P1-T"], fractions=dirichlet_fractions(1, seed=1) * 0.6, absolute_score=True
        )
    )
    frame, report = build_cohort(immune, load_cbioportal(p, s))
    assert report.mode == "absolute"
    schema.validate(frame, schema.AbsoluteCohort, extra_columns_allowed=())
    assert frame["cibersort_absolute_score"].iloc[0] == pytest.approx(0.6, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# Generic table + TOML mapping

MAPPING = """
[columns]
patient_id = "pid"
cancer_type = "tumour"
stage = "ajcc"
age_years = "age"
relapse_months = "dmfs_days"
relapse_status = "dmfs_event"

[columns.sites]
bone = "met_bone"
liver = "met_liver"

[columns.extras]
platelet_count = "plt"

[values]
missing = ["not done"]
event_true = ["distant relapse"]
event_false = ["no relapse"]
months_per_unit = 0.0328767

[values.cancer_type]
"BRCA" = "breast"
"""


def test_generic_table_through_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "map.toml").write_text(MAPPING)
    pd.DataFrame(
        {
            "pid": ["A", "B", "C"],
            "tumour": ["BRCA", "Colon Adenocarcinoma", "BRCA"],
            "ajcc": ["IIB", "Stage III", "not done"],
            "age": ["61", "70", "50"],
            "dmfs_days": ["1000", "3000", "200"],
            "dmfs_event": ["distant relapse", "no relapse", "distant relapse"],
            "met_bone": ["yes", "no", "yes"],
            "met_liver": ["no", "no", "Unknown"],
            "plt": ["310", "", "280"],
        }
    ).to_csv(tmp_path / "clinical.csv", index=False)
    clinical = apply_mapping(tmp_path / "clinical.csv", load_mapping(tmp_path / "map.toml"))
    frame, report = build_cohort(
        read_immune_table(immune_table(tmp_path, ["A", "B", "C"])), clinical
    )
    assert frame["patient_id"].tolist() == ["A", "B", "C"]
    assert frame["cancer_type"].tolist() == ["breast", "colorectal", "breast"]
    assert frame["stage"].tolist()[:2] == ["II", "III"] and pd.isna(frame["stage"].iloc[2])
    assert frame["distant_relapse_months"].iloc[0] == pytest.approx(32.88, abs=0.01)
    assert frame["platelet_count"].iloc[0] == 310.0 and np.isnan(frame["platelet_count"].iloc[1])
    assert "site_lung" not in frame.columns  # not mapped: left out
    assert "site_lung" in report.sites_absent
    assert report.dropped == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('bone = "met_bone"', 'femur = "met_bone"'), "unknown site"),
        (('"BRCA" = "breast"', '"BRCA" = "?"'), "not a cancer type label"),
        (('relapse_status = "dmfs_event"', ""), "come together"),
        (('patient_id = "pid"', ""), "columns.patient_id"),
        (("[values]", "[valeus]"), "valeus"),
    ],
)
def test_mapping_mistakes_are_clear_errors(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    path = tmp_path / "map.toml"
    path.write_text(MAPPING.replace(*edit))
    with pytest.raises(CohortInputError, match=message):
        load_mapping(path)


def test_mapping_naming_a_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "map.toml").write_text(MAPPING)
    pd.DataFrame({"pid": ["A"], "tumour": ["BRCA"]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(CohortInputError, match="missing: 'age', 'ajcc'"):
        apply_mapping(tmp_path / "c.csv", load_mapping(tmp_path / "map.toml"))


def test_a_mapping_of_four_keys_builds_a_relapse_only_cohort(tmp_path: Path) -> None:
    """Patient id, cancer type, relapse months and event: enough for the dormancy task."""
    (tmp_path / "map.toml").write_text(
        "[columns]\n"
        'patient_id = "id"\n'
        'cancer_type = "type"\n'
        'relapse_months = "rfs_months"\n'
        'relapse_status = "rfs_event"\n'
    )
    pd.DataFrame(
        {
            "id": ["A", "B"],
            "type": ["Breast Cancer", "Breast Cancer"],
            "rfs_months": ["12", "80"],
            "rfs_event": ["1", "0"],
        }
    ).to_csv(tmp_path / "clinical.csv", index=False)
    clinical = apply_mapping(tmp_path / "clinical.csv", load_mapping(tmp_path / "map.toml"))
    frame, report = build_cohort(read_immune_table(immune_table(tmp_path, ["A", "B"])), clinical)
    assert frame["cancer_type"].tolist() == ["breast", "breast"]
    assert not any(c.startswith("site_") for c in frame.columns)
    assert frame["stage"].isna().all() and frame["age_years"].isna().all()
    assert report.tasks["tropism"].startswith("no:")
    assert report.tasks["dormancy"].startswith("yes: 2 patient(s)")


def test_a_mapping_without_labels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text('[columns]\npatient_id = "id"\ncancer_type = "type"\n')
    with pytest.raises(CohortInputError, match="no labels for either task"):
        load_mapping(path)


def test_profile_keyed_by_patient_reads_sample_level_flags(tmp_path: Path) -> None:
    """MSK-MET keeps DMETS_DX_* in the sample file; an immune table may be keyed by patient."""
    p, s = cbio(
        tmp_path,
        [patient_row("P1")],
        [
            sample_row("P1-N", "P1", SAMPLE_TYPE="Normal", DMETS_DX_BONE="No"),
            sample_row("P1-T", "P1", DMETS_DX_BONE="No", DMETS_DX_LIVER="Yes"),
        ],
    )
    result = assemble(read_immune_table(immune_table(tmp_path, ["P1"])), load_cbioportal(p, s))
    assert [m.matched_by for m in result.report.matched] == ["patient id"]
    assert result.frame["site_liver"].tolist() == [True]
    assert result.frame["cancer_type"].tolist() == ["breast"]
    assert result.report.missing_site_flags_relapsed == {}


def test_older_cibersortx_absolute_score_header_is_recognised(tmp_path: Path) -> None:
    path = write_cibersort_table(
        tmp_path / "abs.txt",
        ["A"],
        dirichlet_fractions(1, seed=2) * 0.5,
        extra_columns={"Absolute score": [0.5]},
    )
    table = read_immune_table(path)
    assert table.mode == "absolute"
    assert table.frame["cibersort_absolute_score"].tolist() == [0.5]
