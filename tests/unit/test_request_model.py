"""The serving request model is generated from the pandera schema and agrees with it.

Same fields, same bounds, same vocabularies; and on the same rows the three validators (the
pydantic request path, the pandera batch path of the service, and ``schema.validate`` itself)
give the same verdict and name the same failing fields.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from typing import Any

import annotated_types
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metapredict import schema
from metapredict.cancer_types import normalise_cancer_type
from serving.request_model import ID_FIELD, Vocabulary, example_patient, patient_model
from serving.validation import NON_FINITE, FieldError, RequestRejected, validate_patients
from tests.conftest import valid_frame

FEATURES = schema.columns(schema.Features)
BY_NAME = {c.name: c for c in FEATURES}
NUMERIC = tuple(c.name for c in FEATURES if not c.categorical)
NULLABLE = tuple(c.name for c in FEATURES if c.nullable)
LM22 = schema.lm22_columns()
#: Labels a valid patient may carry (the open vocabulary takes any label).
LABELS = ("breast", "gastric", "head_and_neck", "renal")
#: Cancer-type cells no label can be made of, or that break the label rule.
BAD_LABELS = ("", "?!", "   ", "__")


# --- the generated model has the schema's fields --------------------------------------------


def _bounds(field: Any) -> tuple[float | None, float | None]:
    ge = [m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)]
    le = [m.le for m in field.metadata if isinstance(m, annotated_types.Le)]
    return (ge[0] if ge else None, le[0] if le else None)


def test_model_fields_are_the_schema_features_plus_id() -> None:
    fields = patient_model().model_fields
    assert set(fields) == {*schema.feature_columns(), ID_FIELD}
    assert list(fields)[1:] == list(schema.feature_columns())
    assert not fields[ID_FIELD].is_required()


@pytest.mark.parametrize("info", FEATURES, ids=lambda c: c.name)
def test_field_has_the_schema_bounds_vocabulary_and_nullability(info: schema.ColumnInfo) -> None:
    field = patient_model().model_fields[info.name]
    assert field.is_required() == (info.required and not info.nullable)
    if info.name == "stage":
        literal, none = typing.get_args(field.annotation)
        assert typing.get_args(literal) == schema.STAGES and none is type(None)
    elif info.name == "cancer_type":
        assert field.metadata[0].pattern == schema.CANCER_TYPE_PATTERN
    else:
        assert _bounds(field) == (info.minimum, info.maximum)
        assert info.minimum is not None and info.maximum is not None
        accepts_none = type(None) in typing.get_args(field.annotation)
        assert accepts_none == info.nullable


def test_example_patient_is_valid_for_both_validators() -> None:
    example = example_patient()
    assert set(example) == {*schema.feature_columns(), ID_FIELD}
    a = validate_patients([example], max_patients=10, pandera_batch_rows=10**6)
    b = validate_patients([example], max_patients=10, pandera_batch_rows=1)
    assert a == b
    schema.validate(pd.DataFrame([example]), schema.Features, extra_columns_allowed=(ID_FIELD,))


# --- one verdict, three validators -----------------------------------------------------------


def _pydantic(rows: list[dict[str, Any]]) -> Any:
    return validate_patients(rows, max_patients=10**6, pandera_batch_rows=10**6)


def _pandera_path(rows: list[dict[str, Any]]) -> Any:
    return validate_patients(rows, max_patients=10**6, pandera_batch_rows=1)


def _verdict(validate: Any, rows: list[dict[str, Any]]) -> tuple[Any, list[FieldError]]:
    try:
        return validate(rows), []
    except RequestRejected as err:
        assert err.status == 422
        assert err.errors, err.message
        return None, err.errors


def _schema_fields(rows: list[dict[str, Any]]) -> set[str | None] | None:
    """Columns ``schema.validate`` names for these rows as a frame (None: the frame is valid)."""
    frame = pd.DataFrame(rows)
    for name in NUMERIC:  # a float frame, as a user holds it (an all-None column is object)
        if name in frame.columns:
            frame[name] = frame[name].astype(float)
    if "cancer_type" in frame.columns:  # labels normalised, as the cohort builder does
        frame["cancer_type"] = [_label(v) for v in frame["cancer_type"]]
    try:
        schema.validate(frame, schema.Features, extra_columns_allowed=(ID_FIELD,))
    except schema.CohortValidationError as err:
        return {v.column for v in err.violations}
    return None


def _label(value: Any) -> Any:
    try:
        return normalise_cancer_type(value) if isinstance(value, str) else value
    except ValueError:
        return value


def _named(fields: Sequence[str | None] | set[str | None]) -> set[str]:
    """Field names (table-level rules such as the fraction sum have no field)."""
    return {f for f in fields if f is not None}


def _cells(errors: Sequence[FieldError]) -> set[tuple[int | None, str]]:
    return {(e.patient, e.field) for e in errors if e.field is not None}


def _details(errors: Sequence[FieldError]) -> list[tuple[Any, ...]]:
    """Every problem as the client reads it: patient, id, field and the rule's words."""
    return sorted(
        ((e.patient, e.id, e.field, e.rule) for e in errors), key=lambda d: tuple(map(str, d))
    )


