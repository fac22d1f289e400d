"""`metapredict ui` and the MLproject retrain entry build the right commands (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metapredict.cli.ui import ui_command
from metapredict.settings import StoreSettings
from training.retrain import cli_args, main


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_ui_runs_one_light_mlflow_server_on_the_project_store(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mlflow").touch()
    settings = StoreSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db",
        artifact_root=str(tmp_path / "mlruns" / "artifacts"),
    )
    command = ui_command(settings, bin_dir=bin_dir, environ={"PATH": "/usr/bin", "HOME": "/h"})
    argv = command.argv
    assert argv[:2] == [str(bin_dir / "mlflow"), "server"]
    assert _value(argv, "--backend-store-uri") == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert _value(argv, "--default-artifact-root") == (tmp_path / "mlruns/artifacts").as_uri()
    assert _value(argv, "--host") == "127.0.0.1"
    assert _value(argv, "--port") == "5000"
    assert _value(argv, "--workers") == "1"
    assert command.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert command.env["PATH"].split(":")[0] == str(bin_dir)
    assert command.env["HOME"] == "/h"


def test_ui_falls_back_to_python_dash_m_without_an_mlflow_script(tmp_path: Path) -> None:
    settings = StoreSettings(tracking_uri=f"sqlite:///{tmp_path}/db", artifact_root=str(tmp_path))
    argv = ui_command(settings, port=5123, bin_dir=tmp_path, environ={}).argv
    assert argv[1:4] == ["-m", "mlflow", "server"]
    assert _value(argv, "--port") == "5123"


def test_mlproject_retrain_entry_drops_empty_optional_arguments() -> None:
    assert cli_args(
        ["tropism", "--data", "/d.parquet", "--config", "", "--training-config", ""]
    ) == [
        "retrain",
        "tropism",
        "--data",
        "/d.parquet",
    ]
    assert cli_args(
        ["dormancy", "--data", "d.csv", "--config", "r.toml", "--training-config", "t.toml"]
    ) == [
        "retrain",
        "dormancy",
        "--data",
        "d.csv",
        "--config",
        "r.toml",
        "--training-config",
        "t.toml",
    ]


def test_mlproject_retrain_entry_exits_0_for_decisions_and_nonzero_for_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import metapredict.cli

    codes: list[int] = []

    def fake_app(args: list[str], standalone_mode: bool) -> None:
        raise SystemExit(codes.pop(0))

    monkeypatch.setattr(metapredict.cli, "app", fake_app)
    codes.extend([0, 3, 4, 5, 1, 2])
    argv = ["tropism", "--data", "d.parquet"]
    assert [main(argv) for _ in range(6)] == [0, 0, 0, 0, 1, 2]


def test_the_headline_view_is_mlflows_saved_view_envelope_with_metric_columns() -> None:
    import json

    from metapredict.registry.ui_view import (
        HEADLINE_COLUMNS,
        HEADLINE_VIEW_ID,
        view_link,
        view_tag_key,
        view_tag_value,
    )

    assert view_tag_key() == f"mlflow.sharedViewState.{HEADLINE_VIEW_ID}"
    envelope = json.loads(view_tag_value("tropism", 1_700_000_000_000))
    assert envelope["name"] == "Headline metrics"
    assert envelope["createdAt"] == 1_700_000_000_000
    columns = json.loads(envelope["state"])["selectedColumns"]
    assert columns[0] == "attributes.`Models`"
    assert columns[1:] == [f"metrics.`{m}`" for m in HEADLINE_COLUMNS["tropism"]]
    assert all(m.startswith(("cv_", "test_")) for m in HEADLINE_COLUMNS["dormancy"])
    assert view_link("http://127.0.0.1:5000/", "7") == (
        "http://127.0.0.1:5000/#/experiments/7/runs"
        f"?workflowType=machine_learning&viewStateShareKey={HEADLINE_VIEW_ID}"
    )


class _FakeClient:
    """Just the two MLflow client calls the view needs; optionally refusing writes."""

    def __init__(self, refuse: bool = False) -> None:
        self.tags: dict[str, str] = {}
        self.writes = 0
        self.refuse = refuse

    def get_experiment(self, experiment_id: str) -> object:
        from types import SimpleNamespace

        return SimpleNamespace(tags=dict(self.tags))

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        from mlflow.exceptions import MlflowException

        if self.refuse:
            raise MlflowException("UNIQUE constraint failed: experiment_tags")
        self.writes += 1
        self.tags[key] = value


def test_the_view_is_written_once_and_a_refused_write_never_fails_a_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from metapredict.registry.ui_view import (
        ensure_headline_view,
        try_ensure_headline_view,
        view_tag_key,
    )

    client = _FakeClient()
    ensure_headline_view(client, "1", "dormancy")
    ensure_headline_view(client, "1", "dormancy")
    assert client.writes == 1 and view_tag_key() in client.tags
    ensure_headline_view(client, "1", "tropism")  # another task's columns: rewritten
    assert client.writes == 2
    refusing = _FakeClient(refuse=True)
    with caplog.at_level("WARNING"):
        try_ensure_headline_view(refusing, "1", "tropism")
    assert "could not save the headline-metrics view of tropism" in caplog.text
