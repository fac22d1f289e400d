"""The scikit-learn transformer over :mod:`metapredict.features` (training only).

:class:`FeatureEncoder` learns, from a training frame, the categories and the feature ranges a
predictor records; encoding itself is :func:`metapredict.features.encode_frame`, which a loaded
model calls without scikit-learn.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, TransformerMixin

from metapredict import schema
from metapredict.feature_profile import private_range
from metapredict.features import (
    CANCER_TYPE,
    FloatArray,
    encode_frame,
    feature_names,
    observed_categories,
)


class FeatureEncoder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """sklearn transformer: schema frame -> model matrix; remembers what training saw.

    ``categories_`` holds, per categorical column, the labels seen in training (the model's
    cancer types fix their codes). ``feature_ranges_`` maps each non-categorical feature to the
    range of the *raw* values seen in training (fractions, not their CLR), used to warn about
    out-of-range inputs: the central 99.8 %, rounded outwards so that no bound is a patient's
    value (:func:`metapredict.feature_profile.private_range`); an LM22 range always starts at
    0, since CIBERSORT reports exact zeros for cell types it does not detect and a zero is never
    unusual.
    """

    def fit(self, X: pd.DataFrame, y: Any = None) -> Self:
        vocab = set(schema.categorical_columns())
        lm22 = set(schema.lm22_columns())
        self.feature_names_out_ = np.array(feature_names(), dtype=object)
        self.categories_ = observed_categories(X)
        self.feature_ranges_: dict[str, tuple[float, float]] = {}
        for name in feature_names():
            if name in vocab or name not in X.columns:
                continue
            values = pd.to_numeric(X[name], errors="coerce").to_numpy(dtype=float)
            info = schema.column_info(name)
            found = private_range(values, minimum=info.minimum, maximum=info.maximum)
            if found is not None:
                low, high = found
                self.feature_ranges_[name] = (0.0 if name in lm22 else low, high)
        return self

    def transform(self, X: pd.DataFrame) -> FloatArray:
        return encode_frame(X, self.categories_[CANCER_TYPE])

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.object_]:
        return np.array(feature_names(), dtype=object)
