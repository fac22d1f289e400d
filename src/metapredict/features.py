"""From validated schema rows to the numeric matrix every model family sees.

The matrix has one column per schema feature (:func:`schema.feature_columns`), in schema order:

* LM22 cells hold the centred log-ratio (CLR) of the fraction, with a small pseudocount so the
  zeros CIBERSORT reports stay finite: compositional data compared on the log-ratio scale;
* extras hold their value, NaN when missing (LightGBM handles missing values natively; the
  linear baselines impute);
* ``cancer_type`` holds the index of the label among the model's own cancer types (the ones it
  saw in training, :attr:`~metapredict.feature_encoder.FeatureEncoder.categories_`), NaN for
  a label it never saw;
* ``stage`` holds its index in :data:`schema.STAGES` (I=0 ... IV=3, an ordinal code that is
  the same for every model), NaN when missing;
* ``age_years`` its value, NaN when missing.

Two entry points build the identical matrix: :func:`encode_frame` (cohorts, batches) and
:func:`encode_records` (the HTTP request path, without building a DataFrame). Plain functions
of numpy and pandas: a loaded model encodes with them and no scikit-learn
(:class:`~metapredict.feature_encoder.FeatureEncoder` is the training-time transformer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from metapredict import schema

FloatArray = NDArray[np.float64]

#: Added to every fraction before the log-ratio (0.1 %; CIBERSORT reports exact zeros).
CLR_PSEUDOCOUNT = 1e-3


def feature_names() -> tuple[str, ...]:
    """Names of the matrix columns (one per schema feature)."""
    return schema.feature_columns()


#: The column whose codes depend on the model (its own list of cancer types).
CANCER_TYPE = "cancer_type"


def categorical_indices() -> tuple[int, ...]:
    names = feature_names()
    return tuple(names.index(c) for c in schema.categorical_columns())


def _vocabularies(cancer_types: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Per categorical column, label -> code: cancer types by the model, stages by the schema."""
    out: dict[str, dict[str, int]] = {}
    for name in schema.categorical_columns():
        labels = cancer_types if name == CANCER_TYPE else schema.column_info(name).allowed or ()
        out[name] = {v: i for i, v in enumerate(labels)}
    return out


def observed_categories(frame: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Per categorical column, the labels present in ``frame`` (cancer types sorted, stages in
    schema order)."""
    out: dict[str, tuple[str, ...]] = {}
    for name in schema.categorical_columns():
        present = set(frame[name].dropna().astype(str).tolist()) if name in frame.columns else set()
        order = schema.column_info(name).allowed
        out[name] = (
            tuple(v for v in order if v in present) if order is not None else tuple(sorted(present))
        )
    return out


def clr_rows(fractions: FloatArray) -> FloatArray:
    # C order: the row mean then sums in the same order whether the fractions came from a
    # DataFrame (column-major) or from records, so both paths agree to the last bit.
    # np.clip(x, 0, None) and ndarray.mean are np.maximum and add.reduce / n inside numpy;
    # called directly, they skip the Python wrappers (a third of a 1-row request's encoding).
    logs = np.log(np.maximum(np.ascontiguousarray(fractions, dtype=float), 0.0) + CLR_PSEUDOCOUNT)
    result: FloatArray = logs - np.add.reduce(logs, axis=1, keepdims=True) / logs.shape[1]
    return result


def encode_frame(frame: pd.DataFrame, cancer_types: tuple[str, ...]) -> FloatArray:
    """Encode a schema-valid frame; absent optional columns and unknown labels become NaN.

    ``cancer_types`` is the model's own list (a label's code is its position there).
    """
    n = len(frame)
    names = feature_names()
    out = np.full((n, len(names)), np.nan)
    lm22 = list(schema.lm22_columns())
    out[:, : len(lm22)] = clr_rows(frame[lm22].to_numpy(dtype=float))
    vocab = _vocabularies(cancer_types)
    for j, name in enumerate(names[len(lm22) :], start=len(lm22)):
        if name not in frame.columns:
            continue
        if name in vocab:
            codes = frame[name].astype(object).map(vocab[name])
            out[:, j] = pd.to_numeric(codes, errors="coerce").to_numpy(dtype=float)
        else:
            out[:, j] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
    return out


@cache
def _record_plan(
    cancer_types: tuple[str, ...],
) -> tuple[tuple[str, ...], tuple[tuple[str, Mapping[str, int] | None], ...]]:
    """(LM22 columns, then each other feature with its vocabulary or None), in matrix order."""
    lm22 = schema.lm22_columns()
    vocab = _vocabularies(cancer_types)
    rest = tuple(
        (name, MappingProxyType(vocab[name]) if name in vocab else None)
        for name in feature_names()[len(lm22) :]
    )
    return lm22, rest


def encode_records(
    records: Sequence[Mapping[str, Any]], cancer_types: tuple[str, ...]
) -> FloatArray:
    """Encode already-validated records (dicts keyed by schema column) without pandas."""
    lm22, rest = _record_plan(cancer_types)
    n = len(records)
    out = np.empty((n, len(lm22) + len(rest)))
    fractions = np.array([[r[c] for c in lm22] for r in records], dtype=float)
    out[:, : len(lm22)] = clr_rows(fractions.reshape(n, len(lm22)))
    nan = float("nan")
    values = []
    for r in records:
        row = []
        for name, vocab in rest:
            value = r.get(name)
            if value is None:
                row.append(nan)
            elif vocab is not None:
                row.append(vocab.get(str(value), nan))
            else:
                row.append(float(value))
        values.append(row)
    out[:, len(lm22) :] = np.array(values, dtype=float).reshape(n, len(rest))
    return out
