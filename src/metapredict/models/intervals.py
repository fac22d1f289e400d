"""The intervals a loaded model serves: bounds from a bootstrap ensemble of fitted models.

:class:`BootstrapEnsemble` holds the members (fitted models refitted on bootstrap resamples,
see :mod:`metapredict.models.ensemble` for how and why) and the small spread and centre models
that give each patient's interval with one booster call per output. Needs no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray

from metapredict.models.boosting import PREDICT_THREADS
from metapredict.models.fast_rows import RAW, FastRowCache, fast_rows, predict_rows
from metapredict.models.hazard_model import OUTPUT_MONTHS, HazardModel, outputs_from_hazards
from metapredict.models.tropism_model import TropismModel

FloatArray = NDArray[np.float64]
#: A task's fitted model: what a predictor predicts with and an ensemble's members are.
FittedModel = TropismModel | HazardModel

#: Probabilities are clipped to [EPS, 1 - EPS] before taking log-odds (risks can be exactly 0).
EPS = 1e-9


class BootstrapEnsemble:
    """Members refitted on bootstrap resamples, and the spread and centre models :meth:`bounds`
    uses.

    The members' standard deviation and mean (log-odds) are exact but cost every member's
    prediction (10 x sites boosters for tropism, 10 x 20 for dormancy: milliseconds per
    patient). The served intervals take them from small models instead: per output, a
    regression booster fitted on the training rows to log(members' sd) (the spread model) and
    one to the members' mean minus the point estimate (the centre model), one booster call
    each. ``bounds(..., exact=True)`` still computes both from the members.
    """

    def __init__(
        self,
        members: Sequence[FittedModel],
        level: float,
        fit_seconds: float = 0.0,
        spread_boosters: list[lgb.Booster] | None = None,
        *,
        bias_corrected: bool = False,
        centre_boosters: list[lgb.Booster] | None = None,
    ) -> None:
        if len(members) < 2:
            raise ValueError("a bootstrap ensemble needs at least 2 members")
        self.members: list[FittedModel] = list(members)
        self.level = level
        #: wall time it took to fit the members and the spread model.
        self.fit_seconds = fit_seconds
        #: per output, log(members' sd) from the features (None: use the members themselves).
        self.spread_boosters = spread_boosters
        #: the members are the bias-corrected (twiced) estimator: the interval is centred on
        #: their mean, not on the point estimate (False: an ensemble fitted before that).
        self.bias_corrected = bias_corrected
        #: per output, (members' mean - point estimate) in log-odds from the features (None:
        #: from the members themselves; unused unless ``bias_corrected``).
        self.centre_boosters = centre_boosters
        self._rows = FastRowCache()

    @property
    def z(self) -> float:
        """The interval's half-width in standard deviations: Student's t quantile with
        ``members - 1`` degrees of freedom (the spread is estimated from the members, so a
        normal quantile would be too narrow with 10 of them: 1.83 instead of 1.64 at 90 %);
        times sqrt(1 + 1/members) when the interval is centred on the members' mean, which
        is itself estimated from them."""
        b = len(self.members)
        key = (self.level, b, self.bias_corrected)
        cached: tuple[tuple[float, int, bool], float] | None = self.__dict__.get("_z")
        if cached is None or cached[0] != key:  # scipy's ppf costs ~0.1 ms: once per model
            from scipy.stats import t

            quantile = float(t.ppf(0.5 + self.level / 2.0, df=b - 1))
            value = quantile * float(np.sqrt(1.0 + 1.0 / b)) if self.bias_corrected else quantile
            cached = self._z = (key, value)
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "level": self.level,
            "fit_seconds": self.fit_seconds,
            "spread_boosters": self.spread_boosters,
            "bias_corrected": self.bias_corrected,
            "centre_boosters": self.centre_boosters,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A pickle saved before the fitted models existed holds the estimators themselves.
        self.members = [
            m if isinstance(m, TropismModel | HazardModel) else m.model_ for m in state["members"]
        ]
        self.level = state["level"]
        self.fit_seconds = state.get("fit_seconds", 0.0)
        self.spread_boosters = state.get("spread_boosters")
        self.bias_corrected = state.get("bias_corrected", False)
        self.centre_boosters = state.get("centre_boosters")
        self._rows = FastRowCache()

    # -- the members' predictions ----------------------------------------------------------

    def member_logits(self, X: FloatArray) -> FloatArray:
        """(members, n, outputs): each member's predictions on the log-odds scale."""
        first = self.members[0]
        small = fast_rows(X, first.n_features)
        if isinstance(first, TropismModel):
            return self._tropism_logits(X, small)
        return self._dormancy_logits(X, small)

    def _tropism_logits(self, X: FloatArray, small: FloatArray | None) -> FloatArray:
        members = [m for m in self.members if isinstance(m, TropismModel)]
        if small is None:
            return np.stack([m.margins(X) for m in members])
        # Every member's every site in one pass of the single-row fast path.
        n_sites = members[0].n_outputs
        boosters = [b for m in members for b in m.boosters]
        predictors = self._rows.get_all(boosters, RAW, small.shape[1])
        out = np.empty((small.shape[0], len(boosters), 1))
        predict_rows(predictors, small, out)
        raw = out[:, :, 0].reshape(small.shape[0], len(members), n_sites).transpose(1, 0, 2)
        # each member's own per-site calibration: (members, 1, sites)
        slopes = np.stack([m.slopes for m in members])[:, None, :]
        intercepts = np.stack([m.intercepts for m in members])[:, None, :]
        result: FloatArray = raw * slopes + intercepts
        return result

    def _dormancy_logits(self, X: FloatArray, small: FloatArray | None) -> FloatArray:
        members = [m for m in self.members if isinstance(m, HazardModel)]
        if small is None:
            risks = np.stack([m.predict_outputs(X) for m in members])
        else:
            first = members[0]
            k = round(OUTPUT_MONTHS / first.interval_months)
            rows = first.expand(small, k)
            boosters = [m.booster for m in members]
            predictors = self._rows.get_all(boosters, RAW, rows.shape[1])
            out = np.empty((rows.shape[0], len(members), 1))
            predict_rows(predictors, rows, out)
            # each member's own hazard calibration: (members, 1)
            cal = [m.calibrator for m in members]
            slopes = np.array([c.slope for c in cal])[:, None]
            intercepts = np.array([c.intercept for c in cal])[:, None]
            margins = out[:, :, 0].T * slopes + intercepts
            hazards = (1.0 / (1.0 + np.exp(-margins))).reshape(len(members) * small.shape[0], k)
            risks = outputs_from_hazards(hazards, first.interval_months).reshape(
                len(members), small.shape[0], -1
            )
        return logit(risks)

    # -- intervals ---------------------------------------------------------------------------

    def exact_spread(self, X: FloatArray) -> FloatArray:
        """(n, outputs): the members' standard deviation on the log-odds scale."""
        result: FloatArray = self.member_logits(X).std(axis=0, ddof=1)
        return result

    def _served(self, X: FloatArray, boosters: list[lgb.Booster]) -> FloatArray:
        """(n, outputs): one small regression booster per output (raw scores)."""
        n_features = self.members[0].n_features
        small = fast_rows(X, n_features)
        if small is not None:
            out = np.empty((small.shape[0], len(boosters), 1))
            predict_rows(self._rows.get_all(boosters, RAW, n_features), small, out)
            result: FloatArray = out[:, :, 0]
            return result
        return np.column_stack(
            [b.predict(X, raw_score=True, num_threads=PREDICT_THREADS) for b in boosters]
        )

    def spread(self, X: FloatArray) -> FloatArray:
        """(n, outputs): the spread model's members' standard deviation (log-odds)."""
        if self.spread_boosters is None:
            return self.exact_spread(X)
        result: FloatArray = np.exp(self._served(X, self.spread_boosters))
        return result

    def bounds(self, X: FloatArray, outputs: FloatArray, *, exact: bool = False) -> FloatArray:
        """(n, outputs, 2): lower and upper bound around the point estimates ``outputs``
        (``exact``: from the members themselves rather than the spread and centre models)."""
        centre = logit(outputs)
        if exact:
            logits = self.member_logits(X)
            spread: FloatArray = logits.std(axis=0, ddof=1)
            if self.bias_corrected:
                centre = logits.mean(axis=0)
        else:
            spread = self.spread(X)
            if self.bias_corrected:
                if self.centre_boosters is None:
                    centre = self.member_logits(X).mean(axis=0)
                else:
                    centre = centre + self._served(X, self.centre_boosters)
        half = self.z * spread
        lower = 1.0 / (1.0 + np.exp(half - centre))
        upper = 1.0 / (1.0 + np.exp(-(centre + half)))
        out = np.empty((*outputs.shape, 2))
        # The point lies inside even where rounding (or a clipped 0 or 1) would put it outside.
        out[..., 0] = np.minimum(lower, outputs)
        out[..., 1] = np.maximum(upper, outputs)
        return out


def logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, EPS, 1.0 - EPS)
    result: FloatArray = np.log(q) - np.log1p(-q)
    return result
