"""Response bodies: typed models for the OpenAPI docs, and the builders the routes use.

The builders return plain dicts (serialised with orjson) so a single-patient request does not
pay for constructing and re-validating response models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from metapredict import schema
from metapredict.predictor import Predictor
from metapredict.tasks import HORIZONS
from serving.request_model import ID_FIELD

FloatArray = NDArray[np.float64]
#: Inputs a patient may leave out (null or absent); each response names the ones left out.
OPTIONAL_INPUTS: tuple[str, ...] = tuple(
    c.name for c in schema.columns(schema.Features) if c.nullable or not c.required
)
_MISSING_DESCRIPTION = (
    "optional inputs this patient left out (null or absent); the model predicted without them"
)


class ModelMeta(BaseModel):
    name: str
    version: str
    alias: str
    run_id: str


class Contribution(BaseModel):
    feature: str
    contribution: float = Field(description="signed, in log-odds")
    value: float | str | None = Field(description="the input value")


_INTERVAL_DESCRIPTION = (
    "[lower, upper] around the point estimate (which always lies inside), at the response's "
    "interval_level: the bootstrap interval of the model's estimate (docs/intervals.md); null "
    "when the model was trained without intervals"
)


class TropismPatient(BaseModel):
    id: str | None
    probabilities: dict[str, float] = Field(
        description="P(site involved | distant relapse), one entry per site the model was "
        "trained on (listed under 'sites' in /v1/models)"
    )
    intervals: dict[str, tuple[float, float]] | None = Field(
        description="per site, " + _INTERVAL_DESCRIPTION
    )
    ranked_sites: list[str]
    top_features: dict[str, list[Contribution]] | None = Field(
        None, description="per site, the features that moved it most (absent with explain=false)"
    )
    missing_inputs: list[str] = Field(description=_MISSING_DESCRIPTION)
    warnings: list[str]


_LEVEL_DESCRIPTION = (
    "nominal coverage of every interval in this response (0.9: 90 %); null when the model "
    "has no intervals"
)


class TropismResponse(BaseModel):
    model: ModelMeta
    schema_version: str
    interval_level: float | None = Field(description=_LEVEL_DESCRIPTION)
    patients: list[TropismPatient]


class DormancyPatient(BaseModel):
    id: str | None
    cumulative_risk: dict[str, float] = Field(
        description="P(distant relapse by 36, 60, 120 months)"
    )
    cumulative_risk_intervals: dict[str, tuple[float, float]] | None = Field(
        description="per horizon, " + _INTERVAL_DESCRIPTION
    )
    late_relapse_probability: float = Field(
        description="P(relapse in (60, 120] months | relapse-free at 60 months)"
    )
    late_relapse_interval: tuple[float, float] | None = Field(description=_INTERVAL_DESCRIPTION)
    risk_group: str = Field(description="low / intermediate / high (training tertiles)")
    top_features: list[Contribution] | None = Field(
        None,
        description="contributions to the log-odds of the relapse hazard at 60 months "
        "(absent with explain=false)",
    )
    missing_inputs: list[str] = Field(description=_MISSING_DESCRIPTION)
    warnings: list[str]


class DormancyResponse(BaseModel):
    model: ModelMeta
    schema_version: str
    interval_level: float | None = Field(description=_LEVEL_DESCRIPTION)
    patients: list[DormancyPatient]


class ErrorDetail(BaseModel):
    patient: int | None
    id: str | None
    field: str | None
    rule: str


_OMITTED = "how many more problems there are beyond those listed in 'detail'"


class ErrorBody(BaseModel):
    """Every error of the service, except on the MLflow scoring routes."""

    message: str
    detail: list[ErrorDetail] | None = None
    omitted: int | None = Field(None, description=_OMITTED)


class MlflowErrorBody(BaseModel):
    """Errors of the MLflow scoring routes, in MLflow's shape (plus the detail)."""

    error_code: str = Field(description="MLflow's error code, e.g. INVALID_PARAMETER_VALUE")
    message: str
    detail: list[ErrorDetail] | None = None
    omitted: int | None = Field(None, description=_OMITTED)


class InvocationsResponse(BaseModel):
    predictions: list[dict[str, float]] = Field(
        description="one record per patient, in request order"
    )


class Status(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description="ready, or loading")
    missing: list[str] | None = Field(None, description="tasks whose model is not loaded yet")


def model_meta(predictor: Predictor) -> dict[str, str]:
    info = predictor.info
    return {"name": info.name, "version": info.version, "alias": info.alias, "run_id": info.run_id}


