"""Pieces of the production topology that need no server: store kinds, the advisory lock key,
and how ``metapredict serve --workers N`` hands over to uvicorn."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from metapredict.cli import app
from metapredict.cli.serve import APP_FACTORY
from metapredict.registry.promotion import advisory_key
from metapredict.registry.store import store_kind


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("sqlite:////srv/mlruns/mlflow.db", "sqlite"),
        ("sqlite+pysqlite:///x.db", "sqlite"),
        ("postgresql://u:p@db:5432/mlflow", "postgresql"),
        ("postgresql+psycopg://u@db/mlflow", "postgresql"),
        ("postgres://u@db/mlflow", "postgresql"),
        ("http://mlflow.internal:5000", "http"),
        ("HTTPS://mlflow.example.org", "http"),
        ("databricks", "other"),
    ],
)
def test_store_kind(uri: str, kind: str) -> None:
    assert store_kind(uri) == kind


def test_advisory_key_is_a_stable_signed_64_bit_number_per_label() -> None:
    key = advisory_key("metapredict-promotion:metapredict-tropism")
    assert key == advisory_key("metapredict-promotion:metapredict-tropism")
    assert key != advisory_key("metapredict-promotion:metapredict-dormancy")
    assert -(2**63) <= key < 2**63


def test_serve_with_workers_hands_an_app_factory_to_uvicorn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("METAPREDICT_POLL_SECONDS", raising=False)
    monkeypatch.setenv("METAPREDICT_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "mlflow.db").touch()  # serve refuses a store path that does not exist
    with socket.socket() as probe:  # and a port that is taken: pick a free one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seen: dict[str, Any] = {}

    def run(target: Any, **kwargs: Any) -> None:
        seen["target"], seen["kwargs"] = target, kwargs
        folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        seen["metrics_dir_empty"] = Path(folder).is_dir() and not any(Path(folder).iterdir())
        seen["poll"] = os.environ.get("METAPREDICT_POLL_SECONDS")

    monkeypatch.setattr(uvicorn, "run", run)
    result = CliRunner().invoke(
        app, ["serve", "--port", str(port), "--workers", "3", "--poll-seconds", "2"]
    )
    assert result.exit_code == 0, result.output
    assert seen["target"] == APP_FACTORY == "serving.app:create_app"
    assert seen["kwargs"]["factory"] is True and seen["kwargs"]["workers"] == 3
    assert seen["kwargs"]["port"] == port
    assert seen["metrics_dir_empty"] and seen["poll"] == "2.0"
    # the folder lives as long as the server: removed afterwards
    assert not Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).exists()


def test_serve_rejects_zero_workers() -> None:
    result = CliRunner().invoke(app, ["serve", "--workers", "0"])
    assert result.exit_code == 2
