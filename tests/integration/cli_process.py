"""Run the real ``metapredict`` command in a subprocess, importing this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import metapredict
from metapredict.settings import StoreSettings

#: The checkout under test: its src/ (metapredict) and its root (serving, training).
SRC = Path(metapredict.__file__).resolve().parents[1]
ROOT = SRC.parent


def cli_env(
    settings: StoreSettings | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout first on the path, the given store."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), str(ROOT), path) if p)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if settings is not None:
        # mlflow.set_registry_uri (called for every store this process opened) exports
        # MLFLOW_REGISTRY_URI: a child must not inherit an earlier store's registry.
        env.pop("MLFLOW_REGISTRY_URI", None)
        env["METAPREDICT_TRACKING_URI"] = settings.tracking_uri
        env["METAPREDICT_ARTIFACT_ROOT"] = settings.artifact_root
    env.update(extra or {})
    return env


def metapredict_argv(*args: str) -> list[str]:
    """The installed console script (as a user runs it), or the module if it is absent."""
    script = Path(sys.executable).parent / "metapredict"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from metapredict.cli import app; app()", *args]


def run_cli(
    *args: str,
    settings: StoreSettings | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """``metapredict <args>``: exit code, stdout and stderr kept apart."""
    return subprocess.run(
        metapredict_argv(*args),
        env=cli_env(settings, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
