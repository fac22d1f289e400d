"""Reading request bodies: duplicate keys, the value budget, CSV, NaN as missing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving import request_body
from serving.request_body import Budget, check_no_duplicate_keys, nan_as_missing, parse_csv
from serving.validation import RequestRejected

json_text = st.text(alphabet=st.sampled_from('ab:,"\\ u'), max_size=6)
json_documents = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(document=json_documents, spaced=st.booleans())
def test_a_document_without_repeated_keys_passes(document: Any, spaced: bool) -> None:
    body = json.dumps(document, separators=(", ", ": ") if spaced else (",", ":")).encode()
    check_no_duplicate_keys(body, json.loads(body))


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "a": 2}',
        b'{"p": [{"x": "1:2", "y": 0, "y": 0}]}',
        b'{"a": {"b": 1}, "c": {"b": 2, "b": 3}}',
        b'{"a\\u003a": 1, "a\\u003a": 1}',  # escaped colons: counted the slow, exact way
    ],
)
def test_a_repeated_key_is_refused(body: bytes) -> None:
    with pytest.raises(RequestRejected) as err:
        check_no_duplicate_keys(body, json.loads(body))
    assert err.value.status == 422 and "appears twice" in err.value.message


def test_the_budget_refuses_a_body_of_too_many_values_while_it_is_read() -> None:
    budget = Budget(request_body.JSON, max_patients=2)
    limit = request_body.value_budget(2)
    budget.spend(b"," * (limit // 2))
    budget.spend(b":" * (limit - limit // 2))
    with pytest.raises(RequestRejected) as err:
        budget.spend(b",")
    assert err.value.status == 413
    csv = Budget(request_body.CSV, max_patients=2)
    csv.spend(b"h\n1\n2\n")
    with pytest.raises(RequestRejected):
        csv.spend(b"3\n")


def test_csv_cells_are_typed_and_empty_cells_missing() -> None:
    rows = parse_csv(b"id,cancer_type,stage,age_years,mdsc_score\n007,breast,II,54,\n")
    assert rows == [
        {"id": "007", "cancer_type": "breast", "stage": "II", "age_years": 54, "mdsc_score": None}
    ]
    with pytest.raises(RequestRejected) as err:
        parse_csv(b'a,b\n"1,2\n')
    assert err.value.status == 400


def test_nan_is_missing_and_infinity_stays() -> None:
    rows = nan_as_missing([{"a": float("nan"), "b": float("inf"), "c": 1.0}, 3])
    assert rows[0]["a"] is None and rows[0]["b"] == float("inf") and rows[0]["c"] == 1.0
    assert rows[1] == 3
