"""The one definition of a patient's immune-infiltrate profile and outcomes.

Every other module derives its column lists, bounds and vocabularies from the pandera models
below; nothing re-types a column name. Variants are built by inheritance:

* :class:`Features`: what a model sees (relative LM22 fractions, optional extras, clinical);
* :class:`AbsoluteFeatures`: the same with CIBERSORTx absolute-mode scores (sum free);
* :class:`Cohort`: features plus outcome labels, as used for training, plus optional ``qc``
  columns (sample id, CIBERSORT P-value/Correlation/RMSE) that real cohorts carry;
* :class:`SimulatedCohort`: a cohort (without ``qc`` columns) plus the simulator's
  ``oracle_*`` ground truth.

Schema 1.1.0 added the optional ``qc`` group (additive; 1.0.0 frames still validate).
Schema 2.0.0 opened the vocabulary to real studies: any normalised cancer-type label, stage I-IV
or missing, age missing, and labels per task (site columns and the relapse pair are each
optional in a :class:`Cohort`; a task needs only its own).

``validate(frame, model)`` checks a frame against a model and raises
:class:`CohortValidationError` listing every failing row, column and rule at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, Literal, cast

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series

SCHEMA_VERSION: Final = "2.0.0"

#: Tolerance on the row sum of relative LM22 fractions (CIBERSORT rounds to a few decimals).
FRACTION_SUM_TOLERANCE: Final = 0.02
#: Upper bound of one CIBERSORTx absolute-mode score.
ABSOLUTE_SCORE_MAX: Final = 10.0

#: A cancer type is any label in lowercase snake case (see :mod:`metapredict.cancer_types`).
CANCER_TYPE_PATTERN: Final = r"^[a-z0-9]+(?:_[a-z0-9]+)*$"
#: AJCC stage groups, in order (a missing stage is allowed).
STAGES: Final = ("I", "II", "III", "IV")
#: Stage IV is metastatic at diagnosis: the dormancy task is for resected stage I-III primaries.
METASTATIC_STAGE: Final = "IV"

# Field metadata keys (read back by the derived lists below and by the serving request model).
_GROUP = "group"
_LABEL = "label"  # the CIBERSORT LM22 label, or cBioPortal site code
_UNIT = "unit"
_DESCRIPTION = "description"
_CATEGORICAL = "categorical"  # a clinical column encoded by category (its codes per model)

Group = Literal["lm22", "extra", "clinical", "site", "survival", "id", "oracle", "qc"]


def _lm22(label: str) -> Any:
    return pa.Field(
        ge=0.0,
        le=1.0,
        metadata={
            _GROUP: "lm22",
            _LABEL: label,
            _UNIT: "fraction",
            _DESCRIPTION: f"CIBERSORT LM22 '{label}' fraction of leukocytes",
        },
    )


def _extra(lo: float, hi: float, unit: str, description: str) -> Any:
    return pa.Field(
        ge=lo,
        le=hi,
        nullable=True,
        metadata={_GROUP: "extra", _UNIT: unit, _DESCRIPTION: description},
    )


def _site(msk_code: str) -> Any:
    return pa.Field(
        metadata={
            _GROUP: "site",
            _LABEL: msk_code,
            _DESCRIPTION: f"distant metastasis involves this organ (MSK-MET {msk_code})",
        }
    )


def _qc(lo: float, hi: float | None, label: str, description: str) -> Any:
    return pa.Field(
        ge=lo,
        le=hi,
        nullable=True,
        metadata={_GROUP: "qc", _LABEL: label, _DESCRIPTION: description},
    )


def _oracle(description: str) -> Any:
    return pa.Field(ge=0.0, le=1.0, metadata={_GROUP: "oracle", _DESCRIPTION: description})


class _ProfileBase(pa.DataFrameModel):
    """LM22 fractions, optional extras and clinical covariates; no rule on the fraction sum."""

    b_cells_naive: Series[float] = _lm22("B cells naive")
    b_cells_memory: Series[float] = _lm22("B cells memory")
    plasma_cells: Series[float] = _lm22("Plasma cells")
    t_cells_cd8: Series[float] = _lm22("T cells CD8")
    t_cells_cd4_naive: Series[float] = _lm22("T cells CD4 naive")
    t_cells_cd4_memory_resting: Series[float] = _lm22("T cells CD4 memory resting")
    t_cells_cd4_memory_activated: Series[float] = _lm22("T cells CD4 memory activated")
    t_cells_follicular_helper: Series[float] = _lm22("T cells follicular helper")
    t_cells_regulatory: Series[float] = _lm22("T cells regulatory (Tregs)")
    t_cells_gamma_delta: Series[float] = _lm22("T cells gamma delta")
    nk_cells_resting: Series[float] = _lm22("NK cells resting")
    nk_cells_activated: Series[float] = _lm22("NK cells activated")
    monocytes: Series[float] = _lm22("Monocytes")
    macrophages_m0: Series[float] = _lm22("Macrophages M0")
    macrophages_m1: Series[float] = _lm22("Macrophages M1")
    macrophages_m2: Series[float] = _lm22("Macrophages M2")
    dendritic_cells_resting: Series[float] = _lm22("Dendritic cells resting")
    dendritic_cells_activated: Series[float] = _lm22("Dendritic cells activated")
    mast_cells_resting: Series[float] = _lm22("Mast cells resting")
    mast_cells_activated: Series[float] = _lm22("Mast cells activated")
    eosinophils: Series[float] = _lm22("Eosinophils")
    neutrophils: Series[float] = _lm22("Neutrophils")

    mdsc_score: Series[float] | None = _extra(
        -10.0, 10.0, "z-score", "myeloid-derived suppressor cell signature z-score"
    )
    platelet_count: Series[float] | None = _extra(5.0, 2000.0, "10^9/L", "blood platelet count")
    neutrophil_lymphocyte_ratio: Series[float] | None = _extra(
        0.05, 100.0, "ratio", "blood neutrophil-to-lymphocyte ratio"
    )
    leukocyte_fraction: Series[float] | None = _extra(
        0.0, 1.0, "fraction", "immune (leukocyte) share of the sample"
    )

    cancer_type: Series[str] = pa.Field(
        str_matches=CANCER_TYPE_PATTERN,
        metadata={
            _GROUP: "clinical",
            _CATEGORICAL: True,
            _DESCRIPTION: "primary tumour type, a lowercase snake-case label (e.g. breast, "
            "gastric, head_and_neck)",
        },
    )
    stage: Series[str] | None = pa.Field(
        isin=list(STAGES),
        nullable=True,
        metadata={
            _GROUP: "clinical",
            _CATEGORICAL: True,
            _DESCRIPTION: "AJCC stage group at diagnosis (IV: metastatic at diagnosis); "
            "null when unknown",
        },
    )
    age_years: Series[float] | None = pa.Field(
        ge=18.0,
        le=100.0,
        coerce=True,
        nullable=True,
        metadata={
            _GROUP: "clinical",
            _UNIT: "years",
            _DESCRIPTION: "age at diagnosis; null when unknown",
        },
    )

    class Config:
        strict = False
        coerce = False


def _all_true(df: pd.DataFrame) -> Series[bool]:
    return cast(Series[bool], pd.Series(True, index=df.index))


class Features(_ProfileBase):
    """What a model sees, with relative LM22 fractions (each row sums to 1)."""

    @pa.dataframe_check
    @classmethod
    def lm22_fractions_sum_to_one(cls, df: pd.DataFrame) -> Series[bool]:
        if not set(lm22_columns()) <= set(df.columns):
            return _all_true(df)  # the missing column is reported on its own
        total = df[list(lm22_columns())].sum(axis=1)
        return cast(Series[bool], (total - 1.0).abs() <= FRACTION_SUM_TOLERANCE)


class AbsoluteFeatures(_ProfileBase):
    """CIBERSORTx absolute mode: each score is non-negative, the row sum is free.

    Absolute scores can exceed 1, so the per-cell bound is [0, ABSOLUTE_SCORE_MAX] instead of
    [0, 1] (the LM22 fields are re-checked in :meth:`to_schema`; no rule on the row sum).
    """

    @classmethod
    def to_schema(cls) -> pa.DataFrameSchema:
        return _absolute(super().to_schema())


def _absolute(relative: pa.DataFrameSchema) -> pa.DataFrameSchema:
    checks = [pa.Check.ge(0.0), pa.Check.le(ABSOLUTE_SCORE_MAX)]
    return relative.update_columns({c: {"checks": checks} for c in lm22_columns()})


class _Labels(pa.DataFrameModel):
    patient_id: Series[str] = pa.Field(
        unique=True, metadata={_GROUP: "id", _DESCRIPTION: "patient identifier"}
    )
    site_bone: Series[bool] | None = _site("BONE")
    site_lung: Series[bool] | None = _site("LUNG")
    site_liver: Series[bool] | None = _site("LIVER")
    site_brain: Series[bool] | None = _site("CNS_BRAIN")
    site_distant_lymph_node: Series[bool] | None = _site("DIST_LN")
    site_pleura: Series[bool] | None = _site("PLEURA")
    site_adrenal_gland: Series[bool] | None = _site("ADRENAL_GLAND")
    site_intra_abdominal: Series[bool] | None = _site("INTRA_ABDOMINAL")
    distant_relapse_months: Series[float] | None = pa.Field(
        ge=0.0,
        coerce=True,
        metadata={
            _GROUP: "survival",
            _UNIT: "months",
            _DESCRIPTION: "months to first distant relapse, or to last follow-up if censored",
        },
    )
    distant_relapse: Series[bool] | None = pa.Field(
        metadata={_GROUP: "survival", _DESCRIPTION: "distant relapse observed (else censored)"}
    )

    @pa.dataframe_check
    @classmethod
    def no_site_without_distant_relapse(cls, df: pd.DataFrame) -> Series[bool]:
        present = [c for c in site_columns() if c in df.columns]
        if not present or "distant_relapse" not in df.columns:
            return _all_true(df)  # a cohort without sites or without the relapse pair
        any_site = df[present].any(axis=1)
        return cast(Series[bool], ~any_site | df["distant_relapse"])


class _QualityControl(pa.DataFrameModel):
    """Optional per-sample deconvolution QC carried over from CIBERSORT(x) result tables.

    Never model inputs (group ``qc`` is outside :func:`feature_columns`); kept so users can
    filter or stratify a real cohort by fit quality after it is built.
    """

    sample_id: Series[str] | None = pa.Field(
        nullable=True,
        metadata={_GROUP: "qc", _DESCRIPTION: "id of the profiled sample (immune table row)"},
    )
    cibersort_p_value: Series[float] | None = _qc(
        0.0, 1.0, "P-value", "CIBERSORT permutation p-value of the fit"
    )
    cibersort_correlation: Series[float] | None = _qc(
        -1.0, 1.0, "Correlation", "Pearson r between the mixture and the fitted profile"
    )
    cibersort_rmse: Series[float] | None = _qc(
        0.0, None, "RMSE", "root mean squared error of the fit (standardised scale)"
    )
    cibersort_absolute_score: Series[float] | None = _qc(
        0.0, None, "Absolute score (sig.score)", "CIBERSORTx absolute-mode total score"
    )


class _CohortCore(Features, _Labels):
    """Relative features plus organ-site and relapse labels (shared by real and simulated)."""


class Cohort(_QualityControl, _CohortCore):
    """A training cohort: relative features plus organ-site and relapse labels.

    Real cohorts may also carry the optional ``qc`` columns (sample id, CIBERSORT fit quality).
    """


class AbsoluteCohort(_QualityControl, AbsoluteFeatures, _Labels):
    """A training cohort whose LM22 columns are CIBERSORTx absolute scores."""


class SimulatedCohort(_CohortCore):
    """A simulated cohort: labels plus each patient's true probabilities (the oracle)."""

    oracle_site_bone: Series[float] = _oracle("true P(bone involved | distant relapse)")
    oracle_site_lung: Series[float] = _oracle("true P(lung involved | distant relapse)")
    oracle_site_liver: Series[float] = _oracle("true P(liver involved | distant relapse)")
    oracle_site_brain: Series[float] = _oracle("true P(brain involved | distant relapse)")
    oracle_site_distant_lymph_node: Series[float] = _oracle(
        "true P(distant lymph node involved | distant relapse)"
    )
    oracle_site_pleura: Series[float] = _oracle("true P(pleura involved | distant relapse)")
    oracle_site_adrenal_gland: Series[float] = _oracle(
        "true P(adrenal gland involved | distant relapse)"
    )
    oracle_site_intra_abdominal: Series[float] = _oracle(
        "true P(intra-abdominal site involved | distant relapse)"
    )
    oracle_risk_36: Series[float] = _oracle("true P(distant relapse by 36 months)")
    oracle_risk_60: Series[float] = _oracle("true P(distant relapse by 60 months)")
    oracle_risk_120: Series[float] = _oracle("true P(distant relapse by 120 months)")
    oracle_late_relapse: Series[float] = _oracle(
        "true P(relapse in (60, 120] months | relapse-free at 60 months)"
    )