def _valid_rows(n: int = 3) -> list[dict[str, Any]]:
    frame = valid_frame(n, schema.Features)
    return [
        {ID_FIELD: f"P{i}", **{c: frame.loc[i, c] for c in schema.feature_columns()}}
        for i in range(n)
    ]


@st.composite
def valid_row(draw: st.DrawFn, index: int) -> dict[str, Any]:
    """A valid patient drawn from the schema: fractions normalised to sum 1, extras optional."""
    weights = draw(st.lists(st.floats(0.0, 1.0), min_size=len(LM22), max_size=len(LM22)))
    total = sum(weights)
    if total < 1e-6:
        weights, total = [1.0] * len(LM22), float(len(LM22))
    row: dict[str, Any] = {ID_FIELD: f"P{index}"}
    row |= {c: w / total for c, w in zip(LM22, weights, strict=True)}
    for name in schema.extra_columns():
        info = BY_NAME[name]
        choice = draw(st.sampled_from(["value", "none", "absent"]))
        if choice == "value":
            row[name] = draw(st.floats(info.minimum, info.maximum))
        elif choice == "none":
            row[name] = None
    row["cancer_type"] = draw(st.sampled_from(LABELS))
    row["stage"] = draw(st.sampled_from((*schema.STAGES, None)))
    age = BY_NAME["age_years"]
    row["age_years"] = draw(st.one_of(st.none(), st.floats(age.minimum, age.maximum)))
    return row


SCHEMA_NAMES = {c.name for c in schema.columns(schema.Cohort)} | {ID_FIELD}
unknown_names = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True).filter(
    lambda s: s not in SCHEMA_NAMES
)
outside = st.floats(1e-3, 1e6)


@st.composite
def perturbation(draw: st.DrawFn) -> tuple[str, Any, Any]:
    kind = draw(
        st.sampled_from(
            [
                "above",
                "below",
                "boundary",
                "non_finite",
                "wrong_category",
                "missing",
                "wrong_type",
                "unknown",
                "fraction_sum",
                "none_extra",
            ]
        )
    )
    if kind in {"above", "below", "boundary", "non_finite"}:
        name = draw(st.sampled_from(NUMERIC))
        info = BY_NAME[name]
        assert info.minimum is not None and info.maximum is not None
        if kind == "above":
            value: Any = info.maximum + draw(outside)
        elif kind == "below":
            value = info.minimum - draw(outside)
        elif kind == "boundary":
            value = draw(st.sampled_from([info.minimum, info.maximum]))
        else:
            value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return kind, name, value
    if kind == "wrong_category":
        name = draw(st.sampled_from(schema.categorical_columns()))
        if name == "cancer_type":
            return kind, name, draw(st.one_of(st.none(), st.sampled_from(BAD_LABELS)))
        value = draw(st.text(max_size=12).filter(lambda s: s not in schema.STAGES))
        return kind, name, value
    if kind == "missing":
        return kind, draw(st.sampled_from(schema.feature_columns())), None
    if kind == "wrong_type":  # text, true/false, null or a list where a number belongs
        value = draw(st.sampled_from(["54", "0.1", "", True, False, None, [1.0]]))
        return kind, draw(st.sampled_from(NUMERIC)), value
    if kind == "unknown":
        return kind, draw(unknown_names), draw(st.floats(-10, 10))
    if kind == "fraction_sum":
        return kind, None, draw(st.one_of(st.floats(0.0, 0.9), st.floats(1.1, 3.0)))
    return kind, draw(st.sampled_from(schema.extra_columns())), None


def _apply(row: dict[str, Any], change: tuple[str, Any, Any]) -> None:
    kind, name, value = change
    if kind == "missing":
        row.pop(name, None)
    elif kind == "fraction_sum":
        for c in LM22:
            if c in row and isinstance(row[c], float) and math.isfinite(row[c]):
                row[c] *= value
    else:
        row[name] = value


