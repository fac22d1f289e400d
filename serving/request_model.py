"""The request model of one patient, generated from the pandera schema (one source of truth).

Every feature column of :class:`metapredict.schema.Features` becomes a field with the same
bounds and vocabulary; the relative-fraction sum rule is re-applied with the same tolerance.
NaN and Infinity are refused; unknown fields are refused; ``id`` is optional and echoed back.
"""

from __future__ import annotations

import operator
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from metapredict import schema

ID_FIELD = "id"
#: Longest accepted patient id (characters).
ID_MAX_LENGTH = 200


class _PatientBase(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    @model_validator(mode="after")
    def _lm22_sum(self) -> _PatientBase:
        total = sum(_lm22_values()(self))  # left to right in schema order, as ever
        if abs(total - 1.0) > schema.FRACTION_SUM_TOLERANCE:
            raise ValueError(schema.rule_text("lm22_fractions_sum_to_one", None))
        return self


@cache
def _lm22_values() -> operator.attrgetter[Any]:
    """A patient's LM22 fractions as a tuple, in schema order."""
    return operator.attrgetter(*schema.lm22_columns())


def _field(info: schema.ColumnInfo) -> tuple[Any, Any]:
    description = info.description + (f" ({info.unit})" if info.unit else "")
    if info.allowed is not None:
        annotation: Any = Literal[info.allowed]
        return annotation, Field(..., description=description)
    lo, hi = info.minimum, info.maximum
    if info.nullable:
        return float | None, Field(None, description=description, ge=lo, le=hi)
    return float, Field(..., description=description, ge=lo, le=hi)


@cache
def patient_model() -> type[BaseModel]:
    """The pydantic model of one patient (features plus optional ``id``)."""
    fields: dict[str, Any] = {
        ID_FIELD: (str | None, Field(None, max_length=ID_MAX_LENGTH, description="echoed back"))
    }
    for info in schema.columns(schema.Features):
        fields[info.name] = _field(info)
    return create_model("Patient", __base__=_PatientBase, **fields)


def example_patient() -> dict[str, Any]:
    """A valid example for the OpenAPI docs (a synthetic patient); a fresh copy each call."""
    return dict(_example_patient())


@cache
def _example_patient() -> dict[str, Any]:
    """A valid example for the OpenAPI docs (a synthetic patient)."""
    from metapredict.simulator import default_config, simulate_cohort

    cohort = simulate_cohort(50, 0, default_config())
    row = cohort.dropna(subset=list(schema.extra_columns())).iloc[0]
    out: dict[str, Any] = {ID_FIELD: "patient-001"}
    for name in schema.feature_columns():
        value = row[name]
        out[name] = round(float(value), 6) if isinstance(value, float) else value
    return out
