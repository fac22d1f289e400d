"""schemathesis hooks for the conformance test (loaded by ``st run`` via SCHEMATHESIS_HOOKS).

One rule of the request cannot be written in JSON Schema: a patient's 22 LM22 fractions sum to
1. The OpenAPI document says so in words; for data schemathesis generates as *valid*, this hook
rescales the fractions so they do. Invalid data is sent as generated. Likewise a CSV body's
content cannot be described in JSON Schema: generated CSV is sent only as invalid data (valid
CSV is tested against ``mlflow models serve``).
"""

from __future__ import annotations

from typing import Any

import schemathesis

from metapredict import schema

LM22 = schema.lm22_columns()


def _rescale(patient: Any) -> None:
    if not isinstance(patient, dict):
        return
    values = [patient.get(c) for c in LM22]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return
    total = float(sum(values))  # type: ignore[arg-type]
    for c in LM22:
        patient[c] = patient[c] / total if total > 0 else 1.0 / len(LM22)


def fractions_sum_to_one(body: Any) -> None:
    """Rescale each patient's LM22 fractions in a request body to sum to 1 (in place)."""
    if not isinstance(body, dict):
        return
    for key in ("patients", "dataframe_records", "inputs", "instances"):
        rows = body.get(key)
        if isinstance(rows, list):
            for row in rows:
                _rescale(row)
    split = body.get("dataframe_split")
    if isinstance(split, dict) and isinstance(split.get("data"), list):
        columns = split.get("columns") or []
        for i, row in enumerate(split["data"]):
            if isinstance(row, list) and len(row) == len(columns):
                patient = dict(zip(columns, row, strict=True))
                _rescale(patient)
                split["data"][i] = [patient[c] for c in columns]


def _positive(case: schemathesis.Case) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    if _positive(case):
        fractions_sum_to_one(case.body)
    return case


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
    return not (_positive(case) and case.media_type == "text/csv")