def _top_k(contributions: FloatArray, k: int) -> tuple[NDArray[np.intp], FloatArray]:
    """Per row (and output), the indices and values of the k largest |contributions|.

    ``contributions`` is (..., features + 1) with the bias last; all rows at once. Ties keep
    the order ``np.argpartition`` leaves them in (the same order as ever).
    """
    values = contributions[..., :-1]
    lead, n_features = values.shape[:-1], values.shape[-1]
    k = min(k, n_features)
    if k == 0:
        return np.empty((*lead, 0), dtype=np.intp), values[..., :0]
    # One (row, output) per line, picked with plain fancy indexing: the same partition and
    # stable sort as take_along_axis on the original shape, without its per-call overhead.
    flat = values.reshape(-1, n_features)
    neg = -np.abs(flat)
    idx = np.argpartition(neg, k - 1, axis=1)[:, :k]
    lines = np.arange(flat.shape[0])[:, None]
    idx = idx[lines, np.argsort(neg[lines, idx], axis=1, kind="stable")]
    return idx.reshape(*lead, k), flat[lines, idx].reshape(*lead, k)


def _contribution_lists(
    idx: list[int], values: list[float], record: dict[str, Any], names: tuple[str, ...]
) -> list[dict[str, Any]]:
    out = []
    for i, v in zip(idx, values, strict=True):
        name = names[i]
        out.append({"feature": name, "contribution": v, "value": record.get(name)})
    return out


def _warnings(predictor: Predictor, records: list[dict[str, Any]]) -> list[list[str]]:
    flagged = predictor.out_of_range(records)
    out: list[list[str]] = []
    for record, names in zip(records, flagged, strict=True):
        out.append(
            [
                f"{name}={record[name]:.4g} lies outside the range seen in training "
                f"[{predictor.feature_ranges[name][0]:.4g}, "
                f"{predictor.feature_ranges[name][1]:.4g}]"
                for name in names
            ]
        )
    return out


def _missing(record: dict[str, Any]) -> list[str]:
    return [name for name in OPTIONAL_INPUTS if record.get(name) is None]


def tropism_patients(
    predictor: Predictor,
    records: list[dict[str, Any]],
    proba: FloatArray,
    contributions: FloatArray | None,
    top: int,
    bounds: FloatArray | None = None,
) -> list[dict[str, Any]]:
    """Per patient, the answer; ``bounds`` (n, sites, 2) are the intervals (None: no intervals)."""
    sites = predictor.output_names
    names = predictor.feature_names
    warnings = _warnings(predictor, records)
    ranked = np.argsort(-proba, axis=1, kind="stable").tolist()
    probabilities = proba.tolist()
    limits = bounds.tolist() if bounds is not None else None
    if contributions is not None:
        top_idx, top_val = _top_k(contributions, top)
        idx_lists, val_lists = top_idx.tolist(), top_val.tolist()
    out = []
    for i, record in enumerate(records):
        patient: dict[str, Any] = {
            "id": record.get(ID_FIELD),
            "probabilities": dict(zip(sites, probabilities[i], strict=True)),
            "intervals": dict(zip(sites, limits[i], strict=True)) if limits is not None else None,
            "ranked_sites": [sites[j] for j in ranked[i]],
        }
        if contributions is not None:
            site_idx, site_val = idx_lists[i], val_lists[i]
            patient["top_features"] = {
                s: _contribution_lists(site_idx[j], site_val[j], record, names)
                for j, s in enumerate(sites)
            }
        patient["missing_inputs"] = _missing(record)
        patient["warnings"] = warnings[i]
        out.append(patient)
    return out


def dormancy_patients(
    predictor: Predictor,
    records: list[dict[str, Any]],
    outputs: FloatArray,
    contributions: FloatArray | None,
    top: int,
    bounds: FloatArray | None = None,
) -> list[dict[str, Any]]:
    """Per patient, the answer; ``bounds`` (n, outputs, 2) are the intervals (None: none)."""
    names = predictor.feature_names
    n_h = len(HORIZONS)
    groups = predictor.risk_group(outputs[:, n_h - 1])
    warnings = _warnings(predictor, records)
    horizons = [str(h) for h in HORIZONS]
    values = outputs.tolist()
    limits = bounds.tolist() if bounds is not None else None
    if contributions is not None:
        top_idx, top_val = _top_k(contributions[:, 0, :], top)
        idx_lists, val_lists = top_idx.tolist(), top_val.tolist()
    out = []
    for i, record in enumerate(records):
        patient: dict[str, Any] = {
            "id": record.get(ID_FIELD),
            "cumulative_risk": dict(zip(horizons, values[i][:n_h], strict=True)),
            "cumulative_risk_intervals": (
                dict(zip(horizons, limits[i][:n_h], strict=True)) if limits is not None else None
            ),
            "late_relapse_probability": values[i][n_h],
            "late_relapse_interval": limits[i][n_h] if limits is not None else None,
            "risk_group": groups[i],
        }
        if contributions is not None:
            patient["top_features"] = _contribution_lists(idx_lists[i], val_lists[i], record, names)
        patient["missing_inputs"] = _missing(record)
        patient["warnings"] = warnings[i]
        out.append(patient)
    return out
