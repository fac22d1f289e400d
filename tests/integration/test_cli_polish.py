"""The CLI's messages and tables for people: whole headers, flags that look like flags, and
errors that name the file (or variable) and the fix, with no library prefixes or URLs."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from metapredict.cli import app
from metapredict.cli.retrain import comparison_table
from metapredict.cli.train import KEY_METRICS, results_table
from metapredict.settings import StoreSettings

#: What library error text looks like; none of it may reach a user.
LIBRARY_NOISE = ("Value error,", "validation error for", "https://", "For further information")


def _render(table: Any, width: int = 80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    return out.getvalue()


def _family(metrics: tuple[str, ...]) -> SimpleNamespace:
    return SimpleNamespace(
        cv={m: 0.123 for m in metrics} | {f"{m}_std": 0.004 for m in metrics},
        test={m: 0.456 for m in metrics},
        test_ci={m: (0.401, 0.512) for m in metrics},
    )


@pytest.mark.parametrize(
    ("task", "families"),
    [("tropism", ("lightgbm", "logistic_regression")), ("dormancy", ("lightgbm", "cox_ph"))],
)
def test_training_table_keeps_every_header_whole_at_80_columns(
    task: str, families: tuple[str, ...]
) -> None:
    metrics = KEY_METRICS[task]
    outcome = SimpleNamespace(
        repeats=1,
        n_train=1_920,
        n_test=481,
        results={f: _family(metrics) for f in families},
        oracle=SimpleNamespace(test={m: 0.5 for m in metrics}),
    )
    text = _render(results_table(outcome, task, folds=5))  # type: ignore[arg-type]
    assert "…" not in text
    for metric in metrics:
        assert metric in text
    for word in {w for f in families for w in f.split("_")} | {"oracle"}:
        assert word in text
    assert "0.456" in text and "0.401" in text  # values wrap, they are not cut either


def test_retrain_table_keeps_metric_names_whole_at_80_columns() -> None:
    names = ("macro_auroc", "macro_calibration_error")
    estimate = SimpleNamespace(value=0.7, low=0.65, high=0.75)
    comparison = SimpleNamespace(
        n=500,
        resamples=200,
        confidence=0.95,
        champion={n: estimate for n in names},
        challenger={n: estimate for n in names},
        difference={n: estimate for n in names},
    )
    result = SimpleNamespace(comparison=comparison, champion_before="3", challenger_version="4")
    text = _render(comparison_table(result, "tropism"))  # type: ignore[arg-type]
    assert "…" not in text
    for word in (*names, "champion", "challenger", "difference"):
        assert word in text


def _commands() -> list[list[str]]:
    return [[], ["cohort"], *([name] for name in ("simulate", "train", "serve", "deconvolve",
            "retrain", "compare", "ui")), ["cohort", "build"]]  # fmt: skip


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "metapredict")
def test_help_shows_flags_without_a_value(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    flag_lines = [line for line in result.output.splitlines() if "--if-missing" in line]
    if command == ["train"]:
        assert flag_lines and flag_lines[0].split()[:2] == ["--if-missing", "Do"]


# --- serve: refuse before anything starts ---------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_serve_on_a_busy_port_fails_before_announcing_itself(
    tmp_store: StoreSettings, busy_port: int
) -> None:
    result = CliRunner().invoke(app, ["serve", "--port", str(busy_port)])
    assert result.exit_code == 1
    assert f"port {busy_port} on 127.0.0.1 is already in use" in result.output
    assert "--port" in result.output  # the fix
    assert "serving on" not in result.output


@pytest.mark.parametrize("command", [["serve"], ["compare", "tropism"], ["ui"]])
def test_a_mistyped_store_path_is_refused_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    missing = tmp_path / "mlrun" / "mlflow.db"  # "mlruns" mistyped
    monkeypatch.setenv("METAPREDICT_TRACKING_URI", f"sqlite:///{missing}")
    monkeypatch.delenv("METAPREDICT_ARTIFACT_ROOT", raising=False)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"no MLflow store at {missing} (METAPREDICT_TRACKING_URI)" in text
    assert "check the path" in text
    assert list(tmp_path.iterdir()) == []  # no directory, no empty database


def test_a_store_path_naming_a_directory_says_where_the_database_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METAPREDICT_TRACKING_URI", f"sqlite:///{tmp_path}")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert f"sqlite:///{tmp_path / 'mlflow.db'}" in " ".join(result.output.split())


def test_serve_names_a_bad_environment_variable_without_pydantic_text(
    tmp_store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METAPREDICT_MAX_PATIENTS", "lots")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "METAPREDICT_MAX_PATIENTS: Input should be a valid integer" in text
    assert "fix or unset it" in text
    assert "lots" not in text  # the value is not echoed
    for noise in LIBRARY_NOISE:
        assert noise not in text


# --- train: config and data errors ----------------------------------------------------------


def _packaged_toml(task: str, **replace: str) -> str:
    """The packaged config text with lines replaced (``key = value`` by key)."""
    from metapredict.training_config import default_config_path

    lines = default_config_path(task).read_text().splitlines()  # type: ignore[arg-type]
    out = []
    for line in lines:
        key = line.split("=")[0].strip()
        out.append(f"{key} = {replace[key]}" if key in replace and "=" in line else line)
    return "\n".join(out) + "\n"


def test_train_config_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text(_packaged_toml("dormancy", folds="1", interval_months="7.0"))
    result = CliRunner().invoke(app, ["train", "dormancy", "--config", str(config)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"invalid training config: {config}: 2 problems" in text
    assert "[cv] folds: Input should be greater than or equal to 2" in text
    assert "interval_months must divide the horizon 36 months" in text
    for noise in LIBRARY_NOISE:
        assert noise not in text


def test_train_config_syntax_error_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text('task = "dormancy"\n[cv\nfolds = 3\n')
    result = CliRunner().invoke(app, ["train", "dormancy", "--config", str(config)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"{config}: not valid TOML" in text and "line 2" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty: a cohort table needs a header row of column names"),
        ("id,cancer_type,stage\n", "has no patients: add one row per patient"),
    ],
    ids=["empty", "header-only"],
)
def test_train_on_an_empty_csv_names_the_file(
    tmp_store: StoreSettings, tmp_path: Path, content: str, message: str
) -> None:
    data = tmp_path / "cohort.csv"
    data.write_text(content)
    config = tmp_path / "tiny.toml"
    config.write_text(_packaged_toml("dormancy"))
    result = CliRunner().invoke(
        app, ["train", "dormancy", "--data", str(data), "--config", str(config)]
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"{data} {message}" in text
    assert "No columns to parse" not in text
