"""Studies as researchers hold them, end to end: real file formats -> cohort -> train -> serve.

Each study is written from a simulated cohort (the simulator's zero-rich CIBERSORT-like
fractions, stage IV patients, missing ages and stages) in the formats users bring: cBioPortal
clinical files with AJCC stage strings and ``[Not Available]`` cells, a CIBERSORT results table,
or a plain CSV with a mapping of four keys. Each carries the labels of one task only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from metapredict import registry, schema
from metapredict.cli import app
from metapredict.settings import StoreSettings
from metapredict.simulator import default_config, simulate_cohort
from serving.app import create_app
from serving.settings import ServingSettings
from tests.unit.cohort_fixtures import write_cbioportal, write_cibersort_table

pytestmark = pytest.mark.slow

#: How a study writes each simulated cancer type (cBioPortal CANCER_TYPE_DETAILED).
TYPE_TEXT = {
    "breast": "Breast Invasive Ductal Carcinoma",
    "colorectal": "Colon Adenocarcinoma",
    "lung_adenocarcinoma": "Lung Adenocarcinoma",
    "melanoma": "Cutaneous Melanoma",
    "prostate": "Prostate Adenocarcinoma",
    # a type the simulator never had: the study's pancreatic patients become head and neck
    "pancreatic": "Head and Neck Squamous Cell Carcinoma",
    "gastric": "Stomach Adenocarcinoma",
    "renal": "Renal Clear Cell Carcinoma",
}
#: AJCC spellings seen in real files, cycled per stage group.
STAGE_TEXT = {
    "I": ("Stage I", "STAGE IA", "IB"),
    "II": ("Stage IIA", "IIB", "stage ii"),
    "III": ("Stage IIIB", "IIIC", "STAGE III"),
    "IV": ("Stage IV", "stage iv", "IVA"),
}
#: The default model (sized to the cohort); fewer folds and resamples keep the suite quick.
SMALL_TROPISM = (
    "[cv]\nfolds = 3\nrepeats = 1\nbootstrap_resamples = 20\n[intervals]\nmembers = 2\n"
    "[model]\ncalibration_folds = 2\n"
)
SMALL_DORMANCY = (
    "[cv]\nfolds = 3\nrepeats = 1\nbootstrap_resamples = 20\n[intervals]\nmembers = 2\n"
)


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def one_line(text: str) -> str:
    return " ".join(text.split())


def _stage_text(stage: Any, i: int) -> str:
    if stage is None or (isinstance(stage, float) and math.isnan(stage)):
        return "[Not Available]"
    return STAGE_TEXT[str(stage)][i % 3]


def write_study(
    folder: Path, cohort: pd.DataFrame, *, relapse: bool, sites: bool
) -> dict[str, Path]:
    """cBioPortal patient and sample files plus a CIBERSORT table for ``cohort``."""
    folder.mkdir(parents=True, exist_ok=True)
    months, event = schema.survival_columns()
    patients, samples = [], []
    for i, row in enumerate(cohort.itertuples(index=False)):
        r = row._asdict()
        pid = str(r["patient_id"])
        age = r["age_years"]
        patient = {
            "PATIENT_ID": pid,
            "AGE": "[Not Available]" if math.isnan(age) else f"{age:g}",
            "AJCC_PATHOLOGIC_TUMOR_STAGE": _stage_text(r["stage"], i),
            "OS_MONTHS": f"{r[months] + 3:.1f}",
            "OS_STATUS": "0:LIVING",
        }
        if relapse:
            patient["DFS_MONTHS"] = f"{r[months]:.1f}"
            patient["DFS_STATUS"] = "1:Recurred/Progressed" if r[event] else "0:DiseaseFree"
        patients.append(patient)
        sample = {
            "SAMPLE_ID": f"{pid}-01",
            "PATIENT_ID": pid,
            "SAMPLE_TYPE": "Primary",
            "CANCER_TYPE_DETAILED": TYPE_TEXT[str(r["cancer_type"])],
        }
        if sites:
            for info in schema.columns(schema.Cohort):
                if info.group == "site" and info.name in r:
                    sample[f"DMETS_DX_{info.label}"] = "Yes" if r[info.name] else "No"
        samples.append(sample)
    lm22 = cohort[list(schema.lm22_columns())].to_numpy()
    return {
        "patient": write_cbioportal(folder / "data_clinical_patient.txt", patients),
        "sample": write_cbioportal(folder / "data_clinical_sample.txt", samples),
        "immune": write_cibersort_table(
            folder / "CIBERSORT.Output_Job1.txt", [s["SAMPLE_ID"] for s in samples], lm22
        ),
    }


def build(files: dict[str, Path], out: Path) -> Any:
    return run(
        "cohort", "build", "--immune", str(files["immune"]), "--clinical", str(files["patient"]),
        "--sample-clinical", str(files["sample"]), "--out", str(out),
    )  # fmt: skip


def train(task: str, data: Path, tmp_path: Path) -> Any:
    config = tmp_path / f"{task}.toml"
    config.write_text(SMALL_TROPISM if task == "tropism" else SMALL_DORMANCY)
    return run("train", task, "--data", str(data), "--config", str(config))


def test_a_cbioportal_study_with_only_dfs_trains_dormancy_and_refuses_tropism(
    tmp_store: StoreSettings, tmp_path: Path
) -> None:
    cohort = simulate_cohort(1200, 31, default_config())
    files = write_study(tmp_path / "tcga", cohort, relapse=True, sites=False)
    out = tmp_path / "tcga.parquet"
    built = build(files, out)
    assert built.exit_code == 0, built.output
    text = one_line(built.output)
    assert "it can train: dormancy" in text
    frame = pd.read_parquet(out)
    assert not any(c.startswith("site_") for c in frame.columns)
    assert frame["stage"].eq("IV").sum() == cohort["stage"].eq("IV").sum()  # all kept
    assert frame["age_years"].isna().sum() == cohort["age_years"].isna().sum()

    trained = train("dormancy", out, tmp_path)
    assert trained.exit_code == 0, trained.output
    assert "metastatic at diagnosis left out" in one_line(trained.output)
    predictor = registry.load("dormancy", "champion", tmp_store)
    assert predictor.categories["stage"] == ("I", "II", "III")
    assert "head_and_neck" in predictor.cancer_types

    refused = train("tropism", out, tmp_path)
    assert refused.exit_code == 1
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert lines == [
        f"refused: {out}: this cohort cannot train tropism: no site column (site_<organ>, e.g. "
        "site_bone); nothing was trained or registered"
    ]


def test_a_site_only_study_with_stage_iv_missing_ages_and_a_new_type_trains_and_serves(
    tmp_store: StoreSettings, tmp_path: Path
) -> None:
    cohort = simulate_cohort(3000, 32, default_config())
    cohort = cohort.drop(columns=["site_adrenal_gland"])  # this study recorded seven sites
    files = write_study(tmp_path / "met", cohort, relapse=False, sites=True)
    out = tmp_path / "met.parquet"
    built = build(files, out)
    assert built.exit_code == 0, built.output
    assert "it can train: tropism" in one_line(built.output)

    trained = train("tropism", out, tmp_path)
    assert trained.exit_code == 0, trained.output
    predictor = registry.load("tropism", "champion", tmp_store)
    assert "adrenal_gland" not in predictor.sites and "bone" in predictor.sites
    assert "head_and_neck" in predictor.cancer_types and "IV" in predictor.categories["stage"]
    refused = train("dormancy", out, tmp_path)
    assert refused.exit_code == 1 and "no relapse pair" in refused.output

    profile = simulate_cohort(50, 99, default_config()).iloc[0]
    patient: dict[str, Any] = {c: float(profile[c]) for c in schema.lm22_columns()}
    zeros = [c for c in schema.lm22_columns() if patient[c] == 0.0]
    assert len(zeros) >= 5  # a CIBERSORT-like profile
    patient |= {
        "id": "hn-7",
        "cancer_type": "Head and Neck Cancer",  # normalised to head_and_neck
        "stage": "IV",
        "age_years": None,
    }
    settings = ServingSettings(
        tracking_uri=tmp_store.tracking_uri,
        artifact_root=tmp_store.artifact_root,
        tasks=("tropism",),
        poll_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/predict/tropism", json={"patients": [patient]})
        assert answer.status_code == 200, answer.text
        [result] = answer.json()["patients"]
        assert list(result["probabilities"]) == list(predictor.sites)
        assert all(0 < p < 1 for p in result["probabilities"].values())
        assert "age_years" in result["missing_inputs"]
        # its exact zeros are inside the ranges the model saw
        assert not [w for w in result["warnings"] if w.split("=")[0] in zeros]
        models = client.get("/v1/models").json()["models"]["tropism"]
        assert models["sites"] == list(predictor.sites)
        assert "head_and_neck" in models["categories"]["cancer_type"]
        document = client.get("/openapi.json").json()
        operation = document["paths"]["/v1/predict/tropism"]["post"]
        body = operation["requestBody"]["content"]["application/json"]
        enum = body["schema"]["properties"]["patients"]["items"]["properties"]["cancer_type"]
        assert enum["enum"] == list(predictor.cancer_types)
        example = operation["responses"]["200"]["content"]["application/json"]["example"]
        assert list(example["patients"][0]["probabilities"]) == list(predictor.sites)


def test_a_csv_with_a_four_key_mapping_and_a_cibersort_table_trains_dormancy(
    tmp_store: StoreSettings, tmp_path: Path
) -> None:
    cohort = simulate_cohort(900, 33, default_config())
    months, event = schema.survival_columns()
    pd.DataFrame(
        {
            "patient": cohort["patient_id"],
            "histology": [TYPE_TEXT[t] for t in cohort["cancer_type"]],
            "rfs_months": cohort[months].round(1),
            "rfs_event": cohort[event].astype(int),
        }
    ).to_csv(tmp_path / "clinical.csv", index=False)
    (tmp_path / "mapping.toml").write_text(
        "[columns]\n"
        'patient_id = "patient"\n'
        'cancer_type = "histology"\n'
        'relapse_months = "rfs_months"\n'
        'relapse_status = "rfs_event"\n'
    )
    immune = write_cibersort_table(
        tmp_path / "CIBERSORT.txt",
        cohort["patient_id"].tolist(),
        cohort[list(schema.lm22_columns())].to_numpy(),
    )
    out = tmp_path / "geo.parquet"
    built = run(
        "cohort", "build", "--immune", str(immune), "--clinical", str(tmp_path / "clinical.csv"),
        "--mapping", str(tmp_path / "mapping.toml"), "--out", str(out),
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    frame = pd.read_parquet(out)
    assert frame["stage"].isna().all() and frame["age_years"].isna().all()
    assert set(frame["cancer_type"]) == {
        "breast", "colorectal", "lung_adenocarcinoma", "melanoma", "prostate",
        "head_and_neck", "gastric", "renal",
    }  # fmt: skip
    trained = train("dormancy", out, tmp_path)
    assert trained.exit_code == 0, trained.output
    predictor = registry.load("dormancy", "champion", tmp_store)
    risks = predictor.predict(frame)
    assert risks["risk_120"].std() > 0  # not a constant model
    assert np.isfinite(risks.to_numpy()).all()
