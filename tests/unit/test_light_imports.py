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


#: What loading and serving a model import: the fitted models, not the training estimators.
SERVING_PATH = (
    "metapredict.predictor",
    "metapredict.models.serialise",
    "metapredict.registry.artifact",
    "metapredict.registry.loader",
    "metapredict.batch_scoring",
    "serving.app",
)


_BLOCKER = """
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sklearn", "joblib", "cloudpickle"):
            raise ImportError(name + " is blocked")
sys.meta_path.insert(0, Blocker())
"""


def test_loading_and_serving_modules_import_without_scikit_learn() -> None:
    """scikit-learn is for training; joblib and cloudpickle (pickle loaders) for nothing here.

    Where they are installed, LightGBM and pyarrow import them by themselves (optional
    integrations; ``sys.modules`` then has them whatever metapredict imports), so this
    blocks them and imports the modules. ``tests/integration/test_serving_without_sklearn.py``
    loads and serves models the same way.
    """
    code = _BLOCKER + f"import {', '.join(SERVING_PATH)}\nprint('imported')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["imported"]
