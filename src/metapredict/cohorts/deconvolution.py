"""CIBERSORT's method: nu-support-vector regression of a mixture on a signature matrix.

Following Newman et al., Nat Methods 2015 (and the reference R implementation):

1. genes are intersected between the mixture and the signature;
2. the signature matrix is standardised as a whole (one mean, one SD over all its cells);
   each mixture sample is z-scored on its own;
3. for nu in {0.25, 0.5, 0.75} a linear-kernel nu-SVR (cost 1) is fitted; its weights (the
   linear coefficients) have negatives set to zero and are renormalised to sum to 1;
4. the fit with the lowest RMSE between the sample and ``signature @ weights`` is kept; its
   RMSE and Pearson correlation are reported;
5. optionally, an empirical null of correlations from random "mixtures" drawn from the pooled
   mixture values (one null for all samples, as CIBERSORT does) gives a p-value per sample:
   the share of null correlations at least as large as the sample's.

Quantile normalisation (CIBERSORT's option for arrays; CIBERSORTx disables it for RNA-seq) is
not applied. Absolute mode is not implemented: the output is relative fractions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from numpy.typing import NDArray
from sklearn.svm import NuSVR

from metapredict.cohorts import MAX_PERMUTATIONS, CohortInputError

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

NUS: Final = (0.25, 0.5, 0.75)
#: Refuse when fewer than this share of signature genes are in the expression matrix.
MIN_GENE_OVERLAP: Final = 0.5


@dataclass(frozen=True)
class Fit:
    weights: FloatArray
    rmse: float
    correlation: float
    nu: float


@dataclass(frozen=True)
class DeconvolutionResult:
    fractions: pd.DataFrame  # samples x cell types (signature column order), rows sum to 1
    correlation: pd.Series
    rmse: pd.Series
    p_value: pd.Series  # NaN when no permutations were run
    genes_used: int
    missing_genes: tuple[str, ...]


def standardise_signature(signature: FloatArray) -> FloatArray:
    """One mean and one SD over the whole matrix (CIBERSORT's ``(X - mean(X)) / sd(X)``)."""
    scaled: FloatArray = (signature - signature.mean()) / signature.std(ddof=1)
    return scaled


def _zscore(y: FloatArray) -> FloatArray:
    sd = y.std(ddof=1)
    return (y - y.mean()) / sd if sd > 0 else np.zeros_like(y)


def fit_one(x: FloatArray, y: FloatArray) -> Fit:
    """CIBERSORT's core: best of three nu-SVR fits of z-scored ``y`` on standardised ``x``."""
    y = _zscore(y)
    best: Fit | None = None
    for nu in NUS:
        model = NuSVR(kernel="linear", nu=nu, C=1.0)
        model.fit(x, y)
        weights = np.asarray(model.coef_, dtype=float).ravel().copy()
        weights[weights < 0] = 0.0
        total = weights.sum()
        if total > 0:
            weights /= total
        fitted = x @ weights
        rmse = float(np.sqrt(np.mean((fitted - y) ** 2)))
        if np.std(fitted) > 0 and np.std(y) > 0:
            correlation = float(np.corrcoef(fitted, y)[0, 1])
        else:
            correlation = math.nan
        if best is None or rmse < best.rmse:
            best = Fit(weights=weights, rmse=rmse, correlation=correlation, nu=nu)
    assert best is not None
    return best


def _fit_batch(x: FloatArray, ys: FloatArray) -> list[Fit]:
    return [fit_one(x, ys[:, j]) for j in range(ys.shape[1])]


def _batches(n: int, n_jobs: int) -> list[tuple[int, int]]:
    size = max(1, min(32, math.ceil(n / max(1, 4 * n_jobs))))
    return [(start, min(n, start + size)) for start in range(0, n, size)]


def _run(
    x: FloatArray,
    ys: FloatArray,
    n_jobs: int,
    on_progress: Callable[[int], None] | None,
) -> list[Fit]:
    spans = _batches(ys.shape[1], n_jobs)
    results: Iterator[list[Fit]]
    if n_jobs == 1:
        results = (_fit_batch(x, ys[:, a:b]) for a, b in spans)
    else:
        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_fit_batch)(x, ys[:, a:b]) for a, b in spans
        )
    fits: list[Fit] = []
    for batch in results:
        fits.extend(batch)
        if on_progress is not None:
            on_progress(len(batch))
    return fits


