"""The logged model as MLflow's own tools use it: models-from-code (no pickle), metapredict's
code travelling with it, integers accepted for float fields (the README's patient), through
``mlflow.pyfunc`` and ``mlflow models predict``, and loadable where metapredict is not
installed (a fresh virtualenv built from the model's own requirements.txt alone, as
``mlflow models serve --env-manager virtualenv`` builds one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from metapredict import registry
from metapredict.registry.store import connect, model_name
from tests.support import TrainedStore

pytestmark = pytest.mark.slow

TASKS = ("tropism", "dormancy")

#: The README's example patient: integer age and platelet count, as a clinic records them.
README_PATIENT: dict[str, Any] = {
    "b_cells_naive": 0.031,
    "b_cells_memory": 0.0,
    "plasma_cells": 0.046,
    "t_cells_cd8": 0.085,
    "t_cells_cd4_naive": 0.0,
    "t_cells_cd4_memory_resting": 0.141,
    "t_cells_cd4_memory_activated": 0.011,
    "t_cells_follicular_helper": 0.041,
    "t_cells_regulatory": 0.038,
    "t_cells_gamma_delta": 0.0,
    "nk_cells_resting": 0.027,
    "nk_cells_activated": 0.0,
    "monocytes": 0.021,
    "macrophages_m0": 0.142,
    "macrophages_m1": 0.058,
    "macrophages_m2": 0.214,
    "dendritic_cells_resting": 0.0,
    "dendritic_cells_activated": 0.008,
    "mast_cells_resting": 0.062,
    "mast_cells_activated": 0.0,
    "eosinophils": 0.0,
    "neutrophils": 0.055,
    "mdsc_score": 1.2,
    "platelet_count": 310,
    "neutrophil_lymphocyte_ratio": 3.4,
    "cancer_type": "breast",
    "stage": "II",
    "age_years": 54,
}

#: Run in a separate interpreter: load the model where metapredict is NOT importable except
#: from the model's own code path, predict the README patient, print where metapredict came from.
LOAD_ELSEWHERE = """
import json, sys
import os
blocked = {os.path.realpath(b) for b in json.loads(sys.argv[3])}
sys.path = [p for p in sys.path if os.path.realpath(p or ".") not in blocked]
try:
    import metapredict
except ImportError:
    pass
else:
    raise SystemExit(f"metapredict is importable before loading: {metapredict.__file__}")
