"""The fitted, servable model of one task: encoding + fitted model + what serving needs to know.

A :class:`Predictor` is what the registry stores and loads. It holds the task's fitted model
(:class:`~metapredict.models.tropism_model.TropismModel` or
:class:`~metapredict.models.hazard_model.HazardModel`, what the training estimators leave behind)
and imports no scikit-learn: loading and serving a model need none. It predicts from a schema frame
(``predict``) or straight from an encoded matrix (``predict_matrix``, the request path), and
explains each output with signed per-feature contributions in log-odds.

It also records what it was trained on, which the service builds its request validation from: the
cancer types it saw (``categories["cancer_type"]``; their order fixes the codes), the stages it
answers for (``categories["stage"]``: dormancy never stage IV) and, for tropism, the sites it
predicts (any subset of the schema's eight).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from metapredict import features, schema
from metapredict.models.hazard_model import OUTPUT_NAMES as DORMANCY_OUTPUTS
from metapredict.models.intervals import BootstrapEnsemble, FittedModel
from metapredict.models.tropism_model import TropismModel
from metapredict.tasks import Task

FloatArray = NDArray[np.float64]
RISK_GROUPS = ("low", "intermediate", "high")
#: What models saved before schema 2.0.0 were trained on (their codes follow this order).
LEGACY_CANCER_TYPES = (
    "breast",
    "colorectal",
    "lung_adenocarcinoma",
    "melanoma",
    "prostate",
    "pancreatic",
)
LEGACY_STAGES = ("I", "II", "III")
#: Schema majors whose models still load: 1.x used the same features and codes for I-III.
COMPATIBLE_SCHEMA_MAJORS = ("1", "2")


@dataclass
class ModelInfo:
    """Where a loaded predictor came from (filled in by the registry on load)."""

    name: str = ""
    version: str = ""
    alias: str = ""
    run_id: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    #: how the registry was read: "direct" (local SQLite, no MLflow) or "mlflow client: why"
    read_via: str = ""


@dataclass
class Predictor:
    task: Task
    #: the fitted model (a training estimator's ``model_``)
    model: FittedModel
    feature_ranges: dict[str, tuple[float, float]]
    schema_version: str = schema.SCHEMA_VERSION
    feature_names: tuple[str, ...] = field(default_factory=features.feature_names)
    #: dormancy only: training tertiles of the 120-month cumulative risk.
    risk_cutoffs: tuple[float, float] | None = None
    info: ModelInfo = field(default_factory=ModelInfo)
    #: per categorical column, the labels the model accepts (cancer types: those seen in
    #: training, in code order; stage: those its task answers for).
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: tropism only: the organs the model predicts, in output order.
    sites: tuple[str, ...] = ()
    #: the bootstrap ensemble behind the prediction intervals (None: a model without
    #: intervals, e.g. one saved before they existed).
    intervals: BootstrapEnsemble | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, filling what older models did not record (categories and sites before
        schema 2.0.0; intervals before they existed: None; the training estimator itself
        before the fitted models existed: its ``model_``)."""
        state.setdefault("intervals", None)
        if "estimator" in state:
            state["model"] = state.pop("estimator").model_
        if "categories" not in state:
            state["categories"] = {"cancer_type": LEGACY_CANCER_TYPES, "stage": LEGACY_STAGES}
            state["sites"] = schema.sites() if state.get("task") == "tropism" else ()
            # Zero is inside every LM22 range (old models stored the smallest training value).
            lm22 = set(schema.lm22_columns())
            state["feature_ranges"] = {
                name: ((0.0, hi) if name in lm22 else (lo, hi))
                for name, (lo, hi) in state.get("feature_ranges", {}).items()
            }
        self.__dict__.update(state)

    @property
    def cancer_types(self) -> tuple[str, ...]:
        """The cancer types the model saw in training (a label's code is its position)."""
        return self.categories.get("cancer_type", ())

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.sites if self.task == "tropism" else DORMANCY_OUTPUTS

    @property
    def interval_level(self) -> float | None:
        """Nominal coverage of the intervals (None: the model has none)."""
        return self.intervals.level if self.intervals is not None else None

    @property
    def batch_columns(self) -> tuple[str, ...]:
        """Columns of :meth:`predict_batch`: the outputs, then ``<output>_lower`` and
        ``<output>_upper`` per output (the outputs alone for a model without intervals)."""
        names = self.output_names
        if self.intervals is None:
            return names
        return (*names, *(f"{n}_{side}" for n in names for side in ("lower", "upper")))

    @property
    def explained_outputs(self) -> tuple[str, ...]:
        """What each contribution vector explains."""
        return self.sites if self.task == "tropism" else ("relapse_hazard_60",)

    def check_categories(self, frame: pd.DataFrame) -> None:
        """Raise ``ValueError`` naming the rows whose cancer type or stage the model refuses."""
        problems: list[str] = []
        for column, allowed in self.categories.items():
            if column not in frame.columns or not allowed:
                continue
            values = frame[column].astype(object)
            bad = values.notna() & ~values.isin(allowed)
            for row, value in values[bad].head(5).items():
                problems.append(f"row {row!r}: {column} {value!r}")
            if bad.any():
                problems.append(f"{column} must be one of: {', '.join(allowed)}")
        if problems:
            raise ValueError(f"{self.task} model refuses: " + "; ".join(problems))

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> FloatArray:
        """The model matrix of validated records (the request path)."""
        return features.encode_records(records, self.cancer_types)

    def encode_frame(self, frame: pd.DataFrame) -> FloatArray:
        """The model matrix of a schema-valid frame."""
        return features.encode_frame(frame, self.cancer_types)

    # -- the request path: encoded matrices ------------------------------------------------

    def predict_matrix(self, X: FloatArray) -> FloatArray:
        """(n, outputs): site probabilities, or risks at 36/60/120 months and late relapse."""
        if isinstance(self.model, TropismModel):
            margins = self.model.margins(X)
            result: FloatArray = 1.0 / (1.0 + np.exp(-margins))
            return result
        return self.model.predict_outputs(X)

    def interval_bounds(self, X: FloatArray, outputs: FloatArray) -> FloatArray | None:
        """(n, outputs, 2) lower and upper bounds around ``outputs`` (this model's prediction for
        ``X``), or None for a model without intervals."""
        if self.intervals is None:
            return None
        return self.intervals.bounds(X, outputs)

    def batch_matrix(self, X: FloatArray) -> FloatArray:
        """(n, len(batch_columns)): the outputs, then each output's lower and upper bound."""
        outputs = self.predict_matrix(X)
        bounds = self.interval_bounds(X, outputs)
        if bounds is None:
            return outputs
        return np.concatenate([outputs, bounds.reshape(outputs.shape[0], -1)], axis=1)

    def contributions_matrix(self, X: FloatArray) -> FloatArray:
        """(n, explained outputs, features + 1) signed log-odds contributions; last = bias."""
        if isinstance(self.model, TropismModel):
            return self.model.contributions(X)
        return self.model.contributions(X)[:, None, :]

    def predict_and_explain(self, X: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Outputs and contributions together, as cheaply as possible.

        For tropism the calibrated log-odds are the sums of the contributions, so each booster
        runs once per row; for dormancy the hazard curve and the contributions at 60 months.
        """
        contributions = self.contributions_matrix(X)
        if isinstance(self.model, TropismModel):
            outputs: FloatArray = 1.0 / (1.0 + np.exp(-contributions.sum(axis=2)))
        else:
            outputs = self.model.predict_outputs(X)
        return outputs, contributions

    def risk_group(self, risk_120: FloatArray) -> list[str]:
        if self.risk_cutoffs is None:
            raise ValueError("risk groups exist for the dormancy task only")
        idx = np.searchsorted(np.asarray(self.risk_cutoffs), risk_120, side="right")
        return [RISK_GROUPS[i] for i in idx]

    def out_of_range(self, records: Sequence[Mapping[str, Any]]) -> list[list[str]]:
        """Per record, the features whose value lies outside the range seen in training.

        A missing value (None, absent or NaN) is not out of range.
        """
        # Plain Python: faster than building arrays, for one record as for a thousand.
        bounds = [(name, float(lo), float(hi)) for name, (lo, hi) in self.feature_ranges.items()]
        out: list[list[str]] = []
        for r in records:
            flagged = []
            for name, lo, hi in bounds:
                value = r.get(name)
                if value is not None:
                    x = float(value)
                    if x < lo or x > hi:  # NaN compares False: never flagged
                        flagged.append(name)
            out.append(flagged)
        return out

    # -- frames -----------------------------------------------------------------------------

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Predictions for a schema-valid feature frame, one column per output."""
        X = self.encode_frame(frame)
        return pd.DataFrame(
            self.predict_matrix(X), columns=list(self.output_names), index=frame.index
        )

    def predict_batch(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Predictions with their intervals, one column per :attr:`batch_columns` entry."""
        X = self.encode_frame(frame)
        return pd.DataFrame(
            self.batch_matrix(X), columns=list(self.batch_columns), index=frame.index
        )

    def contributions(self, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Per explained output, a frame of per-feature contributions (plus ``bias``)."""
        X = self.encode_frame(frame)
        contrib = self.contributions_matrix(X)
        columns = [*self.feature_names, "bias"]
        return {
            name: pd.DataFrame(contrib[:, k, :], columns=columns, index=frame.index)
            for k, name in enumerate(self.explained_outputs)
        }
