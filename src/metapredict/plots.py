"""Figures a researcher would rather look at than read.

Built with matplotlib's object API (``Figure``), so no backend or display is selected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray
from sklearn.metrics import roc_curve

from metapredict import metrics

FloatArray = NDArray[np.float64]


def _grid(n: int, size: float = 3.0) -> tuple[Figure, list[Axes]]:
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(size * cols, size * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def roc_curves(y: NDArray[np.bool_], proba: FloatArray, sites: Sequence[str]) -> Figure:
    """One ROC curve per site on the held-out test split."""
    fig, axes = _grid(len(sites))
    for j, (ax, site) in enumerate(zip(axes, sites, strict=True)):
        ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
        if y[:, j].any() and (~y[:, j]).any():
            fpr, tpr, _ = roc_curve(y[:, j], proba[:, j])
            ax.plot(fpr, tpr, lw=1.5)
            ax.set_title(f"{site}\nAUROC {metrics.auroc(y[:, j], proba[:, j]):.3f}", fontsize=9)
        else:
            ax.set_title(f"{site}\n(one class only)", fontsize=9)
        ax.set_xlabel("1 - specificity", fontsize=8)
        ax.set_ylabel("sensitivity", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Organ tropism: ROC on the held-out test split")
    fig.tight_layout()
    return fig


def calibration_curves(
    y: NDArray[np.bool_], proba: FloatArray, names: Sequence[str], bins: int = 10
) -> Figure:
    """Observed frequency against mean predicted probability in equal-count bins."""
    fig, axes = _grid(len(names))
    for j, (ax, name) in enumerate(zip(axes, names, strict=True)):
        order = np.argsort(proba[:, j], kind="stable")
        chunks = [c for c in np.array_split(order, min(bins, len(order))) if c.size]
        pred = [proba[c, j].mean() for c in chunks]
        obs = [y[c, j].mean() for c in chunks]
        hi = max(max(pred, default=0.0), max(obs, default=0.0), 0.05) * 1.05
        ax.plot([0, hi], [0, hi], color="0.7", lw=1, ls="--")
        ax.plot(pred, obs, marker="o", ms=3, lw=1.2)
        ece = metrics.calibration_error(y[:, j], proba[:, j], bins)
        ax.set_title(f"{name}\nECE {ece:.3f}", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("observed", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Calibration on the held-out test split")
    fig.tight_layout()
    return fig


def contribution_summary(
    mean_abs: FloatArray, feature_names: Sequence[str], title: str, top: int = 20
) -> Figure:
    """Mean |SHAP| (LightGBM TreeSHAP contributions) per feature, largest first."""
    order = np.argsort(mean_abs)[::-1][:top]
    fig = Figure(figsize=(7, 0.28 * len(order) + 1.2))
    ax = fig.subplots()
    ax.barh([feature_names[i] for i in order][::-1], mean_abs[order][::-1], color="#4c72b0")
    ax.set_xlabel("mean |contribution| (log-odds)")
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def kaplan_meier_by_group(
    time: FloatArray,
    event: NDArray[np.bool_],
    groups: Sequence[str],
    order: Sequence[str],
    *,
    cutoffs: str = "training tertiles",
) -> Figure:
    """Kaplan-Meier curves of distant-relapse-free survival per predicted risk group
    (``cutoffs`` says where the group boundaries came from, for the title)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    g = np.asarray(groups)
    for name in order:
        mask = g == name
        if mask.sum() < 2:
            continue
        t, s = kaplan_meier_estimator(event[mask], time[mask])
        ax.step(t, s, where="post", label=f"{name} (n={int(mask.sum())})")
    for h in metrics.HORIZONS:
        ax.axvline(h, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("months since surgery")
    ax.set_ylabel("distant-relapse-free")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Held-out test split by predicted risk group ({cutoffs})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
