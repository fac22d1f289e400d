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
from metapredict.cli.workers import APP_FACTORY, reuse_port_socket
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


def test_serve_with_workers_starts_that_many_workers_on_the_uvicorn_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from metapredict.cli import serve as serve_command

    # serve sets both itself: set them here first so that teardown removes what serve set
    # (a delenv of an absent variable records nothing to restore, and later tests in the
    # session would inherit the removed metrics folder)
    for name in ("PROMETHEUS_MULTIPROC_DIR", "METAPREDICT_POLL_SECONDS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("METAPREDICT_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "mlflow.db").touch()  # serve refuses a store path that does not exist
    with socket.socket() as probe:  # and a port that is taken: pick a free one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seen: dict[str, Any] = {}

    def run_workers(options: dict[str, Any], workers: int) -> None:
        seen["options"], seen["workers"] = options, workers
        folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        seen["metrics_dir_empty"] = Path(folder).is_dir() and not any(Path(folder).iterdir())
        seen["poll"] = os.environ.get("METAPREDICT_POLL_SECONDS")

    monkeypatch.setattr(serve_command, "run_workers", run_workers)
    result = CliRunner().invoke(
        app, ["serve", "--port", str(port), "--workers", "3", "--poll-seconds", "2"]
    )
    assert result.exit_code == 0, result.output
    assert APP_FACTORY == "serving.app:create_app"
    assert seen["workers"] == 3
    assert seen["options"]["port"] == port and seen["options"]["host"] == "127.0.0.1"
    assert seen["metrics_dir_empty"] and seen["poll"] == "2.0"
    # the folder lives as long as the server: removed afterwards
    assert not Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).exists()


def test_workers_sockets_share_the_port() -> None:
    """Each worker's socket binds the same port (SO_REUSEPORT), where a plain second bind
    fails: the kernel then spreads connections over the listening workers."""
    first = reuse_port_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = reuse_port_socket("127.0.0.1", port)
    try:
        first.listen()
        second.listen()
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    finally:
        first.close()
        second.close()


def test_serve_rejects_zero_workers() -> None:
    result = CliRunner().invoke(app, ["serve", "--workers", "0"])
    assert result.exit_code == 2
