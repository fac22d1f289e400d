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

from metapredict import schema
from metapredict.predictor import Predictor
from serving import responses
from serving.model_store import ModelSet
from serving.request_model import (
    ID_FIELD,
    OPEN,
    Vocabulary,
    example_patient,
    patient_model,
    vocabulary,
)

#: How many features the response example explains (a short example reads better).
_EXAMPLE_TOP = 3

_SUM_NOTE = (
    " The 22 LM22 fractions of a patient must sum to 1 (within "
    f"{schema.FRACTION_SUM_TOLERANCE}), a rule JSON Schema cannot state."
)


def patient_schema(vocab: Vocabulary = OPEN) -> dict[str, Any]:
    """The JSON Schema of one patient for a model accepting ``vocab``."""
    patient = patient_model(vocab).model_json_schema()
    patient["description"] = "One patient." + _SUM_NOTE
    return patient


def _patients_array(vocab: Vocabulary, max_patients: int) -> dict[str, Any]:
    return {
        "type": "array",
        "items": patient_schema(vocab),
        "minItems": 1,
        "maxItems": max_patients,
    }


def patients_body(vocab: Vocabulary = OPEN, max_patients: int = 1000) -> dict[str, Any]:
    """The request body of a /v1/predict route for a model accepting ``vocab``."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["patients"],
                    "additionalProperties": False,
                    "properties": {"patients": _patients_array(vocab, max_patients)},
                },
                "example": {"patients": [example_patient(vocab)]},
            }
        },
    }


def _split_schema(vocab: Vocabulary, max_patients: int) -> dict[str, Any]:
    """``dataframe_split`` with the columns in schema order, each row typed cell by cell."""
    properties = patient_schema(vocab)["properties"]
    columns = [ID_FIELD, *schema.feature_columns()]
    return {
        "type": "object",
        "description": "columns and rows, as DataFrame.to_json(orient='split') writes them; "
        "this is the frame in schema order (any order of the columns is accepted, and "
        "optional ones may be left out)." + _SUM_NOTE,
        "required": ["columns", "data"],
        "additionalProperties": False,
        "properties": {
            "columns": {"type": "array", "const": columns},
            "data": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_patients,
                "items": {
                    "type": "array",
                    "prefixItems": [properties[c] for c in columns],
                    "items": False,
                    "minItems": len(columns),
                    "maxItems": len(columns),
                },
            },
            "index": {"type": "array", "description": "row labels (ignored)"},
        },
    }


_PARAMS = {
    "type": ["object", "null"],
    "description": "inference parameters; this model takes none, and (as MLflow does for a "
    "model without a params schema) ignores them",
}


def invocations_body(vocab: Vocabulary = OPEN, max_patients: int = 1000) -> dict[str, Any]:
    """The request body of /invocations: MLflow's JSON formats, or CSV."""
    example = example_patient(vocab)
    columns = [ID_FIELD, *schema.feature_columns()]
    records = _patients_array(vocab, max_patients)

    def one_of(key: str, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "title": key,
            "required": [key],
            "additionalProperties": False,
            "properties": {key: value, "params": _PARAMS},
        }

    csv_header = ",".join(columns)
    csv_row = ",".join("" if example[c] is None else str(example[c]) for c in columns)
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        one_of("dataframe_split", _split_schema(vocab, max_patients)),
                        one_of("dataframe_records", records),
                        one_of("inputs", records),
                        one_of("instances", records),
                    ]
                },
                "examples": {
                    "dataframe_split": {
                        "value": {
                            "dataframe_split": {
                                "columns": columns,
                                "data": [[example[c] for c in columns]],
                            }
                        }
                    },
                    "dataframe_records": {"value": {"dataframe_records": [example]}},
                    "inputs": {"value": {"inputs": [example]}},
                    "instances": {"value": {"instances": [example]}},
                },
            },
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "a header line and one line per patient, as "
                    "DataFrame.to_csv(index=False) writes them; an empty cell is missing",
                },
                "example": f"{csv_header}\n{csv_row}\n",
            },
        },
    }


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
    max_patients = app.state.settings.max_patients
    for task in ("tropism", "dormancy"):
        predictor = models.get(task) if models is not None else None
        operation = paths.get(f"/v1/predict/{task}", {}).get("post")
        if operation is None:
            continue
        operation["requestBody"] = patients_body(vocabulary(predictor), max_patients)
        if predictor is not None:
            content = operation["responses"]["200"].setdefault("content", {})
            content.setdefault("application/json", {})["example"] = _response_example(predictor)
    invocations = paths.get("/invocations", {}).get("post")
    if invocations is not None:
        # ?task= picks the model; the body is described for the default (tropism) model,
        # and for the vocabulary both models share where they differ (stages)
        tropism = models.get("tropism") if models is not None else None
        dormancy = models.get("dormancy") if models is not None else None
        vocab = _shared(vocabulary(tropism), vocabulary(dormancy))
        invocations["requestBody"] = invocations_body(vocab, max_patients)
    return document


def _shared(a: Vocabulary, b: Vocabulary) -> Vocabulary:
    """What both vocabularies accept."""
    if a.cancer_types is None:
        types = b.cancer_types
    elif b.cancer_types is None:
        types = a.cancer_types
    else:
        types = tuple(t for t in a.cancer_types if t in b.cancer_types) or a.cancer_types
    return Vocabulary(cancer_types=types, stages=tuple(s for s in a.stages if s in b.stages))
