"""Turning a request body into validated patient records, or a list of what is wrong.

Two validators, one verdict: small requests are checked row by row with the pydantic model
generated from the pandera schema (microseconds per row); batches of at least
``pandera_batch_rows`` patients are checked with the pandera schema itself in one pass. A batch
with a problem is described patient by patient by the request model, so each failing field of
each patient is named with the rule it broke, in the schema's words, the same in a batch of 1
and of 1,000. At most :data:`MAX_ERRORS` problems are listed; the rest are counted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
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

#: At most this many problems are listed in a 422; the rest are counted (``omitted``).
MAX_ERRORS = 100
#: Longest field name an error repeats (an unknown key is cut to this many characters).
FIELD_NAME_MAX = 64


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
    """The request cannot be served; ``status`` is the HTTP status to answer with.

    ``errors`` are the problems listed; ``omitted`` counts those beyond :data:`MAX_ERRORS`.
    """

    def __init__(
        self,
        status: int,
        message: str,
        errors: Sequence[FieldError] = (),
        omitted: int = 0,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors)
        self.omitted = omitted
        self.headers = headers

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.errors:
            out["detail"] = [e.as_dict() for e in self.errors]
        if self.omitted:
            out["omitted"] = self.omitted
        return out


class Problems:
    """The problems of one request: the first ``limit`` kept, the rest only counted."""

    def __init__(self, limit: int = MAX_ERRORS) -> None:
        self.limit = limit
        self.kept: list[FieldError] = []
        self.omitted = 0
        self.patients: set[int] = set()

    @property
    def room(self) -> int:
        return self.limit - len(self.kept)

    def add(self, error: FieldError) -> None:
        if len(self.kept) < self.limit:
            self.kept.append(error)
        else:
            self.omitted += 1
        if error.patient is not None:
            self.patients.add(error.patient)

    def count(self, patient: int, n: int) -> None:
        """``n`` more problems of ``patient``, counted but not listed."""
        if n > 0:
            self.omitted += n
            self.patients.add(patient)

    def __bool__(self) -> bool:
        return bool(self.kept) or self.omitted > 0

    def cells(self) -> set[tuple[int | None, str | None]]:
        return {(e.patient, e.field) for e in self.kept}

    def raise_if_any(self) -> None:
        if self:
            raise RequestRejected(422, self.summary(), self.kept, self.omitted)

    def summary(self) -> str:
        n = len(self.kept) + self.omitted
        p = len(self.patients)
        where = f"the first {len(self.kept)} are listed in" if self.omitted else "see"
        return (
            f"{n} problem{'s' if n != 1 else ''} in {p} patient{'s' if p != 1 else ''}; "
            f"{where} 'detail'"
        )


NON_FINITE = "must be a finite number (not NaN or Infinity)"
NOT_A_NUMBER = "must be a number"
UNKNOWN_FIELD = "is not a field the schema knows"
NOT_AN_OBJECT = "each patient must be a JSON object"


def parse_json(body: bytes) -> tuple[Any, bool]:
    """(document, whether it contains NaN/Infinity tokens). Malformed JSON is a 400."""
    try:
        return orjson.loads(body), False
    except orjson.JSONDecodeError:
        pass
    try:  # the standard library accepts NaN / Infinity, which we then refuse per field
        document = json.loads(body.decode("utf-8"))
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
    if kind == "missing" or (field is not None and err.get("input", 0) is None):
        return "is required"
    if kind == "extra_forbidden":
        return UNKNOWN_FIELD
    if field == CANCER_TYPE and kind in {
        "literal_error",
        "string_pattern_mismatch",
        "string_type",
    }:
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
        return NOT_A_NUMBER
    if kind in {"string_type", "string_too_long"}:
        return "must be a string" if kind == "string_type" else "is too long"
    return str(err["msg"]).removeprefix("Value error, ")


def _patient_id(row: Any) -> str | None:
    """The patient's id to name in an error, if it is a valid one (never a huge string)."""
    if isinstance(row, dict):
        value = row.get(ID_FIELD)
        return value if isinstance(value, str) and len(value) <= ID_MAX_LENGTH else None
    return None


def _field_name(key: str) -> str:
    """An unknown key as an error names it: never a long piece of the payload."""
    return key if len(key) <= FIELD_NAME_MAX else key[: FIELD_NAME_MAX - 3] + "..."


def _known_fields() -> frozenset[str]:
    return frozenset({ID_FIELD, *schema.feature_columns()})


def _known_part(i: int, row: dict[str, Any], known: frozenset[str], problems: Problems) -> Any:
    """``row`` without its unknown keys, each reported (listed while there is room, then
    counted: no work per key beyond the listed ones)."""
    present = [k for k in known if k in row]
    extra = len(row) - len(present)
    if not extra:
        return row
    pid = _patient_id(row)
    listed = 0
    if problems.room > 0:
        for key in row:
            if key not in known:
                problems.add(FieldError(i, pid, _field_name(key), UNKNOWN_FIELD))
                listed += 1
                if listed == extra or problems.room == 0:
                    break
    problems.count(i, extra - listed)
    return {k: row[k] for k in present}


