"""The OpenAPI document of the models being served.

What a prediction route accepts depends on the loaded model: its cancer types, its stages and,
for tropism, its sites. FastAPI builds the document once from the routes; this module patches
each prediction route with the loaded model's request schema, a request example the model
accepts and a response example the model produced for it, and the app rebuilds the document
whenever a model is swapped in.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from metapredict.predictor import Predictor
from serving import responses
from serving.model_store import ModelSet
from serving.request_model import example_patient, vocabulary
from serving.routes import _invocations_schema, _patients_schema

#: How many features the response example explains (a short example reads better).
_EXAMPLE_TOP = 3


def _response_example(predictor: Predictor) -> dict[str, Any]:
    """The model's own answer to the request example."""
    records = [example_patient(vocabulary(predictor))]
    X = predictor.encode_records(records)
    outputs, contributions = predictor.predict_and_explain(X)
    bounds = predictor.interval_bounds(X, outputs)
    build = (
        responses.tropism_patients if predictor.task == "tropism" else responses.dormancy_patients
    )
    return {
        "model": responses.model_meta(predictor),
        "schema_version": predictor.schema_version,
        "interval_level": predictor.interval_level,
        "patients": build(predictor, records, outputs, contributions, _EXAMPLE_TOP, bounds),
    }


def build_openapi(app: FastAPI, models: ModelSet | None) -> dict[str, Any]:
    """FastAPI's document, with each prediction route described for its loaded model."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    paths = document.get("paths", {})
    for task in ("tropism", "dormancy"):
        predictor = models.get(task) if models is not None else None
        operation = paths.get(f"/v1/predict/{task}", {}).get("post")
        if operation is None:
            continue
        operation["requestBody"] = _patients_schema(vocabulary(predictor))["requestBody"]
        if predictor is not None:
            content = operation["responses"]["200"].setdefault("content", {})
            content.setdefault("application/json", {})["example"] = _response_example(predictor)
    invocations = paths.get("/invocations", {}).get("post")
    if invocations is not None and models is not None:
        tropism = models.get("tropism")
        invocations["requestBody"] = _invocations_schema(vocabulary(tropism))["requestBody"]
    return document
