"""The predictor artifact (JSON + LightGBM text): a save/load round trip predicts exactly what
the model in memory predicts, with intervals and explanations; any change is refused; reading
it never unpickles."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sksurv.util import Surv

from metapredict import features, schema
from metapredict.feature_encoder import FeatureEncoder
from metapredict.models.dormancy import DiscreteTimeHazard
from metapredict.models.ensemble import IntervalConfig, fit_ensemble
from metapredict.models.fast_rows import FAST_ROWS
from metapredict.models.tropism import TropismClassifier
from metapredict.predictor import Predictor
from metapredict.registry.artifact import (
    MANIFEST,
    ArtifactError,
    read_predictor,
    sha256_bytes,
    write_predictor,
)
from tests.support import types_of

CAT = features.categorical_indices()
MONTHS, EVENT = schema.survival_columns()
TASKS = ("tropism", "dormancy")


def _tropism(rows: pd.DataFrame) -> Predictor:
    relapsed = rows[rows[EVENT]]
    types = types_of(relapsed)
    X = features.encode_frame(relapsed, types)
    y = relapsed[list(schema.site_columns())].to_numpy()
    model = TropismClassifier(
        n_estimators=12, calibration="sigmoid", calibration_folds=2, categorical_features=CAT
    ).fit(X, y)
    return Predictor(
        task="tropism",
        model=model.model_,
        feature_ranges=FeatureEncoder().fit(relapsed).feature_ranges_,
        categories={"cancer_type": types, "stage": schema.STAGES},
        sites=schema.sites(),
        intervals=fit_ensemble(model, X, y, config=IntervalConfig(members=3), seed=3),
    )


def _dormancy(rows: pd.DataFrame) -> Predictor:
    types = types_of(rows)
    X = features.encode_frame(rows, types)
    y = Surv.from_arrays(event=rows[EVENT].to_numpy(bool), time=rows[MONTHS].to_numpy(float))
    model = DiscreteTimeHazard(n_estimators=12, min_child_samples=20, categorical_features=CAT)
    model.fit(X, y)
    return Predictor(
        task="dormancy",
        model=model.model_,
        feature_ranges=FeatureEncoder().fit(rows).feature_ranges_,
        risk_cutoffs=(0.2, 0.5),
        categories={"cancer_type": types, "stage": schema.STAGES[:3]},
        # no spread model: the intervals come from the members themselves
        intervals=fit_ensemble(
            model, X, y, config=IntervalConfig(members=3, spread_model=False), seed=3
        ),
    )


@pytest.fixture(scope="module")
def predictors(simulated_cohort: pd.DataFrame) -> dict[str, Predictor]:
    rows = simulated_cohort.head(700)
    return {"tropism": _tropism(rows), "dormancy": _dormancy(rows)}


@pytest.fixture(scope="module")
def probe(simulated_cohort: pd.DataFrame) -> pd.DataFrame:
    resected = simulated_cohort[simulated_cohort["stage"].astype(object) != "IV"]
    return resected[list(schema.feature_columns())].iloc[-(FAST_ROWS + 6) :]


@pytest.fixture(scope="module")
def saved(
    predictors: dict[str, Predictor], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, str]]:
    out = {}
    for task, predictor in predictors.items():
        directory = tmp_path_factory.mktemp(task) / "predictor"
        out[task] = (directory, write_predictor(predictor, directory))
    return out


def _copy(saved: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    import shutil

    directory, digest = saved
    target = tmp_path / "predictor"
    shutil.copytree(directory, target)
    return target, digest


@pytest.mark.parametrize("task", TASKS)
def test_a_loaded_predictor_predicts_exactly_what_the_saved_one_did(
    predictors: dict[str, Predictor],
    saved: dict[str, tuple[Path, str]],
    probe: pd.DataFrame,
    task: str,
) -> None:
    original = predictors[task]
    loaded = read_predictor(*saved[task])
    for name in ("task", "feature_ranges", "schema_version", "feature_names", "risk_cutoffs"):
        assert getattr(loaded, name) == getattr(original, name), name
    assert loaded.categories == original.categories and loaded.sites == original.sites
    assert loaded.interval_level == original.interval_level
    X = original.encode_frame(probe)
    assert X.shape[0] > FAST_ROWS
    # the batch path, then the single-row fast path (the HTTP request path)
    for rows in (X, X[:1], X[:FAST_ROWS]):
        np.testing.assert_array_equal(loaded.batch_matrix(rows), original.batch_matrix(rows))
        ours, theirs = loaded.predict_and_explain(rows), original.predict_and_explain(rows)
        np.testing.assert_array_equal(ours[0], theirs[0])
        np.testing.assert_array_equal(ours[1], theirs[1])
    pd.testing.assert_frame_equal(loaded.predict_batch(probe), original.predict_batch(probe))
    assert loaded.intervals is not None and original.intervals is not None
    np.testing.assert_array_equal(
        loaded.intervals.exact_spread(X), original.intervals.exact_spread(X)
    )
    records = probe.head(3).to_dict("records")
    assert loaded.out_of_range(records) == original.out_of_range(records)


def test_saving_is_deterministic(predictors: dict[str, Predictor], tmp_path: Path) -> None:
    first = write_predictor(predictors["dormancy"], tmp_path / "a")
    assert write_predictor(predictors["dormancy"], tmp_path / "b") == first


def test_the_document_is_plain_json_naming_every_file_by_digest(
    saved: dict[str, tuple[Path, str]],
) -> None:
    directory, digest = saved["tropism"]
    data = (directory / MANIFEST).read_bytes()
    assert sha256_bytes(data) == digest
    document = json.loads(data)
    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*.txt"))
    assert sorted(document["files"]) == files
    for name, sha in document["files"].items():
        assert sha256_bytes((directory / name).read_bytes()) == sha
    assert document["task"] == "tropism" and document["format_version"] == 1


def test_loading_never_unpickles(
    saved: dict[str, tuple[Path, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the loader unpickled something")

    for module, name in ((pickle, "load"), (pickle, "loads"), (joblib, "load")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    for task in TASKS:
        assert read_predictor(*saved[task]).task == task


def test_a_changed_document_is_refused(saved: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    directory, digest = _copy(saved["dormancy"], tmp_path)
    document = json.loads((directory / MANIFEST).read_text())
    document["risk_cutoffs"] = [0.0, 0.01]
    (directory / MANIFEST).write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match=r"predictor\.json has SHA-256 .*changed afterwards"):
        read_predictor(directory, digest)


def test_a_changed_booster_is_refused(saved: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    directory, digest = _copy(saved["tropism"], tmp_path)
    booster = directory / "boosters" / "main" / "site-0.txt"
    booster.write_text(booster.read_text().replace("shrinkage=", "shrinkage=1"))
    with pytest.raises(
        ArtifactError, match=r"boosters/main/site-0\.txt does not match the SHA-256"
    ):
        read_predictor(directory, digest)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("delete", "boosters/main/hazard.txt is missing"),
        ("truncate", "does not match the SHA-256"),
    ],
)
def test_a_missing_or_truncated_booster_is_refused(
    saved: dict[str, tuple[Path, str]], tmp_path: Path, damage: str, reason: str
) -> None:
    directory, digest = _copy(saved["dormancy"], tmp_path)
    booster = directory / "boosters" / "main" / "hazard.txt"
    if damage == "delete":
        booster.unlink()
    else:
        booster.write_bytes(booster.read_bytes()[:100])
    with pytest.raises(ArtifactError, match=reason):
        read_predictor(directory, digest)


def test_a_document_naming_files_outside_its_folder_is_refused(
    saved: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    directory, _ = _copy(saved["dormancy"], tmp_path)
    document = json.loads((directory / MANIFEST).read_text())
    document["files"]["../../outside.txt"] = "0" * 64
    data = json.dumps(document).encode()
    (directory / MANIFEST).write_bytes(data)
    with pytest.raises(ArtifactError, match="outside boosters/"):
        read_predictor(directory, sha256_bytes(data))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not a metapredict-predictor document"),
        (b"\x80\x04\x95 random bytes", "not a metapredict-predictor document"),
        (b'{"format": "something-else"}', "format"),
    ],
)
def test_an_empty_or_foreign_document_says_what_is_wrong(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    (tmp_path / MANIFEST).write_bytes(content)
    with pytest.raises(ArtifactError, match=reason) as caught:
        read_predictor(tmp_path, sha256_bytes(content))
    assert str(caught.value).strip()
