"""Keys: empty keys refused at start-up, /v1/models behind the API key, /metrics behind its own
key (or open when none is set), and no local paths in any response.

These services load no model: the probe finds a version whose artifact is missing (a local
path in the error), which is what a failed reload looks like in ``/v1/models``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from metapredict.cli import app as cli_app
from serving.app import create_app
from serving.redact import without_paths
from serving.settings import KEY_VARIABLES, ServingSettings, settings_problems

API = "reader-key"
ADMIN = "admin-key"
METRICS = "scraper-key"


def _settings(tmp_path: Path, **overrides: Any) -> ServingSettings:
    values: dict[str, Any] = {
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "artifact_root": str(tmp_path / "artifacts"),
        "poll_seconds": 0,
        "api_key": API,
        "admin_api_key": ADMIN,
        "metrics_api_key": METRICS,
    }
    return ServingSettings(**(values | overrides))


def _app(settings: ServingSettings, missing: Path) -> Any:
    def load(task: str, alias: str, settings: ServingSettings) -> Any:
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{missing}'")

    return create_app(
        settings,
        loader=load,
        version_probe=lambda task, alias, settings: "5",
    )


@pytest.mark.parametrize("field", sorted(KEY_VARIABLES))
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_key_is_refused_with_its_variable_named(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ServingSettings(**{field: value})
    (line,) = settings_problems(refused.value)
    assert line.startswith(KEY_VARIABLES[field])
    assert "empty" in line


def test_serve_refuses_to_start_with_an_empty_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAPREDICT_API_KEY", "")
    monkeypatch.setenv("METAPREDICT_ADMIN_API_KEY", "")
    result = CliRunner().invoke(cli_app, ["serve", "--port", "8766"])
    assert result.exit_code == 2
    assert "METAPREDICT_API_KEY is set but empty" in result.stderr
    assert "METAPREDICT_ADMIN_API_KEY is set but empty" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_models_need_the_api_key_and_metrics_their_own(tmp_path: Path) -> None:
    with TestClient(_app(_settings(tmp_path), tmp_path / "x" / "predictor.joblib")) as c:
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"X-API-Key": METRICS}).status_code == 401
        assert c.get("/v1/models", headers={"X-API-Key": API}).status_code == 200
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"X-API-Key": API}).status_code == 401
        assert c.get("/metrics", headers={"Authorization": f"Bearer {API}"}).status_code == 401
        assert c.get("/metrics", headers={"Authorization": f"Bearer {METRICS}"}).status_code == 200
        assert c.get("/metrics", headers={"X-API-Key": METRICS}).status_code == 200
        assert c.get("/metrics", headers={"Authorization": f"Basic {METRICS}"}).status_code == 401
        assert c.get("/health/live").status_code == 200  # health stays open for orchestrators


def test_metrics_are_open_without_a_metrics_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path, metrics_api_key=None)
    with TestClient(_app(settings, tmp_path / "x" / "predictor.joblib")) as c:
        assert c.get("/metrics").status_code == 200
        assert c.get("/v1/models").status_code == 401


def test_no_local_path_appears_in_a_response(tmp_path: Path) -> None:
    missing = tmp_path / "artifacts" / "models" / "m-1" / "predictor.joblib"
    with TestClient(_app(_settings(tmp_path), missing)) as c:
        models = c.get("/v1/models", headers={"X-API-Key": API})
        reload = c.post("/v1/admin/reload", headers={"X-API-Key": ADMIN})
        texts = [models.text, reload.text]
        for path in ("/v1/predict/tropism", "/v1/predict/dormancy", "/invocations"):
            texts.append(c.post(path, json={}, headers={"X-API-Key": API}).text)
    assert models.json()["models"]["tropism"]["last_reload"]["status"] == "failed"
    for text in texts:
        assert str(tmp_path) not in text
        assert tmp_path.name not in text
    assert ".../predictor.joblib" in models.text  # the file is still named, without its folders


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "No such file: '/srv/store/artifacts/predictor.joblib'",
            "No such file: '.../predictor.joblib'",
        ),
        ("no model in sqlite:////srv/store/mlflow.db; train", "no model in .../mlflow.db; train"),
        ("at file:///srv/a/b/model.txt", "at .../model.txt"),
        ("models:/metapredict-tropism/3 at http://host:5000/api/2.0", None),
        ("LM22 fractions must sum to 1 (1/22 each)", None),
    ],
)
def test_paths_are_cut_to_their_last_part(text: str, shown: str | None) -> None:
    assert without_paths(text) == (shown or text)
