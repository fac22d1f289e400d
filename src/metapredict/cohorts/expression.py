"""Expression matrices and signature matrices: reading, and refusing input that would mislead.

An expression file is genes x samples: the first column holds HGNC gene symbols, every other
column is a sample (TPM, or normalised microarray intensities, linear or log2 scale). A
signature file is genes x cell types in the same layout (e.g. LM22, supplied by the user).

Refused with a message saying what to do: Ensembl (``ENSG...``) or Entrez (numeric) gene ids,
raw read counts (integer-valued, not TPM-scaled), and data that look centred, z-scored or
log-ratio (a median near 0 with a large share of negatives, on either scale). Small negatives on
a linear scale (the residue of a normalisation, as in RSEM tables) are set to 0 and counted;
larger ones are refused. Empty cells are kept: each sample is fitted on the genes it has.
Log-scale input (max < 50, CIBERSORT's rule) is un-logged with ``2**x``. Quantile normalisation
(CIBERSORT's option for arrays) is chosen for log-scale input unless the caller decides.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from metapredict.cohorts.errors import CohortInputError
from metapredict.cohorts.tables import read_text_table

logger = logging.getLogger(__name__)

#: CIBERSORT treats a mixture whose maximum is below this as log2 scale.
LOG_SCALE_MAX: Final = 50.0
#: Centred, z-scored or log-ratio data: at least this share of the values is negative ...
CENTRED_MIN_NEGATIVE_SHARE: Final = 0.25
#: ... and the median is within this fraction of the interquartile range of 0.
CENTRED_MAX_MEDIAN_IQR: Final = 0.1
#: Negatives on a linear scale are normalisation residue (set to 0) when they are at most this
#: share of the values ...
SMALL_NEGATIVE_MAX_SHARE: Final = 0.05
#: ... and none is below ``-SMALL_NEGATIVE_MAX_DEPTH`` x the 99th percentile of the values.
SMALL_NEGATIVE_MAX_DEPTH: Final = 0.01
#: Integer-valued data with a maximum at least this large look like read counts.
COUNTS_MIN_MAX: Final = 100.0
#: Share of integer-valued non-zero cells above which a matrix is count-like.
COUNTS_INTEGER_SHARE: Final = 0.99
#: TPM columns sum to one million; integer data so scaled are accepted as rounded TPM.
TPM_TOTAL: Final = 1e6
#: More than this share of ids in a foreign namespace refuses the file.
FOREIGN_ID_SHARE: Final = 0.5

_ENSEMBL: Final = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
_ENTREZ: Final = re.compile(r"^\d+$")


@dataclass
class ExpressionCheck:
    """What :func:`prepare_expression` found and did."""

    unlogged: bool = False
    genes_in: int = 0
    genes_out: int = 0
    duplicated_genes: int = 0
    #: genes empty in some samples (kept: those samples are fitted without them)
    genes_with_missing_values: int = 0
    #: genes empty in every sample (left out)
    empty_genes: int = 0
    negatives_set_to_zero: int = 0
    #: whether deconvolution should quantile-normalise (``deconvolve(quantile_normalize=...)``)
    quantile_normalise: bool = False
    quantile_reason: str = ""
    notes: list[str] = field(default_factory=list)


def read_matrix(path: Path, *, what: str) -> pd.DataFrame:
    """Read a genes x columns numeric matrix whose first column holds gene ids."""
    raw = read_text_table(path)
    ids = raw.iloc[:, 0]
    if ids.isna().any():
        raise CohortInputError(f"{path.name}: {int(ids.isna().sum())} {what} row(s) have no gene")
    values = raw.iloc[:, 1:]
    non_numeric = [str(c) for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
    if non_numeric:
        raise CohortInputError(
            f"{path.name}: {what} column(s) are not numeric: {', '.join(non_numeric[:5])} "
            "(expected gene symbols in the first column and numbers in all others)"
        )
    frame = values.astype(float)
    frame.index = pd.Index(ids.astype(str).str.strip(), name="gene")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def check_gene_ids(genes: pd.Index, *, source: str) -> None:
    """Refuse Ensembl or Entrez ids: the signature is keyed by HGNC symbols."""
    ids = pd.Series(genes.astype(str))
    if len(ids) == 0:
        raise CohortInputError(f"{source}: no genes")
    if ids.str.match(_ENSEMBL).mean() > FOREIGN_ID_SHARE:
        raise CohortInputError(
            f"{source}: gene ids look like Ensembl ids (e.g. {ids.iloc[0]}); map them to HGNC "
            "gene symbols first (the signature matrix is keyed by symbols)"
        )
    if ids.str.match(_ENTREZ).mean() > FOREIGN_ID_SHARE:
        raise CohortInputError(
            f"{source}: gene ids look like Entrez numbers (e.g. {ids.iloc[0]}); map them to "
            "HGNC gene symbols first (the signature matrix is keyed by symbols)"
        )


def _looks_like_counts(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    nonzero = finite[finite != 0]
    if nonzero.size == 0 or finite.max() < COUNTS_MIN_MAX:
        return False
    integer_share = float(np.mean(nonzero == np.round(nonzero)))
    if integer_share < COUNTS_INTEGER_SHARE:
        return False
    totals = np.nansum(values, axis=0)
    tpm_like = bool(np.all(np.abs(totals / TPM_TOTAL - 1.0) < 0.02))
    return not tpm_like


def _value_summary(values: np.ndarray) -> tuple[float, float, float, float, float]:
    """Median, share negative, min, max and interquartile range of the finite values."""
    finite = values[np.isfinite(values)]
    q25, median, q75 = np.percentile(finite, [25, 50, 75])
    share = float(np.mean(finite < 0))
    return float(median), share, float(finite.min()), float(finite.max()), float(q75 - q25)


def _refuse_centred(values: np.ndarray, *, source: str) -> None:
    median, share, low, top, iqr = _value_summary(values)
    if share >= CENTRED_MIN_NEGATIVE_SHARE and abs(median) <= CENTRED_MAX_MEDIAN_IQR * iqr:
        raise CohortInputError(
            f"{source}: the values look centred, z-scored or log ratios (median {median:.3g}, "
            f"{share:.0%} negative, range {low:.3g} to {top:.3g}); expression levels cannot "
            "be recovered from them. Give TPM or normalised intensities, linear or log2 (e.g. "
            "the RSEM or TPM table, not its z-scores; single-channel intensities, not the "
            "log ratios of a two-colour array)"
        )


def _clip_small_negatives(
    frame: pd.DataFrame, check: ExpressionCheck, *, source: str
) -> pd.DataFrame:
    values = frame.to_numpy(dtype=float)
    negative = values < 0  # NaN compares False
    count = int(negative.sum())
    if not count:
        return frame
    finite = values[np.isfinite(values)]
    share = count / finite.size
    low = float(finite.min())
    p99 = float(np.percentile(finite, 99))
    if share > SMALL_NEGATIVE_MAX_SHARE or low < -SMALL_NEGATIVE_MAX_DEPTH * p99:
        raise CohortInputError(
            f"{source}: {count:,} negative values ({share:.1%} of values, down to {low:.3g}) on a "
            f"linear scale (99th percentile {p99:.3g}): more, or deeper, than a normalisation "
            f"leaves (at most {SMALL_NEGATIVE_MAX_SHARE:.0%} of values, none below "
            f"-{SMALL_NEGATIVE_MAX_DEPTH:g} x the 99th percentile), so the data look "
            "background-subtracted or centred. Give non-negative TPM or normalised intensities"
        )
    check.negatives_set_to_zero = count
    check.notes.append(
        f"{count:,} small negative value(s) ({share:.2%} of values, down to {low:.3g}, against "
        f"a 99th percentile of {p99:.3g}) set to 0: normalisation residue, as in RSEM tables"
    )
    return frame.clip(lower=0.0)


def quantile_normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Quantile normalisation across samples (as preprocessCore's ``normalize.quantiles``).

    Every sample's values are replaced by the mean, over samples, of the value of the same
    rank; ties share the mean of their ranks. Empty cells stay empty: a sample with fewer values
    is mapped through the reference distribution at the same quantiles.
    """
    from scipy.stats import rankdata  # scipy.stats takes about 2 s to import

    values = frame.to_numpy(dtype=float)
    finite = np.isfinite(values)
    out = np.full_like(values, np.nan)
    if finite.all():
        reference = np.sort(values, axis=0).mean(axis=1)
        ranks = rankdata(values, axis=0, method="average")
        positions = np.arange(1, len(values) + 1, dtype=float)
        out = np.interp(ranks.ravel(), positions, reference).reshape(values.shape)
    else:
        size = int(finite.sum(axis=0).max())
        grid = np.linspace(0.0, 1.0, size)
        columns = [values[finite[:, j], j] for j in range(values.shape[1])]
        reference = np.zeros(size)
        for column in columns:
            ordered = np.sort(column)
            if len(ordered):
                reference += np.interp(grid, np.linspace(0.0, 1.0, len(ordered)), ordered)
        reference /= sum(1 for column in columns if len(column))
        for j, column in enumerate(columns):
            if not len(column):
                continue
            quantiles = (rankdata(column, method="average") - 1) / max(len(column) - 1, 1)
            out[finite[:, j], j] = np.interp(quantiles, grid, reference)
    return pd.DataFrame(out, index=frame.index, columns=frame.columns)


