"""The distribution name does not collide on PyPI; the import name and the command stay."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_distribution_is_metapredict_immune_with_the_metapredict_command() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # "metapredict" on PyPI is an unrelated protein-disorder tool
    assert project["project"]["name"] == "metapredict-immune"
    assert project["project"]["scripts"] == {"metapredict": "metapredict.cli:app"}
    assert "src/metapredict" in project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