@st.composite
def patient_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 4))
    rows = [draw(valid_row(i)) for i in range(n)]
    for row in rows:
        for change in draw(st.lists(perturbation(), max_size=3)):
            _apply(row, change)
    return rows


def _only_numbers(rows: list[dict[str, Any]]) -> bool:
    """Every numeric cell a number or null (a frame of floats can hold them as they are)."""
    return all(
        row.get(c) is None or (isinstance(row[c], int | float) and not isinstance(row[c], bool))
        for row in rows
        for c in NUMERIC
    )


def _nan_in_nullable(rows: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(row.get(c), float) and math.isnan(row[c]) for row in rows for c in NULLABLE
    )


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(rows=patient_rows())
def test_pydantic_and_pandera_give_the_same_verdict(rows: list[dict[str, Any]]) -> None:
    small, small_errors = _verdict(_pydantic, [dict(r) for r in rows])
    batch, batch_errors = _verdict(_pandera_path, [dict(r) for r in rows])

    assert (small is None) == (batch is None), (small_errors, batch_errors)
    # the same detail, word for word: each failing field of each patient with its rule, and
    # the fraction sum for a patient whose fields all passed
    assert _details(small_errors) == _details(batch_errors)
    if small is not None:
        assert small == batch  # the same normalised records either way

    # in a DataFrame NaN *is* "missing", which extras may be; and a frame of floats holds no text
    if not _nan_in_nullable(rows) and _only_numbers(rows):
        direct = _schema_fields([dict(r) for r in rows])
        assert (direct is None) == (small is not None), (small_errors, direct)
        assert _named(direct or set()) == _named([e.field for e in small_errors])


# --- the same rule in the same words ---------------------------------------------------------


def _bad_cases() -> list[Any]:
    cases = []
    for info in FEATURES:
        if info.name == "stage":
            value, words = "V", "must be one of: I, II, III, IV (or null when unknown)"
            cases.append(pytest.param(info.name, value, words, id=f"{info.name}-unknown"))
            continue
        if info.name == "cancer_type":
            value, words = "?!", "must be a lowercase snake-case label"
            cases.append(pytest.param(info.name, value, words, id=f"{info.name}-no-label"))
            continue
        assert info.minimum is not None and info.maximum is not None
        for value, words, side in (
            (info.maximum + 1.0, "must be at most ", "above"),
            (info.minimum - 1.0, "must be at least ", "below"),
        ):
            cases.append(pytest.param(info.name, value, words, id=f"{info.name}-{side}"))
    return cases


@pytest.mark.parametrize(("field", "value", "words"), _bad_cases())
def test_both_paths_name_the_same_rule(field: str, value: Any, words: str) -> None:
    rows = _valid_rows(2)
    rows[1][field] = value
    with pytest.raises(RequestRejected) as small:
        _pydantic(rows)
    with pytest.raises(RequestRejected) as batch:
        _pandera_path(rows)
    found = {(e.patient, e.id, e.field, e.rule) for e in small.value.errors}
    assert len(found) == 1
    ((patient, pid, name, rule),) = found
    assert (patient, pid, name) == (1, "P1", field)
    assert rule.startswith(words)
    # the batch path may add the broken fraction sum (no field) when an LM22 value is off
    assert {(e.patient, e.id, e.field, e.rule) for e in batch.value.errors if e.field} == found


def test_missing_and_unknown_fields_are_named_on_both_paths() -> None:
    rows = _valid_rows(3)
    del rows[0]["cancer_type"]
    rows[1]["tumour_grade"] = 2.0
    rows[2]["tumour_grade"] = 3.0
    for row in rows:
        del row["neutrophils"]  # missing for every patient: a missing column on the pandera path
    found = []
    for validate in (_pydantic, _pandera_path):
        with pytest.raises(RequestRejected) as err:
            validate([dict(r) for r in rows])
        found.append(sorted((e.patient, e.id, e.field, e.rule) for e in err.value.errors))
    assert found[0] == found[1]
    assert found[0] == sorted(
        [
            (0, "P0", "cancer_type", "is required"),
            *((i, f"P{i}", "neutrophils", "is required") for i in range(3)),
            (1, "P1", "tumour_grade", "is not a field the schema knows"),
            (2, "P2", "tumour_grade", "is not a field the schema knows"),
        ]
    )


def test_too_long_id_is_refused_on_both_paths() -> None:
    rows = _valid_rows(2)
    rows[1][ID_FIELD] = "x" * 201
    for validate in (_pydantic, _pandera_path):
        with pytest.raises(RequestRejected) as err:
            validate([dict(r) for r in rows])
        assert [(e.patient, e.field) for e in err.value.errors] == [(1, ID_FIELD)]


