"""The logged model as MLflow's generic tools see it (``pyfunc.load_model``, ``models serve``).

It is logged as models-from-code (:mod:`metapredict.registry.pyfunc_model` is the code file;
nothing is cloudpickled) and reads the same files the service loads: the ``predictor`` artifact
folder (``predictor.json`` + LightGBM model text), checked against the SHA-256 recorded in the
model's configuration. It validates input with the schema and returns probabilities (tropism:
one column per site; dormancy: risks at 36/60/120 months and the late-relapse probability), then
each one's interval as ``<output>_lower`` and ``<output>_upper``
(:attr:`Predictor.batch_columns`).

MLflow's schema enforcement refuses int64 columns for ``double`` fields ("Can not safely convert
int64 to float64"), so the signature declares the numeric features as ``Any``
(:func:`numeric_features`) and :meth:`MetapredictPyfunc.predict` turns integers into floats
(never strings or booleans: the schema refuses those) before validating.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from metapredict import schema
from metapredict.cancer_types import normalise_cancer_type
from metapredict.predictor import Predictor
from metapredict.registry.artifact import DIGEST_TAG, read_predictor
from metapredict.registry.store import PREDICTOR_ARTIFACT

#: The models-from-code file MLflow executes to build the model (logged with it).
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")


def numeric_features() -> tuple[str, ...]:
    """Feature columns that hold numbers (everything but the categorical ones)."""
    categorical = set(schema.categorical_columns())
    return tuple(c for c in schema.feature_columns() if c not in categorical)


def _is_number(value: Any) -> bool:
    """A number or a missing value (not a string, not a boolean)."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _as_floats(column: pd.Series) -> pd.Series:
    """Integers (and numbers held as objects) as floats; anything else left for the schema."""
    if column.dtype.kind in "iuf":
        return column.astype(float)
    if column.dtype == object and all(_is_number(v) for v in column.tolist()):
        return pd.to_numeric(column.astype(object), errors="coerce").astype(float)
    return column


class MetapredictPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        digest = (context.model_config or {}).get(DIGEST_TAG)
        if not digest:
            raise ValueError(
                f"this model's configuration has no {DIGEST_TAG}; it was not logged by "
                "metapredict train"
            )
        folder = Path(context.artifacts[PREDICTOR_ARTIFACT])
        self.predictor: Predictor = read_predictor(folder, str(digest))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input).reset_index(drop=True)
        for name in numeric_features():
            if name in frame.columns:
                frame[name] = _as_floats(frame[name])
        if "cancer_type" in frame.columns:
            frame["cancer_type"] = frame["cancer_type"].map(
                lambda v: normalise_cancer_type(v) if isinstance(v, str) else v
            )
        validated = schema.validate(frame, schema.Features)
        self.predictor.check_categories(validated)
        return self.predictor.predict_batch(validated)