# --------------------------------------------------------------------------------------------
# Column lists derived from the models (never typed a second time).


@dataclass(frozen=True)
class ColumnInfo:
    """What the schema says about one column."""

    name: str
    group: str
    dtype: str
    nullable: bool
    required: bool
    minimum: float | None
    maximum: float | None
    allowed: tuple[str, ...] | None
    label: str | None
    unit: str | None
    description: str
    categorical: bool = False


@cache
def columns(model: type[pa.DataFrameModel] = SimulatedCohort) -> tuple[ColumnInfo, ...]:
    """Every column of ``model`` with its bounds, vocabulary and metadata, in declaration order."""
    schema = model.to_schema()
    out: list[ColumnInfo] = []
    for name, column in schema.columns.items():
        meta: Mapping[str, Any] = column.metadata or {}
        minimum = maximum = None
        allowed: tuple[str, ...] | None = None
        for check in column.checks:
            stats = check.statistics or {}
            if "min_value" in stats:
                minimum = float(stats["min_value"])
            if "max_value" in stats:
                maximum = float(stats["max_value"])
            if "allowed_values" in stats:
                allowed = tuple(str(v) for v in stats["allowed_values"])
        out.append(
            ColumnInfo(
                name=str(name),
                group=str(meta.get(_GROUP, "")),
                dtype=str(column.dtype),
                nullable=bool(column.nullable),
                required=bool(column.required),
                minimum=minimum,
                maximum=maximum,
                allowed=allowed,
                label=meta.get(_LABEL),
                unit=meta.get(_UNIT),
                description=str(meta.get(_DESCRIPTION, "")),
                categorical=bool(meta.get(_CATEGORICAL, False)),
            )
        )
    return tuple(out)


