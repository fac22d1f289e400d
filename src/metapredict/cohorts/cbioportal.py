"""cBioPortal clinical files: ``data_clinical_patient.txt`` and ``data_clinical_sample.txt``.

Format: tab-separated; four ``#`` metadata lines (display names, descriptions, datatypes,
priorities), then the attribute ids as column names, then one row per patient (``PATIENT_ID``)
or per sample (``SAMPLE_ID``, ``PATIENT_ID``). Files without the four ``#`` lines are accepted
when the column row is valid; any other number of ``#`` lines is a malformed header.

Attributes used (first column present wins, per row):

* site flags ``DMETS_DX_<CODE>`` (Yes/No/Unknown), codes from the schema's site metadata;
* relapse: a ``<PAIR>_MONTHS`` + ``<PAIR>_STATUS`` pair (``DFS``, ``RFS``, ``PFS``, ...);
* cancer type: ``CANCER_TYPE_DETAILED``, ``CANCER_TYPE``, ``ONCOTREE_CODE``;
* stage: see :data:`STAGE_COLUMNS`; age: see :data:`AGE_COLUMNS`; ``SAMPLE_TYPE``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final, Literal

import pandas as pd

from metapredict import schema
from metapredict.cohorts import clinical as c
from metapredict.cohorts.errors import CohortInputError

logger = logging.getLogger(__name__)

METADATA_LINES: Final = 4
SITE_PREFIX: Final = "DMETS_DX_"
STAGE_COLUMNS: Final = (
    "AJCC_PATHOLOGIC_TUMOR_STAGE",
    "PATH_STAGE",
    "PATHOLOGIC_STAGE",
    "AJCC_STAGE",
    "STAGE",
    "TUMOR_STAGE",
    "CLINICAL_STAGE",
    "STAGE_AT_DIAGNOSIS",
    "STAGE_HIGHEST_RECORDED",
)
AGE_COLUMNS: Final = (
    "AGE",
    "AGE_AT_DIAGNOSIS",
    "AGE_AT_DX",
    "DIAGNOSIS_AGE",
    "AGE_AT_INITIAL_PATHOLOGIC_DIAGNOSIS",
)
CANCER_TYPE_COLUMNS: Final = {
    "cancer_type_detailed": "CANCER_TYPE_DETAILED",
    "cancer_type": "CANCER_TYPE",
    "oncotree_code": "ONCOTREE_CODE",
}
#: Pairs tried, in order, when ``--relapse-pair`` is not given (distant-relapse-like first).
#: ``OS`` is never chosen automatically: death is not relapse.
RELAPSE_PAIR_PREFERENCE: Final = ("DMFS", "DRFS", "MFS", "RFS", "DFS", "PFS")

Kind = Literal["patient", "sample"]


def read_cbioportal_file(path: Path, *, kind: Kind) -> pd.DataFrame:
    """Read one cBioPortal clinical file as text; malformed headers raise clear errors."""
    if not path.exists():
        raise CohortInputError(f"no such file: {path}")
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        lines = [line.rstrip("\r\n") for line in handle]
    n_meta = 0
    while n_meta < len(lines) and lines[n_meta].startswith("#"):
        n_meta += 1
    if n_meta not in (0, METADATA_LINES):
        raise CohortInputError(
            f"{path.name}: malformed cBioPortal header: expected {METADATA_LINES} lines "
            f"starting with '#' before the column names, found {n_meta}"
        )
    if n_meta >= len(lines) or not lines[n_meta].strip():
        raise CohortInputError(f"{path.name}: no column-name line after the '#' header")
    header = lines[n_meta].split("\t")
    required = ["PATIENT_ID"] if kind == "patient" else ["SAMPLE_ID", "PATIENT_ID"]
    missing = [col for col in required if col not in header]
    if missing:
        hint = (
            " (is it comma-separated? cBioPortal files are tab-separated)"
            if (len(header) == 1)
            else ""
        )
        raise CohortInputError(
            f"{path.name}: not a cBioPortal {kind} file: column(s) {', '.join(missing)} "
            f"missing from the column-name line{hint}"
        )
    for number, line in enumerate(lines[:n_meta], start=1):
        if len(line.split("\t")) != len(header):
            raise CohortInputError(
                f"{path.name}: malformed cBioPortal header: '#' line {number} has "
                f"{len(line.split(chr(9)))} fields but the column-name line has {len(header)}"
            )
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            dtype=str,
            keep_default_na=False,
            skiprows=n_meta,
            encoding="utf-8-sig",
        )
    except pd.errors.ParserError as err:
        raise CohortInputError(f"{path.name}: cannot parse the table: {err}") from err
    frame.columns = [str(col).strip() for col in frame.columns]
    frame["PATIENT_ID"] = frame["PATIENT_ID"].str.strip()
    if (frame["PATIENT_ID"] == "").any():
        raise CohortInputError(f"{path.name}: some rows have no PATIENT_ID")
    return frame


def site_codes() -> dict[str, str]:
    """Schema site column -> cBioPortal column, e.g. site_brain -> DMETS_DX_CNS_BRAIN."""
    return {
        info.name: f"{SITE_PREFIX}{info.label}"
        for info in schema.columns(schema.Cohort)
        if info.group == "site" and info.label
    }


def relapse_pairs(*frames: pd.DataFrame | None) -> list[str]:
    """Survival pairs present as ``<P>_MONTHS`` + ``<P>_STATUS`` across the frames."""
    names = {col for frame in frames if frame is not None for col in frame.columns}
    return sorted(
        col.removesuffix("_MONTHS")
        for col in names
        if col.endswith("_MONTHS") and f"{col.removesuffix('_MONTHS')}_STATUS" in names
    )


def choose_relapse_pair(requested: str | None, available: list[str]) -> str | None:
    """The requested pair, else the first of :data:`RELAPSE_PAIR_PREFERENCE` present, else None
    (a cohort without relapse labels: it can train tropism only)."""
    if requested is not None:
        pair = requested.upper().removesuffix("_MONTHS").removesuffix("_STATUS")
        if pair not in available:
            raise CohortInputError(
                f"relapse pair {pair}: no {pair}_MONTHS + {pair}_STATUS columns in the clinical "
                f"files (available: {', '.join(available) or 'none'})"
            )
        return pair
    for pair in RELAPSE_PAIR_PREFERENCE:
        if pair in available:
            return pair
    return None


def _canonical(frame: pd.DataFrame, pair: str | None, id_column: str) -> pd.DataFrame:
    text = c.blank_missing(frame)
    out = pd.DataFrame(index=pd.Index(text[id_column].astype(str), name=id_column.lower()))
    values = text.set_index(id_column)
    for name, column in CANCER_TYPE_COLUMNS.items():
        if column in values:
            out[name] = values[column].to_numpy()
    if any(col in values for col in STAGE_COLUMNS):
        out[c.STAGE] = c.first_present(values, STAGE_COLUMNS).to_numpy()
    if any(col in values for col in AGE_COLUMNS):
        out[c.AGE] = c.first_present(values, AGE_COLUMNS).to_numpy()
    if f"{pair}_MONTHS" in values:
        out[c.MONTHS] = values[f"{pair}_MONTHS"].to_numpy()
    if f"{pair}_STATUS" in values:
        out[c.STATUS] = values[f"{pair}_STATUS"].to_numpy()
    if "SAMPLE_TYPE" in values:
        out[c.SAMPLE_TYPE] = values["SAMPLE_TYPE"].to_numpy()
    for site, column in site_codes().items():
        if column in values:
            out[site] = values[column].to_numpy()
    for extra in schema.extra_columns():
        if extra.upper() in values:
            out[extra] = values[extra.upper()].to_numpy()
    if id_column == "SAMPLE_ID":
        out[c.PATIENT_ID] = values["PATIENT_ID"].to_numpy()
    return out


def load_cbioportal(
    patient_path: Path,
    sample_path: Path | None = None,
    *,
    relapse_pair: str | None = None,
) -> c.ClinicalData:
    """Read the patient (and optional sample) file into canonical raw-text frames."""
    patients_raw = read_cbioportal_file(patient_path, kind="patient")
    samples_raw: pd.DataFrame | None = None
    notes: list[str] = []
    combined = False
    if sample_path is not None:
        samples_raw = read_cbioportal_file(sample_path, kind="sample")
    elif "SAMPLE_ID" in patients_raw.columns:
        samples_raw = patients_raw
        combined = True
        notes.append(f"{patient_path.name} has SAMPLE_ID: used as the sample file as well")

    available = relapse_pairs(patients_raw, samples_raw)
    pair = choose_relapse_pair(relapse_pair, available)
    if pair == "OS":
        notes.append("relapse pair OS: overall survival treats death as relapse")
    if pair is None:
        notes.append(
            "no relapse pair (e.g. DFS_MONTHS + DFS_STATUS"
            + (
                f"; OS is never chosen unless asked: {', '.join(available)} present"
                if available
                else ""
            )
            + "): the cohort carries no relapse labels"
        )

    if combined:
        first = patients_raw.drop_duplicates("PATIENT_ID", keep="first")
        patients = _canonical(first, pair, "PATIENT_ID")
    else:
        dup = patients_raw["PATIENT_ID"].duplicated()
        if dup.any():
            raise CohortInputError(
                f"{patient_path.name}: PATIENT_ID values repeat ({int(dup.sum())} rows); "
                "a patient file has one row per patient (pass per-sample files as "
                "--sample-clinical)"
            )
        patients = _canonical(patients_raw, pair, "PATIENT_ID")
    samples = None
    if samples_raw is not None:
        dup = samples_raw["SAMPLE_ID"].duplicated()
        if dup.any():
            raise CohortInputError(
                f"{(sample_path or patient_path).name}: SAMPLE_ID values repeat "
                f"({int(dup.sum())} rows)"
            )
        samples = _canonical(samples_raw, pair, "SAMPLE_ID")

    provided = set(patients.columns) | (set(samples.columns) if samples is not None else set())
    if pair is not None and (c.MONTHS not in provided or c.STATUS not in provided):
        raise CohortInputError(f"relapse pair {pair}: months or status column missing")
    absent = tuple(s for s in schema.site_columns() if s not in provided)
    if len(absent) == len(schema.site_columns()) and pair is None:
        raise CohortInputError(
            f"{patient_path.name}: no labels for either task: no site columns "
            f"({SITE_PREFIX}<SITE>, e.g. {next(iter(site_codes().values()))}) for tropism and "
            "no relapse pair (e.g. DFS_MONTHS + DFS_STATUS) for dormancy"
        )
    logger.info(
        "cBioPortal: %d patients, %s samples, relapse pair %s",
        len(patients),
        "no" if samples is None else len(samples),
        pair or "none",
    )
    return c.ClinicalData(
        patients=patients,
        samples=samples,
        rules=c.ValueRules(),
        relapse_source=None if pair is None else f"{pair}_MONTHS + {pair}_STATUS",
        sites_absent=absent,
        source="cBioPortal",
        notes=notes,
    )
