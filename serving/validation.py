"""Turning a request body into validated patient records, or a list of what is wrong.

Two validators, one verdict: small requests are checked row by row with the pydantic model
generated from the pandera schema (microseconds per row); batches of at least
``pandera_batch_rows`` patients are checked with the pandera schema itself in one pass. Both
report each failing field of each patient with the rule it broke, in the schema's words.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import pandas as pd
from pydantic import ValidationError

from metapredict import schema
from serving.request_model import (
    CANCER_TYPE,
    ID_FIELD,
    ID_MAX_LENGTH,
    OPEN,
    STAGE,
    Vocabulary,
    normalised_label,
    patient_model,
)


@dataclass(frozen=True)
class FieldError:
    """One broken rule: which patient (position in the request), its id, which field, why."""

    patient: int | None
    id: str | None
    field: str | None
    rule: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestRejected(Exception):
    """The request cannot be served; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.errors:
            out["detail"] = [e.as_dict() for e in self.errors]
        return out


NON_FINITE = "must be a finite number (not NaN or Infinity)"
UNKNOWN_FIELD = "is not a field the schema knows"


def parse_json(body: bytes) -> tuple[Any, bool]:
    """(document, whether it contains NaN/Infinity tokens). Malformed JSON is a 400."""
    try:
        return orjson.loads(body), False
    except orjson.JSONDecodeError:
        pass
    try:  # the standard library accepts NaN / Infinity, which we then refuse per field
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestRejected(400, f"malformed JSON: {err}") from err
    except RecursionError as err:  # orjson stops at depth 1024; so must we, politely
        raise RequestRejected(400, "malformed JSON: nested too deeply") from err
    try:  # it also accepts unpaired surrogates (\ud800), which no response could echo
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise RequestRejected(400, "malformed JSON: unpaired UTF-16 surrogate in a string") from err
    except RecursionError as err:
        raise RequestRejected(400, "malformed JSON: nested too deeply") from err
    return document, True


def _rule_from_pydantic(err: Any, vocab: Vocabulary) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    field = str(err["loc"][0]) if err["loc"] else None
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return UNKNOWN_FIELD
    if field == CANCER_TYPE and kind in {"literal_error", "string_pattern_mismatch"}:
        return vocab.cancer_type_rule()
    if field == STAGE and kind == "literal_error":
        return vocab.stage_rule(err.get("input"))
    if kind == "less_than_equal":
        return schema.rule_text(f"less_than_or_equal_to({ctx['le']})", field)
    if kind == "greater_than_equal":
        return schema.rule_text(f"greater_than_or_equal_to({ctx['ge']})", field)
    if kind == "literal_error":
        return schema.rule_text("isin()", field)
    if kind == "finite_number":
        return NON_FINITE
    if kind in {"float_parsing", "float_type"}:
        return "must be a number"
    if kind in {"string_type", "string_too_long"}:
        return "must be a string" if kind == "string_type" else "is too long"
    return str(err["msg"]).removeprefix("Value error, ")


def _patient_id(row: Any) -> str | None:
    """The patient's id to name in an error, if it is a valid one (never a huge string)."""
    if isinstance(row, dict):
        value = row.get(ID_FIELD)
        return value if isinstance(value, str) and len(value) <= ID_MAX_LENGTH else None
    return None


def _validate_rows_pydantic(rows: Sequence[Any], vocab: Vocabulary) -> list[dict[str, Any]]:
    model = patient_model(vocab)
    records: list[dict[str, Any]] = []
    errors: list[FieldError] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(FieldError(i, None, None, "each patient must be a JSON object"))
            continue
        try:
            records.append(model.model_validate(row).model_dump())
        except ValidationError as err:
            for e in err.errors():
                field = str(e["loc"][0]) if e["loc"] else None
                errors.append(FieldError(i, _patient_id(row), field, _rule_from_pydantic(e, vocab)))
    if errors:
        raise RequestRejected(422, _summary(errors), errors)
    return records