def _names(group: str, model: type[pa.DataFrameModel] = SimulatedCohort) -> tuple[str, ...]:
    return tuple(c.name for c in columns(model) if c.group == group)


@cache
def lm22_columns() -> tuple[str, ...]:
    """The 22 LM22 fraction columns, in CIBERSORT's order."""
    return _names("lm22")


@cache
def lm22_labels() -> dict[str, str]:
    """CIBERSORT output label -> metapredict column."""
    return {str(c.label): c.name for c in columns() if c.group == "lm22"}


@cache
def extra_columns() -> tuple[str, ...]:
    """Optional, nullable extras (MDSC score, blood counts, leukocyte fraction)."""
    return _names("extra")


@cache
def clinical_columns() -> tuple[str, ...]:
    return _names("clinical")


@cache
def categorical_columns() -> tuple[str, ...]:
    """Clinical columns encoded by category (cancer type: open vocabulary; stage: I-IV)."""
    return tuple(c.name for c in columns() if c.categorical)


@cache
def feature_columns() -> tuple[str, ...]:
    """Every column a model may use as input, in schema order."""
    return lm22_columns() + extra_columns() + clinical_columns()


@cache
def site_columns() -> tuple[str, ...]:
    """``site_<organ>`` label columns."""
    return _names("site")


