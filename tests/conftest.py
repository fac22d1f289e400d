"""Shared fixtures for unit, integration and model (behavioural) tests.

Sections: simulator cohorts (session-scoped, read-only), hand-made valid frames (fresh per
call), MLflow stores and trained models. Add new groups of fixtures as their own section.

Session-scoped frames are shared by every test that asks for them: never modify them in place;
take a ``.copy()`` first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pytest

from metapredict import schema
from metapredict.settings import StoreSettings
from metapredict.simulator import SimulatorConfig, default_config, simulate_cohort
from tests.postgres import (
    PostgresCluster,
    PostgresUnavailableError,
    TrackingServer,
    postgres_bin_dir,
    postgres_cluster,
    reset_registry,
    tracking_server,
)
from tests.support import TrainedStore, store_from_template, store_settings, tiny_training_config

# ------------------------------------------------------------------------------------------------
# Simulated cohorts

#: Big enough for per-site and per-cancer-type rates; the simulator draws it in well under 1 s.
LARGE_COHORT_PATIENTS = 60_000


@pytest.fixture(scope="session")
def simulator_config() -> SimulatorConfig:
    """The literature-grounded default simulator configuration."""
    return default_config()


@pytest.fixture(scope="session")
def simulated_cohort(simulator_config: SimulatorConfig) -> pd.DataFrame:
    """A few thousand simulated patients (seed 0): for checks that need realistic rows."""
    return simulate_cohort(3_000, seed=0, config=simulator_config)


@pytest.fixture(scope="session")
def large_simulated_cohort(simulator_config: SimulatorConfig) -> pd.DataFrame:
    """60,000 simulated patients (seed 1): for planted directions, rates and oracle bands."""
    return simulate_cohort(LARGE_COHORT_PATIENTS, seed=1, config=simulator_config)


# ------------------------------------------------------------------------------------------------
# Hand-made valid frames

#: Plausible values for the optional extras (each inside its schema bounds).
_TYPICAL_EXTRAS = {
    "mdsc_score": 0.0,
    "platelet_count": 250.0,
    "neutrophil_lymphocyte_ratio": 2.5,
    "leukocyte_fraction": 0.3,
}


def _valid_value(info: schema.ColumnInfo, row: int) -> Any:
    """A value of column ``info`` that the schema accepts, for row number ``row``."""
    if info.group == "lm22":
        return 1.0 / len(schema.lm22_columns())
    if info.group == "extra":
        if info.name in _TYPICAL_EXTRAS:
            return _TYPICAL_EXTRAS[info.name]
        assert info.minimum is not None and info.maximum is not None
        return (info.minimum + info.maximum) / 2
    if info.group == "clinical":
        if info.name == "cancer_type":
            return VALID_CANCER_TYPES[row % len(VALID_CANCER_TYPES)]
        if info.name == "stage":
            return schema.STAGES[row % 3]  # I-III: a resected primary, valid for both tasks
        assert info.minimum is not None and info.maximum is not None
        return (info.minimum + info.maximum) / 2
    if info.group == "id":
        return f"P{row:04d}"
    if info.group == "site":
        return False
    if info.group == "survival":
        months, _event = schema.survival_columns()
        return 24.0 + row if info.name == months else False
    if info.group == "oracle":
        return 0.25
    raise AssertionError(f"conftest does not know how to fill column {info.name!r} ({info.group})")


#: Cancer types of hand-made rows (cycled): two of the simulator's and one beyond them.
VALID_CANCER_TYPES = ("breast", "colorectal", "gastric")


def valid_frame(n: int = 3, model: type[pa.DataFrameModel] = schema.Cohort) -> pd.DataFrame:
    """``n`` distinct, valid rows of ``model``: required columns, every optional extra and
    clinical column, and both tasks' labels (every site and the relapse pair).

    LM22 fractions are uniform (each 1/22, so the row sums to 1); nobody relapses.
    """
    optional = {"extra", "clinical", "site", "survival"}
    infos = [c for c in schema.columns(model) if c.required or c.group in optional]
    return pd.DataFrame({c.name: [_valid_value(c, i) for i in range(n)] for c in infos})


@pytest.fixture
def make_valid_frame() -> Callable[..., pd.DataFrame]:
    """Factory: ``make_valid_frame(n=3, model=schema.Cohort)`` -> a fresh valid frame."""
    return valid_frame


@pytest.fixture
def valid_feature_row() -> dict[str, Any]:
    """One valid patient as a ``{column: value}`` dict of :func:`schema.feature_columns`."""
    row = valid_frame(1, schema.Features).iloc[0].to_dict()
    return {c: row[c] for c in schema.feature_columns()}


# --- MLflow stores and trained models ------------------------------------------------------


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The database of an empty store, created once by the project's own code: fixtures that
    need a new empty store copy it (``tests.support.store_from_template``)."""
    from metapredict.registry.store import connect

    directory = tmp_path_factory.mktemp("store-template")
    connect(store_settings(directory))
    return directory / "mlflow.db"


@pytest.fixture
def tmp_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_template: Path
) -> StoreSettings:
    """An empty MLflow store for one test; also the default for code reading the environment."""
    settings = store_from_template(tmp_path / "store", store_template)
    monkeypatch.setenv("METAPREDICT_TRACKING_URI", settings.tracking_uri)
    monkeypatch.setenv("METAPREDICT_ARTIFACT_ROOT", settings.artifact_root)
    return settings


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> TrainedStore:
    """Both tasks trained once per session (tiny config) into their own store. Read only."""
    from metapredict.pipeline import run_training

    settings = store_from_template(tmp_path_factory.mktemp("trained-store"), store_template)
    outcomes = {
        task: run_training(tiny_training_config(task), settings=settings)
        for task in ("tropism", "dormancy")
    }
    return TrainedStore(settings=settings, outcomes=outcomes)


# --- PostgreSQL and an MLflow tracking server on it (tests/postgres.py) --------------------


@pytest.fixture
def mlflow_store(
    trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TrainedStore]:
    """The trained store as MLflow's own client sees it (``mlflow.pyfunc.load_model("models:/
    ...")``): its tracking and registry URIs, for this test only.

    An earlier test in this process may have set MLflow's global URIs, which win over the
    environment (and ``mlflow.set_registry_uri`` exports ``MLFLOW_REGISTRY_URI`` to children):
    both point here for this test and back afterwards.
    """
    import mlflow

    uri = trained_store.settings.tracking_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield trained_store
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the session (skipped where PostgreSQL is not
    installed, except under CI, where it must be)."""
    try:
        postgres_bin_dir()
    except PostgresUnavailableError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(err))
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def mlflow_server(
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingServer]:
    """``mlflow server`` on a database of the session's cluster, proxied artifacts, one worker.
    Shared by the session: reset it with ``tests.postgres.reset_registry`` before use."""
    root = tmp_path_factory.mktemp("tracking-server")
    uri = postgres.create_database("mlflow")
    with tracking_server(uri, root / "artifacts", log=root / "server.log") as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "server"])
def shared_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> StoreSettings:
    """An empty store per module, twice: the embedded SQLite default, and the tracking server
    on PostgreSQL (``http://``, artifacts proxied), reset for the module."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("store_template")
        return store_from_template(tmp_path_factory.mktemp("sqlite-store"), template)
    server: TrackingServer = request.getfixturevalue("mlflow_server")
    settings = server.store_settings()
    reset_registry(settings)
    return settings
