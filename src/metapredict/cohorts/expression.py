"""Expression matrices and signature matrices: reading, and refusing input that would mislead.

An expression file is genes x samples: the first column holds HGNC gene symbols, every other
column is a sample (TPM, or normalised microarray intensities, linear or log2 scale). A
signature file is genes x cell types in the same layout (e.g. LM22, supplied by the user).

Refused with a message saying what to do: Ensembl (``ENSG...``) or Entrez (numeric) gene ids,
raw read counts (integer-valued, not TPM-scaled), negative values on a linear scale. Log-scale
input (max < 50, CIBERSORT's rule) is un-logged with ``2**x``.
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
    genes_with_missing_values: int = 0
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


def prepare_expression(frame: pd.DataFrame, *, source: str) -> tuple[pd.DataFrame, ExpressionCheck]:
    """Check an expression matrix and return it on a linear scale, one row per gene."""
    check = ExpressionCheck(genes_in=len(frame))
    check_gene_ids(frame.index, source=source)
    if frame.shape[1] == 0:
        raise CohortInputError(f"{source}: no sample columns")
    missing_rows = frame.isna().any(axis=1)
    if missing_rows.all():
        raise CohortInputError(f"{source}: every gene has missing values")
    if missing_rows.any():
        check.genes_with_missing_values = int(missing_rows.sum())
        check.notes.append(
            f"{check.genes_with_missing_values} gene(s) with missing values left out"
        )
        frame = frame[~missing_rows]
    if frame.index.duplicated().any():
        check.duplicated_genes = int(frame.index.duplicated().sum())
        check.notes.append(
            f"{check.duplicated_genes} duplicated gene symbol row(s) averaged (e.g. probes)"
        )
        frame = frame.groupby(level=0, sort=False).mean()
    values = frame.to_numpy(dtype=float)
    top = float(np.max(values))
    if top < LOG_SCALE_MAX:
        check.unlogged = True
        check.notes.append(f"max {top:.3g} < {LOG_SCALE_MAX:g}: treated as log2, un-logged (2**x)")
        frame = np.power(2.0, frame)
    else:
        if float(np.min(values)) < 0:
            raise CohortInputError(
                f"{source}: negative values on a linear scale (max {top:.3g}); the method needs "
                "non-negative TPM or normalised intensities, not centred or z-scored data"
            )
        if _looks_like_counts(values):
            raise CohortInputError(
                f"{source}: values look like raw read counts (integers, max {top:.0f}, column "
                "sums not scaled to one million); convert to TPM (or normalised intensities) "
                "before deconvolution, raw counts give wrong fractions"
            )
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
