"""Child process of ``test_serving_without_sklearn``: load and serve with scikit-learn missing.

Run as a script (``python no_sklearn_child.py``); the test imports only
:func:`predictions_of` from it (importing it blocks nothing). Before importing
metapredict it makes ``sklearn``, ``joblib`` and ``cloudpickle`` unimportable (a
``sys.meta_path`` finder that raises ImportError, as in an environment without them) and
replaces ``pickle.load`` / ``pickle.loads`` with functions that raise. It reads
``{"patients": {task: [record, ...]}}`` on stdin, the store from the environment
(``METAPREDICT_TRACKING_URI`` / ``METAPREDICT_ARTIFACT_ROOT``), and writes one JSON document on
stdout: what the blocker blocked, each champion's predictions made through
``registry.loader.load``, the service's answers (the app factory the ``serve`` command runs, in a
``TestClient``), and the third-party modules imported by the end.

``python no_sklearn_child.py pyfunc`` loads the champions through MLflow's generic
``mlflow.pyfunc.load_model`` instead (the models-from-code flavour) and writes its predictions.
MLflow imports cloudpickle itself, at import, so this mode blocks scikit-learn and joblib only;
the pickle tripwire still shows nothing is unpickled.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import json
import pickle
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

BLOCKED = ["sklearn", "joblib", "cloudpickle"]


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"{fullname} is blocked: this process runs without it")
        return None


def _tripwire(*args: Any, **kwargs: Any) -> NoReturn:
    raise RuntimeError("pickle was used to load something")


def _blocked() -> dict[str, bool]:
    """Per blocked package: whether importing it fails here (the check that the check works)."""
    out = {}
    for name in BLOCKED:
        try:
            importlib.import_module(name)
        except ImportError:
            out[name] = True
        else:
            out[name] = False
    try:
        pickle.loads(pickle.dumps(1))
    except RuntimeError:
        out["pickle.loads"] = True
    else:
        out["pickle.loads"] = False
    return out


def main() -> None:
    pyfunc = sys.argv[1:] == ["pyfunc"]
    if pyfunc:
        BLOCKED.remove("cloudpickle")
    for name in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
        del sys.modules[name]
    sys.meta_path.insert(0, _Blocker())
    pickle.load = _tripwire
    pickle.loads = _tripwire
    blocked = _blocked()
    request = json.load(sys.stdin)
    result = _pyfunc(request) if pyfunc else _native(request)
    imported = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
    json.dump({"blocked": blocked, **result, "imported": imported}, sys.stdout)


def _pyfunc(request: dict[str, Any]) -> dict[str, Any]:
    import mlflow
    import pandas as pd

    from metapredict.registry.store import model_name
    from metapredict.settings import get_store_settings

    uri = get_store_settings().tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # not one inherited from the parent's MLFLOW_REGISTRY_URI
    out = {}
    for task, records in request["patients"].items():
        model = mlflow.pyfunc.load_model(f"models:/{model_name(task)}@champion")
        out[task] = model.predict(pd.DataFrame(records)).to_numpy().tolist()
    return {"pyfunc": out}


def predictions_of(predictor: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    """What is compared, from a loaded predictor: its version, the batch matrix of ``records``
    and, for the first one alone (the single-row path), outputs, contributions and bounds.
    (The test computes the same in its own process.)"""
    X = predictor.encode_records(records)
    outputs, contributions = predictor.predict_and_explain(X[:1])
    bounds = predictor.interval_bounds(X[:1], outputs)
    return {
        "version": predictor.info.version,
        "batch": predictor.batch_matrix(X).tolist(),
        "one": outputs.tolist(),
        "one_contributions": contributions.tolist(),
        "one_bounds": None if bounds is None else bounds.tolist(),
    }


def _native(request: dict[str, Any]) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from metapredict.cli.workers import APP_FACTORY
    from metapredict.registry.loader import load

    predictions = {
        task: predictions_of(load(task), records) for task, records in request["patients"].items()
    }

    module, factory = APP_FACTORY.split(":")
    app = getattr(importlib.import_module(module), factory)()
    served: dict[str, Any] = {}
    with TestClient(app) as client:
        served["ready"] = client.get("/health/ready").status_code
        for task, records in request["patients"].items():
            answer = client.post(f"/v1/predict/{task}", json={"patients": records[:2]})
            served[task] = {"status": answer.status_code, "body": answer.json()}

    return {"predictions": predictions, "served": served}


if __name__ == "__main__":
    main()