def _field_errors(err: ValidationError) -> int:
    return sum(1 for e in err.errors(include_url=False, include_context=False) if e["loc"])


def _validate_rows_pydantic(rows: Sequence[Any], vocab: Vocabulary) -> list[dict[str, Any]]:
    model = patient_model(vocab)
    known = _known_fields()
    records: list[dict[str, Any]] = []
    problems = Problems()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.add(FieldError(i, None, None, NOT_AN_OBJECT))
            continue
        part = _known_part(i, row, known, problems)
        try:
            record = model.model_validate(part).model_dump()
        except ValidationError as err:
            if problems.room == 0:  # only counted from here on: no error objects built
                problems.count(i, err.error_count() if part is row else _field_errors(err))
                continue
            for e in err.errors():
                field = str(e["loc"][0]) if e["loc"] else None
                if field is None and part is not row:
                    continue  # the fraction sum: told only to patients whose fields passed
                problems.add(FieldError(i, _patient_id(row), field, _rule_from_pydantic(e, vocab)))
            continue
        if part is not row:
            continue  # refused for its unknown keys
        records.append(record)
    problems.raise_if_any()
    return records


def _frame_if_clean(rows: Sequence[Any], vocab: Vocabulary) -> pd.DataFrame | None:
    """The batch as a frame for the pandera schema, or None at the first sign of a problem.

    A quick screen (types, unknown keys, bounds, categories, the fraction sum; vectorised where
    it can be): the pandera schema gives the verdict on a clean batch, and a batch with a
    problem is described by the request model, patient by patient, so that a patient's detail
    is the same in a batch of 1 and of 1,000 (the pandera schema, besides, takes seconds to
    report thousands of failing cells).
    """
    known = _known_fields()
    for row in rows:
        if not isinstance(row, dict) or not row.keys() <= known:
            return None
        pid = row.get(ID_FIELD)
        if pid is not None and not (isinstance(pid, str) and len(pid) <= ID_MAX_LENGTH):
            return None
    columns: dict[str, Any] = {}
    for info in schema.columns(schema.Features):
        values = [row.get(info.name) for row in rows]
        if info.categorical:
            columns[info.name] = pd.Series(values, dtype=object)
            continue
        if not all(
            v is None or (isinstance(v, float | int) and not isinstance(v, bool)) for v in values
        ):
            return None
        try:
            array = np.array([math.nan if v is None else v for v in values], dtype=float)
        except OverflowError:
            return None
        missing = np.isnan(array)
        if (missing.any() and not info.nullable) or np.isinf(array).any():
            return None
        if int(missing.sum()) != values.count(None):  # a NaN token, not a null: refused
            return None
        present = array[~missing]
        if (info.minimum is not None and (present < info.minimum).any()) or (
            info.maximum is not None and (present > info.maximum).any()
        ):
            return None
        columns[info.name] = array
    types = columns[CANCER_TYPE].map(normalised_label)
    if vocab.cancer_types is not None and not types.isin(vocab.cancer_types).all():
        return None
    columns[CANCER_TYPE] = types
    stages = columns[STAGE]
    if not (stages.isna() | stages.isin(vocab.stages)).all():
        return None
    total = np.sum([columns[c] for c in schema.lm22_columns()], axis=0)
    if (np.abs(total - 1.0) > schema.FRACTION_SUM_TOLERANCE).any():
        return None
    return pd.DataFrame(columns)


def _validate_rows_pandera(rows: Sequence[Any], vocab: Vocabulary) -> list[dict[str, Any]]:
    frame = _frame_if_clean(rows, vocab)
    if frame is None:
        return _validate_rows_pydantic(rows, vocab)
    try:
        schema.validate(frame, schema.Features)
    except schema.CohortValidationError:
        return _validate_rows_pydantic(rows, vocab)
    # The same records as the request model's: numbers as floats, labels normalised.
    numeric = [c.name for c in schema.columns(schema.Features) if not c.categorical]
    values = {name: frame[name].tolist() for name in numeric}
    types = frame[CANCER_TYPE].tolist()
    records: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        record: dict[str, Any] = {ID_FIELD: row.get(ID_FIELD)}
        for c in schema.feature_columns():
            cell = row.get(c)
            record[c] = values[c][i] if c in values and cell is not None else cell
        record[CANCER_TYPE] = types[i]
        records.append(record)
    return records


def validate_patients(
    rows: Any,
    *,
    max_patients: int,
    pandera_batch_rows: int,
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
        return _validate_rows_pandera(rows, vocab)
    return _validate_rows_pydantic(rows, vocab)
