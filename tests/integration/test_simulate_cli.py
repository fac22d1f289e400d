"""``metapredict simulate``: writes a valid, reproducible cohort; refuses bad input cleanly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from metapredict import schema
from metapredict.cli import app
from metapredict.simulator import CANCER_TYPES


def simulate(*args: str) -> Result:
    return CliRunner().invoke(app, ["simulate", *args])


def one_line(text: str) -> str:
    """Rich wraps long messages to the terminal width; compare with whitespace collapsed."""
    return " ".join(text.split())


@pytest.fixture
def cohort_path(tmp_path: Path) -> Path:
    return tmp_path / "out" / "c.parquet"


def test_simulate_writes_a_cohort_the_schema_accepts(cohort_path: Path) -> None:
    result = simulate("--patients", "500", "--seed", "0", "--out", str(cohort_path))

    assert result.exit_code == 0, result.output
    cohort = pd.read_parquet(cohort_path)
    assert len(cohort) == 500
    schema.validate(cohort, schema.SimulatedCohort, extra_columns_allowed=())
    assert cohort_path.name in result.output
    assert list(cohort_path.parent.iterdir()) == [cohort_path]  # no temporary file left behind
    summary = one_line(result.output)
    assert "stage IV" in summary
    assert "of LM22 values exactly 0" in summary


def test_a_long_output_path_is_printed_whole(tmp_path: Path) -> None:
    """The path in the 'wrote' line can be copied: Rich must not break it at the terminal width."""
    out = (
        tmp_path
        / ("a-directory-name-long-enough-to-pass-the-eighty-column-terminal" * 2)
        / "c.parquet"
    )
    result = simulate("--patients", "50", "--out", str(out))

    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output


def test_same_seed_gives_a_byte_identical_file(tmp_path: Path) -> None:
    paths = [tmp_path / name for name in ("a.parquet", "b.parquet", "c.parquet")]
    for path, seed in zip(paths, ("3", "3", "4"), strict=True):
        result = simulate("--patients", "500", "--seed", seed, "--out", str(path))
        assert result.exit_code == 0, result.output

    first, again, other = (p.read_bytes() for p in paths)
    assert first == again
    assert first != other


def test_unknown_feature_in_config_exits_non_zero_and_writes_nothing(
    tmp_path: Path, cohort_path: Path
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[[sites.lung.effects]]\nfeature = "neutrophilz"\nper_sd = 0.4\nsource = "typo"\n',
        encoding="utf-8",
    )
    result = simulate("--patients", "50", "--out", str(cohort_path), "--config", str(config))

    assert result.exit_code != 0
    assert "neutrophilz" in one_line(result.output)
    assert "Traceback" not in result.output
    assert not cohort_path.exists()


def test_config_override_is_applied(tmp_path: Path) -> None:
    config = tmp_path / "no_relapse.toml"
    # Every cancer type almost never disseminates and nobody is metastatic at diagnosis: nearly
    # nobody relapses.
    config.write_text(
        "[relapse.dissemination_logit]\n"
        + "".join(f"{t} = -12.0\n" for t in CANCER_TYPES)
        + "".join(f"[clinical.stage_weights.{t}]\nIV = 0.0\n" for t in CANCER_TYPES),
        encoding="utf-8",
    )
    default_path, override_path = tmp_path / "default.parquet", tmp_path / "override.parquet"
    assert simulate("-n", "500", "--out", str(default_path)).exit_code == 0
    result = simulate("-n", "500", "--out", str(override_path), "--config", str(config))
    assert result.exit_code == 0, result.output

    _, event = schema.survival_columns()
    assert pd.read_parquet(default_path)[event].sum() > 50
    assert pd.read_parquet(override_path)[event].sum() <= 2


def test_missing_config_file_is_refused(tmp_path: Path, cohort_path: Path) -> None:
    result = simulate("--out", str(cohort_path), "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code != 0
    assert "nope.toml" in one_line(result.output)
    assert not cohort_path.exists()


@pytest.mark.parametrize("patients", ["0", "-5"])
def test_non_positive_patient_count_is_refused(cohort_path: Path, patients: str) -> None:
    result = simulate("--patients", patients, "--out", str(cohort_path))
    assert result.exit_code != 0
    assert "--patients" in one_line(result.output)
    assert not cohort_path.exists()
