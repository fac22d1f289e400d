"""The fitted models as data: JSON-ready documents plus LightGBM model text.

A fitted :class:`~metapredict.models.tropism_model.TropismModel` or
:class:`~metapredict.models.hazard_model.HazardModel` (and a
:class:`~metapredict.models.intervals.BootstrapEnsemble` of them) is written as a small document
(the hyperparameters of the estimator that fitted it, calibration, sizes) and one LightGBM model
text per booster. Nothing here executes what it reads: a booster is parsed by LightGBM's own text
reader (``Booster(model_str=...)``), everything else is plain numbers and strings checked by
pydantic, and the fitted model is rebuilt by its constructor. No scikit-learn: the training
estimators are neither needed nor imported to read a model back. Where the booster texts are kept
(files, with their digests) is the caller's business: the functions take a ``put(name, booster) ->
ref`` to store one and a ``get(ref) -> booster`` to read it back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import lightgbm as lgb
from pydantic import BaseModel, ConfigDict, Field

from metapredict.models.boosting import Param, Platt
from metapredict.models.hazard_model import HazardModel
from metapredict.models.intervals import BootstrapEnsemble, FittedModel
from metapredict.models.tropism_model import TropismModel

#: Stores one booster under a name (``main/site-0``, ...) and returns the reference to record.
PutBooster = Callable[[str, lgb.Booster], str]
#: Reads back the booster a reference names.
GetBooster = Callable[[str], lgb.Booster]


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


#: Hazard hyperparameters the fitted model needs to predict (the rest are kept as recorded).
_HAZARD_GRID = ("interval_months", "max_months")


def _grid(params: dict[str, Param]) -> tuple[float, float]:
    """(interval_months, max_months) of a hazard document's hyperparameters."""
    values = []
    for name in _HAZARD_GRID:
        value = params.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DocumentError(f"the dormancy model's {name} is {value!r}, not a number")
        values.append(float(value))
    return values[0], values[1]


def estimator_document(model: FittedModel, prefix: str, put: PutBooster) -> EstimatorDoc:
    """The document of a fitted model; its boosters go to ``put`` as ``<prefix>/...``."""
    if isinstance(model, TropismModel):
        return TropismDoc(
            params=dict(model.params),
            n_features=model.n_features,
            sites=[
                SiteDoc(
                    booster=put(f"{prefix}/site-{k}", booster),
                    slope=float(cal.slope),
                    intercept=float(cal.intercept),
                )
                for k, (booster, cal) in enumerate(
                    zip(model.boosters, model.calibrators, strict=True)
                )
            ],
        )
    return HazardDoc(
        params=dict(model.params),
        n_features=model.n_features,
        booster=put(f"{prefix}/hazard", model.booster),
        n_person_periods=model.n_person_periods,
        slope=float(model.calibrator.slope),
        intercept=float(model.calibrator.intercept),
    )


def estimator_from_document(doc: EstimatorDoc, get: GetBooster) -> FittedModel:
    """The fitted model a document describes."""
    if isinstance(doc, TropismDoc):
        boosters = [get(site.booster) for site in doc.sites]
        _check_features(boosters, doc.n_features)
        return TropismModel(
            boosters,
            [Platt(slope=s.slope, intercept=s.intercept) for s in doc.sites],
            doc.n_features,
            params=dict(doc.params),
        )
    interval_months, max_months = _grid(doc.params)
    booster = get(doc.booster)
    _check_features([booster], doc.n_features + 1)  # + the interval start
    try:
        return HazardModel(
            booster,
            doc.n_features,
            interval_months=interval_months,
            max_months=max_months,
            calibrator=Platt(slope=doc.slope, intercept=doc.intercept),
            n_person_periods=doc.n_person_periods,
            params=dict(doc.params),
        )
    except ValueError as err:
        raise DocumentError(f"the dormancy model cannot be rebuilt: {err}") from None


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