def prepare_expression(
    frame: pd.DataFrame, *, source: str, quantile_normalize: bool | None = None
) -> tuple[pd.DataFrame, ExpressionCheck]:
    """Check an expression matrix and return it on a linear scale, one row per gene.

    Empty cells stay empty (NaN): a sample is fitted on the genes it has. Quantile
    normalisation is decided here and applied by ``deconvolve`` (to its input only, so marker
    scores see the file's own values): ``quantile_normalize`` None (auto) chooses it for
    log-scale input (arrays, as CIBERSORT does) and not for linear input (RNA-seq TPM, as
    CIBERSORTx advises); True or False is the caller's choice.
    """
    check = ExpressionCheck(genes_in=len(frame))
    check_gene_ids(frame.index, source=source)
    if frame.shape[1] == 0:
        raise CohortInputError(f"{source}: no sample columns")
    frame = frame.astype(float)
    # -inf is log2(0) in a log-scale file (2**-inf = 0 below); anything else infinite is empty
    values = frame.to_numpy()
    log_scale = float(np.nanmax(np.where(np.isfinite(values), values, np.nan), initial=-np.inf))
    bad = np.isposinf(values) | (np.isneginf(values) & (log_scale >= LOG_SCALE_MAX))
    if bad.any():
        check.notes.append(f"{int(bad.sum())} infinite value(s) read as empty cells")
        frame = frame.mask(bad)
    empty = frame.isna()
    empty_columns = empty.all(axis=0)
    if empty_columns.any():
        names = [str(c) for c in frame.columns[empty_columns]]
        raise CohortInputError(
            f"{source}: {len(names)} sample column(s) have no values "
            f"({', '.join(names[:5])}); remove them"
        )
    empty_rows = empty.all(axis=1)
    if empty_rows.all():
        raise CohortInputError(f"{source}: every gene is empty in every sample")
    if empty_rows.any():
        check.empty_genes = int(empty_rows.sum())
        check.notes.append(f"{check.empty_genes} gene(s) empty in every sample left out")
        frame = frame[~empty_rows]
    if frame.index.duplicated().any():
        check.duplicated_genes = int(frame.index.duplicated().sum())
        check.notes.append(
            f"{check.duplicated_genes} duplicated gene symbol row(s) averaged (e.g. probes)"
        )
        frame = frame.groupby(level=0, sort=False).mean()
    partly = frame.isna().any(axis=1)
    if partly.any():
        check.genes_with_missing_values = int(partly.sum())
        samples = int(frame.isna().any(axis=0).sum())
        check.notes.append(
            f"{check.genes_with_missing_values} gene(s) empty in some samples ({samples} "
            "sample(s) affected): each sample is fitted on the genes it has"
        )
    values = frame.to_numpy(dtype=float)
    _refuse_centred(values, source=source)
    top = float(np.nanmax(values))
    if top < LOG_SCALE_MAX:
        check.unlogged = True
        check.notes.append(f"max {top:.3g} < {LOG_SCALE_MAX:g}: treated as log2, un-logged (2**x)")
        frame = np.power(2.0, frame)
    else:
        frame = _clip_small_negatives(frame, check, source=source)
        if _looks_like_counts(frame.to_numpy(dtype=float)):
            raise CohortInputError(
                f"{source}: values look like raw read counts (integers, max {top:.0f}, column "
                "sums not scaled to one million); convert to TPM (or normalised intensities) "
                "before deconvolution, raw counts give wrong fractions"
            )
    if quantile_normalize is None:
        check.quantile_normalise = check.unlogged
        check.quantile_reason = (
            "log-scale input, as arrays come; CIBERSORT normalises arrays"
            if check.unlogged
            else "linear-scale input, as RNA-seq TPM comes; CIBERSORTx advises against it there"
        )
    else:
        check.quantile_normalise = quantile_normalize
        check.quantile_reason = "chosen"
    check.genes_out = len(frame)
    return frame, check


def prepare_signature(frame: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Check a signature matrix (genes x cell types, linear scale, non-negative)."""
    check_gene_ids(frame.index, source=source)
    if frame.shape[1] < 2:
        raise CohortInputError(f"{source}: a signature needs at least two cell-type columns")
    if frame.index.duplicated().any():
        dup = frame.index[frame.index.duplicated()].unique()
        raise CohortInputError(
            f"{source}: gene symbol(s) appear more than once: {', '.join(dup[:5])}"
        )
    if frame.isna().any().any():
        raise CohortInputError(f"{source}: the signature matrix has empty cells")
    if (frame.to_numpy() < 0).any():
        raise CohortInputError(f"{source}: the signature matrix has negative values")
    return frame
