"""The store under several processes: concurrent first trainings, and scratch folders of
processes that were killed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from benchmarks.common import VENV_BIN, write_config_toml
from metapredict.registry.store import make_scratch_dir, scratch_dir, sweep_stale_scratch
from tests.support import tiny_training_config

REPO = Path(__file__).resolve().parents[2]
#: Bound on each training process (seconds); one takes well under a minute.
WAIT = 600


def _env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "METAPREDICT_"))}
    return env | {
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "METAPREDICT_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "METAPREDICT_ARTIFACT_ROOT": str(store / "artifacts"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


@pytest.mark.slow
def test_two_first_trainings_on_an_empty_store_both_register(tmp_path: Path) -> None:
    """Without the lock, one of two processes opening an empty store at once failed in
    MLflow's migration ("Online migration expected to match one row")."""
    store = tmp_path / "store"
    config = tiny_training_config("tropism", n_estimators=10)
    config = config.model_copy(
        update={
            "data": config.data.model_copy(update={"simulate_patients": 1500}),
            "intervals": config.intervals.model_copy(update={"members": 0}),
        }
    )
    toml = write_config_toml(config, tmp_path / "tiny.toml")
    argv = [str(VENV_BIN / "metapredict"), "train", "tropism", "--config", str(toml)]
    procs = [
        subprocess.Popen(
            argv,
            env=_env(store),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            _out, err = proc.communicate(timeout=WAIT)
            outputs.append((proc.returncode, err.decode(errors="replace")))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    for code, err in outputs:
        assert code == 0, err[-3000:]
        assert "migration" not in err.lower()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    versions = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(
        "name = 'metapredict-tropism'"
    )
    assert sorted(str(v.version) for v in versions) == ["1", "2"]


def test_scratch_folders_are_removed_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), scratch_dir("log") as folder:
        (folder / "predictor.joblib").write_bytes(b"half")
        raise RuntimeError("logging failed")
    assert not folder.exists()


def test_scratch_folders_of_killed_processes_are_swept() -> None:
    """A process killed with SIGKILL cannot remove its folder: the next one that makes a
    scratch folder removes it; a live process's folder is left alone."""
    code = (
        "import os, sys\n"
        "from metapredict.registry.store import make_scratch_dir\n"
        "print(make_scratch_dir('log'), flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    killed = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=120, check=False
    )
    assert killed.returncode == -9
    left = Path(killed.stdout.decode().strip())
    assert left.is_dir() and left.name.startswith("metapredict-log-")
    mine = make_scratch_dir("log")
    try:
        assert not left.exists()
        assert mine.is_dir()
        assert mine not in sweep_stale_scratch()
    finally:
        mine.rmdir()