@cache
def sites() -> tuple[str, ...]:
    """Organ names, e.g. ``bone``, ``lung``."""
    return tuple(c.removeprefix("site_") for c in site_columns())


@cache
def survival_columns() -> tuple[str, str]:
    months, event = _names("survival")
    return months, event


@cache
def oracle_columns() -> tuple[str, ...]:
    return _names("oracle")


@cache
def qc_columns() -> tuple[str, ...]:
    """Optional deconvolution QC columns (sample id, CIBERSORT P-value, Correlation, RMSE)."""
    return _names("qc", Cohort)


@cache
def qc_labels() -> dict[str, str]:
    """CIBERSORT(x) result-table label (``P-value``, ``Correlation``, ...) -> QC column."""
    return {str(c.label): c.name for c in columns(Cohort) if c.group == "qc" and c.label}


def column_info(name: str) -> ColumnInfo:
    for info in (*columns(), *columns(Cohort)):
        if info.name == name:
            return info
    raise KeyError(name)


def metastatic_at_diagnosis(cohort: pd.DataFrame) -> pd.Series:
    """Patients with distant disease at diagnosis: stage IV, or a distant relapse at month 0
    (the same thing when the stage was not recorded). Dormancy is for the others."""
    months, event = survival_columns()
    if "stage" in cohort.columns:
        stage_iv = cohort["stage"].astype(object).eq(METASTATIC_STAGE)
    else:
        stage_iv = pd.Series(False, index=cohort.index)
    at_zero = cohort[event].astype(bool) & (cohort[months].astype(float) <= 0.0)
    result: pd.Series = (stage_iv | at_zero).astype(bool).rename("metastatic_at_diagnosis")
    return result