@pytest.mark.parametrize("value", ["61", "300.5", True, False], ids=repr)
def test_text_and_booleans_are_not_numbers_on_both_paths(value: Any) -> None:
    """OpenAPI declares numbers: "61" and true are refused, as JSON Schema refuses them."""
    rows = _valid_rows(2)
    rows[0]["age_years"] = value
    rows[1]["mdsc_score"] = value
    found = []
    for validate in (_pydantic, _pandera_path):
        with pytest.raises(RequestRejected) as err:
            validate([dict(r) for r in rows])
        found.append(_details(err.value.errors))
    assert (
        found[0]
        == found[1]
        == [
            (0, "P0", "age_years", "must be a number"),
            (1, "P1", "mdsc_score", "must be a number"),
        ]
    )


def test_a_nan_in_a_nullable_field_is_refused_on_both_paths() -> None:
    """A NaN token is not a null: the batch path's frame must not read it as missing."""
    rows = _valid_rows(2)
    rows[1]["mdsc_score"] = math.nan
    found = []
    for validate in (_pydantic, _pandera_path):
        with pytest.raises(RequestRejected) as err:
            validate([dict(r) for r in rows])
        found.append(_details(err.value.errors))
    assert found[0] == found[1] == [(1, "P1", "mdsc_score", NON_FINITE)]


def test_integers_are_numbers_on_both_paths() -> None:
    rows = _valid_rows(2)
    rows[0]["age_years"] = 61
    rows[1]["platelet_count"] = 300
    rows[1]["mdsc_score"] = None
    small = _pydantic([dict(r) for r in rows])
    batch = _pandera_path([dict(r) for r in rows])
    assert small == batch
    assert small[0]["age_years"] == 61.0 and isinstance(small[0]["age_years"], float)
    assert batch[1]["platelet_count"] == 300.0
    assert batch[1]["mdsc_score"] is None


# --- the loaded model's own vocabulary ----------------------------------------------------------

GASTRIC_RENAL = Vocabulary(cancer_types=("gastric", "renal"), stages=("I", "II", "III"))


def _both(rows: list[dict[str, Any]], vocab: Vocabulary) -> list[list[tuple[Any, ...]]]:
    found = []
    for batch_rows in (10**6, 1):
        with pytest.raises(RequestRejected) as err:
            validate_patients(
                [dict(r) for r in rows],
                max_patients=10**6,
                pandera_batch_rows=batch_rows,
                vocab=vocab,
            )
        assert err.value.status == 422
        found.append(sorted((e.patient, e.field, e.rule) for e in err.value.errors))
    return found


def test_a_cancer_type_the_model_never_saw_is_refused_naming_the_known_ones() -> None:
    rows = _valid_rows(2)
    rows[0]["cancer_type"], rows[1]["cancer_type"] = "gastric", "ovarian"
    small, batch = _both(rows, GASTRIC_RENAL)
    assert small == batch
    assert small == [
        (
            1,
            "cancer_type",
            "is not a cancer type this model was trained on; it knows: gastric, renal",
        )
    ]


def test_stage_iv_is_refused_by_a_model_for_non_metastatic_primaries() -> None:
    rows = _valid_rows(2)
    for row in rows:
        row["cancer_type"] = "renal"
    rows[1]["stage"] = "IV"
    small, batch = _both(rows, GASTRIC_RENAL)
    assert small == batch
    ((patient, field, rule),) = small
    assert (patient, field) == (1, "stage")
    assert rule.startswith("stage IV is metastatic at diagnosis")


def test_labels_are_normalised_and_missing_clinical_inputs_accepted_on_both_paths() -> None:
    rows = _valid_rows(3)
    rows[0]["cancer_type"] = "Stomach Adenocarcinoma"
    rows[1]["cancer_type"] = "  Renal  "
    rows[2]["cancer_type"] = "STAD"
    rows[0]["stage"] = None
    del rows[1]["stage"]
    rows[2]["age_years"] = None
    del rows[1]["age_years"]
    results = [
        validate_patients(
            [dict(r) for r in rows], max_patients=10, pandera_batch_rows=n, vocab=GASTRIC_RENAL
        )
        for n in (10**6, 1)
    ]
    assert results[0] == results[1]
    assert [r["cancer_type"] for r in results[0]] == ["gastric", "renal", "gastric"]
    assert results[0][0]["stage"] is None and results[0][1]["stage"] is None
    assert results[0][1]["age_years"] is None and results[0][2]["age_years"] is None