def align(
    expression: pd.DataFrame, signature: pd.DataFrame, *, min_overlap: float = MIN_GENE_OVERLAP
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """Signature genes present in the expression, both matrices in the signature's gene order."""
    present = signature.index.isin(expression.index)
    missing = tuple(str(g) for g in signature.index[~present])
    share = float(present.mean()) if len(signature) else 0.0
    if share < min_overlap or present.sum() <= signature.shape[1]:
        raise CohortInputError(
            f"only {int(present.sum())} of {len(signature)} signature genes ({share:.0%}) are "
            "in the expression matrix; are both keyed by HGNC symbols of the same species?"
        )
    genes = signature.index[present]
    return expression.loc[genes], signature.loc[genes], missing


def permutation_null(
    x: FloatArray,
    pooled: FloatArray,
    permutations: int,
    *,
    seed: int,
    n_jobs: int,
    on_progress: Callable[[int], None] | None = None,
) -> FloatArray:
    """Correlations of fits to random mixtures drawn from ``pooled`` values (seeded)."""
    rng = np.random.default_rng(seed)
    draws = np.stack(
        [rng.choice(pooled, size=x.shape[0], replace=False) for _ in range(permutations)],
        axis=1,
    )
    fits = _run(x, draws, n_jobs, on_progress)
    return np.array([f.correlation for f in fits], dtype=float)


def deconvolve(
    expression: pd.DataFrame,
    signature: pd.DataFrame,
    *,
    permutations: int = 0,
    seed: int = 0,
    n_jobs: int = 2,
    min_overlap: float = MIN_GENE_OVERLAP,
    on_progress: Callable[[int], None] | None = None,
) -> DeconvolutionResult:
    """Estimate cell-type fractions for every sample (column) of a linear-scale ``expression``.

    ``on_progress`` is called with the number of fits just finished (samples, then
    permutations), in the calling process.
    """
    if not 0 <= permutations <= MAX_PERMUTATIONS:
        raise CohortInputError(f"permutations must be between 0 and {MAX_PERMUTATIONS}")
    mixture, sig, missing = align(expression, signature, min_overlap=min_overlap)
    x = standardise_signature(sig.to_numpy(dtype=float))
    ys = mixture.to_numpy(dtype=float)
    logger.info(
        "deconvolving %d samples on %d genes (%d signature genes missing), %d permutations",
        ys.shape[1],
        len(sig),
        len(missing),
        permutations,
    )
    fits = _run(x, ys, n_jobs, on_progress)
    correlation = np.array([f.correlation for f in fits])
    p_value = np.full(len(fits), np.nan)
    if permutations:
        null = permutation_null(
            x, ys.ravel(), permutations, seed=seed, n_jobs=n_jobs, on_progress=on_progress
        )
        null = null[np.isfinite(null)]
        if null.size:
            p_value = np.array(
                [float(np.mean(null >= r)) if np.isfinite(r) else np.nan for r in correlation]
            )
    samples = pd.Index(mixture.columns, name="sample")
    zero = int(sum(1 for f in fits if f.weights.sum() == 0))
    if zero:
        logger.warning("%d sample(s) got no positive weight (all fractions zero)", zero)
    return DeconvolutionResult(
        fractions=pd.DataFrame(
            np.vstack([f.weights for f in fits]), index=samples, columns=sig.columns
        ),
        correlation=pd.Series(correlation, index=samples, name="Correlation"),
        rmse=pd.Series([f.rmse for f in fits], index=samples, name="RMSE"),
        p_value=pd.Series(p_value, index=samples, name="P-value"),
        genes_used=len(sig),
        missing_genes=missing,
    )


def results_table(result: DeconvolutionResult, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """The CIBERSORT results layout: Mixture, cell types, P-value, Correlation, RMSE, extras."""
    table = result.fractions.copy()
    table["P-value"] = result.p_value
    table["Correlation"] = result.correlation
    table["RMSE"] = result.rmse
    if extra is not None:
        table = table.join(extra)
    table.index.name = "Mixture"
    return table.reset_index()