# --------------------------------------------------------------------------------------------
# Validation with errors a researcher can read.


@dataclass(frozen=True)
class Violation:
    """One broken rule: which row (index label), which column, which rule, which value."""

    row: Any
    column: str | None
    rule: str
    value: Any

    def describe(self) -> str:
        parts = [] if self.row is None else [f"row {self.row!r}"]
        if self.column:
            parts.append(f"column '{self.column}'")
        value = "" if self.value is None else f" (found {_fmt(self.value)})"
        return f"{', '.join(parts) or 'table'}: {self.rule}{value}"


class CohortValidationError(ValueError):
    """Raised when a frame breaks the schema; carries every violation found."""

    def __init__(self, violations: list[Violation], model: str) -> None:
        self.violations = violations
        self.model = model
        super().__init__(self.summary())

    def summary(self, limit: int = 20) -> str:
        n = len(self.violations)
        rows = {v.row for v in self.violations if v.row is not None}
        head = (
            f"{n} schema violation{'s' if n != 1 else ''} in {len(rows)} row"
            f"{'s' if len(rows) != 1 else ''} ({self.model}, schema {SCHEMA_VERSION}):"
        )
        lines = [head] + [f"  - {v.describe()}" for v in self.violations[:limit]]
        if n > limit:
            lines.append(f"  ... and {n - limit} more")
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    return repr(value)


