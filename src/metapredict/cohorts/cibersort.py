"""CIBERSORT / CIBERSORTx result tables (and ``metapredict deconvolve`` output) -> schema names.

A result table has one row per sample: the sample id in the first column (headed ``Mixture``,
``Input Sample``, or anything else), the 22 LM22 labels, and the fit QC columns ``P-value``,
``Correlation`` and ``RMSE``. CIBERSORTx absolute mode adds ``Absolute score (sig.score)`` and
its LM22 scores do not sum to 1. Columns named after a schema extra (e.g. ``mdsc_score``, as
written by ``metapredict deconvolve --gmt``) are kept; anything else is ignored and reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pandas as pd

from metapredict import schema
from metapredict.cohorts.errors import CohortInputError
from metapredict.cohorts.tables import read_text_table

logger = logging.getLogger(__name__)

Mode = Literal["relative", "absolute"]
ModeChoice = Literal["auto", "relative", "absolute"]

#: CIBERSORT writes this P-value when it ran without permutations; it means "not computed".
PVALUE_NOT_COMPUTED: Final = 9999.0
#: In auto mode, a table is absolute when more than this share of rows do not sum to 1.
ABSOLUTE_ROW_SHARE: Final = 0.5


@dataclass(frozen=True)
class ImmuneTable:
    """A result table renamed to schema columns, indexed by sample id (file order kept)."""

    frame: pd.DataFrame
    mode: Mode
    mode_reason: str
    ignored_columns: tuple[str, ...]


def _label_key(label: str) -> str:
    return " ".join(label.replace("_", " ").split()).lower()


def _float_column(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        raise CohortInputError(
            f"{path.name}: column '{column}' has {int(bad.sum())} non-numeric value(s)"
        )
    return values.astype(float)


def read_immune_table(path: Path, *, mode: ModeChoice = "auto") -> ImmuneTable:
    """Read a CIBERSORT(x) result table; raise :class:`CohortInputError` on a malformed one."""
    raw = read_text_table(path)
    id_column = raw.columns[0]
    lm22 = schema.lm22_labels()  # CIBERSORT label -> schema column
    by_key = {_label_key(label): column for label, column in lm22.items()}
    if _label_key(id_column) in by_key:
        raise CohortInputError(
            f"{path.name}: the first column must hold sample ids, found the LM22 label "
            f"'{id_column}' (was the table written without its id column?)"
        )
    qc = schema.qc_labels()  # 'P-value' -> cibersort_p_value, ...
    qc_by_key = {_label_key(label): column for label, column in qc.items()}
    extras = set(schema.extra_columns())

    rename: dict[str, str] = {}
    ignored: list[str] = []
    for column in raw.columns[1:]:
        key = _label_key(column)
        if key in by_key:
            rename[column] = by_key[key]
        elif key in qc_by_key:
            rename[column] = qc_by_key[key]
        elif key.startswith("absolute score"):  # older CIBERSORTx: "Absolute score"
            rename[column] = "cibersort_absolute_score"
        elif column in extras or column in lm22.values():
            rename[column] = column
        else:
            ignored.append(column)
    found = set(rename.values())
    missing = [label for label, column in lm22.items() if column not in found]
    if missing:
        raise CohortInputError(
            f"{path.name}: not a CIBERSORT result table, {len(missing)} LM22 column(s) missing: "
            + ", ".join(f"'{m}'" for m in missing[:6])
            + (" ..." if len(missing) > 6 else "")
        )
    if len(found) != len(rename):
        raise CohortInputError(f"{path.name}: the same LM22 or QC column appears twice")

    ids = raw[id_column].astype(str).str.strip()
    if (ids == "").any() or raw[id_column].isna().any():
        raise CohortInputError(f"{path.name}: {int((ids == '').sum())} row(s) have no sample id")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise CohortInputError(
            f"{path.name}: sample id(s) appear more than once: {', '.join(dup.unique()[:5])}"
        )

    frame = pd.DataFrame(
        {new: _float_column(raw, old, path).to_numpy() for old, new in rename.items()},
        index=pd.Index(ids.to_numpy(), name="sample_id"),
    )
    if "cibersort_p_value" in frame:
        frame.loc[frame["cibersort_p_value"] == PVALUE_NOT_COMPUTED, "cibersort_p_value"] = np.nan

    lm22_cols = list(schema.lm22_columns())
    if frame[lm22_cols].isna().any().any():
        raise CohortInputError(f"{path.name}: LM22 columns have empty cells")
    resolved, reason = _detect_mode(frame, mode)
    logger.info("%s: %d samples, %s mode (%s)", path.name, len(frame), resolved, reason)
    return ImmuneTable(
        frame=frame,
        mode=resolved,
        mode_reason=reason,
        ignored_columns=tuple(ignored),
    )


def _detect_mode(frame: pd.DataFrame, mode: ModeChoice) -> tuple[Mode, str]:
    if mode != "auto":
        return mode, "chosen with --mode"
    if "cibersort_absolute_score" in frame:
        return "absolute", "has an 'Absolute score (sig.score)' column"
    sums = frame[list(schema.lm22_columns())].sum(axis=1)
    off = (sums - 1.0).abs() > schema.FRACTION_SUM_TOLERANCE
    if len(frame) and off.mean() > ABSOLUTE_ROW_SHARE:
        return "absolute", (
            f"{int(off.sum())} of {len(frame)} rows do not sum to 1 "
            f"(median row sum {sums.median():.3g})"
        )
    return "relative", "rows sum to 1"
