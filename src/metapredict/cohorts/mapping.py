"""Any clinical CSV/TSV through a column mapping written in TOML.

Example (every key is documented in ``docs/real-cohorts.md``)::

    [columns]
    patient_id = "patient"
    sample_id = "sample"            # optional: ids used in the immune table
    cancer_type = "tumour_type"     # or set `cancer_type` under [constants]
    stage = "ajcc_stage"            # optional (missing stages are allowed)
    age_years = "age"               # optional
    relapse_months = "dmfs_months"  # the relapse pair: both or neither (dormancy labels)
    relapse_status = "dmfs_event"

    [columns.sites]                 # optional: organ (schema site name) -> Yes/No column
    bone = "met_bone"               # (tropism labels; any subset of the eight sites)
    liver = "met_liver"

A mapping needs the labels of at least one task: a site, or the relapse pair.

    [columns.extras]                # optional schema extras -> column
    platelet_count = "plt"

    [values]                        # extra vocabulary on top of the built-in parsers
    missing = ["not done"]
    event_true = ["distant relapse"]
    event_false = ["no relapse"]
    months_per_unit = 1.0           # e.g. 0.0328767 when times are in days
    [values.cancer_type]
    "BRCA" = "breast"
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from metapredict import schema
from metapredict.cancer_types import normalise_cancer_type
from metapredict.cohorts import clinical as c
from metapredict.cohorts.errors import CohortInputError
from metapredict.cohorts.tables import read_text_table

logger = logging.getLogger(__name__)


class ColumnMap(BaseModel):
    """Which column of the clinical table holds each field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patient_id: str
    sample_id: str | None = None
    sample_type: str | None = None
    cancer_type: str | None = None
    stage: str | None = None
    age_years: str | None = None
    relapse_months: str | None = None
    relapse_status: str | None = None
    sites: dict[str, str] = Field(default_factory=dict, description="organ -> Yes/No column")
    extras: dict[str, str] = Field(default_factory=dict, description="schema extra -> column")

    @model_validator(mode="after")
    def _labels(self) -> ColumnMap:
        if (self.relapse_months is None) != (self.relapse_status is None):
            raise ValueError(
                "relapse_months and relapse_status come together (the relapse pair), or neither"
            )
        if self.relapse_months is None and not self.sites:
            raise ValueError(
                "no labels for either task: name the relapse pair (relapse_months and "
                "relapse_status, for dormancy) or at least one site under [columns.sites] "
                "(for tropism)"
            )
        return self

    @field_validator("sites")
    @classmethod
    def _known_sites(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(schema.sites()))
        if unknown:
            raise ValueError(
                f"unknown site(s) {', '.join(unknown)}; sites are: {', '.join(schema.sites())}"
            )
        return value

    @field_validator("extras")
    @classmethod
    def _known_extras(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(schema.extra_columns()))
        if unknown:
            raise ValueError(
                f"unknown extra(s) {', '.join(unknown)}; extras are: "
                + ", ".join(schema.extra_columns())
            )
        return value


class Constants(BaseModel):
    """Values that hold for every row (e.g. a single-cancer study without a type column)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cancer_type: str | None = None

    @field_validator("cancer_type")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        return None if value is None else normalise_cancer_type(value)


class ClinicalMapping(BaseModel):
    """A whole mapping file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: ColumnMap
    constants: Constants = Constants()
    values: c.ValueRules = c.ValueRules()
    separator: str | None = Field(default=None, description="',' or tab; sniffed when unset")

    @field_validator("values")
    @classmethod
    def _known_values(cls, value: c.ValueRules) -> c.ValueRules:
        stages = schema.STAGES
        bad = {k: v for k, v in value.stage.items() if v not in stages}
        if bad:
            raise ValueError(f"stage values {bad} not in {', '.join(stages)}")
        labels = {k: normalise_cancer_type(v) for k, v in value.cancer_type.items()}
        return value.model_copy(update={"cancer_type": labels})


def load_mapping(path: Path) -> ClinicalMapping:
    """Parse and check a mapping TOML file."""
    if not path.exists():
        raise CohortInputError(f"no such file: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise CohortInputError(f"{path.name}: not valid TOML: {err}") from err
    try:
        return ClinicalMapping.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in err.errors()
        )
        raise CohortInputError(f"{path.name}: invalid mapping: {problems}") from err


def apply_mapping(table_path: Path, mapping: ClinicalMapping) -> c.ClinicalData:
    """Read a generic clinical table and rename its columns by ``mapping``."""
    raw = read_text_table(table_path, separator=mapping.separator, as_strings=True)
    cols = mapping.columns
    wanted: dict[str, str] = {c.PATIENT_ID: cols.patient_id}
    optional = {
        "sample_id": cols.sample_id,
        c.SAMPLE_TYPE: cols.sample_type,
        "cancer_type": cols.cancer_type,
        c.STAGE: cols.stage,
        c.AGE: cols.age_years,
        c.MONTHS: cols.relapse_months,
        c.STATUS: cols.relapse_status,
    }
    wanted.update({k: v for k, v in optional.items() if v is not None})
    wanted.update({f"site_{organ}": col for organ, col in cols.sites.items()})
    wanted.update(cols.extras)
    missing = sorted({col for col in wanted.values() if col not in raw.columns})
    if missing:
        raise CohortInputError(
            f"{table_path.name}: column(s) named in the mapping are missing: "
            + ", ".join(f"'{m}'" for m in missing)
            + f" (the table has: {', '.join(raw.columns[:12])}"
            + (" ...)" if len(raw.columns) > 12 else ")")
        )
    text = c.blank_missing(raw[list(dict.fromkeys(wanted.values()))], mapping.values.missing)
    frame = pd.DataFrame({name: text[col].to_numpy() for name, col in wanted.items()})
    if frame[c.PATIENT_ID].isna().any():
        raise CohortInputError(f"{table_path.name}: some rows have no patient id")
    if mapping.constants.cancer_type is not None:
        filled = frame.get("cancer_type", pd.Series([None] * len(frame), dtype=object))
        frame["cancer_type"] = filled.where(filled.notna(), mapping.constants.cancer_type)

    samples: pd.DataFrame | None = None
    if cols.sample_id is not None:
        if frame["sample_id"].isna().any() or frame["sample_id"].duplicated().any():
            raise CohortInputError(
                f"{table_path.name}: sample ids in '{cols.sample_id}' must be present and unique"
            )
        samples = frame.set_index("sample_id")
    patients = frame.drop(columns=["sample_id"], errors="ignore").drop_duplicates(
        c.PATIENT_ID, keep="first"
    )
    patients = patients.set_index(c.PATIENT_ID)
    absent = tuple(s for s in schema.site_columns() if s not in frame.columns)
    logger.info("mapping: %d patients from %s", len(patients), table_path.name)
    return c.ClinicalData(
        patients=patients,
        samples=samples,
        rules=mapping.values,
        relapse_source=(
            None
            if cols.relapse_months is None
            else f"{cols.relapse_months} + {cols.relapse_status} (mapping)"
        ),
        sites_absent=absent,
        source=f"mapping ({table_path.name})",
    )