import mlflow.pyfunc
import pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
answer = model.predict(pd.DataFrame([json.loads(sys.argv[2])]))
import metapredict
print(json.dumps({
    "from": metapredict.__file__,
    "mlflow": mlflow.__file__,
    "prefix": sys.prefix,
    "path": sys.path,
    "answer": answer.iloc[0].tolist(),
}))
"""

#: Environment variables that would let the fresh virtualenv see this project's packages or
#: settings (the project venv, a PYTHONPATH, pip options such as a constraints file).
_LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONSTARTUP", "VIRTUAL_ENV")

#: Bounds on building the fresh virtualenv: pip's per-connection timeout, and the whole install
#: (about 45 s with pip's cache warm, as after ``make env``; ``--no-compile`` leaves byte-compiling
#: to the first import, which compiles only the modules loading the model needs).
PIP_SOCKET_TIMEOUT_S = 30
PIP_INSTALL_TIMEOUT_S = 900


def _blocked_paths() -> list[str]:
    """The sys.path entries that hold metapredict here (this checkout's ``src``, the editable
    install's), removed in the interpreter that loads the model."""
    return sorted(
        entry
        for entry in sys.path
        if entry and (Path(entry) / "metapredict" / "__init__.py").is_file()
    )


@pytest.fixture(scope="module")
def model_dirs(
    trained_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Each champion's model folder, downloaded as any MLflow user would."""
    import mlflow

    _, uri, _ = connect(trained_store.settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    out = {}
    for task in TASKS:
        target = tmp_path_factory.mktemp(f"model-{task}")
        out[task] = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{model_name(task)}@champion", dst_path=str(target)
            )
        )
    return out


def _native(trained_store: TrainedStore, task: str) -> pd.DataFrame:
    predictor = registry.load(task, "champion", trained_store.settings)
    floats = {k: float(v) if isinstance(v, int) else v for k, v in README_PATIENT.items()}
    return predictor.predict_batch(pd.DataFrame([floats]))


@pytest.mark.parametrize("task", TASKS)
def test_the_model_is_code_and_data_not_a_pickle(model_dirs: dict[str, Path], task: str) -> None:
    folder = model_dirs[task]
    assert not list(folder.rglob("*.pkl")), "nothing is cloudpickled"
    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert (folder / "pyfunc_model.py").is_file()
    assert (folder / "code" / "metapredict" / "predictor.py").is_file()
    assert (folder / "artifacts" / "predictor" / "predictor.json").is_file()
    requirements = (folder / "requirements.txt").read_text().splitlines()
    names = {line.split("==")[0] for line in requirements if line and not line.startswith("#")}
    assert {"lightgbm", "pandas", "pandera", "scikit-learn", "mlflow"} <= names


@pytest.mark.parametrize("task", TASKS)
def test_pyfunc_accepts_the_readme_patient_with_integer_fields(
    trained_store: TrainedStore, model_dirs: dict[str, Path], task: str
) -> None:
    import mlflow.pyfunc

    frame = pd.DataFrame([README_PATIENT])
    assert frame["age_years"].dtype == np.int64 and frame["platelet_count"].dtype == np.int64
    answer = mlflow.pyfunc.load_model(str(model_dirs[task])).predict(frame)
    pd.testing.assert_frame_equal(
        answer, _native(trained_store, task), check_exact=False, atol=1e-12
    )


def test_mlflow_models_predict_takes_integer_fields(
    trained_store: TrainedStore, model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dataframe_records": [README_PATIENT]}))
    out = tmp_path / "answer.json"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [
            str(bin_dir / "mlflow"),
            "models",
            "predict",
            "-m",
            str(model_dirs["dormancy"]),
            "-i",
            str(request),
            "-t",
            "json",
            "-o",
            str(out),
            "--env-manager",
            "local",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    predictions = json.loads(out.read_text())["predictions"]
    expected = _native(trained_store, "dormancy").iloc[0].to_dict()
    assert predictions[0] == pytest.approx(expected, abs=1e-12)


def test_the_model_brings_metapredict_with_it(
    trained_store: TrainedStore, model_dirs: dict[str, Path]
) -> None:
    folder = model_dirs["tropism"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_ELSEWHERE,
            str(folder),
            json.dumps(README_PATIENT),
            json.dumps(_blocked_paths()),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["from"]).is_relative_to(folder / "code")
    expected = _native(trained_store, "tropism").iloc[0].tolist()
    np.testing.assert_allclose(result["answer"], expected, rtol=0, atol=1e-12)


def _isolated_env() -> dict[str, str]:
    """This process's environment without anything that points Python or pip at the project:
    no PYTHONPATH/PYTHONHOME/VIRTUAL_ENV, no ``PIP_*`` options, no user site-packages."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV and not k.startswith("PIP_")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run_step(what: str, command: list[str], *, timeout: float, **kwargs: Any) -> str:
    """Run one step of building or using the fresh virtualenv; fail naming the step, with the
    tail of its stderr, if it fails or runs past ``timeout`` seconds. Returns its stdout."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
    except subprocess.TimeoutExpired as err:
        tail = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else ""
        pytest.fail(f"{what} did not finish in {timeout:.0f} s:\n{tail[-3000:]}")
    if done.returncode != 0:
        pytest.fail(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def test_a_fresh_virtualenv_from_the_models_requirements_predicts(
    trained_store: TrainedStore, model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """What ``mlflow models serve --env-manager virtualenv`` does: a new environment with only
    the model's requirements.txt installed (no metapredict, nothing of the project's venv or
    PYTHONPATH), then load and predict; metapredict comes from the model's ``code/`` path."""
    folder = model_dirs["tropism"]
    venv = tmp_path / "venv"
    env = _isolated_env()
    _run_step("python -m venv", [sys.executable, "-m", "venv", str(venv)], timeout=300, env=env)
    python = venv / "bin" / "python"
    _run_step(
        "pip install -r requirements.txt (the model's) in the fresh virtualenv",
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--no-compile",
            "--timeout",
            str(PIP_SOCKET_TIMEOUT_S),
            "--retries",
            "2",
            "-r",
            str(folder / "requirements.txt"),
        ],
        timeout=PIP_INSTALL_TIMEOUT_S,
        env=env,
        cwd=tmp_path,
    )
    installed = {
        line.split("==")[0].lower()
        for line in _run_step(
            "pip freeze in the fresh virtualenv",
            [str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
            timeout=120,
            env=env,
        ).splitlines()
    }
    assert "metapredict" not in installed
    out = _run_step(
        "loading the model in the fresh virtualenv",
        [str(python), "-c", LOAD_ELSEWHERE, str(folder), json.dumps(README_PATIENT), "[]"],
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert Path(result["prefix"]).resolve() == venv.resolve()
    assert Path(result["mlflow"]).resolve().is_relative_to(venv.resolve()), (
        "mlflow comes from the fresh venv"
    )
    assert Path(result["from"]).is_relative_to(folder / "code")
    project = {Path(sys.prefix).resolve(), Path(__file__).resolve().parents[2]}
    leaked = [
        entry
        for entry in result["path"]
        if entry and any(Path(entry).resolve().is_relative_to(p) for p in project)
    ]
    assert not leaked, f"the fresh virtualenv sees the project's paths: {leaked}"
    expected = _native(trained_store, "tropism").iloc[0].tolist()
    np.testing.assert_allclose(result["answer"], expected, rtol=0, atol=1e-12)
