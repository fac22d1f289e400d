"""A compact, row-free summary of the features a model was trained on (the drift reference).

The training job logs it as ``reference/feature_profile.json`` of the training run, so a later
retraining job can measure how far a new cohort has moved from the champion's training data
without ever storing patient rows in the tracking store:

* numeric features (LM22 fractions as reported, extras, age): the interior quantile edges of
  ``bins`` equal-count bins of the training values, the count in each bin, and the number of
  missing values;
* categorical features (cancer type, stage): the count of each category.

That is enough for a population stability index (PSI) on the same bins, a Kolmogorov-Smirnov
statistic evaluated at the bin edges, and a chi-square test of the category counts
(:mod:`metapredict.retraining.drift`). Pure: no MLflow, no I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from metapredict import schema

PROFILE_VERSION = 1
#: Equal-count bins per numeric feature (deciles: the convention behind PSI thresholds).
DEFAULT_BINS = 10


def numeric_values(frame: pd.DataFrame, name: str) -> NDArray[np.float64]:
    """The column as floats (NaN when missing or when the column is absent)."""
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    values: NDArray[np.float64] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
    return values


def bin_counts(values: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.int64]:
    """Counts of finite ``values`` in the bins (-inf, e1], (e1, e2], ..., (ek, inf)."""
    finite = values[np.isfinite(values)]
    index = np.searchsorted(edges, finite, side="left")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.int64)


def build_profile(frame: pd.DataFrame, *, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """The reference summary of ``frame``'s schema features (JSON-serialisable)."""
    if bins < 2:
        raise ValueError(f"a feature profile needs at least 2 bins, got {bins}")
    categorical = set(schema.categorical_columns())
    numeric: dict[str, Any] = {}
    categories: dict[str, Any] = {}
    for name in schema.feature_columns():
        if name in categorical:
            column = frame[name] if name in frame.columns else pd.Series([], dtype=object)
            present = column.dropna().astype(str)
            counts = present.value_counts().sort_index()
            categories[name] = {
                "counts": {str(k): int(v) for k, v in counts.items()},
                "missing": int(len(frame) - len(present)),
            }
            continue
        values = numeric_values(frame, name)
        finite = values[np.isfinite(values)]
        if finite.size:
            quantiles = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
            edges = np.unique(quantiles)
        else:
            edges = np.array([], dtype=float)
        numeric[name] = {
            "edges": [float(e) for e in edges],
            "counts": [int(c) for c in bin_counts(values, edges)],
            "missing": int(values.size - finite.size),
        }
    return {
        "profile_version": PROFILE_VERSION,
        "schema_version": schema.SCHEMA_VERSION,
        "n_rows": len(frame),
        "bins": bins,
        "numeric": numeric,
        "categorical": categories,
    }
