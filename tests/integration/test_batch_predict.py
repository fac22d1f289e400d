"""``metapredict predict`` (local engine): the API's fields per patient, invalid rows reported
and never scored silently, output written atomically, the same answers whatever the chunking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from metapredict import batch_scoring, registry, schema
from metapredict.cli import app
from metapredict.simulator import default_config, simulate_cohort
from tests.support import TrainedStore

pytestmark = pytest.mark.slow


@pytest.fixture
def store_env(trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch) -> TrainedStore:
    monkeypatch.setenv("METAPREDICT_TRACKING_URI", trained_store.settings.tracking_uri)
    monkeypatch.setenv("METAPREDICT_ARTIFACT_ROOT", trained_store.settings.artifact_root)
    return trained_store


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    """Resected patients (stage I-III): valid for both tasks."""
    frame = simulate_cohort(400, seed=21, config=default_config())
    return frame[frame["stage"].isin(["I", "II", "III"])].reset_index(drop=True)


def predict(*args: str) -> Result:
    return CliRunner().invoke(app, ["predict", *args])


def summary_of(result: Result) -> dict[str, object]:
    line = next(x for x in result.stdout.splitlines() if x.startswith("{"))
    return dict(json.loads(line))


def test_scores_every_patient_with_the_registered_model(
    store_env: TrainedStore, cohort: pd.DataFrame, tmp_path: Path
) -> None:
    data, out = tmp_path / "cohort.parquet", tmp_path / "scores" / "tropism.parquet"
    cohort.to_parquet(data)

    result = predict("--task", "tropism", "--data", str(data), "--out", str(out), "--explain")

    assert result.exit_code == 0, result.output
    summary = summary_of(result)
    assert summary["rows_scored"] == len(cohort) and summary["invalid_rows"] == 0
    scores = pd.read_parquet(out)
    predictor = registry.load("tropism", settings=store_env.settings)
    expected = predictor.predict_batch(cohort[list(schema.feature_columns())])
    assert scores["row"].tolist() == list(range(len(cohort)))
    assert scores["id"].tolist() == cohort["patient_id"].tolist()
    for site in predictor.output_names:
        np.testing.assert_allclose(scores[f"probability_{site}"], expected[site], rtol=1e-12)
        np.testing.assert_allclose(scores[f"probability_{site}_lower"], expected[f"{site}_lower"])
        assert (scores[f"probability_{site}_lower"] <= scores[f"probability_{site}"]).all()
    first = scores.iloc[0]
    ranked = first["ranked_sites"].split(",")
    assert sorted(ranked) == sorted(predictor.output_names)
    assert first[f"probability_{ranked[0]}"] == max(
        first[f"probability_{s}"] for s in predictor.output_names
    )
    top = json.loads(first["top_features"])
    assert set(top) == set(predictor.output_names)
    assert {"feature", "contribution", "value"} == set(top[ranked[0]][0])
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind
    meta = json.loads(pq.read_schema(out).metadata[b"metapredict"])
    assert meta["model"]["version"] == predictor.info.version


def test_invalid_rows_fail_the_run_unless_skipped_and_are_reported(
    store_env: TrainedStore, cohort: pd.DataFrame, tmp_path: Path
) -> None:
    bad = cohort.head(30).copy()
    bad.loc[4, "platelet_count"] = -3.0  # below the schema's minimum
    bad.loc[11, "cancer_type"] = "Not A Label"
    data, out = tmp_path / "cohort.csv", tmp_path / "dormancy.csv"
    bad.to_csv(data, index=False)

    failed = predict("--task", "dormancy", "--data", str(data), "--out", str(out))

    assert failed.exit_code == 1, failed.output
    assert not out.exists()
    report = pd.read_csv(tmp_path / "dormancy.invalid-rows.csv")
    assert report["row"].tolist() == [4, 11]
    assert report["field"].tolist() == ["platelet_count", "cancer_type"]
    assert "at least 5" in report["rule"].iloc[0]
    assert report["id"].iloc[0] == bad.loc[4, "patient_id"]

    skipped = predict(
        "--task", "dormancy", "--data", str(data), "--out", str(out), "--skip-invalid"
    )

    assert skipped.exit_code == 0, skipped.output
    scores = pd.read_csv(out)
    assert scores["row"].tolist() == [r for r in range(30) if r not in (4, 11)]
    assert {"cumulative_risk_60", "late_relapse_probability", "risk_group"} <= set(scores.columns)
    assert summary_of(skipped)["invalid_rows"] == 2


def test_a_model_version_and_a_file_without_ids_or_extras(
    store_env: TrainedStore, cohort: pd.DataFrame, tmp_path: Path
) -> None:
    lean = cohort[[*schema.lm22_columns(), "cancer_type", "stage"]].head(20)
    data, out = tmp_path / "lean.parquet", tmp_path / "out.parquet"
    lean.to_parquet(data)

    result = predict("--task", "dormancy", "--data", str(data), "--out", str(out), "--version", "1")

    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert "id" not in scores.columns
    assert scores["missing_inputs"].str.contains("platelet_count").all()
    assert summary_of(result)["model"] == {
        "name": "metapredict-dormancy",
        "version": "1",
        "alias": "",
    }


def test_chunks_do_not_change_the_answers(
    trained_store: TrainedStore, cohort: pd.DataFrame, tmp_path: Path
) -> None:
    predictor = registry.load("dormancy", settings=trained_store.settings)
    data = tmp_path / "cohort.parquet"
    cohort.to_parquet(data, row_group_size=50)
    outs = []
    for rows in (7, 10_000):
        out = tmp_path / f"out-{rows}.parquet"
        seen: list[int] = []
        batch_scoring.score_file(
            predictor, data, out, explain=True, chunk_rows=rows, progress=seen.append
        )
        assert sum(seen) == len(cohort)
        outs.append(pd.read_parquet(out))
    pd.testing.assert_frame_equal(outs[0], outs[1])


def test_after_an_invalid_row_the_rest_is_checked_but_not_encoded(
    trained_store: TrainedStore,
    cohort: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without --skip-invalid nothing is written once a row fails: the later chunks are still
    checked (the report lists every problem) but no longer encoded for scoring."""
    predictor = registry.load("dormancy", settings=trained_store.settings)
    encoded: list[int] = []
    encode = predictor.encode_frame

    def counting(frame: pd.DataFrame) -> np.ndarray:
        encoded.append(len(frame))
        return encode(frame)

    monkeypatch.setattr(predictor, "encode_frame", counting)
    bad = cohort.head(100).copy()
    bad.loc[3, "platelet_count"] = -3.0
    bad.loc[97, "cancer_type"] = "Not A Label"
    data, out = tmp_path / "cohort.parquet", tmp_path / "out.parquet"
    bad.to_parquet(data)

    summary = batch_scoring.score_file(predictor, data, out, chunk_rows=10)

    assert [p.row for p in summary.problems] == [3, 97]
    assert summary.rows_read == 100 and summary.rows_scored == 0
    assert not out.exists()
    # the first chunk, and at most the one read ahead while the problem was being recorded
    assert 1 <= len(encoded) <= 2, encoded


def test_unusable_input_is_refused_naming_the_file(store_env: TrainedStore, tmp_path: Path) -> None:
    data = tmp_path / "cohort.json"
    data.write_text("{}")

    result = predict("--task", "tropism", "--data", str(data), "--out", str(tmp_path / "o.csv"))

    assert result.exit_code == 2
    assert "cohort.json" in " ".join(result.output.split())
