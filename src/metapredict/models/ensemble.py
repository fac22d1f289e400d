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

from metapredict.models.boosting import training_threads
from metapredict.models.dormancy import DiscreteTimeHazard
from metapredict.models.intervals import EPS as EPS
from metapredict.models.intervals import BootstrapEnsemble as BootstrapEnsemble
from metapredict.models.intervals import logit as logit
from metapredict.models.tropism import TropismClassifier
from metapredict.training_config import IntervalConfig as IntervalConfig

FloatArray = NDArray[np.float64]
Estimator = TropismClassifier | DiscreteTimeHazard


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
    ensemble = BootstrapEnsemble(
        [m.model_ for m in members], config.level, bias_corrected=config.bias_correction
    )
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
