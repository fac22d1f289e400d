"""Join an immune table with clinical data, explain every dropped row, validate the result.

Decisions (documented in ``docs/real-cohorts.md``):

* **Matching.** An immune sample id matches, in order: a clinical ``SAMPLE_ID``; for TCGA
  barcodes (dots read as dashes), the 15-character sample barcode; a ``PATIENT_ID``; the
  12-character TCGA patient barcode.
* **Several samples per patient.** Normal-tissue samples (TCGA codes 10-19, ``SAMPLE_TYPE``
  containing "normal") are dropped. Of the rest, a primary-tumour sample is preferred, then a
  sample of unknown type, then a metastasis/recurrence; ties keep the first in the immune file.
  The others are listed in the report as duplicates.
* **Labels per task.** The cohort carries the labels its files carry: the site columns the
  files provide (any subset of the eight; a site with no column is left out, not set to "not
  involved"), and the relapse pair when there is one. The report says which task each label
  set can train; a cohort with neither is refused.
* **Missing site flag for a relapsed patient** ("Unknown", "NA"): treated as *not involved*,
  and counted per site in the report. A site flagged "Yes" for a patient whose relapse status
  is censored contradicts the labels; the row is dropped with that reason.
* **Stage IV** patients are kept (tropism trains on them; dormancy training leaves them out).
  A stage IV patient with no relapse time or status is metastatic at diagnosis: distant
  relapse at month 0.
* **Missing stage and age** are kept as missing (the models handle gaps). A missing cancer type
  is a dropped row, as is a missing relapse time or status when the cohort has a relapse pair
  (for any patient but stage IV). Nothing is imputed.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pydantic import BaseModel, Field

from metapredict import schema
from metapredict.cancer_types import normalise_cancer_type
from metapredict.cohorts import clinical as c
from metapredict.cohorts.cibersort import ImmuneTable, Mode
from metapredict.cohorts.errors import CohortInputError
from metapredict.cohorts.values import (
    UnrecognisedCancerType,
    parse_cancer_type,
    parse_flag,
    parse_number,
    parse_stage,
    parse_status,
)

logger = logging.getLogger(__name__)

_TCGA: Final = re.compile(r"^TCGA[-.][A-Z0-9]{2}[-.][A-Z0-9]{4}", re.IGNORECASE)
AGE_RANGE: Final = (
    schema.column_info("age_years").minimum or 18.0,
    schema.column_info("age_years").maximum or 100.0,
)

PRIMARY: Final = 0
UNKNOWN_TYPE: Final = 1
NON_PRIMARY: Final = 2


class DroppedRow(BaseModel):
    id: str
    level: Literal["sample", "patient"]
    reason: str
    detail: str = ""


class DuplicateSamples(BaseModel):
    patient_id: str
    kept: str
    dropped: list[str]


class MatchedSample(BaseModel):
    sample_id: str
    patient_id: str
    matched_by: str


class JoinReport(BaseModel):
    """What the join did; printed by the CLI and optionally written as JSON."""

    schema_version: str = schema.SCHEMA_VERSION
    mode: str
    mode_reason: str
    clinical_source: str
    relapse_source: str | None
    immune_samples: int
    clinical_patients: int
    matched: list[MatchedSample] = Field(default_factory=list)
    unmatched_immune: list[str] = Field(default_factory=list)
    unmatched_clinical: list[str] = Field(default_factory=list)
    duplicates: list[DuplicateSamples] = Field(default_factory=list)
    dropped: list[DroppedRow] = Field(default_factory=list)
    rows: int = 0
    relapsed: int = 0
    site_counts: dict[str, int] = Field(default_factory=dict)
    missing_site_flags_relapsed: dict[str, int] = Field(
        default_factory=dict,
        description="relapsed patients whose flag for the site was missing (set not involved)",
    )
    sites_absent: list[str] = Field(default_factory=list)
    non_primary_samples_kept: int = 0
    ignored_immune_columns: list[str] = Field(default_factory=list)
    stage_counts: dict[str, int] = Field(
        default_factory=dict, description="patients per stage (missing: 'unknown')"
    )
    missing_age: int = 0
    cancer_types: dict[str, int] = Field(default_factory=dict, description="patients per type")
    tasks: dict[str, str] = Field(
        default_factory=dict,
        description="per task, 'yes: ...' when the cohort can train it, else 'no: why'",
    )
    notes: list[str] = Field(default_factory=list)
    valid: bool | None = None

    def dropped_counts(self) -> dict[str, int]:
        return dict(Counter(d.reason for d in self.dropped).most_common())


@dataclass(frozen=True)
class BuildResult:
    frame: pd.DataFrame  # indexed by patient_id (also a column), schema column order
    report: JoinReport
    model: type[pa.DataFrameModel]


def model_for(mode: Mode) -> type[pa.DataFrameModel]:
    return schema.AbsoluteCohort if mode == "absolute" else schema.Cohort


def _tcga(sample_id: str) -> str | None:
    if not _TCGA.match(sample_id):
        return None
    return sample_id.replace(".", "-").upper()


def _rank(sample_type: Any, tcga: str | None) -> int | None:
    """0 primary, 1 unknown, 2 metastasis/recurrence; None for normal tissue."""
    if isinstance(sample_type, str):
        text = sample_type.lower()
        if "normal" in text:
            return None
        if "primary" in text:
            return PRIMARY
        if "metast" in text or "recurr" in text:
            return NON_PRIMARY
    if tcga is not None and len(tcga) >= 15 and tcga[13:15].isdigit():
        code = int(tcga[13:15])
        if 10 <= code <= 19:
            return None
        if code in (1, 3, 5, 9):
            return PRIMARY
        if code in (2, 4, 6, 7):
            return NON_PRIMARY
    return UNKNOWN_TYPE


class _Matcher:
    def __init__(self, clinical: c.ClinicalData) -> None:
        self.patients = clinical.patients
        self.samples = clinical.samples
        self.patient_ids = set(map(str, clinical.patients.index))
        self.patient_by_tcga = {
            key[:12]: pid for pid in self.patient_ids if (key := _tcga(pid)) is not None
        }
        self.sample_by_tcga: dict[str, str] = {}
        #: per patient, the sample row whose attributes describe an immune profile matched by
        #: patient id: the first primary-tumour row, else the first row that is not normal.
        self.representative: dict[str, str] = {}
        if clinical.samples is not None:
            best: dict[str, int] = {}
            types = clinical.samples.get(c.SAMPLE_TYPE)
            for sid, pid in clinical.samples[c.PATIENT_ID].items():
                sid = str(sid)
                key = _tcga(sid)
                if key is not None and len(key) >= 15:
                    self.sample_by_tcga.setdefault(key[:15], sid)
                rank = _rank(None if types is None else types.get(sid), key)
                if rank is not None and rank < best.get(str(pid), 99):
                    best[str(pid)] = rank
                    self.representative[str(pid)] = sid

    def match(self, immune_id: str) -> tuple[str, str | None, str] | None:
        """(patient id, clinical sample id or None, how) for an immune sample id."""
        tcga = _tcga(immune_id)
        if self.samples is not None:
            sid = immune_id if immune_id in self.samples.index else None
            how = "sample id"
            if sid is None and tcga is not None and len(tcga) >= 15:
                sid = self.sample_by_tcga.get(tcga[:15])
                how = "TCGA sample barcode"
            if sid is not None:
                return str(self.samples.at[sid, c.PATIENT_ID]), sid, how
        if immune_id in self.patient_ids:
            return immune_id, None, "patient id"
        if tcga is not None and tcga[:12] in self.patient_by_tcga:
            return self.patient_by_tcga[tcga[:12]], None, "TCGA patient barcode"
        return None


def _merged_row(clinical: c.ClinicalData, patient: str, sample: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if patient in clinical.patients.index:
        row.update(clinical.patients.loc[patient].to_dict())
    if sample is not None and clinical.samples is not None:
        for key, value in clinical.samples.loc[sample].to_dict().items():
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                row[key] = value
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}


class _Drop(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _parse_clinical(
    raw: dict[str, Any],
    rules: c.ValueRules,
    default_cancer_type: str | None,
    *,
    sites: tuple[str, ...],
    relapse: bool,
) -> tuple[dict[str, Any], list[str]]:
    """Parse one merged raw row; returns values and the sites whose flag was missing.

    ``sites`` are the site columns the clinical files provide; ``relapse`` whether they carry
    a relapse pair.
    """
    out: dict[str, Any] = {}
    try:
        cancer = parse_cancer_type(
            [raw.get(name) for name in c.CANCER_TYPE_FIELDS], rules.cancer_type
        )
    except UnrecognisedCancerType as err:
        raise _Drop("cancer type unreadable", str(err)) from err
    cancer = cancer or default_cancer_type
    if cancer is None:
        raise _Drop("cancer type missing")
    out["cancer_type"] = cancer

    try:
        stage = parse_stage(raw.get(c.STAGE), rules.stage)
    except ValueError as err:
        raise _Drop("stage unparseable", str(err)) from err
    out["stage"] = stage

    try:
        age = parse_number(raw.get(c.AGE))
    except ValueError as err:
        raise _Drop("age unparseable", str(err)) from err
    if age is not None and not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
        raise _Drop(f"age outside {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g} years", f"{age:g}")
    out["age_years"] = np.nan if age is None else age

    event: bool | None = None
    if relapse:
        months_col, event_col = schema.survival_columns()
        try:
            months = parse_number(raw.get(c.MONTHS))
        except ValueError as err:
            raise _Drop("follow-up months unparseable", str(err)) from err
        try:
            event = parse_status(raw.get(c.STATUS), true=rules.event_true, false=rules.event_false)
        except ValueError as err:
            raise _Drop("relapse status unparseable", str(err)) from err
        if (months is None or event is None) and stage == schema.METASTATIC_STAGE:
            months, event = 0.0, True  # metastatic at diagnosis
        if months is None:
            raise _Drop("follow-up months missing")
        if months < 0:
            raise _Drop("follow-up months negative", f"{months:g}")
        if event is None:
            raise _Drop("relapse status missing")
        out[months_col] = months * rules.months_per_unit
        out[event_col] = event

    missing_sites: list[str] = []
    for site in sites:
        try:
            flag = parse_flag(raw.get(site), true=rules.site_true, false=rules.site_false)
        except ValueError as err:
            raise _Drop("site flag unparseable", f"{site}: {err}") from err
        if flag is None:
            missing_sites.append(site)
            flag = False
        if flag and event is False:
            raise _Drop("site marked but relapse status censored", site)
        out[site] = flag

    for extra in schema.extra_columns():
        try:
            value = parse_number(raw.get(extra))
        except ValueError as err:
            raise _Drop("extra value unparseable", f"{extra}: {err}") from err
        out[extra] = np.nan if value is None else value
    return out, missing_sites if event is not False else []


def assemble(
    immune: ImmuneTable,
    clinical: c.ClinicalData,
    *,
    max_p_value: float | None = None,
    default_cancer_type: str | None = None,
) -> BuildResult:
    """Join, map and drop with reasons; the frame is not validated yet (see :func:`validate`)."""
    if default_cancer_type is not None:
        try:
            default_cancer_type = normalise_cancer_type(default_cancer_type)
        except ValueError as err:
            raise CohortInputError(f"--cancer-type: {err}") from err
    sites = tuple(s for s in schema.site_columns() if s not in clinical.sites_absent)
    relapse = clinical.relapse_source is not None
    if not sites and not relapse:
        raise CohortInputError(
            f"{clinical.source}: no labels for either task: the clinical data has no site "
            "column (tropism) and no relapse months + status (dormancy)"
        )
    report = JoinReport(
        mode=immune.mode,
        mode_reason=immune.mode_reason,
        clinical_source=clinical.source,
        relapse_source=clinical.relapse_source,
        immune_samples=len(immune.frame),
        clinical_patients=len(clinical.patients),
        sites_absent=list(clinical.sites_absent),
        ignored_immune_columns=list(immune.ignored_columns),
        notes=list(clinical.notes),
    )
    table = immune.frame
    p_values = table.get("cibersort_p_value")
    if max_p_value is not None and (p_values is None or p_values.isna().all()):
        raise CohortInputError(
            "--max-p-value needs P-values, but the immune table has none "
            "(CIBERSORT runs without permutations write 9999; rerun with permutations)"
        )

    matcher = _Matcher(clinical)
    candidates: dict[str, list[tuple[int, int, str, str | None]]] = {}
    for order, sid in enumerate(map(str, table.index)):
        found = matcher.match(sid)
        if found is None:
            report.unmatched_immune.append(sid)
            continue
        patient, clinical_sample, how = found
        report.matched.append(MatchedSample(sample_id=sid, patient_id=patient, matched_by=how))
        if max_p_value is not None and p_values is not None:
            p = float(p_values.iloc[order])
            if np.isnan(p):
                report.dropped.append(DroppedRow(id=sid, level="sample", reason="no P-value"))
                continue
            if p > max_p_value:
                report.dropped.append(
                    DroppedRow(
                        id=sid,
                        level="sample",
                        reason=f"CIBERSORT P-value above {max_p_value:g}",
                        detail=f"{p:.3g}",
                    )
                )
                continue
        sample_type = None
        if (
            clinical_sample is not None
            and clinical.samples is not None
            and c.SAMPLE_TYPE in clinical.samples.columns
        ):
            sample_type = clinical.samples.at[clinical_sample, c.SAMPLE_TYPE]
        rank = _rank(sample_type, _tcga(sid))
        if rank is None:
            report.dropped.append(DroppedRow(id=sid, level="sample", reason="normal tissue sample"))
            continue
        attributes = clinical_sample or matcher.representative.get(patient)
        candidates.setdefault(patient, []).append((rank, order, sid, attributes))
    matched_patients = {m.patient_id for m in report.matched}
    report.unmatched_clinical = [
        str(p) for p in clinical.patients.index if str(p) not in matched_patients
    ]

    rows: list[dict[str, Any]] = []
    missing_flags: Counter[str] = Counter()
    for patient, options in candidates.items():
        options.sort()
        rank, _, sid, clinical_sample = options[0]
        if len(options) > 1:
            report.duplicates.append(
                DuplicateSamples(patient_id=patient, kept=sid, dropped=[o[2] for o in options[1:]])
            )
        raw = _merged_row(clinical, patient, clinical_sample)
        try:
            values, missing_sites = _parse_clinical(
                raw, clinical.rules, default_cancer_type, sites=sites, relapse=relapse
            )
        except _Drop as drop:
            report.dropped.append(
                DroppedRow(id=patient, level="patient", reason=drop.reason, detail=drop.detail)
            )
            continue
        if rank == NON_PRIMARY:
            report.non_primary_samples_kept += 1
        missing_flags.update(missing_sites)
        profile = table.loc[sid]
        row: dict[str, Any] = {"patient_id": patient, "sample_id": sid}
        row.update(values)
        for column in table.columns:
            value = profile[column]
            if column in schema.extra_columns() and np.isnan(value):
                continue  # keep the clinical value of this extra, if any
            row[column] = value
        rows.append(row)

    frame = _to_frame(rows, table.columns, model_for(immune.mode), sites, relapse)
    event_col = schema.survival_columns()[1]
    report.rows = len(frame)
    report.relapsed = int(frame[event_col].sum()) if relapse and len(frame) else 0
    report.site_counts = {site: int(frame[site].sum()) if len(frame) else 0 for site in sites}
    report.missing_site_flags_relapsed = {
        site: missing_flags[site] for site in sites if missing_flags[site]
    }
    _describe(report, frame, sites, relapse)
    if report.non_primary_samples_kept:
        report.notes.append(
            f"{report.non_primary_samples_kept} patient(s) profiled from a metastasis or "
            "recurrence sample (no primary-tumour sample available)"
        )
    logger.info(
        "cohort join: %d immune samples, %d rows kept, %d dropped",
        report.immune_samples,
        report.rows,
        len(report.dropped),
    )
    return BuildResult(frame=frame, report=report, model=model_for(immune.mode))


def _describe(
    report: JoinReport, frame: pd.DataFrame, sites: tuple[str, ...], relapse: bool
) -> None:
    """Stage, age and cancer-type counts, and which task the cohort can train."""
    stages = frame["stage"].astype(object).where(frame["stage"].notna(), "unknown")
    report.stage_counts = {str(k): int(v) for k, v in stages.value_counts().sort_index().items()}
    report.missing_age = int(frame["age_years"].isna().sum())
    counts = frame["cancer_type"].value_counts()
    report.cancer_types = {str(k): int(v) for k, v in counts.items()}
    if sites:
        event_col = schema.survival_columns()[1]
        metastatic = (
            frame[event_col].astype(bool)
            if relapse
            else frame[list(sites)].astype(bool).any(axis=1)
        )
        report.tasks["tropism"] = (
            f"yes: {int(metastatic.sum())} metastatic patient(s), sites "
            + ", ".join(s.removeprefix("site_") for s in sites)
        )
    else:
        report.tasks["tropism"] = "no: no site column in the clinical data"
    if relapse:
        is_iv = (frame["stage"] == schema.METASTATIC_STAGE).fillna(False).astype(bool)
        events = int(frame.loc[~is_iv, schema.survival_columns()[1]].astype(bool).sum())
        stage_iv = int(is_iv.sum())
        report.tasks["dormancy"] = (
            f"yes: {len(frame) - stage_iv} patient(s), {events} distant relapse(s)"
            + (f"; {stage_iv} stage IV patient(s) will be left out" if stage_iv else "")
        )
    else:
        report.tasks["dormancy"] = "no: no relapse months + status in the clinical data"


def _to_frame(
    rows: list[dict[str, Any]],
    immune_columns: pd.Index,
    model: type[pa.DataFrameModel],
    sites: tuple[str, ...],
    relapse: bool,
) -> pd.DataFrame:
    present = set(immune_columns) | {"patient_id", "sample_id"}
    present |= {*schema.clinical_columns(), *sites}
    if relapse:
        present |= set(schema.survival_columns())
    extras = [e for e in schema.extra_columns() if any(not _nan(r.get(e)) for r in rows)]
    present |= set(extras)
    order = [info.name for info in schema.columns(model) if info.name in present]
    frame = pd.DataFrame(rows, columns=order)
    for info in schema.columns(model):
        if info.name not in frame:
            continue
        if info.dtype == "bool":
            frame[info.name] = frame[info.name].astype(bool)
        elif info.dtype == "float64":
            frame[info.name] = pd.to_numeric(frame[info.name]).astype(float)
        else:
            frame[info.name] = frame[info.name].astype(str)  # None stays missing (NaN)
    frame.index = pd.Index(frame["patient_id"].tolist(), name=None)
    return frame


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def validate(result: BuildResult) -> pd.DataFrame:
    """Validate against the schema (raises ``schema.CohortValidationError`` with every issue)."""
    try:
        validated = schema.validate(result.frame, result.model, extra_columns_allowed=())
    except schema.CohortValidationError:
        result.report.valid = False
        raise
    result.report.valid = True
    return validated.reset_index(drop=True)


def build_cohort(
    immune: ImmuneTable,
    clinical: c.ClinicalData,
    *,
    max_p_value: float | None = None,
    default_cancer_type: str | None = None,
) -> tuple[pd.DataFrame, JoinReport]:
    """Assemble and validate; the returned frame is ready for ``write_parquet_atomic``."""
    result = assemble(
        immune, clinical, max_p_value=max_p_value, default_cancer_type=default_cancer_type
    )
    return validate(result), result.report