def _beyond_float_as_none(value: Any) -> Any:
    """Integers too large for a float (10**400) make pandas raise; pydantic calls them no number."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return None
    return value


def _category_errors(
    frame: pd.DataFrame, rows: Sequence[Any], vocab: Vocabulary, reported: set[tuple[Any, Any]]
) -> list[FieldError]:
    """Cancer types and stages the model does not accept (cells not reported already)."""
    errors: list[FieldError] = []
    types = frame[CANCER_TYPE].tolist() if CANCER_TYPE in frame.columns else []
    stages = frame[STAGE].tolist() if STAGE in frame.columns else []
    for i, value in enumerate(types):
        known = vocab.cancer_types is None or value in vocab.cancer_types
        if isinstance(value, str) and not known and (i, CANCER_TYPE) not in reported:
            errors.append(
                FieldError(i, _patient_id(rows[i]), CANCER_TYPE, vocab.cancer_type_rule())
            )
    for i, value in enumerate(stages):
        if isinstance(value, str) and value not in vocab.stages and (i, STAGE) not in reported:
            errors.append(FieldError(i, _patient_id(rows[i]), STAGE, vocab.stage_rule(value)))
    return errors


def _validate_rows_pandera(
    rows: Sequence[Any], has_non_finite: bool, vocab: Vocabulary
) -> list[dict[str, Any]]:
    errors: list[FieldError] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(FieldError(i, None, None, "each patient must be a JSON object"))
    if errors:
        raise RequestRejected(422, _summary(errors), errors)
    numeric = [c.name for c in schema.columns(schema.Features) if not c.categorical]
    if has_non_finite:
        for i, row in enumerate(rows):
            for name in numeric:
                v = row.get(name)
                if isinstance(v, float) and not math.isfinite(v):
                    errors.append(FieldError(i, _patient_id(row), name, NON_FINITE))
    frame = pd.DataFrame.from_records(list(rows))
    for name in numeric:
        if name not in frame.columns:
            continue
        raw = frame[name]
        try:
            converted = pd.to_numeric(raw, errors="coerce")
        except OverflowError:
            converted = pd.to_numeric(raw.map(_beyond_float_as_none), errors="coerce")
        bad = converted.isna() & raw.notna()
        for i in bad[bad].index:
            errors.append(FieldError(int(i), _patient_id(rows[i]), name, "must be a number"))
        frame[name] = converted.astype(float)
    for name in schema.categorical_columns():
        if name in frame.columns:
            frame[name] = frame[name].astype(object)
    if CANCER_TYPE in frame.columns:
        frame[CANCER_TYPE] = frame[CANCER_TYPE].map(normalised_label)
    if ID_FIELD in frame.columns:
        for i, value in enumerate(frame[ID_FIELD].tolist()):
            if isinstance(value, str):
                if len(value) > ID_MAX_LENGTH:
                    errors.append(FieldError(i, None, ID_FIELD, "is too long"))
            elif value is not None and not (isinstance(value, float) and math.isnan(value)):
                errors.append(FieldError(i, None, ID_FIELD, "must be a string"))
    # Cells refused above (not a number, NaN/Infinity) also fail the schema: report them once.
    reported = {(e.patient, e.field) for e in errors}
    try:
        schema.validate(frame, schema.Features, extra_columns_allowed=(ID_FIELD,))
    except schema.CohortValidationError as err:
        known = {*schema.feature_columns(), ID_FIELD}
        for v in err.violations:
            row = int(v.row) if v.row is not None else None
            if row is None and v.column is not None and v.column not in known:
                # an unknown column: name it for each patient that sent it, as pydantic does
                for i, r in enumerate(rows):
                    if v.column in r:
                        errors.append(FieldError(i, _patient_id(r), v.column, UNKNOWN_FIELD))
                continue
            if row is None and v.column is not None and v.rule.startswith("is a required column"):
                # no patient sent it
                for i, r in enumerate(rows):
                    errors.append(FieldError(i, _patient_id(r), v.column, "is required"))
                continue
            if (row, v.column) in reported:
                continue
            rule = v.rule
            if row is not None and v.column is not None and v.column not in rows[row]:
                rule = "is required"  # absent, rather than sent as null
            if row is not None and rule != "is required" and v.column in (CANCER_TYPE, STAGE):
                value = rows[row].get(v.column)
                if v.column == CANCER_TYPE and isinstance(value, str):
                    rule = vocab.cancer_type_rule()
                elif v.column == STAGE and value is not None:
                    rule = vocab.stage_rule(value)
            pid = _patient_id(rows[row]) if row is not None else None
            errors.append(FieldError(row, pid, v.column, rule))
            reported.add((row, v.column))
    errors += _category_errors(frame, rows, vocab, reported)
    if errors:
        raise RequestRejected(422, _summary(errors), errors)
    # The same records as the pydantic path: numbers as floats (also when sent as strings).
    values = {name: frame[name].tolist() for name in numeric if name in frame.columns}
    records: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        record: dict[str, Any] = {ID_FIELD: row.get(ID_FIELD)}
        for c in schema.feature_columns():
            v = row.get(c)
            record[c] = float(values[c][i]) if c in values and v is not None else v
        record[CANCER_TYPE] = normalised_label(record[CANCER_TYPE])
        records.append(record)
    return records


def validate_patients(
    rows: Any,
    *,
    max_patients: int,
    pandera_batch_rows: int,
    has_non_finite: bool = False,
    vocab: Vocabulary = OPEN,
) -> list[dict[str, Any]]:
    """Validated records (dicts by schema column, plus ``id``); else :class:`RequestRejected`.

    ``vocab`` is what the model that will answer accepts (its cancer types and stages).
    """
    if not isinstance(rows, list):
        raise RequestRejected(422, "'patients' must be a list of patient objects")
    if not rows:
        raise RequestRejected(422, "'patients' must contain at least one patient")
    if len(rows) > max_patients:
        raise RequestRejected(
            413, f"{len(rows)} patients in one request; the maximum is {max_patients}"
        )
    if len(rows) >= pandera_batch_rows:
        return _validate_rows_pandera(rows, has_non_finite, vocab)
    return _validate_rows_pydantic(rows, vocab)


def _summary(errors: Sequence[FieldError]) -> str:
    patients = {e.patient for e in errors if e.patient is not None}
    n = len(errors)
    return (
        f"{n} problem{'s' if n != 1 else ''} in {len(patients)} "
        f"patient{'s' if len(patients) != 1 else ''}; see 'detail'"
    )
