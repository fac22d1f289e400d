"""How far a new cohort has moved from a model's training data, feature by feature (pure).

The reference is the row-free profile logged with the training run
(:func:`metapredict.feature_profile.build_profile`): quantile bin edges and counts per numeric
feature, category counts per categorical feature. Against it:

* **PSI** (population stability index) on the reference bins, plus a "missing" bin for the
  optional extras: sum over bins of (new - ref) * ln(new / ref), proportions floored at 1e-4;
* **KS**: the largest gap between the two empirical CDFs *at the reference bin edges* (a lower
  bound of the two-sample KS statistic, exact for shifts that cross an edge), with the
  asymptotic two-sample p-value for the non-missing counts;
* categorical features: PSI on the categories, a chi-square test of the 2 x k table, and the
  total variation distance as the effect size.

A feature is flagged when its PSI exceeds the threshold, or when the test is significant *and*
the effect (KS statistic, total variation distance) is at least the configured minimum, so
that a large cohort does not flag differences too small to matter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import NDArray
from scipy.special import kolmogorov
from scipy.stats import chi2_contingency

from metapredict.feature_profile import PROFILE_VERSION, bin_counts, numeric_values
from metapredict.retraining.config import DriftConfig

FloatArray = NDArray[np.float64]
#: Proportions are floored here before the log in PSI (empty bins stay finite).
PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: Literal["numeric", "categorical"]
    psi: float
    #: numeric: KS statistic at the bin edges; categorical: total variation distance.
    effect: float
    p_value: float
    test: Literal["ks", "chi2"]
    reference_missing_share: float
    new_missing_share: float
    flagged: bool
    reason: str


@dataclass(frozen=True)
class DriftReport:
    features: list[FeatureDrift]
    n_reference: int
    n_new: int

    @property
    def flagged(self) -> list[str]:
        return [f.feature for f in self.features if f.flagged]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(f) for f in self.features])

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_reference": self.n_reference,
            "n_new": self.n_new,
            "flagged": self.flagged,
            "features": [_finite(asdict(f)) for f in self.features],
        }


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()
    }


def psi(reference: FloatArray, new: FloatArray) -> float:
    """Population stability index of two count (or proportion) vectors over the same bins."""
    p = np.asarray(reference, dtype=float)
    q = np.asarray(new, dtype=float)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    p = np.maximum(p / p.sum(), PSI_FLOOR)
    q = np.maximum(q / q.sum(), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_at_edges(reference: FloatArray, new: FloatArray) -> tuple[float, float]:
    """(statistic, asymptotic p-value) from bin counts of the non-missing values."""
    n, m = float(np.sum(reference)), float(np.sum(new))
    if n == 0 or m == 0 or len(reference) < 2:
        return float("nan"), float("nan")
    gap = np.abs(np.cumsum(reference)[:-1] / n - np.cumsum(new)[:-1] / m)
    statistic = float(gap.max())
    return statistic, float(kolmogorov(statistic * math.sqrt(n * m / (n + m))))


def _numeric(name: str, ref: dict[str, Any], frame: pd.DataFrame, cfg: DriftConfig) -> FeatureDrift:
    edges = np.asarray(ref["edges"], dtype=float)
    ref_counts = np.asarray(ref["counts"], dtype=float)
    values = numeric_values(frame, name)
    new_counts = bin_counts(values, edges).astype(float)
    new_missing = float(values.size - new_counts.sum())
    ref_missing = float(ref["missing"])
    with_missing = ref_missing > 0 or new_missing > 0
    ref_bins = np.append(ref_counts, ref_missing) if with_missing else ref_counts
    new_bins = np.append(new_counts, new_missing) if with_missing else new_counts
    value = psi(ref_bins, new_bins)
    statistic, p_value = ks_at_edges(ref_counts, new_counts)
    return _verdict(
        name,
        "numeric",
        value,
        statistic,
        p_value,
        "ks",
        _share(ref_missing, ref_counts.sum() + ref_missing),
        _share(new_missing, float(values.size)),
        cfg,
        alpha=cfg.ks_alpha,
        min_effect=cfg.ks_min_statistic,
    )


def _categorical(
    name: str, ref: dict[str, Any], frame: pd.DataFrame, cfg: DriftConfig
) -> FeatureDrift:
    ref_counts: dict[str, int] = dict(ref["counts"])
    column = frame[name] if name in frame.columns else pd.Series([], dtype=object)
    present = column.dropna().astype(str)
    new = present.value_counts().to_dict()
    levels = sorted(set(ref_counts) | {str(k) for k in new})
    p = np.array([ref_counts.get(k, 0) for k in levels], dtype=float)
    q = np.array([new.get(k, 0) for k in levels], dtype=float)
    value = psi(p, q)
    distance = p_value = float("nan")
    if p.sum() > 0 and q.sum() > 0:
        distance = float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())
        table = np.vstack([p, q])
        table = table[:, table.sum(axis=0) > 0]
        p_value = 1.0 if table.shape[1] < 2 else float(chi2_contingency(table)[1])
    ref_missing = float(ref["missing"])
    return _verdict(
        name,
        "categorical",
        value,
        distance,
        p_value,
        "chi2",
        _share(ref_missing, p.sum() + ref_missing),
        _share(float(len(frame) - len(present)), float(len(frame))),
        cfg,
        alpha=cfg.chi2_alpha,
        min_effect=cfg.categorical_min_distance,
    )


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else float("nan")


def _verdict(
    name: str,
    kind: Literal["numeric", "categorical"],
    value: float,
    effect: float,
    p_value: float,
    test: Literal["ks", "chi2"],
    ref_missing: float,
    new_missing: float,
    cfg: DriftConfig,
    *,
    alpha: float,
    min_effect: float,
) -> FeatureDrift:
    reasons = []
    if np.isfinite(value) and value > cfg.psi_threshold:
        reasons.append(f"PSI {value:.3f} > {cfg.psi_threshold}")
    if np.isfinite(p_value) and p_value < alpha and effect >= min_effect:
        label = "KS" if test == "ks" else "TVD"
        reasons.append(f"{test} p={p_value:.2g} < {alpha} and {label} {effect:.3f} >= {min_effect}")
    return FeatureDrift(
        feature=name,
        kind=kind,
        psi=value,
        effect=effect,
        p_value=p_value,
        test=test,
        reference_missing_share=ref_missing,
        new_missing_share=new_missing,
        flagged=bool(reasons),
        reason="; ".join(reasons),
    )


def compare(reference: dict[str, Any], frame: pd.DataFrame, config: DriftConfig) -> DriftReport:
    """Each profiled feature of ``frame`` against the reference profile."""
    version = reference.get("profile_version")
    if version != PROFILE_VERSION:
        raise ValueError(
            f"feature profile version {version!r} is not supported (expected {PROFILE_VERSION})"
        )
    rows = [_numeric(name, ref, frame, config) for name, ref in reference["numeric"].items()]
    rows += [
        _categorical(name, ref, frame, config) for name, ref in reference["categorical"].items()
    ]
    return DriftReport(features=rows, n_reference=int(reference["n_rows"]), n_new=len(frame))


def drift_figure(report: DriftReport, config: DriftConfig) -> Figure:
    """PSI and effect size per feature (flagged features in red), threshold lines dashed."""
    rows = sorted(report.features, key=lambda f: (np.nan_to_num(f.psi), f.feature))
    names = [f.feature for f in rows]
    colours = ["#c44e52" if f.flagged else "#4c72b0" for f in rows]
    fig = Figure(figsize=(10, 0.26 * len(rows) + 1.6))
    left, right = fig.subplots(1, 2, sharey=True)
    left.barh(names, [np.nan_to_num(f.psi) for f in rows], color=colours)
    left.axvline(config.psi_threshold, color="0.4", ls="--", lw=1)
    left.set_xlabel("PSI (new cohort vs champion's training data)")
    right.barh(names, [np.nan_to_num(f.effect) for f in rows], color=colours)
    right.axvline(config.ks_min_statistic, color="0.4", ls="--", lw=1)
    right.set_xlabel("KS statistic (numeric) / total variation distance (categorical)")
    for ax in (left, right):
        ax.tick_params(labelsize=7)
    fig.suptitle(
        f"Feature drift: {len(report.flagged)} of {len(rows)} features flagged "
        f"(reference n={report.n_reference:,}, new n={report.n_new:,})",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
