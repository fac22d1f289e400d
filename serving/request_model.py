"""The request model of one patient, generated from the pandera schema (one source of truth).

Every feature column of :class:`metapredict.schema.Features` becomes a field with the same
bounds; the relative-fraction sum rule is re-applied with the same tolerance. NaN and Infinity
are refused; unknown fields are refused; ``id`` is optional and echoed back.

The categorical fields come from the loaded model (:class:`Vocabulary`): ``cancer_type`` must be
a type the model saw in training (a label is first normalised, so "Gastric Cancer" and
"STAD" both mean ``gastric``), and ``stage`` a stage its task answers for (dormancy: I-III).
Before a model is loaded, the open vocabulary of the schema applies.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator

from metapredict import schema
from metapredict.cancer_types import normalise_cancer_type
from metapredict.predictor import Predictor

ID_FIELD = "id"
#: Longest accepted patient id (characters).
ID_MAX_LENGTH = 200
CANCER_TYPE = "cancer_type"
STAGE = "stage"


@dataclass(frozen=True)
class Vocabulary:
    """The categorical values a model accepts; ``cancer_types`` None means any label."""

    cancer_types: tuple[str, ...] | None = None
    stages: tuple[str, ...] = schema.STAGES

    def cancer_type_rule(self) -> str:
        """Why a cancer type was refused, in words."""
        if self.cancer_types is None:
            return schema.rule_text(f"str_matches({schema.CANCER_TYPE_PATTERN})", CANCER_TYPE)
        return "is not a cancer type this model was trained on; it knows: " + ", ".join(
            self.cancer_types
        )

    def stage_rule(self, value: object) -> str:
        """Why a stage was refused, in words."""
        if value == schema.METASTATIC_STAGE and value not in self.stages:
            return (
                "stage IV is metastatic at diagnosis: this model answers for resected, "
                f"non-metastatic primaries (stages {', '.join(self.stages)}, or null)"
            )
        return f"must be one of: {', '.join(self.stages)} (or null when unknown)"


#: Before a model is loaded: any cancer-type label, stages I-IV.
OPEN = Vocabulary()


def vocabulary(predictor: Predictor | None) -> Vocabulary:
    """What ``predictor`` accepts (the open vocabulary when there is none)."""
    if predictor is None:
        return OPEN
    return Vocabulary(
        cancer_types=predictor.cancer_types or None,
        stages=predictor.categories.get(STAGE, schema.STAGES),
    )


#: Longer cancer-type text is not normalised (no label is this long); the checks refuse it.
LABEL_MAX_LENGTH = 200


def normalised_label(value: Any) -> Any:
    """Cancer-type text as the model's label; anything but a string is left to the checks."""
    if isinstance(value, str) and len(value) <= LABEL_MAX_LENGTH:
        try:
            return normalise_cancer_type(value)
        except ValueError:
            return value
    return value


class _PatientBase(BaseModel):
    # strict: a number is a JSON number (true/false and "54" are not), as the OpenAPI says
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, strict=True)

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


def _field(info: schema.ColumnInfo, vocab: Vocabulary) -> tuple[Any, Any]:
    description = info.description + (f" ({info.unit})" if info.unit else "")
    if info.name == CANCER_TYPE:
        if vocab.cancer_types is None:
            annotation: Any = Annotated[str, BeforeValidator(normalised_label)]
            return annotation, Field(
                ..., description=description, pattern=schema.CANCER_TYPE_PATTERN
            )
        annotation = Annotated[Literal[vocab.cancer_types], BeforeValidator(normalised_label)]
        return annotation, Field(..., description=description)
    if info.name == STAGE:
        return Literal[vocab.stages] | None, Field(None, description=description)
    lo, hi = info.minimum, info.maximum
    if info.nullable:
        return float | None, Field(None, description=description, ge=lo, le=hi)
    return float, Field(..., description=description, ge=lo, le=hi)


@cache
def patient_model(vocab: Vocabulary = OPEN) -> type[BaseModel]:
    """The pydantic model of one patient (features plus optional ``id``) for ``vocab``."""
    fields: dict[str, Any] = {
        ID_FIELD: (str | None, Field(None, max_length=ID_MAX_LENGTH, description="echoed back"))
    }
    for info in schema.columns(schema.Features):
        fields[info.name] = _field(info, vocab)
    return create_model("Patient", __base__=_PatientBase, **fields)


def example_patient(vocab: Vocabulary = OPEN) -> dict[str, Any]:
    """A valid example for the OpenAPI docs (a synthetic patient); a fresh copy each call.

    Its cancer type and stage are ones ``vocab`` accepts.
    """
    out = dict(_example_patient())
    if vocab.cancer_types is not None and out[CANCER_TYPE] not in vocab.cancer_types:
        out[CANCER_TYPE] = vocab.cancer_types[0]
    if out[STAGE] not in vocab.stages:
        out[STAGE] = vocab.stages[0]
    return out


@cache
def _example_patient() -> dict[str, Any]:
    """A synthetic patient with every field present (values inside every range)."""
    from metapredict.simulator import complete_patients, default_config

    row = complete_patients(1, 0, draw=200, config=default_config()).iloc[0]
    out: dict[str, Any] = {ID_FIELD: "patient-001"}
    for name in schema.feature_columns():
        value = row[name]
        out[name] = round(float(value), 6) if isinstance(value, float) else value
    return out
