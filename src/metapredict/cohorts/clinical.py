"""The clinical side of a cohort before parsing: one raw-text frame per patient and per sample.

Both importers (:mod:`.cbioportal` and the generic :mod:`.mapping`) produce a
:class:`ClinicalData`: cells are still text, but columns carry canonical names and missing
tokens are already ``None``. :mod:`.build` merges sample over patient cells and parses them
with the :class:`ValueRules`, so one set of parsers and one set of drop reasons serves both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metapredict import schema
from metapredict.cohorts.values import is_missing

#: Canonical raw fields, most specific cancer-type text first.
CANCER_TYPE_FIELDS = ("cancer_type_detailed", "cancer_type", "oncotree_code")
STAGE = "stage"
AGE = "age_years"
MONTHS = "relapse_months"
STATUS = "relapse_status"
SAMPLE_TYPE = "sample_type"
PATIENT_ID = "patient_id"


def canonical_fields() -> tuple[str, ...]:
    """Every canonical raw column a clinical frame may carry (besides the ids)."""
    return (
        *CANCER_TYPE_FIELDS,
        STAGE,
        AGE,
        MONTHS,
        STATUS,
        SAMPLE_TYPE,
        *schema.site_columns(),
        *schema.extra_columns(),
    )


class ValueRules(BaseModel):
    """Extra value vocabulary on top of the built-in parsers (from a mapping TOML)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    missing: tuple[str, ...] = Field(default=(), description="extra missing-value tokens")
    cancer_type: dict[str, str] = Field(
        default_factory=dict, description="raw cancer-type text -> cancer-type label"
    )
    stage: dict[str, str] = Field(
        default_factory=dict, description="raw stage text -> I, II, III or IV"
    )
    event_true: tuple[str, ...] = Field(default=(), description="status texts meaning relapse")
    event_false: tuple[str, ...] = Field(default=(), description="status texts meaning censored")
    site_true: tuple[str, ...] = Field(default=(), description="site texts meaning involved")
    site_false: tuple[str, ...] = Field(default=(), description="site texts meaning not involved")
    months_per_unit: float = Field(
        default=1.0, gt=0, description="multiply follow-up times by this to get months"
    )


@dataclass
class ClinicalData:
    """Raw-text clinical tables with canonical column names; missing cells are ``None``."""

    patients: pd.DataFrame  # index: patient_id; columns: canonical_fields() subset
    samples: pd.DataFrame | None  # index: sample_id; columns: patient_id + canonical subset
    rules: ValueRules
    relapse_source: str | None  # e.g. "DFS_MONTHS + DFS_STATUS"; None: no relapse labels
    sites_absent: tuple[str, ...]  # site columns no input provides (left out of the cohort)
    source: str  # "cBioPortal" or "mapping <file>"
    notes: list[str] = field(default_factory=list)


def blank_missing(frame: pd.DataFrame, extra_tokens: Iterable[str] = ()) -> pd.DataFrame:
    """Replace missing tokens ('NA', '[Not Available]', '', ...) by ``None``; strip the rest."""
    tokens = tuple(extra_tokens)
    out = frame.astype(object)
    for column in out.columns:
        out[column] = [
            None if is_missing(v, tokens) else str(v).strip() for v in out[column].tolist()
        ]
    return out


def first_present(frame: pd.DataFrame, columns: Iterable[str]) -> pd.Series:
    """Per row, the first non-missing cell among ``columns`` (those that exist)."""
    result = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    for column in columns:
        if column in frame.columns:
            result = result.where(result.notna(), frame[column])
    return result
