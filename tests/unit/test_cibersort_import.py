"""Reading CIBERSORT / CIBERSORTx result tables into schema columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cohort_fixtures import LM22_LABELS, dirichlet_fractions, write_cibersort_table

from metapredict import schema
from metapredict.cohorts.cibersort import read_immune_table
from metapredict.cohorts.errors import CohortInputError


def test_tab_separated_cibersort_table_maps_labels_and_keeps_qc(tmp_path: Path) -> None:
    fractions = dirichlet_fractions(3, seed=0)
    path = write_cibersort_table(
        tmp_path / "CIBERSORT.Output.txt", ["s1", "s2", "s3"], fractions, p_values=[0, 0.02, 0.3]
    )
    table = read_immune_table(path)
    assert table.mode == "relative"
    assert list(table.frame.index) == ["s1", "s2", "s3"]
    np.testing.assert_allclose(table.frame[list(schema.lm22_columns())], fractions, atol=1e-6)
    assert table.frame["cibersort_p_value"].tolist() == [0.0, 0.02, 0.3]
    assert {"cibersort_correlation", "cibersort_rmse"} <= set(table.frame.columns)
    assert table.ignored_columns == ()


def test_comma_separated_cibersortx_table_with_input_sample_header(tmp_path: Path) -> None:
    path = write_cibersort_table(
        tmp_path / "CIBERSORTx_Results.csv",
        ["A", "B"],
        dirichlet_fractions(2, seed=1),
        id_header="Input Sample",
        sep=",",
    )
    assert list(read_immune_table(path).frame.index) == ["A", "B"]


def test_absolute_mode_detected_from_the_absolute_score_column(tmp_path: Path) -> None:
    path = write_cibersort_table(
        tmp_path / "abs.txt", ["A", "B"], dirichlet_fractions(2, seed=2) * 0.4, absolute_score=True
    )
    table = read_immune_table(path)
    assert table.mode == "absolute"
    assert "Absolute score" in table.mode_reason
    assert "cibersort_absolute_score" in table.frame


def test_absolute_mode_detected_from_row_sums_and_overridable(tmp_path: Path) -> None:
    path = write_cibersort_table(
        tmp_path / "abs.txt", ["A", "B", "C"], dirichlet_fractions(3, seed=3) * 0.3
    )
    assert read_immune_table(path).mode == "absolute"
    assert read_immune_table(path, mode="relative").mode == "relative"


def test_cibersort_9999_p_value_means_not_computed(tmp_path: Path) -> None:
    path = write_cibersort_table(
        tmp_path / "t.txt", ["A", "B"], dirichlet_fractions(2, seed=4), p_values=[9999, 0.01]
    )
    p = read_immune_table(path).frame["cibersort_p_value"]
    assert np.isnan(p["A"]) and p["B"] == 0.01


def test_extra_score_columns_are_kept_and_unknown_ones_reported(tmp_path: Path) -> None:
    path = write_cibersort_table(
        tmp_path / "t.txt",
        ["A", "B"],
        dirichlet_fractions(2, seed=5),
        extra_columns={"mdsc_score": [0.5, -1.0], "Batch": [1, 2]},
    )
    table = read_immune_table(path)
    assert table.frame["mdsc_score"].tolist() == [0.5, -1.0]
    assert table.ignored_columns == ("Batch",)


def test_missing_lm22_column_is_named(tmp_path: Path) -> None:
    path = write_cibersort_table(tmp_path / "t.txt", ["A"], dirichlet_fractions(1, seed=6))
    text = path.read_text().replace("Macrophages M2", "Macrophages X")
    path.write_text(text)
    with pytest.raises(CohortInputError, match="'Macrophages M2'"):
        read_immune_table(path)


def test_table_without_its_id_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    lines = ["\t".join(LM22_LABELS), "\t".join(["0.04545"] * 22)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CohortInputError, match="first column must hold sample ids"):
        read_immune_table(path)


def test_duplicate_sample_ids_are_refused(tmp_path: Path) -> None:
    path = write_cibersort_table(tmp_path / "t.txt", ["A", "A"], dirichlet_fractions(2, seed=7))
    with pytest.raises(CohortInputError, match="more than once: A"):
        read_immune_table(path)


def test_non_numeric_fraction_is_refused(tmp_path: Path) -> None:
    path = write_cibersort_table(tmp_path / "t.txt", ["A", "B"], dirichlet_fractions(2, seed=8))
    lines = path.read_text().splitlines()
    cells = lines[1].split("\t")
    cells[5] = "oops"
    lines[1] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CohortInputError, match="non-numeric"):
        read_immune_table(path)
