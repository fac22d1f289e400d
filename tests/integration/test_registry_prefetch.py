"""Loading the champions at `metapredict serve` start-up: read directly or by a child process."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from metapredict import registry
from metapredict.cli import app as cli_app
from metapredict.registry.fetch import Prefetch
from metapredict.settings import StoreSettings
from metapredict.simulator import default_config, simulate_cohort
from tests.support import TrainedStore

pytestmark = pytest.mark.slow

TASKS = ("tropism", "dormancy")


def _frame() -> Any:
    return simulate_cohort(40, 5, default_config())


@pytest.mark.parametrize("direct_read", [True, False], ids=["direct-read", "mlflow-child"])
def test_prefetch_loads_what_the_registry_names(
    trained_store: TrainedStore, direct_read: bool
) -> None:
    settings = trained_store.settings.model_copy(update={"direct_read": direct_read})
    through_mlflow = trained_store.settings.model_copy(update={"direct_read": False})
    with Prefetch(TASKS, "champion", settings) as prefetch:
        assert prefetch.child_started is not direct_read
        for task in TASKS:
            expected = registry.load(task, "champion", through_mlflow)
            assert prefetch.version(task, "champion", settings) == expected.info.version
            predictor = prefetch.load(task, "champion", settings)
            assert replace(predictor.info, read_via="") == replace(expected.info, read_via="")
            assert predictor.info.read_via == (
                "direct" if direct_read else "mlflow client: METAPREDICT_DIRECT_READ is off"
            )
            assert predictor.task == task
            np.testing.assert_array_equal(
                predictor.predict(_frame()).to_numpy(), expected.predict(_frame()).to_numpy()
            )
            if not direct_read:
                assert prefetch.download_dir is not None
                assert not (prefetch.download_dir / task).exists()
        download_dir = prefetch.download_dir
    if direct_read:
        assert download_dir is None  # nothing downloaded: the predictors open where they lie
    else:
        assert download_dir is not None and not download_dir.exists()


#: What the server does before it answers: find both champions and unpickle them.
LOAD_BOTH = """
import sys
from metapredict.registry.fetch import Prefetch
from metapredict.settings import StoreSettings
settings = StoreSettings(tracking_uri=sys.argv[1], artifact_root=sys.argv[2])
with Prefetch(("tropism", "dormancy"), "champion", settings) as prefetch:
    for task in ("tropism", "dormancy"):
        assert prefetch.load(task, "champion", settings).task == task
    heavy = [m for m in ("mlflow", "sqlalchemy", "alembic") if m in sys.modules]
    print(prefetch.child_started, *heavy)
"""


def test_serve_start_up_loads_the_champions_without_mlflow(trained_store: TrainedStore) -> None:
    """The point of the direct read: a server process that never imports MLflow."""
    settings = trained_store.settings
    out = subprocess.run(
        [sys.executable, "-c", LOAD_BOTH, settings.tracking_uri, settings.artifact_root],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.split() == ["False"]


def test_prefetch_names_a_missing_model(tmp_store: StoreSettings) -> None:
    with (
        Prefetch(("tropism",), "champion", tmp_store) as prefetch,
        pytest.raises(registry.ModelNotFoundError, match="train one first"),
    ):
        prefetch.version("tropism", "champion", tmp_store)


def test_prefetch_names_a_missing_alias_read_directly(trained_store: TrainedStore) -> None:
    settings = trained_store.settings
    with Prefetch(TASKS, "no-such-alias", settings) as prefetch:
        assert not prefetch.child_started
        with pytest.raises(registry.ModelNotFoundError, match="alias 'no-such-alias'"):
            prefetch.load("dormancy", "no-such-alias", settings)


def test_prefetch_falls_back_to_this_process_when_the_child_does_not_answer(
    trained_store: TrainedStore, caplog: pytest.LogCaptureFixture
) -> None:
    settings = trained_store.settings.model_copy(update={"direct_read": False})
    with (
        caplog.at_level(logging.WARNING, logger="metapredict.registry.fetch"),
        Prefetch(("tropism",), "champion", settings, timeout=0) as prefetch,
    ):
        predictor = prefetch.load("tropism", "champion", settings)
    assert predictor.info == registry.load("tropism", "champion", settings).info
    assert "did not answer in time; loading in this process instead" in caplog.text


def test_serve_command_starts_with_both_champions(
    trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`metapredict serve` up to uvicorn: the app it builds is ready with the registry's models."""
    import uvicorn

    settings = trained_store.settings
    monkeypatch.setenv("METAPREDICT_TRACKING_URI", settings.tracking_uri)
    monkeypatch.setenv("METAPREDICT_ARTIFACT_ROOT", settings.artifact_root)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    seen: dict[str, Any] = {}

    def run(app: Any, **kwargs: Any) -> None:
        seen["kwargs"] = kwargs
        with TestClient(app) as client:
            seen["ready"] = client.get("/health/ready").status_code
            seen["models"] = client.get("/v1/models").json()

    monkeypatch.setattr(uvicorn, "run", run)
    with socket.socket() as sock:  # a free port: serve checks it can listen there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = CliRunner().invoke(cli_app, ["serve", "--port", str(port), "--poll-seconds", "0"])
    assert result.exit_code == 0, result.output
    assert seen["kwargs"]["host"] == "127.0.0.1" and seen["kwargs"]["port"] == port
    assert seen["ready"] == 200
    versions = {task: model["version"] for task, model in seen["models"]["models"].items()}
    assert versions == {t: registry.current_version(t, "champion", settings) for t in TASKS}
