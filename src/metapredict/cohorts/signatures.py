"""Marker gene-set scores from a GMT file, e.g. ``mdsc_score`` for the schema's MDSC column.

GMT format: one set per line, tab-separated: set name, description (or URL), then genes. A set
whose name (case-insensitive) is a schema extra column measured as a z-score (``mdsc_score``)
becomes that column; other sets are ignored and reported.

Score: expression is taken to log2(x + 1) from the linear scale, each gene is z-scored across
the samples of the file, and a sample's score is the mean z-score of the set's genes present;
it is clipped to the schema bounds of the column. Scores are relative to the cohort in the
file: the same sample scores differently in another cohort.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from metapredict import schema
from metapredict.cohorts.errors import CohortInputError

logger = logging.getLogger(__name__)

#: A set needs at least this many of its genes in the expression matrix.
MIN_SET_GENES: Final = 2


@dataclass
class ScoreReport:
    used: dict[str, int] = field(default_factory=dict)  # column -> genes found
    missing_genes: dict[str, list[str]] = field(default_factory=dict)
    ignored_sets: list[str] = field(default_factory=list)


def score_columns() -> tuple[str, ...]:
    """Schema extras a gene-set score may fill (unit z-score)."""
    return tuple(
        info.name
        for info in schema.columns(schema.Cohort)
        if info.group == "extra" and info.unit == "z-score"
    )


def read_gmt(path: Path) -> dict[str, tuple[str, ...]]:
    if not path.exists():
        raise CohortInputError(f"no such file: {path}")
    sets: dict[str, tuple[str, ...]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) < 3 or not fields[0]:
            raise CohortInputError(
                f"{path.name} line {number}: a GMT line is 'name<TAB>description<TAB>gene...'"
            )
        genes = tuple(g for g in fields[2:] if g)
        if fields[0] in sets:
            raise CohortInputError(f"{path.name}: gene set '{fields[0]}' appears twice")
        sets[fields[0]] = genes
    if not sets:
        raise CohortInputError(f"{path.name}: no gene sets")
    return sets


def score_gene_sets(
    expression: pd.DataFrame, sets: dict[str, tuple[str, ...]]
) -> tuple[pd.DataFrame, ScoreReport]:
    """Scores (samples x columns) for the sets named after schema z-score extras."""
    report = ScoreReport()
    targets = {name.lower(): name for name in score_columns()}
    chosen: dict[str, tuple[str, ...]] = {}
    for name, genes in sets.items():
        column = targets.get(name.strip().lower())
        if column is None:
            report.ignored_sets.append(name)
        else:
            chosen[column] = genes
    if not chosen:
        raise CohortInputError(
            "no gene set in the GMT file is named after a score column; name the set "
            + " or ".join(f"'{c}'" for c in score_columns())
        )
    if expression.shape[1] < 3:
        raise CohortInputError("gene-set z-scores need at least 3 samples in the expression file")
    logged = np.log2(expression.clip(lower=0) + 1.0)
    sd = logged.std(axis=1, ddof=1)
    z = logged.sub(logged.mean(axis=1), axis=0).div(sd.where(sd > 0), axis=0)
    scores = pd.DataFrame(index=expression.columns)
    for column, genes in chosen.items():
        present = [g for g in dict.fromkeys(genes) if g in z.index and sd.get(g, 0) > 0]
        report.missing_genes[column] = [g for g in genes if g not in z.index]
        if len(present) < MIN_SET_GENES:
            raise CohortInputError(
                f"gene set '{column}': only {len(present)} of {len(genes)} genes found (with "
                f"non-constant expression); need at least {MIN_SET_GENES}"
            )
        info = schema.column_info(column)
        lo = -np.inf if info.minimum is None else info.minimum
        hi = np.inf if info.maximum is None else info.maximum
        scores[column] = z.loc[present].mean(axis=0).clip(lo, hi).to_numpy()
        report.used[column] = len(present)
    return scores, report
