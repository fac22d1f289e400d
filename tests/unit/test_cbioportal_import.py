"""cBioPortal clinical files and the value parsers behind them."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from cohort_fixtures import patient_row, sample_row, write_cbioportal

from metapredict import schema
from metapredict.cohorts import values
from metapredict.cohorts.cbioportal import (
    choose_relapse_pair,
    load_cbioportal,
    read_cbioportal_file,
    site_codes,
)
from metapredict.cohorts.errors import CohortInputError

# ---------------------------------------------------------------------------------------------
# Value parsers


@pytest.mark.parametrize(
    "token", ["NA", "[Not Available]", "[Unknown]", "", "  ", "[Not Applicable]", "unknown"]
)
def test_missing_tokens(token: str) -> None:
    assert values.is_missing(token)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Yes", True), ("No", False), ("yes ", True), ("NO", False), ("Unknown", None), ("NA", None)],
)
def test_yes_no_unknown_flags(raw: str, expected: bool | None) -> None:
    assert values.parse_flag(raw) is expected


def test_unexpected_flag_text_raises() -> None:
    with pytest.raises(ValueError, match="Yes/No"):
        values.parse_flag("maybe")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1:Recurred/Progressed", True),
        ("0:DiseaseFree", False),
        ("1:Recurred", True),
        ("0:CENSORED", False),
        ("1:PROGRESSION", True),
        ("Recurred/Progressed", True),
        ("DiseaseFree", False),
        ("[Not Available]", None),
    ],
)
def test_survival_status(raw: str, expected: bool | None) -> None:
    assert values.parse_status(raw) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Stage IIA", "II"),
        ("STAGE III", "III"),
        ("IIIB", "III"),
        ("Stage I", "I"),
        ("stage ic", "I"),
        ("Stage IV", "IV"),
        ("STAGE IVB", "IV"),
        ("2", "II"),
        ("IIA", "II"),
        ("stage iv", "IV"),
        ("[Not Available]", None),
        ("Stage X", None),  # not assessable: missing
    ],
)
def test_ajcc_stage(raw: str, expected: str | None) -> None:
    assert values.parse_stage(raw) == expected


@pytest.mark.parametrize("raw", ["Stage 0", "early"])
def test_unparseable_stage_raises(raw: str) -> None:
    with pytest.raises(ValueError, match="AJCC"):
        values.parse_stage(raw)


@pytest.mark.parametrize(
    ("detailed", "broad", "expected"),
    [
        ("Breast Invasive Ductal Carcinoma", "Breast Cancer", "breast"),
        ("NA", "Breast Cancer", "breast"),
        ("Colon Adenocarcinoma", "Colorectal Cancer", "colorectal"),
        ("", "Colorectal Cancer", "colorectal"),
        ("Lung Adenocarcinoma", "Non-Small Cell Lung Cancer", "lung_adenocarcinoma"),
        ("Cutaneous Melanoma", "Melanoma", "melanoma"),
        ("[Not Available]", "Melanoma", "melanoma"),
        ("Prostate Adenocarcinoma", "Prostate Cancer", "prostate"),
        ("Pancreatic Adenocarcinoma", "Pancreatic Cancer", "pancreatic"),
        ("Stomach Adenocarcinoma", "Esophagogastric Cancer", "gastric"),
        ("High-Grade Serous Ovarian Cancer", "Ovarian Cancer", "ovarian"),
        ("Renal Clear Cell Carcinoma", "Renal Cell Carcinoma", "renal"),
        ("Head and Neck Squamous Cell Carcinoma", "Head and Neck Cancer", "head_and_neck"),
        # a specific subtype keeps its own label: never the broader type's
        ("Lung Squamous Cell Carcinoma", "Non-Small Cell Lung Cancer", "lung_squamous"),
        ("Uveal Melanoma", "Melanoma", "uveal_melanoma"),
        # the table knows neither: the broad type as given, normalised
        (
            "Lung Adenosquamous Carcinoma",
            "Non-Small Cell Lung Cancer",
            "non_small_cell_lung_cancer",
        ),
        ("Glioblastoma", "Glioma", "glioma"),
        ("NA", "Non-Small Cell Lung Cancer", "non_small_cell_lung_cancer"),
        ("Glioblastoma", "NA", "glioblastoma"),
        ("NA", "NA", None),
    ],
)
def test_cancer_type_labels(detailed: str, broad: str, expected: str | None) -> None:
    result = values.parse_cancer_type([detailed, broad])
    assert result == expected
    assert result is None or re.fullmatch(schema.CANCER_TYPE_PATTERN, result)


def test_a_user_override_decides_first() -> None:
    assert values.parse_cancer_type(["Breast Cancer"], {"breast cancer": "Luminal A"}) == (
        "luminal_a"
    )


def test_text_with_no_letter_or_digit_is_no_label() -> None:
    with pytest.raises(values.UnrecognisedCancerType):
        values.parse_cancer_type(["???"])


# ---------------------------------------------------------------------------------------------
# Files


def test_site_codes_come_from_the_schema_metadata() -> None:
    codes = site_codes()
    assert codes["site_brain"] == "DMETS_DX_CNS_BRAIN"
    assert codes["site_distant_lymph_node"] == "DMETS_DX_DIST_LN"
    assert set(codes) == set(schema.site_columns())


def test_reads_a_patient_file_with_four_header_lines(tmp_path: Path) -> None:
    path = write_cbioportal(tmp_path / "p.txt", [patient_row("P1"), patient_row("P2", AGE="NA")])
    frame = read_cbioportal_file(path, kind="patient")
    assert frame["PATIENT_ID"].tolist() == ["P1", "P2"]
    assert frame.loc[1, "AGE"] == "NA"  # text until parsed


def test_file_without_metadata_lines_is_accepted(tmp_path: Path) -> None:
    path = write_cbioportal(tmp_path / "p.txt", [patient_row("P1")], header_lines=0)
    assert read_cbioportal_file(path, kind="patient")["PATIENT_ID"].tolist() == ["P1"]


@pytest.mark.parametrize("lines", [1, 3])
def test_wrong_number_of_header_lines_is_a_clear_error(tmp_path: Path, lines: int) -> None:
    path = write_cbioportal(tmp_path / "p.txt", [patient_row("P1")], header_lines=lines)
    with pytest.raises(
        CohortInputError, match=f"expected 4 lines starting with '#'.*found {lines}"
    ):
        read_cbioportal_file(path, kind="patient")


def test_header_line_with_wrong_field_count_is_a_clear_error(tmp_path: Path) -> None:
    path = write_cbioportal(tmp_path / "p.txt", [patient_row("P1")])
    lines = path.read_text().splitlines()
    lines[2] = "#STRING\tSTRING"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CohortInputError, match="'#' line 3 has 2 fields"):
        read_cbioportal_file(path, kind="patient")


def test_missing_id_column_is_a_clear_error(tmp_path: Path) -> None:
    path = write_cbioportal(tmp_path / "s.txt", [patient_row("P1")])
    with pytest.raises(CohortInputError, match=r"not a cBioPortal sample file: column.*SAMPLE_ID"):
        read_cbioportal_file(path, kind="sample")


def test_comma_separated_file_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("PATIENT_ID,AGE\nP1,50\n")
    with pytest.raises(CohortInputError, match="tab-separated"):
        read_cbioportal_file(path, kind="patient")


def test_relapse_pair_choice() -> None:
    assert choose_relapse_pair(None, ["DFS", "OS", "PFS"]) == "DFS"
    assert choose_relapse_pair("pfs", ["DFS", "OS", "PFS"]) == "PFS"
    assert choose_relapse_pair("RFS_MONTHS", ["RFS"]) == "RFS"
    assert choose_relapse_pair(None, ["OS"]) is None  # death is not relapse: no relapse labels
    assert choose_relapse_pair(None, []) is None
    with pytest.raises(CohortInputError, match="available: DFS"):
        choose_relapse_pair("DMFS", ["DFS"])


def test_load_merges_patient_and_sample_files(tmp_path: Path) -> None:
    patients = write_cbioportal(tmp_path / "p.txt", [patient_row("P1"), patient_row("P2")])
    samples = write_cbioportal(
        tmp_path / "s.txt",
        [sample_row("P1-T", "P1"), sample_row("P2-T", "P2", DMETS_DX_LIVER="Unknown")],
    )
    data = load_cbioportal(patients, samples)
    assert data.relapse_source == "DFS_MONTHS + DFS_STATUS"
    assert data.sites_absent == ()
    assert data.samples is not None
    assert pd.isna(data.samples.loc["P2-T", "site_liver"])  # Unknown -> missing
    assert data.samples.loc["P1-T", "site_bone"] == "Yes"
    assert data.patients.loc["P1", "stage"] == "Stage IIA"


def test_files_without_site_columns_carry_relapse_labels_only(tmp_path: Path) -> None:
    patients = write_cbioportal(tmp_path / "p.txt", [patient_row("P1")])
    data = load_cbioportal(patients)
    assert data.relapse_source == "DFS_MONTHS + DFS_STATUS"
    assert data.sites_absent == schema.site_columns()


def test_files_without_relapse_pair_carry_site_labels_only(tmp_path: Path) -> None:
    row = {k: v for k, v in patient_row("P1", DMETS_DX_BONE="Yes").items() if "DFS" not in k}
    data = load_cbioportal(write_cbioportal(tmp_path / "p.txt", [row]))
    assert data.relapse_source is None
    assert "site_bone" not in data.sites_absent


def test_files_with_no_labels_for_either_task_are_refused(tmp_path: Path) -> None:
    row = {
        k: v
        for k, v in patient_row("P1").items()
        if "DFS" not in k and not k.startswith("DMETS_DX_")
    }
    with pytest.raises(CohortInputError, match="no labels for either task"):
        load_cbioportal(write_cbioportal(tmp_path / "p.txt", [row]))


def test_repeated_patient_ids_in_a_patient_file_are_refused(tmp_path: Path) -> None:
    rows = [patient_row("P1", DMETS_DX_BONE="Yes"), patient_row("P1", DMETS_DX_BONE="No")]
    patients = write_cbioportal(tmp_path / "p.txt", rows)
    samples = write_cbioportal(tmp_path / "s.txt", [sample_row("P1-T", "P1")])
    with pytest.raises(CohortInputError, match="PATIENT_ID values repeat"):
        load_cbioportal(patients, samples)
