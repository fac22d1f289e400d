"""``metapredict cohort build`` and ``metapredict deconvolve`` end to end, on real-format files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from metapredict import schema
from metapredict.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from cohort_fixtures import (
    dirichlet_fractions,
    mix,
    patient_row,
    sample_row,
    synthetic_signature,
    write_cbioportal,
    write_cibersort_table,
    write_matrix,
)


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def one_line(text: str) -> str:
    """Rich wraps long messages to the terminal width; compare with whitespace collapsed."""
    return " ".join(text.split())


@pytest.fixture
def study(tmp_path: Path) -> dict[str, Path]:
    """A small cBioPortal study: 5 patients, 6 samples, one of each common problem."""
    patients = [
        patient_row("P1"),
        patient_row("P2", DFS_STATUS="0:DiseaseFree", DFS_MONTHS="96"),
        patient_row("P3", AGE="[Not Available]"),
        patient_row("P4", AJCC_PATHOLOGIC_TUMOR_STAGE="STAGE IV"),
        patient_row("P5"),  # no immune sample
    ]
    samples = [
        sample_row("P1-T", "P1", DMETS_DX_CNS_BRAIN="Yes", DMETS_DX_LIVER="Unknown"),
        sample_row("P1-M", "P1", SAMPLE_TYPE="Metastasis"),
        sample_row("P2-T", "P2", DMETS_DX_BONE="No"),
        sample_row("P3-T", "P3"),
        sample_row("P4-T", "P4"),
        sample_row("P5-T", "P5"),
    ]
    ids = ["P1-M", "P1-T", "P2-T", "P3-T", "P4-T", "UNKNOWN-1"]
    return {
        "patient": write_cbioportal(tmp_path / "data_clinical_patient.txt", patients),
        "sample": write_cbioportal(tmp_path / "data_clinical_sample.txt", samples),
        "immune": write_cibersort_table(
            tmp_path / "CIBERSORT.Output_Job1.txt", ids, dirichlet_fractions(len(ids), seed=0)
        ),
    }


def test_build_writes_a_valid_cohort_and_a_join_report(
    study: dict[str, Path], tmp_path: Path
) -> None:
    out, report_path = tmp_path / "out" / "cohort.parquet", tmp_path / "report.json"
    result = run(
        "cohort", "build",
        "--immune", str(study["immune"]),
        "--clinical", str(study["patient"]),
        "--sample-clinical", str(study["sample"]),
        "--relapse-pair", "DFS",
        "--report", str(report_path),
        "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cohort = pd.read_parquet(out)
    schema.validate(cohort, schema.Cohort, extra_columns_allowed=())
    assert cohort["patient_id"].tolist() == ["P1", "P2", "P3", "P4"]
    assert cohort["sample_id"].tolist() == ["P1-T", "P2-T", "P3-T", "P4-T"]
    assert cohort["site_brain"].tolist() == [True, False, False, False]
    assert cohort["site_liver"].tolist() == [False, False, False, False]
    assert np.isnan(cohort["age_years"].iloc[2])  # missing age: kept, missing
    assert cohort["stage"].tolist()[3] == "IV"  # stage IV: kept

    report = json.loads(report_path.read_text())
    assert report["unmatched_immune"] == ["UNKNOWN-1"]
    assert report["unmatched_clinical"] == ["P5"]
    assert report["duplicates"] == [{"patient_id": "P1", "kept": "P1-T", "dropped": ["P1-M"]}]
    assert report["dropped_counts"] == {}
    assert report["missing_site_flags_relapsed"] == {"site_liver": 1}
    assert report["site_counts"]["site_brain"] == 1
    assert report["rows"] == 4 and report["valid"] is True
    assert report["stage_counts"] == {"II": 3, "IV": 1} and report["missing_age"] == 1
    assert report["tasks"]["tropism"].startswith("yes: 3 metastatic patient(s)")
    assert report["tasks"]["dormancy"] == (
        "yes: 3 patient(s), 2 distant relapse(s); 1 stage IV patient(s) will be left out"
    )
    text = one_line(result.output)
    assert "can train dormancy" in text and "yes: 3 patient(s)" in text
    assert f"wrote {out}" in text and "it can train: tropism, dormancy" in text


def test_invalid_cohort_is_reported_and_nothing_is_written(
    study: dict[str, Path], tmp_path: Path
) -> None:
    fractions = dirichlet_fractions(2, seed=1)
    fractions[0, 5] = -0.3
    immune = write_cibersort_table(tmp_path / "bad.txt", ["P1-T", "P2-T"], fractions)
    out = tmp_path / "cohort.parquet"
    result = run(
        "cohort", "build", "--immune", str(immune), "--clinical", str(study["patient"]),
        "--sample-clinical", str(study["sample"]), "--mode", "relative", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 1
    text = one_line(result.output)
    assert "nothing written" in text
    assert "row 'P1', column 't_cells_cd4_memory_resting': must be at least 0" in text
    assert not out.exists()
    assert list(tmp_path.glob("*.tmp")) == []


def test_malformed_cbioportal_header_is_a_clear_error(
    study: dict[str, Path], tmp_path: Path
) -> None:
    bad = write_cbioportal(tmp_path / "bad_patient.txt", [patient_row("P1")], header_lines=2)
    out = tmp_path / "cohort.parquet"
    result = run(
        "cohort", "build", "--immune", str(study["immune"]), "--clinical", str(bad),
        "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "malformed cBioPortal header: expected 4 lines starting with '#'" in one_line(
        result.output
    )
    assert not out.exists()


def test_p_value_filter_from_the_command_line(study: dict[str, Path], tmp_path: Path) -> None:
    ids = ["P1-T", "P2-T"]
    immune = write_cibersort_table(
        tmp_path / "p.txt", ids, dirichlet_fractions(2, seed=2), p_values=[0.2, 0.001]
    )
    out = tmp_path / "cohort.parquet"
    result = run(
        "cohort", "build", "--immune", str(immune), "--clinical", str(study["patient"]),
        "--sample-clinical", str(study["sample"]), "--max-p-value", "0.05", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)["sample_id"].tolist() == ["P2-T"]


def test_generic_csv_with_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "mapping.toml").write_text(
        '[columns]\npatient_id = "id"\nstage = "stage"\nage_years = "age"\n'
        'relapse_months = "months"\nrelapse_status = "relapsed"\n'
        '[columns.sites]\nliver = "liver_met"\n[constants]\ncancer_type = "colorectal"\n'
    )
    pd.DataFrame(
        {
            "id": ["c1", "c2"],
            "stage": ["II", "III"],
            "age": [64, 58],
            "months": [30.0, 70.0],
            "relapsed": ["yes", "no"],
            "liver_met": ["yes", "no"],
        }
    ).to_csv(tmp_path / "clinical.csv", index=False)
    immune = write_cibersort_table(tmp_path / "i.txt", ["c1", "c2"], dirichlet_fractions(2, 3))
    out = tmp_path / "cohort.parquet"
    result = run(
        "cohort", "build", "--immune", str(immune), "--clinical", str(tmp_path / "clinical.csv"),
        "--mapping", str(tmp_path / "mapping.toml"), "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cohort = pd.read_parquet(out)
    assert cohort["site_liver"].tolist() == [True, False]
    assert cohort["cancer_type"].tolist() == ["colorectal", "colorectal"]


def test_expression_to_cohort_through_deconvolve(tmp_path: Path) -> None:
    signature = synthetic_signature(n_genes=150, seed=4)
    truth = dirichlet_fractions(4, seed=5)
    expression = mix(signature, truth, background_genes=60)
    expression.columns = ["P1-T", "P2-T", "P3-T", "P4-T"]
    expression.loc[["BG00000", "BG00001"]] *= np.array([1.0, 3.0, 9.0, 27.0])
    write_matrix(tmp_path / "sig.txt", signature)
    write_matrix(tmp_path / "expr.txt", np.log2(expression + 1.0))  # arrays come log2
    (tmp_path / "sets.gmt").write_text(
        "mdsc_score\tmade-up markers\tBG00000\tBG00001\nOTHER\tx\tBG00002\tBG00003\n"
    )
    results = tmp_path / "CIBERSORT.Output.txt"
    deconv = run(
        "deconvolve", str(tmp_path / "expr.txt"), "--signature", str(tmp_path / "sig.txt"),
        "--gmt", str(tmp_path / "sets.gmt"), "--permutations", "10", "--seed", "1",
        "--n-jobs", "1", "--no-quantile-normalize", "--out", str(results),
    )  # fmt: skip
    assert deconv.exit_code == 0, deconv.output
    assert "treated as log2" in one_line(deconv.output)
    assert "quantile normalisation off: chosen" in one_line(deconv.output)
    assert "1 GMT set(s) ignored" in one_line(deconv.output)
    table = pd.read_csv(results, sep="\t")
    assert table.columns[0] == "Mixture" and "mdsc_score" in table.columns
    assert table["P-value"].between(0, 1).all()

    patients = [patient_row(f"P{i}") for i in range(1, 5)]
    samples = [sample_row(f"P{i}-T", f"P{i}") for i in range(1, 5)]
    write_cbioportal(tmp_path / "p.txt", patients)
    write_cbioportal(tmp_path / "s.txt", samples)
    out = tmp_path / "cohort.parquet"
    build = run(
        "cohort", "build", "--immune", str(results), "--clinical", str(tmp_path / "p.txt"),
        "--sample-clinical", str(tmp_path / "s.txt"), "--max-p-value", "0.05",
        "--out", str(out),
    )  # fmt: skip
    assert build.exit_code == 0, build.output
    cohort = pd.read_parquet(out)
    schema.validate(cohort, schema.Cohort, extra_columns_allowed=())
    assert cohort["mdsc_score"].is_monotonic_increasing
    estimated = cohort[list(schema.lm22_columns())].to_numpy()
    r = [np.corrcoef(estimated[i], truth[i])[0, 1] for i in range(4)]
    assert min(r) >= 0.95


def test_deconvolve_refuses_ensembl_ids(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        np.full((30, 2), 7.5),
        index=pd.Index([f"ENSG{i:011d}" for i in range(30)], name="gene_id"),
        columns=["a", "b"],
    )
    write_matrix(tmp_path / "expr.txt", frame)
    write_matrix(tmp_path / "sig.txt", synthetic_signature(40, seed=0))
    out = tmp_path / "res.txt"
    result = run(
        "deconvolve", str(tmp_path / "expr.txt"), "--signature", str(tmp_path / "sig.txt"),
        "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "look like Ensembl ids" in one_line(result.output)
    assert not out.exists()


def test_deconvolve_a_merged_rsem_table_with_tiny_negatives_and_empty_cells(
    tmp_path: Path,
) -> None:
    signature = synthetic_signature(n_genes=150, seed=6)
    truth = dirichlet_fractions(6, seed=7)
    expression = mix(signature, truth, noise_sd=0.2, seed=8, background_genes=400) * 50
    expression.iloc[-1, 0] = 1.2e5
    expression.loc[["BG00001", "BG00002", "BG00003"], ["S000", "S004"]] = -0.7  # RSEM residue
    expression.loc[expression.index[:12], ["S002", "S005"]] = np.nan  # merged series
    expression = expression.drop(index=["SYN0020", "SYN0021"])
    write_matrix(tmp_path / "sig.txt", signature)
    write_matrix(tmp_path / "rsem.txt", expression)
    out = tmp_path / "res.tsv"
    result = run(
        "deconvolve", str(tmp_path / "rsem.txt"), "--signature", str(tmp_path / "sig.txt"),
        "--n-jobs", "1", "--permutations", "20", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # notes, logs and progress go to stderr
    text = one_line(result.stderr)
    assert "6 small negative value(s)" in text and "set to 0" in text
    assert "12 gene(s) empty in some samples (2 sample(s) affected)" in text
    assert "quantile normalisation off: linear-scale input" in text
    assert "148 of 150 signature genes in the file" in text
    assert "genes used per sample: 136-148 (column 'Genes used')" in text
    assert "signature genes absent from the file: 2 (SYN0020, SYN0021)" in text
    assert "signature genes empty in some samples: 12 (SYN0000," in text
    assert "2 sample(s) fitted without the ones they lack" in text
    assert "one permutation null per gene set (2 gene sets)" in text
    table = pd.read_csv(out, sep="\t")
    assert table["Genes used"].tolist() == [148, 148, 136, 148, 148, 136]
    estimated = table[[c for c in table.columns if c in schema.lm22_labels()]].to_numpy()
    r = [np.corrcoef(estimated[i], truth[i])[0, 1] for i in range(6)]
    assert min(r) >= 0.9


def test_deconvolve_refuses_a_log_ratio_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    ratios = pd.DataFrame(
        np.clip(rng.standard_t(df=4, size=(400, 5)) * 0.8, -10, 10),
        index=pd.Index([f"SYN{i:04d}" for i in range(400)], name="ID_REF"),
        columns=[f"GSM{i}" for i in range(5)],
    )
    write_matrix(tmp_path / "gse.txt", ratios)
    write_matrix(tmp_path / "sig.txt", synthetic_signature(150, seed=0))
    out = tmp_path / "res.txt"
    result = run(
        "deconvolve", str(tmp_path / "gse.txt"), "--signature", str(tmp_path / "sig.txt"),
        "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 2
    text = one_line(result.output)
    assert text.startswith("error: gse.txt: the values look centred, z-scored or log ratios")
    assert "single-channel intensities" in text
    assert not out.exists()
