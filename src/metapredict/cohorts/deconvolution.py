"""CIBERSORT's method: nu-support-vector regression of a mixture on a signature matrix.

Following Newman et al., Nat Methods 2015 (and the reference R implementation):

1. optionally (CIBERSORT's choice for arrays), the samples are quantile-normalised over all
   genes; this is the one step that looks at the other samples of the file;
2. each sample is fitted on the signature genes it has: genes absent from the file, or empty in
   that sample, are left out of that sample's fit only, so (without quantile normalisation) a
   sample's fractions are the same whether it is deconvolved alone or inside any file;
3. the signature matrix, restricted to those genes, is standardised as a whole (one mean, one
   SD over all its cells); each mixture sample is z-scored on its own;
4. for nu in {0.25, 0.5, 0.75} a linear-kernel nu-SVR (cost 1) is fitted
   (:mod:`~metapredict.cohorts.nusvr`); its weights have negatives set to zero and are
   renormalised to sum to 1;
5. the fit with the lowest RMSE between the sample and ``signature @ weights`` is kept; its
   RMSE and Pearson correlation are reported;
6. optionally, an empirical null of correlations from random "mixtures" drawn from the pooled
   mixture values gives a p-value per sample: the share of null correlations at least as large
   as the sample's. One null serves every sample fitted on the same genes, as in CIBERSORT
   (a file whose samples miss different genes gets one null per distinct gene set).

Samples that share a gene set are fitted together (one standardised signature, one batch of
nu-SVR problems). Absolute mode is not implemented: the output is relative fractions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from metapredict.cohorts import MAX_PERMUTATIONS, CohortInputError
from metapredict.cohorts.expression import quantile_normalise
from metapredict.cohorts.nusvr import linear_nusvr

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

NUS: Final = (0.25, 0.5, 0.75)
#: Refuse when fewer than this share of signature genes are in the expression matrix (for the
#: file, and for any one sample).
MIN_GENE_OVERLAP: Final = 0.5
#: Above this many distinct gene sets, permutations (one null per gene set) are warned about.
MANY_GENE_SETS: Final = 10
#: Results-table column with the number of signature genes each sample's fit used.
GENES_USED: Final = "Genes used"
#: At most this many samples (or permutations) are fitted together in one batch; batches run in
#: parallel. A row's result does not depend on its batch.
BATCH: Final = 64


@dataclass(frozen=True)
class Fits:
    """Best-of-three fits of a batch of samples (one row each)."""

    weights: FloatArray  # rows x cell types, non-negative, rows sum to 1 (or all 0)
    rmse: FloatArray
    correlation: FloatArray
    nu: FloatArray


@dataclass(frozen=True)
class DeconvolutionResult:
    fractions: pd.DataFrame  # samples x cell types (signature column order), rows sum to 1
    correlation: pd.Series
    rmse: pd.Series
    p_value: pd.Series  # NaN when no permutations were run
    genes_used: pd.Series  # per sample: signature genes its fit used
    signature_genes: int
    absent_genes: tuple[str, ...]  # signature genes not in the file (or empty in every sample)
    partly_missing_genes: tuple[str, ...]  # in the file, empty in some samples
    samples_missing_genes: int  # samples fitted on fewer genes than the file has
    gene_sets: int  # distinct gene sets fitted (one null distribution each)


def standardise_signature(signature: FloatArray) -> FloatArray:
    """One mean and one SD over the whole matrix (CIBERSORT's ``(X - mean(X)) / sd(X)``)."""
    scaled: FloatArray = (signature - signature.mean()) / signature.std(ddof=1)
    return scaled


def zscore_rows(ys: FloatArray) -> FloatArray:
    """Each row z-scored on its own (SD with ddof 1); a constant row becomes zeros."""
    centred = ys - ys.mean(axis=1, keepdims=True)
    sd = np.sqrt((centred**2).sum(axis=1, keepdims=True) / max(ys.shape[1] - 1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.where(sd > 0, centred / sd, 0.0)
    return out


def _row_correlation(a: FloatArray, b: FloatArray) -> FloatArray:
    ac = a - a.mean(axis=1, keepdims=True)
    bc = b - b.mean(axis=1, keepdims=True)
    num = (ac * bc).sum(axis=1)
    den = np.sqrt((ac**2).sum(axis=1) * (bc**2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        r: FloatArray = np.where(den > 0, num / den, np.nan)
    return np.clip(r, -1.0, 1.0)


def fit_rows(x: FloatArray, ys: FloatArray) -> Fits:
    """CIBERSORT's core for each row of ``ys`` (raw values) on standardised ``x`` (genes x d)."""
    z = zscore_rows(ys)
    best: Fits | None = None
    for nu in NUS:
        weights = linear_nusvr(x, z, nu)
        weights[weights < 0] = 0.0
        total = weights.sum(axis=1, keepdims=True)
        weights = np.divide(weights, total, out=weights, where=total > 0)
        fitted = np.matmul(weights[:, None, :], x.T)[:, 0, :]  # row by row, see nusvr._rows
        rmse = np.sqrt(np.mean((fitted - z) ** 2, axis=1))
        correlation = _row_correlation(fitted, z)
        if best is None:
            best = Fits(weights, rmse, correlation, np.full(len(rmse), nu))
            continue
        better = rmse < best.rmse  # ties keep the smaller nu, as CIBERSORT's which.min does
        best.weights[better] = weights[better]
        best.rmse[better] = rmse[better]
        best.correlation[better] = correlation[better]
        best.nu[better] = nu
    assert best is not None
    return best


def _run(
    x: FloatArray,
    ys: FloatArray,
    n_jobs: int,
    on_progress: Callable[[int], None] | None,
) -> Fits:
    """:func:`fit_rows` over batches of rows, ``n_jobs`` threads at a time."""
    # batches of at most BATCH rows, as many as a multiple of n_jobs, of equal size
    count = math.ceil(math.ceil(len(ys) / BATCH) / n_jobs) * n_jobs
    edges = np.linspace(0, len(ys), count + 1).round().astype(int)
    spans = [(int(a), int(b)) for a, b in pairwise(edges) if b > a]
    parts: list[Fits] = []
    if n_jobs == 1 or len(spans) == 1:
        for a, b in spans:
            parts.append(fit_rows(x, ys[a:b]))
            if on_progress is not None:
                on_progress(b - a)
    else:
        # numpy releases the GIL in its array loops; one BLAS thread per worker thread.
        with threadpool_limits(limits=1, user_api="blas"):
            results = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(
                delayed(fit_rows)(x, ys[a:b]) for a, b in spans
            )
            for (a, b), part in zip(spans, results, strict=True):
                parts.append(part)
                if on_progress is not None:
                    on_progress(b - a)
    if not parts:
        empty = np.zeros((0, x.shape[1]))
        return Fits(empty, np.zeros(0), np.zeros(0), np.zeros(0))
    return Fits(
        np.vstack([p.weights for p in parts]),
        np.concatenate([p.rmse for p in parts]),
        np.concatenate([p.correlation for p in parts]),
        np.concatenate([p.nu for p in parts]),
    )


def permutation_null(
    x: FloatArray,
    pooled: FloatArray,
    permutations: int,
    *,
    rng: np.random.Generator,
    n_jobs: int,
    on_progress: Callable[[int], None] | None = None,
) -> FloatArray:
    """Correlations of fits to random mixtures of ``len(x)`` values drawn from ``pooled``."""
    draws = np.stack(
        [rng.choice(pooled, size=x.shape[0], replace=False) for _ in range(permutations)]
    )
    return _run(x, draws, n_jobs, on_progress).correlation


def _gene_sets(mask: NDArray[np.bool_]) -> list[NDArray[np.intp]]:
    """Columns of ``mask`` (genes x samples) grouped by identical gene sets, largest first."""
    keys = np.packbits(mask, axis=0).T
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    groups = [np.flatnonzero(inverse.ravel() == g) for g in range(len(first))]
    groups.sort(key=lambda cols: (-len(cols), cols[0]))
    return groups


def deconvolve(
    expression: pd.DataFrame,
    signature: pd.DataFrame,
    *,
    permutations: int = 0,
    seed: int = 0,
    n_jobs: int = 2,
    min_overlap: float = MIN_GENE_OVERLAP,
    quantile_normalize: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    source: str = "the expression matrix",
) -> DeconvolutionResult:
    """Estimate cell-type fractions for every sample (column) of a linear-scale ``expression``.

    Empty cells (NaN) mean "not measured in that sample": the sample is fitted on the other
    signature genes. ``quantile_normalize`` quantile-normalises all genes of ``expression``
    across its samples first (CIBERSORT's option for arrays); a sample's values, and so its
    fractions, then depend on the other samples of the file. ``on_plan`` is called once with
    the number of fits to run (samples, plus ``permutations`` per distinct gene set),
    ``on_progress`` with the number just finished; both in the calling process.
    """
    if not 0 <= permutations <= MAX_PERMUTATIONS:
        raise CohortInputError(f"permutations must be between 0 and {MAX_PERMUTATIONS}")
    if quantile_normalize:
        expression = quantile_normalise(expression)
    n_sig = len(signature)
    in_file = signature.index.isin(expression.index)
    mixture = expression.reindex(signature.index[in_file])
    values = mixture.to_numpy(dtype=float)
    finite = np.isfinite(values)
    measured = finite.any(axis=1)
    genes = signature.index[in_file][measured]
    values, finite = values[measured], finite[measured]
    absent = tuple(str(g) for g in signature.index if g not in set(genes))
    partly = tuple(str(g) for g in genes[~finite.all(axis=1)])
    share = len(genes) / n_sig if n_sig else 0.0
    if share < min_overlap or len(genes) <= signature.shape[1]:
        raise CohortInputError(
            f"{source}: only {len(genes)} of {n_sig} signature genes ({share:.0%}) are in the "
            "expression matrix; are both keyed by HGNC symbols of the same species?"
        )
    used = finite.sum(axis=0)
    short = (used < min_overlap * n_sig) | (used <= signature.shape[1])
    if short.any():
        names = [str(c) for c in mixture.columns[short]]
        raise CohortInputError(
            f"{source}: {len(names)} sample(s) have fewer than {min_overlap:.0%} of the "
            f"{n_sig} signature genes (e.g. {', '.join(names[:5])}: {int(used[short][0])} "
            "genes); remove those samples or fill their empty cells"
        )
    sig_values = signature.loc[genes].to_numpy(dtype=float)
    samples = pd.Index(mixture.columns, name="sample")
    n = len(samples)
    groups = _gene_sets(finite)
    logger.info(
        "deconvolving %d samples on %d signature genes (%d absent, %d missing in some samples; "
        "%d gene set(s)), %d permutations",
        n,
        len(genes),
        len(absent),
        len(partly),
        len(groups),
        permutations,
    )
    if permutations and len(groups) > MANY_GENE_SETS:
        logger.warning(
            "%d distinct gene sets (samples lack different genes): one null of %d permutations "
            "each, %d extra fits",
            len(groups),
            permutations,
            permutations * len(groups),
        )
    if on_plan is not None:
        on_plan(n + permutations * len(groups))
    weights = np.zeros((n, signature.shape[1]))
    rmse = np.full(n, np.nan)
    correlation = np.full(n, np.nan)
    p_value = np.full(n, np.nan)
    pooled = values[finite]
    rng = np.random.default_rng(seed)
    for cols in groups:
        rows = finite[:, cols[0]]
        x = standardise_signature(sig_values[rows])
        fits = _run(x, np.ascontiguousarray(values[rows][:, cols].T), n_jobs, on_progress)
        weights[cols], rmse[cols], correlation[cols] = fits.weights, fits.rmse, fits.correlation
        if permutations:
            null = permutation_null(
                x, pooled, permutations, rng=rng, n_jobs=n_jobs, on_progress=on_progress
            )
            null = null[np.isfinite(null)]
            if null.size:
                r = correlation[cols]
                p_value[cols] = np.where(
                    np.isfinite(r), (null[None, :] >= r[:, None]).mean(axis=1), np.nan
                )
    zero = int((weights.sum(axis=1) == 0).sum())
    if zero:
        logger.warning("%d sample(s) got no positive weight (all fractions zero)", zero)
    return DeconvolutionResult(
        fractions=pd.DataFrame(weights, index=samples, columns=signature.columns),
        correlation=pd.Series(correlation, index=samples, name="Correlation"),
        rmse=pd.Series(rmse, index=samples, name="RMSE"),
        p_value=pd.Series(p_value, index=samples, name="P-value"),
        genes_used=pd.Series(used.astype(int), index=samples, name=GENES_USED),
        signature_genes=n_sig,
        absent_genes=absent,
        partly_missing_genes=partly,
        samples_missing_genes=int((used < len(genes)).sum()),
        gene_sets=len(groups),
    )


def results_table(result: DeconvolutionResult, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """CIBERSORT's layout: Mixture, cell types, P-value, Correlation, RMSE, Genes used, extras."""
    table = result.fractions.copy()
    table["P-value"] = result.p_value
    table["Correlation"] = result.correlation
    table["RMSE"] = result.rmse
    table[GENES_USED] = result.genes_used
    if extra is not None:
        table = table.join(extra)
    table.index.name = "Mixture"
    return table.reset_index()
