"""Response bodies: typed models for the OpenAPI docs, and the builders the routes use.

The builders return plain dicts (serialised with orjson) so a single-patient request does not
pay for constructing and re-validating response models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from metapredict import metrics
from metapredict.predictor import Predictor
from serving.request_model import ID_FIELD

FloatArray = NDArray[np.float64]


class ModelMeta(BaseModel):
    name: str
    version: str
    alias: str
    run_id: str


class Contribution(BaseModel):
    feature: str
    contribution: float = Field(description="signed, in log-odds")
    value: float | str | None = Field(description="the input value")


class TropismPatient(BaseModel):
    id: str | None
    probabilities: dict[str, float] = Field(description="P(site involved | distant relapse)")
    ranked_sites: list[str]
    top_features: dict[str, list[Contribution]]
    warnings: list[str]


class TropismResponse(BaseModel):
    model: ModelMeta
    schema_version: str
    patients: list[TropismPatient]


class DormancyPatient(BaseModel):
    id: str | None
    cumulative_risk: dict[str, float] = Field(
        description="P(distant relapse by 36, 60, 120 months)"
    )
    late_relapse_probability: float = Field(
        description="P(relapse in (60, 120] months | relapse-free at 60 months)"
    )
    risk_group: str = Field(description="low / intermediate / high (training tertiles)")
    top_features: list[Contribution] = Field(
        description="contributions to the log-odds of the relapse hazard at 60 months"
    )
    warnings: list[str]


class DormancyResponse(BaseModel):
    model: ModelMeta
    schema_version: str
    patients: list[DormancyPatient]


class ErrorDetail(BaseModel):
    patient: int | None
    id: str | None
    field: str | None
    rule: str


class ErrorBody(BaseModel):
    message: str
    detail: list[ErrorDetail] | None = None


def model_meta(predictor: Predictor) -> dict[str, str]:
    info = predictor.info
    return {"name": info.name, "version": info.version, "alias": info.alias, "run_id": info.run_id}


def _top(
    contributions: FloatArray, record: dict[str, Any], names: tuple[str, ...], k: int
) -> list[dict[str, Any]]:
    if k == 0:
        return []
    values = contributions[:-1]
    k = min(k, values.size)
    idx = np.argpartition(-np.abs(values), k - 1)[:k]
    idx = idx[np.argsort(-np.abs(values[idx]))]
    return [
        {"feature": names[i], "contribution": float(values[i]), "value": record.get(names[i])}
        for i in idx
    ]


def _warnings(predictor: Predictor, records: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for record, flagged in zip(records, predictor.out_of_range(records), strict=True):
        out.append(
            [
                f"{name}={record[name]:.4g} lies outside the range seen in training "
                f"[{predictor.feature_ranges[name][0]:.4g}, "
                f"{predictor.feature_ranges[name][1]:.4g}]"
                for name in flagged
            ]
        )
    return out


def tropism_patients(
    predictor: Predictor,
    records: list[dict[str, Any]],
    proba: FloatArray,
    contributions: FloatArray,
    top: int,
) -> list[dict[str, Any]]:
    sites = predictor.output_names
    names = predictor.feature_names
    warnings = _warnings(predictor, records)
    out = []
    for i, record in enumerate(records):
        p = proba[i]
        order = np.argsort(-p, kind="stable")
        out.append(
            {
                "id": record.get(ID_FIELD),
                "probabilities": {s: float(v) for s, v in zip(sites, p, strict=True)},
                "ranked_sites": [sites[j] for j in order],
                "top_features": {
                    s: _top(contributions[i, j], record, names, top) for j, s in enumerate(sites)
                },
                "warnings": warnings[i],
            }
        )
    return out


def dormancy_patients(
    predictor: Predictor,
    records: list[dict[str, Any]],
    outputs: FloatArray,
    contributions: FloatArray,
    top: int,
) -> list[dict[str, Any]]:
    names = predictor.feature_names
    n_h = len(metrics.HORIZONS)
    groups = predictor.risk_group(outputs[:, n_h - 1])
    warnings = _warnings(predictor, records)
    out = []
    for i, record in enumerate(records):
        out.append(
            {
                "id": record.get(ID_FIELD),
                "cumulative_risk": {
                    str(h): float(outputs[i, j]) for j, h in enumerate(metrics.HORIZONS)
                },
                "late_relapse_probability": float(outputs[i, n_h]),
                "risk_group": groups[i],
                "top_features": _top(contributions[i, 0], record, names, top),
                "warnings": warnings[i],
            }
        )
    return out
