"""``metapredict predict --engine spark``: the same rows and problems as the local engine.

One SparkSession (``local[2]``) for the module: the JVM's start-up costs seconds.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from metapredict import batch_scoring, registry
from metapredict.simulator import default_config, simulate_cohort
from tests.support import TrainedStore

pytestmark = pytest.mark.slow
pyspark = pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from metapredict.spark_scoring import spark_session

    session = spark_session("local[2]", app_name="metapredict-tests")
    session.conf.set("spark.sql.shuffle.partitions", "2")
    try:
        yield session
    finally:
        session.stop()


def test_spark_gives_the_local_engines_rows_and_problems(
    trained_store: TrainedStore, spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: the executors get the model artifact, never a pickled predictor."""
    from metapredict import spark_scoring
    from metapredict.predictor import Predictor

    predictor = registry.load("tropism", settings=trained_store.settings)

    def refuse(self: Predictor, protocol: Any) -> Any:
        raise AssertionError("a Predictor was pickled")

    monkeypatch.setattr(Predictor, "__reduce_ex__", refuse)
    with pytest.raises(AssertionError, match="pickled"):
        pickle.dumps(predictor)  # the guard holds in this process, where Spark pickles jobs
    cohort = simulate_cohort(300, seed=31, config=default_config())
    cohort.loc[7, "b_cells_naive"] = 1.5  # above the schema's maximum
    data = tmp_path / "cohort.csv"
    cohort.to_csv(data, index=False)

    local = batch_scoring.score_file(
        predictor, data, tmp_path / "local.parquet", explain=True, skip_invalid=True, chunk_rows=64
    )
    on_spark = spark_scoring.score_file(
        predictor,
        data,
        tmp_path / "spark",
        explain=True,
        skip_invalid=True,
        report=tmp_path / "spark-report.csv",
        spark=spark.newSession(),
    )

    assert local.rows_scored == on_spark.rows_scored == len(cohort) - 1
    assert on_spark.problems == local.problems
    assert {p.row for p in on_spark.problems} == {7}  # out of range, so the sum is off too
    expected = pd.read_parquet(tmp_path / "local.parquet")
    got = pd.read_parquet(tmp_path / "spark").sort_values("row").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)

    strict = spark_scoring.score_file(predictor, data, tmp_path / "strict", spark=spark)

    assert strict.invalid_rows == 1 and strict.output is None
    assert not (tmp_path / "strict").exists()


def test_the_broadcast_artifact_is_checked_when_loaded(trained_store: TrainedStore) -> None:
    from metapredict import spark_scoring
    from metapredict.registry.artifact import ArtifactError

    predictor = registry.load("dormancy", settings=trained_store.settings)
    files, digest = spark_scoring.artifact_files(predictor)

    loaded = spark_scoring.predictor_from_files(files, digest)
    X = predictor.encode_frame(
        simulate_cohort(20, seed=3, config=default_config()).query("stage != 'IV'")
    )
    assert (loaded.batch_matrix(X) == predictor.batch_matrix(X)).all()

    booster = next(name for name in files if name.startswith("boosters/"))
    tampered = {**files, booster: files[booster].replace(b"=", b"=1", 1)}
    spark_scoring._LOADED.clear()
    with pytest.raises(ArtifactError, match="SHA-256"):
        spark_scoring.predictor_from_files(tampered, digest)
