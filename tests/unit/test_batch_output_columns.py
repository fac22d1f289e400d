"""Batch scoring's pieces: the output's text columns (the same strings as a plain per-row
join), the ids, and the read-ahead of chunks."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from metapredict.batch_scoring import (
    OPTIONAL_INPUTS,
    _ids,
    _missing_inputs,
    joined_patterns,
    one_ahead,
)

SITES = ("bone", "lung", "liver", "brain")


def test_joined_patterns_equals_a_per_row_join_for_masks_and_index_rows() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((500, len(SITES))) < 0.3
    assert joined_patterns(mask, SITES, ",") == [
        ",".join(s for s, m in zip(SITES, row, strict=True) if m) for row in mask
    ]
    order = np.argsort(rng.random((500, len(SITES))), axis=1)
    assert joined_patterns(order, SITES, ",") == [",".join(SITES[j] for j in row) for row in order]
    assert joined_patterns(np.zeros((0, 4), dtype=bool), SITES, ",") == []


def test_missing_inputs_names_null_and_absent_columns_in_schema_order() -> None:
    present, absent = OPTIONAL_INPUTS[0], OPTIONAL_INPUTS[1]
    frame = pd.DataFrame({present: [1.0, None, 2.0]})
    frame = frame.assign(**{name: 1.0 for name in OPTIONAL_INPUTS[2:]})
    assert _missing_inputs(frame) == [absent, f"{present},{absent}", absent]


def test_ids_are_echoed_as_text_with_missing_ones_as_none() -> None:
    rows = [10, 11, 12]  # input row numbers, as in a chunk after the first
    frame = pd.DataFrame(
        {
            "text": pd.Series(["P1", None, "P3"], dtype="string", index=rows),
            "number": pd.Series([17, None, 3], dtype="Int64", index=rows),
        }
    )
    text = _ids(frame, "text")
    number = _ids(frame, "number")
    assert text is not None and number is not None
    assert text.to_dict() == {10: "P1", 11: None, 12: "P3"}
    assert number.to_dict() == {10: "17", 11: None, 12: "3"}
    assert _ids(frame, None) is None


def test_one_ahead_yields_every_item_in_order_and_prepares_the_next_meanwhile() -> None:
    asked = [threading.Event() for _ in range(4)]

    def items() -> Iterator[int]:
        for i in range(4):
            asked[i].set()
            yield i

    seen = []
    for i in one_ahead(items()):
        if i < 3:  # the next item is computed while the caller still holds this one
            assert asked[i + 1].wait(timeout=30)
        seen.append(i)
    assert seen == [0, 1, 2, 3]


def test_one_ahead_raises_a_failure_when_its_item_is_due() -> None:
    def items() -> Iterator[int]:
        yield 0
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for i in one_ahead(items()):
            seen.append(i)
    assert seen == [0]
