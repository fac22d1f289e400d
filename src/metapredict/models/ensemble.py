"""Prediction intervals: a bias-corrected bootstrap ensemble of the fitted LightGBM model.

After the model is fitted, ``members`` copies of it are refitted on bootstrap resamples of the
same training rows (each with its own seed). How much the members disagree about a patient is
how much the prediction would move had the model been trained on another cohort of the same
size from the same population: the estimation uncertainty of that patient's probability.

With ``bias_correction`` (the default) the members boost twice the point model's rounds:
boosting on for as many rounds again fits the smoother once more to its own residuals (Tukey's
twicing; for L2 boosting exactly so, Buhlmann & Yu 2003), which removes the leading term of
the pull towards the average that early stopping and the leaf penalty leave. The interval is
then centred on the members' mean (a robust bias-corrected interval: the correction's own noise
is in the members' spread; Calonico, Cattaneo & Farrell 2018), on the log-odds scale:

    mean +/- z * sd,   z = t(members - 1) * sqrt(1 + 1/members),

mapped back with the logistic function and joined with the point estimate ``p`` (the main
model's prediction, which the service returns), so ``p`` lies inside and the bounds stay in
[0, 1]. ``sd`` is the members' standard deviation; Student's t with ``members - 1`` degrees of
freedom because it is estimated from them (1.83 at 90 % with 10), and sqrt(1 + 1/members)
because the centre is their mean. Without ``bias_correction`` the members repeat the point
model and the interval is ``logit(p) +/- t(members - 1) * sd``.

Each member is the whole fitting procedure, its calibration (tropism sites' Platt scaling, the
dormancy hazard's) fitted on its out-of-bag patients: folds drawn inside a bootstrap resample
would put copies of one patient on both sides and make the member's margins look better than
they are (its Platt slope too steep, its spread too wide). Predicting every member costs
milliseconds per patient, so the served ``sd`` and centre come from two small models per
output fitted on the training rows: log(members' sd), and the members' mean minus the point
estimate (see :class:`BootstrapEnsemble`).

What the interval does not contain is the bias the outcomes cannot reveal (how far a patient's
true probability lies from what a model of this size can resolve): ``benchmarks/intervals.py``
measures how often the simulator's true probabilities fall inside, and docs/intervals.md says
why that is below the nominal level.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray
from sklearn.base import clone

from metapredict.models.boosting import PREDICT_THREADS, training_threads
from metapredict.models.dormancy import OUTPUT_MONTHS, DiscreteTimeHazard, outputs_from_hazards
from metapredict.models.fast_rows import RAW, FastRowCache, fast_rows, predict_rows
from metapredict.models.tropism import TropismClassifier
from metapredict.training_config import IntervalConfig as IntervalConfig

FloatArray = NDArray[np.float64]
Estimator = TropismClassifier | DiscreteTimeHazard

#: Probabilities are clipped to [EPS, 1 - EPS] before taking log-odds (risks can be exactly 0).
EPS = 1e-9


#: The spread model: one small LightGBM regression per output, on log(members' sd).
SPREAD_TREES = 100
SPREAD_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
#: Floor of a members' standard deviation before its log is taken.
MIN_SPREAD = 1e-6
#: Bias-corrected members boost this many times the point model's rounds: boosting on for as
#: many rounds again is Tukey's twicing, the smoother applied once more to its own residuals.
TWICING = 2


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
        members: list[Estimator],
        level: float,
        fit_seconds: float = 0.0,
        spread_boosters: list[lgb.Booster] | None = None,
        *,
        bias_corrected: bool = False,
        centre_boosters: list[lgb.Booster] | None = None,
    ) -> None:
        if len(members) < 2:
            raise ValueError("a bootstrap ensemble needs at least 2 members")
        self.members = members
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
        self.members = state["members"]
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
        small = fast_rows(X, int(first.n_features_in_))
        if isinstance(first, TropismClassifier):
            return self._tropism_logits(X, small)
        return self._dormancy_logits(X, small)

    def _tropism_logits(self, X: FloatArray, small: FloatArray | None) -> FloatArray:
        members: list[TropismClassifier] = self.members
        if small is None:
            return np.stack([m.margins(X) for m in members])
        # Every member's every site in one pass of the single-row fast path.
        n_sites = members[0].n_outputs_
        boosters = [b for m in members for b in m.boosters_]
        predictors = self._rows.get_all(boosters, RAW, small.shape[1])
        out = np.empty((small.shape[0], len(boosters), 1))
        predict_rows(predictors, small, out)
        raw = out[:, :, 0].reshape(small.shape[0], len(members), n_sites).transpose(1, 0, 2)
        # each member's own per-site calibration: (members, 1, sites)
        slopes, intercepts = (
            np.stack(c)[:, None, :] for c in zip(*(m._calibration() for m in members), strict=True)
        )
        result: FloatArray = raw * slopes + intercepts
        return result

    def _dormancy_logits(self, X: FloatArray, small: FloatArray | None) -> FloatArray:
        members: list[DiscreteTimeHazard] = self.members
        if small is None:
            risks = np.stack([m.predict_outputs(X) for m in members])
        else:
            first = members[0]
            k = round(OUTPUT_MONTHS / first.interval_months)
            rows = first._expand(small, k)
            boosters = [m.booster_ for m in members]
            predictors = self._rows.get_all(boosters, RAW, rows.shape[1])
            out = np.empty((rows.shape[0], len(members), 1))
            predict_rows(predictors, rows, out)
            # each member's own hazard calibration: (members, 1)
            cal = [m._calibration() for m in members]
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
        n_features = int(self.members[0].n_features_in_)
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


def fit_ensemble(
    estimator: Estimator, X: FloatArray, y: Any, *, config: IntervalConfig, seed: int
) -> BootstrapEnsemble | None:
    """Refit ``estimator`` ``config.members`` times on bootstrap resamples of (X, y).

    Each member is the whole fitting procedure, its calibration fitted on its out-of-bag
    patients (the rows its resample left out: held out, at no extra fit). With
    ``config.bias_correction`` the members boost twice as many rounds as ``estimator`` (the
    twiced, bias-corrected estimator; see docs/intervals.md). None when ``config.members`` is 0.
    """
    if config.members == 0:
        return None
    started = time.perf_counter()
    n = X.shape[0]
    rng = np.random.default_rng([seed + config.seed_offset, n])
    resamples = [rng.integers(0, n, size=n) for _ in range(config.members)]
    reduced: dict[str, Any] = {}
    if config.bias_correction:
        reduced = {"n_estimators": int(estimator.get_params()["n_estimators"]) * TWICING}

    def fit_member(b: int) -> Estimator:
        # One LightGBM thread per member, members side by side: faster than one member at a
        # time on all threads, and every concurrent LightGBM call uses the same num_threads
        # (see boosting.PREDICT_THREADS).
        member = clone(estimator).set_params(
            random_state=seed + config.seed_offset + b, n_jobs=1, **reduced
        )
        idx = resamples[b]
        out_of_bag = np.setdiff1d(np.arange(n), idx)
        held_out = (X[out_of_bag], y[out_of_bag]) if out_of_bag.size else None
        member.fit(X[idx], y[idx], held_out=held_out)
        fitted: Estimator = member
        return fitted

    workers = max(1, min(int(estimator.n_jobs), config.members))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        members = list(pool.map(fit_member, range(config.members)))
    ensemble = BootstrapEnsemble(members, config.level, bias_corrected=config.bias_correction)
    if config.spread_model:
        logits = ensemble.member_logits(X)
        categorical = tuple(estimator.categorical_features)
        ensemble.spread_boosters = fit_spread_model(
            X,
            np.log(np.maximum(logits.std(axis=0, ddof=1), MIN_SPREAD)),
            categorical=categorical,
            seed=seed + config.seed_offset,
            n_jobs=int(estimator.n_jobs),
        )
        if config.bias_correction:
            ensemble.centre_boosters = fit_spread_model(
                X,
                logits.mean(axis=0) - point_logits(estimator, X),
                categorical=categorical,
                seed=seed + config.seed_offset,
                n_jobs=int(estimator.n_jobs),
            )
    ensemble.fit_seconds = time.perf_counter() - started
    return ensemble


def point_logits(estimator: Estimator, X: FloatArray) -> FloatArray:
    """(n, outputs): the estimator's own predictions on the log-odds scale."""
    if isinstance(estimator, TropismClassifier):
        return estimator.margins(X)
    return logit(estimator.predict_outputs(X))


def fit_spread_model(
    X: FloatArray, target: FloatArray, *, categorical: tuple[int, ...], seed: int, n_jobs: int
) -> list[lgb.Booster]:
    """Per output, a small regression booster of ``target[:, k]`` on the features of ``X``
    (the members' log sd, or the bias correction: their mean minus the point estimate)."""
    threads = training_threads(X.shape[0], n_jobs)
    params = {**SPREAD_PARAMS, "seed": seed, "num_threads": threads}
    boosters = []
    for k in range(target.shape[1]):
        data = lgb.Dataset(
            X,
            label=target[:, k],
            categorical_feature=list(categorical),
            free_raw_data=True,
            params={"verbosity": -1, "num_threads": threads},
        )
        boosters.append(lgb.train(params, data, num_boost_round=SPREAD_TREES))
    return boosters
