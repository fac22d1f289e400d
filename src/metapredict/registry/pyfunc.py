"""The logged model as MLflow's generic tools see it (``pyfunc.load_model``, ``models serve``).

It wraps the same native :class:`~metapredict.predictor.Predictor` the service uses, validates
input with the schema and returns probabilities (tropism: one column per site; dormancy: risks
at 36/60/120 months and the late-relapse probability), then each one's interval as
``<output>_lower`` and ``<output>_upper`` (:attr:`Predictor.batch_columns`; a model trained
before intervals existed returns the probabilities alone, as it always did).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from metapredict import schema
from metapredict.cancer_types import normalise_cancer_type
from metapredict.predictor import Predictor
from metapredict.registry.store import PREDICTOR_ARTIFACT


class MetapredictPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        import joblib

        self.predictor: Predictor = joblib.load(context.artifacts[PREDICTOR_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input).reset_index(drop=True)
        if "cancer_type" in frame.columns:
            frame["cancer_type"] = frame["cancer_type"].map(
                lambda v: normalise_cancer_type(v) if isinstance(v, str) else v
            )
        validated = schema.validate(frame, schema.Features)
        self.predictor.check_categories(validated)
        return self.predictor.predict_batch(validated)
