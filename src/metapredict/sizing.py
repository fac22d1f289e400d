"""Hyperparameters that follow the cohort's size: the documented rule behind ``"auto"``.

The packaged training configs were tuned on 20,000 simulated patients. Real cohorts have 100 to
1,000. A leaf that must hold 300 person-period rows, or 400 boosting rounds over a few dozen
events, gives a constant or an over-fitted model. So the values a config leaves at ``"auto"``
are set from the training split's size, by a rule that reproduces the tuned values at 20,000
patients and shrinks with the data:

* **tropism** (per-site boosters on the metastatic patients): ``min_child_samples`` =
  ``n / 150`` and ``n_estimators`` = ``n / 20``, with ``n`` the training rows, each clipped to
  [5, 50] and [50, 400]; ``num_leaves`` 3 (effects are modest and mostly additive);
* **dormancy** (a hazard booster on person-period rows): with ``e`` the relapses in the training
  split, ``min_child_samples`` = ``e / 10`` clipped to [5, 300], ``n_estimators`` = ``e`` clipped
  to [50, 300], and ``num_leaves`` 3 below 200 relapses, else 7;
* **cross-validation**: ``repeats`` 5 below 2,000 patients (5 x 5 folds, so the spread of a
  metric means something), else 1.

Values written in a config (numbers instead of ``"auto"``) are used as written. The values
chosen are logged with the run (``sizing.*`` parameters). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Auto = Literal["auto"]
AUTO: Auto = "auto"

#: Below this many patients, cross-validation is repeated.
REPEATED_CV_BELOW = 2_000
REPEATS_WHEN_SMALL = 5


def _clip(value: float, low: int, high: int) -> int:
    return int(min(max(round(value), low), high))


@dataclass(frozen=True)
class Sizes:
    """What the rule reads: training rows (patients), relapses among them, cohort patients."""

    rows: int
    events: int
    patients: int


def tropism_params(sizes: Sizes) -> dict[str, int]:
    return {
        "min_child_samples": _clip(sizes.rows / 150, 5, 50),
        "n_estimators": _clip(sizes.rows / 20, 50, 400),
        "num_leaves": 3,
    }


def dormancy_params(sizes: Sizes) -> dict[str, int]:
    return {
        "min_child_samples": _clip(sizes.events / 10, 5, 300),
        "n_estimators": _clip(sizes.events, 50, 300),
        "num_leaves": 3 if sizes.events < 200 else 7,
    }


def cv_repeats(patients: int) -> int:
    return REPEATS_WHEN_SMALL if patients < REPEATED_CV_BELOW else 1


def resolve(
    task: str, written: dict[str, int | Auto], sizes: Sizes
) -> tuple[dict[str, int], dict[str, int]]:
    """(every value, the ones the rule chose): ``"auto"`` entries of ``written`` replaced."""
    rule = tropism_params(sizes) if task == "tropism" else dormancy_params(sizes)
    chosen = {k: rule[k] for k, v in written.items() if v == AUTO and k in rule}
    values = {k: (chosen[k] if k in chosen else int(v)) for k, v in written.items()}
    return values, chosen