def rule_text(check: str, column: str | None) -> str:
    """Turn a pandera check identifier into words."""
    info: ColumnInfo | None = None
    if column is not None:
        try:
            info = column_info(column)
        except KeyError:
            info = None
    unit = f" {info.unit}" if info is not None and info.unit and info.unit != "fraction" else ""
    if check.startswith("greater_than_or_equal_to("):
        return f"must be at least {_fmt(float(check[25:-1]))}{unit}"
    if check.startswith("less_than_or_equal_to("):
        return f"must be at most {_fmt(float(check[22:-1]))}{unit}"
    if check.startswith("str_matches("):
        return "must be a lowercase snake-case label (letters, digits and single underscores)"
    if check.startswith("isin("):
        allowed = ", ".join(info.allowed) if info is not None and info.allowed else check[5:-1]
        return f"must be one of: {allowed}"
    if check == "not_nullable":
        return "is required and may not be empty (NaN/null)"
    if check == "field_uniqueness":
        return "must be unique, but the value appears more than once"
    if check == "column_in_dataframe":
        return "is a required column but is missing"
    if check.startswith("dtype("):
        return f"has the wrong type: expected {check[6:-1]}"
    if check.startswith("coerce_dtype("):
        return f"cannot be converted to {check[13:-1]}"
    if check == "lm22_fractions_sum_to_one":
        return f"the 22 LM22 fractions must sum to 1 (within {FRACTION_SUM_TOLERANCE})"
    if check == "no_site_without_distant_relapse":
        return "a metastatic site is marked but distant_relapse is false"
    return check


def _violations(err: SchemaErrors, frame: pd.DataFrame) -> list[Violation]:
    out: list[Violation] = []
    seen_row_rules: set[tuple[str, Any]] = set()
    for rec in err.failure_cases.to_dict(orient="records"):
        raw_column = rec.get("column")
        column = None if raw_column is None or isinstance(raw_column, float) else str(raw_column)
        check = str(rec.get("check"))
        index = rec.get("index")
        row = None if index is None or (isinstance(index, float) and math.isnan(index)) else index
        value = rec.get("failure_case")
        if check == "column_in_dataframe":
            column, value = str(value), None
        elif rec.get("schema_context") == "DataFrameSchema" and row is not None:
            # A row-level rule: pandera reports it once per column; report it once per row.
            if (check, row) in seen_row_rules:
                continue
            seen_row_rules.add((check, row))
            column = None
            value = None
            if check == "lm22_fractions_sum_to_one" and row in frame.index:
                value = float(frame.loc[row, list(lm22_columns())].sum())
                rule = rule_text(check, None) + "; use absolute mode for CIBERSORTx absolute scores"
                out.append(Violation(row=row, column=None, rule=rule, value=value))
                continue
        out.append(Violation(row=row, column=column, rule=rule_text(check, column), value=value))
    return out


def validate(
    frame: pd.DataFrame,
    model: type[pa.DataFrameModel] = Cohort,
    *,
    extra_columns_allowed: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Validate ``frame`` against ``model``; return it (coerced) or raise with every violation.

    Columns the schema does not know are rejected unless named in ``extra_columns_allowed``
    (pass ``()`` to reject all, ``None`` to ignore unknown columns).
    """
    violations: list[Violation] = []
    if extra_columns_allowed is not None:
        known = {c.name for c in columns(model)} | set(extra_columns_allowed)
        violations += [
            Violation(row=None, column=str(c), rule="is not a column the schema knows", value=None)
            for c in frame.columns
            if c not in known
        ]
    months, event = survival_columns()
    if any(c.group == "survival" for c in columns(model)) and (months in frame.columns) != (
        event in frame.columns
    ):
        absent = event if months in frame.columns else months
        violations.append(
            Violation(
                row=None,
                column=absent,
                rule=f"the relapse pair comes together: {months} and {event}, or neither",
                value=None,
            )
        )
    try:
        validated = model.validate(frame, lazy=True)
    except SchemaErrors as err:
        violations += _violations(err, frame)
    if violations:
        raise CohortValidationError(violations, model.__name__)
    return cast(pd.DataFrame, validated)
