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

**No stored number is a patient's value.** Both the bin edges here and the feature ranges a
model stores (:func:`private_range`, the out-of-range warnings) are derived so that none equals
any training patient's exact value, and none is a single patient's extreme:

* a range spans the central 99.8 % of the training values (quantiles 0.1 % and 99.9 %), rounded
  outwards to two significant digits of its width (ages to whole years, platelet counts to
  tens, fractions to hundredths), then moved outwards one more step while it equals a training
  value, and clipped to the schema's bounds (a schema bound, such as 0 for a fraction, is a
  constant and may be stored);
* a decile edge is rounded to three significant digits of the feature's spread, then moved
  half a step while it equals a training value (an edge on a schema bound stays there).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from metapredict import schema

#: The layout's version (edges, counts, missing); edges rounded off the training values since
#: the same layout's later models, which drift reads alike.
PROFILE_VERSION = 1
#: Equal-count bins per numeric feature (deciles: the convention behind PSI thresholds).
DEFAULT_BINS = 10


#: Quantiles a stored feature range spans (the central 99.8 % of the training values: with 22
#: LM22 fractions, about 2 % of typical patients see a warning for one of them).
RANGE_QUANTILES = (0.001, 0.999)
#: Significant digits (of a feature's spread) of a stored range and of a bin edge.
RANGE_DIGITS = 2
EDGE_DIGITS = 3


def _grid(low: float, high: float, digits: int) -> float:
    """The rounding step: ``digits`` significant digits of the spread ``high - low``."""
    scale = high - low
    if not scale > 0:
        scale = max(abs(high), abs(low), 1.0)
    return float(10.0 ** (math.floor(math.log10(scale)) - digits + 1))


def _on_grid(value: float, grid: float, decimals: int) -> float:
    return round(value, decimals) if decimals > 0 else float(round(value))


def _decimals(grid: float) -> int:
    return max(0, 1 - math.floor(math.log10(grid)))


def _taken(sorted_values: NDArray[np.float64], x: float) -> bool:
    i = int(np.searchsorted(sorted_values, x))
    return i < sorted_values.size and sorted_values[i] == x


def _off_sample(x: float, sorted_values: NDArray[np.float64], grid: float, direction: int) -> float:
    """``x`` on the grid (down for -1, up for +1, nearest for 0), moved on (outwards, or half
    steps up) while it equals one of ``sorted_values``."""
    decimals = _decimals(grid)
    if direction < 0:
        value = math.floor(x / grid) * grid
    elif direction > 0:
        value = math.ceil(x / grid) * grid
    else:
        value = round(x / grid) * grid
    step = grid if direction else grid / 2
    decimals += 0 if direction else 1
    value = _on_grid(value, grid, decimals)
    while _taken(sorted_values, value):
        value = _on_grid(value + (direction or 1) * step, grid, decimals)
    return value


def private_range(
    values: NDArray[np.float64], *, minimum: float | None = None, maximum: float | None = None
) -> tuple[float, float] | None:
    """The stored range of a feature's training ``values`` (None when none is finite): the
    central 99.8 %, rounded outwards and off every training value, within [minimum, maximum]."""
    finite = np.sort(values[np.isfinite(values)])
    if not finite.size:
        return None
    q_low, q_high = (float(q) for q in np.quantile(finite, RANGE_QUANTILES))
    grid = _grid(q_low, q_high, RANGE_DIGITS)
    low = _off_sample(q_low, finite, grid, -1)
    high = _off_sample(q_high, finite, grid, +1)
    if minimum is not None:
        low = max(low, float(minimum))
    if maximum is not None:
        high = min(high, float(maximum))
    return low, high


def private_edges(
    values: NDArray[np.float64], bins: int, *, bounds: tuple[float, ...] = ()
) -> NDArray[np.float64]:
    """Interior edges of ``bins`` equal-count bins of the finite ``values``, each rounded and
    off every training value (sorted, unique). An edge on one of the schema's ``bounds`` (0 for
    a fraction most samples report as 0) stays there: a constant, not a patient's value."""
    finite = np.sort(values[np.isfinite(values)])
    if not finite.size:
        return np.array([], dtype=float)
    quantiles = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    grid = _grid(float(finite[0]), float(finite[-1]), EDGE_DIGITS)
    edges = [
        float(q) if float(q) in bounds else _off_sample(float(q), finite, grid, 0)
        for q in quantiles
    ]
    return np.unique(edges)


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
        info = schema.column_info(name)
        bounds = tuple(float(b) for b in (info.minimum, info.maximum) if b is not None)
        edges = private_edges(values, bins, bounds=bounds)
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
