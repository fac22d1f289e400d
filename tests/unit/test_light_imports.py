"""Modules on the start-up path stay light: the CLI and the registry's fetch child.

``metapredict --help`` should not wait for scikit-learn, and the child process that asks MLflow
for the champions while the server starts (``metapredict.registry.fetch``) should import MLflow
and nothing of the modelling stack.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("numpy", "pandas", "sklearn", "lightgbm", "pandera", "mlflow", "matplotlib")


def _imported_after(module: str) -> list[str]:
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("module", ["metapredict.cli", "metapredict.registry.fetch"])
def test_start_up_modules_do_not_import_the_modelling_stack(module: str) -> None:
    assert _imported_after(module) == []
