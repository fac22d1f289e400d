"""From validated schema rows to the numeric matrix every model family sees.

The matrix has one column per schema feature (:func:`schema.feature_columns`), in schema order:

* LM22 cells hold the centred log-ratio (CLR) of the fraction, with a small pseudocount so the
  zeros CIBERSORT reports stay finite: compositional data compared on the log-ratio scale;
* extras hold their value, NaN when missing (LightGBM handles missing values natively; the
  linear baselines impute);
* categorical clinical columns hold the index of the value in the schema's vocabulary;
* ``age_years`` its value.

Two entry points build the identical matrix: :func:`encode_frame` (cohorts, batches) and
:func:`encode_records` (the HTTP request path, without building a DataFrame).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, TransformerMixin

from metapredict import schema

FloatArray = NDArray[np.float64]

#: Added to every fraction before the log-ratio (0.1 %; CIBERSORT reports exact zeros).
CLR_PSEUDOCOUNT = 1e-3


def feature_names() -> tuple[str, ...]:
    """Names of the matrix columns (one per schema feature)."""
    return schema.feature_columns()


def categorical_indices() -> tuple[int, ...]:
    names = feature_names()
    return tuple(names.index(c) for c in schema.categorical_columns())


def _vocabularies() -> dict[str, dict[str, int]]:
    return {
        c.name: {v: i for i, v in enumerate(c.allowed or ())}
        for c in schema.columns()
        if c.name in schema.categorical_columns()
    }


def clr_rows(fractions: FloatArray) -> FloatArray:
    # C order: the row mean then sums in the same order whether the fractions came from a
    # DataFrame (column-major) or from records, so both paths agree to the last bit.
    logs = np.log(
        np.clip(np.ascontiguousarray(fractions, dtype=float), 0.0, None) + CLR_PSEUDOCOUNT
    )
    result: FloatArray = logs - logs.mean(axis=1, keepdims=True)
    return result


def encode_frame(frame: pd.DataFrame) -> FloatArray:
    """Encode a schema-valid frame; absent optional extras become NaN."""
    n = len(frame)
    names = feature_names()
    out = np.full((n, len(names)), np.nan)
    lm22 = list(schema.lm22_columns())
    out[:, : len(lm22)] = clr_rows(frame[lm22].to_numpy(dtype=float))
    vocab = _vocabularies()
    for j, name in enumerate(names[len(lm22) :], start=len(lm22)):
        if name not in frame.columns:
            continue
        if name in vocab:
            codes = frame[name].astype(object).map(vocab[name])
            out[:, j] = pd.to_numeric(codes, errors="coerce").to_numpy(dtype=float)
        else:
            out[:, j] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
    return out


def encode_records(records: Sequence[Mapping[str, Any]]) -> FloatArray:
    """Encode already-validated records (dicts keyed by schema column) without pandas."""
    names = feature_names()
    lm22 = schema.lm22_columns()
    vocab = _vocabularies()
    rest = names[len(lm22) :]
    out = np.empty((len(records), len(names)))
    fractions = np.array([[r[c] for c in lm22] for r in records], dtype=float)
    out[:, : len(lm22)] = clr_rows(fractions.reshape(len(records), len(lm22)))
    for i, r in enumerate(records):
        for j, name in enumerate(rest, start=len(lm22)):
            value = r.get(name)
            if value is None:
                out[i, j] = np.nan
            elif name in vocab:
                out[i, j] = vocab[name].get(str(value), np.nan)
            else:
                out[i, j] = float(value)
    return out


class FeatureEncoder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """sklearn transformer: schema frame -> model matrix; remembers the training ranges.

    ``feature_ranges_`` maps each non-categorical feature to the (min, max) of the *raw* values
    seen in training (fractions, not their CLR), used to warn about out-of-range inputs.
    """

    def fit(self, X: pd.DataFrame, y: Any = None) -> Self:
        vocab = set(schema.categorical_columns())
        self.feature_names_out_ = np.array(feature_names(), dtype=object)
        self.feature_ranges_: dict[str, tuple[float, float]] = {}
        for name in feature_names():
            if name in vocab or name not in X.columns:
                continue
            values = pd.to_numeric(X[name], errors="coerce").to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            if finite.size:
                self.feature_ranges_[name] = (float(finite.min()), float(finite.max()))
        return self

    def transform(self, X: pd.DataFrame) -> FloatArray:
        return encode_frame(X)

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.object_]:
        return np.array(feature_names(), dtype=object)
