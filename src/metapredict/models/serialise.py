"""The fitted estimators as data: JSON-ready documents plus LightGBM model text.

A fitted :class:`~metapredict.models.tropism.TropismClassifier` or
:class:`~metapredict.models.dormancy.DiscreteTimeHazard` (and a
:class:`~metapredict.models.ensemble.BootstrapEnsemble` of them) is written as a small document
(hyperparameters, calibration, sizes) and one LightGBM model text per booster. Nothing here
executes what it reads: a booster is parsed by LightGBM's own text reader
(``Booster(model_str=...)``), everything else is plain numbers and strings checked by pydantic,
and the estimator is rebuilt by its constructor. Where the booster texts are kept (files, with
their digests) is the caller's business: the functions take a ``put(name, booster) -> ref`` to
store one and a ``get(ref) -> booster`` to read it back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import lightgbm as lgb
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from metapredict.models.boosting import Platt
from metapredict.models.dormancy import DiscreteTimeHazard
from metapredict.models.ensemble import BootstrapEnsemble
from metapredict.models.tropism import TropismClassifier

Estimator = TropismClassifier | DiscreteTimeHazard
#: Stores one booster under a name (``main/site-0``, ...) and returns the reference to record.
PutBooster = Callable[[str, lgb.Booster], str]
#: Reads back the booster a reference names.
GetBooster = Callable[[str], lgb.Booster]

#: Hyperparameter values a document may hold (tuples are written as lists).
Param = bool | int | float | str | None | list[int]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteDoc(_Doc):
    """One tropism site: its booster and its Platt calibration."""

    booster: str
    slope: float
    intercept: float


class TropismDoc(_Doc):
    kind: Literal["tropism"] = "tropism"
    params: dict[str, Param]
    n_features: int = Field(gt=0)
    sites: list[SiteDoc] = Field(min_length=1)


class HazardDoc(_Doc):
    kind: Literal["dormancy"] = "dormancy"
    params: dict[str, Param]
    n_features: int = Field(gt=0)
    booster: str
    n_person_periods: int = Field(ge=0)
    #: the hazard's Platt scaling (identity for a model saved before it existed)
    slope: float = 1.0
    intercept: float = 0.0


EstimatorDoc = Annotated[TropismDoc | HazardDoc, Field(discriminator="kind")]


class IntervalsDoc(_Doc):
    level: float = Field(gt=0.0, lt=1.0)
    fit_seconds: float = 0.0
    members: list[EstimatorDoc] = Field(min_length=2)
    #: per output, the spread model's booster (None: the members give the spread)
    spread_boosters: list[str] | None = None
    #: the interval is centred on the members' mean (bias-corrected members)
    bias_corrected: bool = False
    #: per output, the centre model's booster (None: the members give the centre)
    centre_boosters: list[str] | None = None


class DocumentError(ValueError):
    """A document that does not describe a model this code can rebuild."""


def _params(estimator: Estimator) -> dict[str, Param]:
    out: dict[str, Param] = {}
    for key, value in estimator.get_params(deep=False).items():
        out[key] = [int(v) for v in value] if isinstance(value, tuple | list) else value
    return out


def _construct(cls: type[Estimator], params: dict[str, Param]) -> Any:
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise DocumentError(f"{cls.__name__} does not take these parameters: {err}") from err


def estimator_document(estimator: Estimator, prefix: str, put: PutBooster) -> EstimatorDoc:
    """The document of a fitted estimator; its boosters go to ``put`` as ``<prefix>/...``."""
    if isinstance(estimator, TropismClassifier):
        return TropismDoc(
            params=_params(estimator),
            n_features=int(estimator.n_features_in_),
            sites=[
                SiteDoc(
                    booster=put(f"{prefix}/site-{k}", booster),
                    slope=float(cal.slope),
                    intercept=float(cal.intercept),
                )
                for k, (booster, cal) in enumerate(
                    zip(estimator.boosters_, estimator.calibrators_, strict=True)
                )
            ],
        )
    return HazardDoc(
        params=_params(estimator),
        n_features=int(estimator.n_features_in_),
        booster=put(f"{prefix}/hazard", estimator.booster_),
        n_person_periods=int(getattr(estimator, "n_person_periods_", 0)),
        slope=float(estimator._calibration().slope),
        intercept=float(estimator._calibration().intercept),
    )


def estimator_from_document(doc: EstimatorDoc, get: GetBooster) -> Estimator:
    """The fitted estimator a document describes (its constructor, then its fitted state)."""
    if isinstance(doc, TropismDoc):
        tropism: TropismClassifier = _construct(TropismClassifier, doc.params)
        boosters = [get(site.booster) for site in doc.sites]
        _check_features(boosters, doc.n_features)
        tropism.boosters_ = boosters
        tropism.calibrators_ = [Platt(slope=s.slope, intercept=s.intercept) for s in doc.sites]
        tropism.n_outputs_ = len(doc.sites)
        tropism.classes_ = [np.array([False, True])] * tropism.n_outputs_
        tropism.n_features_in_ = doc.n_features
        return tropism
    hazard: DiscreteTimeHazard = _construct(DiscreteTimeHazard, doc.params)
    booster = get(doc.booster)
    _check_features([booster], doc.n_features + 1)  # + the interval start
    hazard.booster_ = booster
    hazard.calibrator_ = Platt(slope=doc.slope, intercept=doc.intercept)
    hazard.n_person_periods_ = doc.n_person_periods
    hazard.n_features_in_ = doc.n_features
    return hazard


def _check_features(boosters: list[lgb.Booster], n_features: int) -> None:
    for booster in boosters:
        if booster.num_feature() != n_features:
            raise DocumentError(
                f"a booster takes {booster.num_feature()} features where the document says "
                f"{n_features}"
            )


def ensemble_document(ensemble: BootstrapEnsemble, put: PutBooster) -> IntervalsDoc:
    spread, centre = ensemble.spread_boosters, ensemble.centre_boosters
    return IntervalsDoc(
        level=float(ensemble.level),
        fit_seconds=float(ensemble.fit_seconds),
        members=[
            estimator_document(m, f"member-{b:02d}", put) for b, m in enumerate(ensemble.members)
        ],
        spread_boosters=(
            None
            if spread is None
            else [put(f"spread/output-{k}", booster) for k, booster in enumerate(spread)]
        ),
        bias_corrected=ensemble.bias_corrected,
        centre_boosters=(
            None
            if centre is None
            else [put(f"centre/output-{k}", booster) for k, booster in enumerate(centre)]
        ),
    )


def ensemble_from_document(doc: IntervalsDoc, get: GetBooster) -> BootstrapEnsemble:
    members = [estimator_from_document(m, get) for m in doc.members]
    spread = None if doc.spread_boosters is None else [get(ref) for ref in doc.spread_boosters]
    centre = None if doc.centre_boosters is None else [get(ref) for ref in doc.centre_boosters]
    return BootstrapEnsemble(
        members,
        doc.level,
        doc.fit_seconds,
        spread,
        bias_corrected=doc.bias_corrected,
        centre_boosters=centre,
    )
