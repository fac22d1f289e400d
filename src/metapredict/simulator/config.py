"""Every parameter of the cohort simulator, typed, documented, with the source of each effect.

Effects are expressed per standard deviation of a *predictor*: for an LM22 cell type the
centred log-ratio (CLR) of its fraction, for ``platelet_count`` and
``neutrophil_lymphocyte_ratio`` their logarithm, for the other extras their value. The
standardisation constants come from a fixed reference draw of the same configuration (see
``generate.reference_scales``), so an effect of 0.5 means +0.5 log-odds (or log-hazard) when
that predictor rises by one population standard deviation.

A TOML file can override any part: ``load_config(path)`` deep-merges it over the defaults
(tables merge, arrays replace). Example::

    [relapse.dissemination_logit]
    breast = -0.8

    [[sites.lung.effects]]
    feature = "neutrophils"
    per_sd = 0.7
    source = "stronger than Wculek & Malanchi 2015, for a sensitivity run"

The simulator keeps its own cancer-type vocabulary (:data:`CANCER_TYPES`): the schema accepts
any normalised label, but a generative model needs parameters for each type it draws.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metapredict import schema

SIMULATOR_VERSION = "2.0.0"

#: The primaries the simulator draws (labels as :mod:`metapredict.cancer_types` normalises
#: them); every per-type table of the configuration has exactly these keys.
CANCER_TYPES: Final = (
    "breast",
    "colorectal",
    "lung_adenocarcinoma",
    "melanoma",
    "prostate",
    "pancreatic",
    "gastric",
    "renal",
)
#: Stages of resected primaries (I-III): only these disseminate later from dormant cells.
RESECTED_STAGES: Final = tuple(s for s in schema.STAGES if s != schema.METASTATIC_STAGE)
#: Clinical covariates that the simulator can mask (missing completely at random).
MASKABLE_CLINICAL: Final = ("age_years", "stage")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Effect(_Strict):
    """A main effect of one predictor on one outcome scale."""

    feature: str = Field(description="schema feature column (LM22 cell type or extra)")
    per_sd: float = Field(description="change on the outcome's scale per SD of the predictor")
    source: str = Field(description="publication or modelling choice behind the effect")
    cancer_types: tuple[str, ...] | None = Field(
        None,
        description="restrict the effect to these primaries (context dependence); None = all",
    )


class Interaction(_Strict):
    """A product term of two standardised predictors (context dependence)."""

    features: tuple[str, str]
    per_sd: float = Field(description="change per SD x SD")
    source: str


class SiteModel(_Strict):
    """P(organ involved | distant relapse) for one organ."""

    base_rate: dict[str, float] = Field(
        description="per cancer type, the probability at an average immune profile"
    )
    base_rate_source: str = Field("", description="where the base rates come from")
    effects: list[Effect] = Field(default_factory=list)
    interactions: list[Interaction] = Field(default_factory=list)


class Composition(_Strict):
    """Logistic-normal model of the 22 LM22 fractions.

    log-abundance z = log(base_fraction) + cancer_type_shift + archetype_shift
    + inflammation_loading * u + noise_sd * e, latent fractions = softmax(z). The latent
    fractions are the tumour's true infiltrate; what a deconvolution reports is
    :class:`Detection` applied to them.
    """

    base_fraction: dict[str, float]
    cancer_type_shift: dict[str, dict[str, float]]
    archetypes: dict[str, dict[str, float]] = Field(
        description="latent immune archetypes: log-abundance shifts per cell type"
    )
    archetype_weights: dict[str, dict[str, float]] = Field(
        description="per cancer type, the share of each archetype"
    )
    inflammation_loading: dict[str, float] = Field(
        description="loading of a shared systemic-inflammation factor u ~ N(0, 1)"
    )
    noise_sd: float = Field(gt=0)


class Detection(_Strict):
    """CIBERSORT-like exact zeros: what a deconvolution reports of the latent fractions.

    CIBERSORT fits each sample by nu-support-vector regression on the LM22 signature, clips
    negative weights to zero and renormalises. A cell type present at a share too small to
    separate from its collinear neighbours in the signature (naive vs memory CD4 T cells,
    gamma-delta vs CD8 T cells, resting vs activated dendritic cells) gets a weight at or below
    zero, i.e. an exact 0. The simulator models this as a detection floor per cell type: in
    sample s, a latent fraction below ``floor[c] * exp(sample_quality_sd * q_s)`` is set to 0
    and the row is renormalised (q_s ~ N(0, 1) is the sample's fit quality shared by its 22
    cells: a noisier sample loses more cells). The largest cell of a sample is always kept.
    The floors are calibrated (modelling choice) so that, on the default cohort, the share of
    exact zeros per cell type matches CIBERSORT on bulk tumour RNA-seq: CD4 naive T cells,
    gamma-delta T cells and eosinophils >= 90 %, resting dendritic cells, activated NK cells,
    memory B cells and neutrophils 75-85 %, resting memory CD4 T cells, M0/M2 macrophages and
    resting NK cells almost never, about 45 % of all values overall.
    ``enabled = false`` reports the latent fractions unchanged (no zeros).
    """

    enabled: bool = True
    floor: dict[str, float] = Field(
        description="per LM22 cell type, the latent fraction below which it is reported as 0"
    )
    sample_quality_sd: float = Field(
        ge=0, description="SD of the per-sample log-multiplier of every floor (fit quality)"
    )


class Extras(_Strict):
    """Optional blood and signature features, correlated with the cells they reflect."""

    leukocyte_fraction_logit: dict[str, float] = Field(
        description="per archetype, mean logit of the immune share of the sample"
    )
    leukocyte_fraction_sd: float = Field(gt=0)
    nlr_log_mean: float
    nlr_per_sd_neutrophils: float
    nlr_per_sd_inflammation: float
    nlr_log_sd: float = Field(gt=0)
    platelet_log_mean: float
    platelet_per_sd_inflammation: float
    platelet_log_sd: float = Field(gt=0)
    mdsc_weights: dict[str, float] = Field(
        description="mdsc_score = weighted sum of standardised myeloid CLRs, rescaled, + noise"
    )
    mdsc_noise_sd: float = Field(gt=0)
    missing_rate: dict[str, float] = Field(description="share of patients missing each extra")


class Relapse(_Strict):
    """Cure-mixture model of time to first distant relapse.

    A patient disseminates (will eventually relapse) with probability
    sigmoid(dissemination_logit[type] + stage + age + effects); a disseminated patient's
    dormant cells awaken with a Weibull proportional hazard
    H(t) = (t / scale_months[type]) ** shape[type] * exp(dormancy effects); negative
    dormancy effects lengthen dormancy.

    This is the story of a resected stage I-III primary. A stage IV patient is metastatic at
    diagnosis: relapse observed at month 0 (``distant_relapse_months = 0.0``), oracle risk 1 at
    every horizon and late-relapse probability 0; the organs follow the same site model.
    """

    dissemination_logit: dict[str, float]
    stage_logit: dict[str, float] = Field(description="per resected stage (I-III)")
    age_logit_per_decade: float
    dissemination_effects: list[Effect]
    dissemination_interactions: list[Interaction] = Field(default_factory=list)
    scale_months: dict[str, float]
    shape: dict[str, float]
    dormancy_effects: list[Effect]
    dormancy_interactions: list[Interaction] = Field(default_factory=list)


class Censoring(_Strict):
    """Administrative follow-up (uniform accrual) and loss to follow-up (exponential)."""

    follow_up_min_months: float = Field(gt=0)
    follow_up_max_months: float = Field(gt=0)
    loss_per_year: float = Field(ge=0)


class Clinical(_Strict):
    """Cancer type, AJCC stage group (I-IV) and age at diagnosis, and their missingness."""

    cancer_type_weights: dict[str, float]
    stage_weights: dict[str, dict[str, float]] = Field(
        description="per cancer type, the share of each stage group I-IV (IV: metastatic at "
        "diagnosis)"
    )
    age_mean: dict[str, float]
    age_sd: float = Field(gt=0)
    missing_rate: dict[str, float] = Field(
        description="share of patients whose age_years / stage is missing (completely at "
        "random); outcomes always follow the true values"
    )


class SimulatorConfig(_Strict):
    """The whole generative model. Defaults: :func:`default_config`."""

    version: str = SIMULATOR_VERSION
    clinical: Clinical
    composition: Composition
    detection: Detection
    extras: Extras
    relapse: Relapse
    sites: dict[str, SiteModel]
    site_shared_sd: float = Field(
        ge=0, description="SD of a patient-level latent term shared by all sites (co-occurrence)"
    )
    censoring: Censoring
    reference_patients: int = Field(
        20_000, gt=1000, description="size of the fixed draw that sets the SD scales"
    )

    @model_validator(mode="after")
    def _check_vocabulary(self) -> SimulatorConfig:
        types, stages = set(CANCER_TYPES), set(schema.STAGES)
        cells, features = (
            set(schema.lm22_columns()),
            set(schema.lm22_columns()) | set(schema.extra_columns()),
        )
        problems: list[str] = []

        def need(keys: set[str], expected: set[str], where: str) -> None:
            if keys != expected:
                missing, unknown = sorted(expected - keys), sorted(keys - expected)
                problems.append(f"{where}: missing {missing}, unknown {unknown}")

        need(set(self.clinical.cancer_type_weights), types, "clinical.cancer_type_weights")
        need(set(self.clinical.stage_weights), types, "clinical.stage_weights")
        for t, w in self.clinical.stage_weights.items():
            need(set(w), stages, f"clinical.stage_weights.{t}")
        need(set(self.clinical.age_mean), types, "clinical.age_mean")
        need(set(self.clinical.missing_rate), set(MASKABLE_CLINICAL), "clinical.missing_rate")
        need(set(self.detection.floor), cells, "detection.floor")
        if any(f < 0 for f in self.detection.floor.values()):
            problems.append("detection.floor: floors must be non-negative")
        rates = {
            **{f"clinical.missing_rate.{k}": v for k, v in self.clinical.missing_rate.items()},
            **{f"extras.missing_rate.{k}": v for k, v in self.extras.missing_rate.items()},
        }
        problems += [f"{k}: a rate must lie in [0, 1)" for k, v in rates.items() if not 0 <= v < 1]
        for where, weights in {
            "clinical.cancer_type_weights": self.clinical.cancer_type_weights,
            **{f"clinical.stage_weights.{t}": w for t, w in self.clinical.stage_weights.items()},
            **{
                f"composition.archetype_weights.{t}": w
                for t, w in self.composition.archetype_weights.items()
            },
        }.items():
            if any(v < 0 for v in weights.values()) or sum(weights.values()) <= 0:
                problems.append(f"{where}: weights must be non-negative with a positive sum")
        need(set(self.composition.base_fraction), cells, "composition.base_fraction")
        need(set(self.composition.archetype_weights), types, "composition.archetype_weights")
        for t, w in self.composition.archetype_weights.items():
            need(set(w), set(self.composition.archetypes), f"composition.archetype_weights.{t}")
        for name, shifts in {
            **{f"archetypes.{k}": v for k, v in self.composition.archetypes.items()},
            **{f"cancer_type_shift.{k}": v for k, v in self.composition.cancer_type_shift.items()},
            "inflammation_loading": self.composition.inflammation_loading,
            "extras.mdsc_weights": self.extras.mdsc_weights,
        }.items():
            if not set(shifts) <= cells:
                problems.append(f"{name}: unknown cell types {sorted(set(shifts) - cells)}")
        if not set(self.composition.cancer_type_shift) <= types:
            problems.append("composition.cancer_type_shift: unknown cancer types")
        need(
            set(self.extras.leukocyte_fraction_logit),
            set(self.composition.archetypes),
            "extras.leukocyte_fraction_logit",
        )
        need(set(self.extras.missing_rate), set(schema.extra_columns()), "extras.missing_rate")
        for table in ("dissemination_logit", "scale_months", "shape"):
            need(set(getattr(self.relapse, table)), types, f"relapse.{table}")
        need(set(self.relapse.stage_logit), set(RESECTED_STAGES), "relapse.stage_logit")
        need(set(self.sites), set(schema.sites()), "sites")
        for organ, site in self.sites.items():
            need(set(site.base_rate), types, f"sites.{organ}.base_rate")
            if not all(0 < p < 1 for p in site.base_rate.values()):
                problems.append(f"sites.{organ}.base_rate: rates must lie strictly in (0, 1)")
        effects = [*self.relapse.dissemination_effects, *self.relapse.dormancy_effects]
        interactions = [
            *self.relapse.dissemination_interactions,
            *self.relapse.dormancy_interactions,
        ]
        for site in self.sites.values():
            effects += site.effects
            interactions += site.interactions
        used = {e.feature for e in effects} | {f for i in interactions for f in i.features}
        scoped = {t for e in effects for t in (e.cancer_types or ())}
        if not scoped <= types:
            problems.append(f"effects name unknown cancer types {sorted(scoped - types)}")
        if not used <= features:
            problems.append(f"effects name unknown features {sorted(used - features)}")
        if self.censoring.follow_up_min_months >= self.censoring.follow_up_max_months:
            problems.append("censoring: follow_up_min_months must be below follow_up_max_months")
        if problems:
            raise ValueError("invalid simulator config:\n  " + "\n  ".join(problems))
        return self


def _e(feature: str, per_sd: float, source: str, *only: str) -> Effect:
    return Effect(feature=feature, per_sd=per_sd, source=source, cancer_types=only or None)


def _site(
    base: dict[str, float], *effects: Effect, inter: tuple[Interaction, ...] = ()
) -> SiteModel:
    return SiteModel(
        base_rate=base,
        base_rate_source=SITE_BASE_RATES,
        effects=list(effects),
        interactions=list(inter),
    )


def _rates(*values: float) -> dict[str, float]:
    """One value per cancer type, in :data:`CANCER_TYPES` order (breast, colorectal,
    lung_adenocarcinoma, melanoma, prostate, pancreatic, gastric, renal)."""
    return dict(zip(CANCER_TYPES, values, strict=True))


MODELLING = "modelling choice (metapredict)"
WCULEK = "Wculek & Malanchi, Nature 2015"
SPIEGEL = "Spiegel et al., Cancer Discov 2016"
ALBRENGUES = "Albrengues et al., Science 2018"
COFFELT = "Coffelt et al., Nature 2015"
QIAN = "Qian et al., Nature 2011"
YU = "Yu et al., Nat Med 2021"
COSTA_SILVA = "Costa-Silva et al., Nat Cell Biol 2015"
SCHREURS = "Schreurs et al., Neuro-Oncol 2025"
CORREIA = "Correia et al., Nature 2021"
EYLES = "Eyles et al., JCI 2010"
TAN = "Tan et al., Nature 2011"
ZHAO = "Zhao et al., OncoImmunology 2012"
MONTEIRO = "Monteiro et al., PLoS One 2013"
SAWANT = "Sawant et al. 2013"
LABELLE = "Labelle et al., Cancer Cell 2011"
ZHANG = "Zhang et al., Nat Commun 2017 (gastric exosomal EGFR primes the liver)"
PORTAL = "gastric added as a portal-venous GI primary like colorectal (modelling choice)"
SITE_BASE_RATES = (
    "SEER and MSK-MET (Nguyen et al., Cell 2022) organ patterns per primary, rounded "
    "(modelling choice); gastric: Riihimaki et al., Oncotarget 2016 (liver 48 %, peritoneum "
    "32 %, lung 15 %, bone 12 %); renal: Bianchi et al., Ann Oncol 2012 (lung, bone, distant "
    "lymph nodes, liver, adrenal, brain)"
)


#: Share of patients metastatic at diagnosis (stage IV) per type: SEER Cancer Stat Facts, the
#: share diagnosed at distant stage, rounded (modelling choice).
STAGE_IV_SHARE: Final = _rates(0.06, 0.22, 0.45, 0.045, 0.07, 0.50, 0.35, 0.17)

#: Target share of samples in which each LM22 cell type is exactly 0 (CIBERSORT on bulk tumour
#: RNA-seq; biology.md): 93 % for the three rarest, 75-85 % for the next four, almost never for
#: the four most abundant, the rest chosen so that 8-10 cell types are 0 in most samples and
#: about 46 % of all values are 0 (modelling choice).
DETECTION_ZERO_SHARE: Final = {
    "b_cells_naive": 0.40,
    "b_cells_memory": 0.80,
    "plasma_cells": 0.25,
    "t_cells_cd8": 0.15,
    "t_cells_cd4_naive": 0.93,
    "t_cells_cd4_memory_resting": 0.01,
    "t_cells_cd4_memory_activated": 0.65,
    "t_cells_follicular_helper": 0.20,
    "t_cells_regulatory": 0.30,
    "t_cells_gamma_delta": 0.93,
    "nk_cells_resting": 0.02,
    "nk_cells_activated": 0.80,
    "monocytes": 0.40,
    "macrophages_m0": 0.01,
    "macrophages_m1": 0.10,
    "macrophages_m2": 0.005,
    "dendritic_cells_resting": 0.80,
    "dendritic_cells_activated": 0.60,
    "mast_cells_resting": 0.25,
    "mast_cells_activated": 0.70,
    "eosinophils": 0.93,
    "neutrophils": 0.80,
}

#: Detection floors in LM22 order (latent share of leukocytes, 0.7-4 %), so that each cell
#: type is 0 in :data:`DETECTION_ZERO_SHARE` of the default cohort: the output of
#: ``generate.calibrate_detection_floors(default_config(), DETECTION_ZERO_SHARE)``, rounded to
#: two significant digits (a test checks they agree). Recalibrate after changing the
#: composition, or the zero shares drift.
DETECTION_FLOOR: Final = (
    0.024,  # b_cells_naive
    0.028,  # b_cells_memory
    0.030,  # plasma_cells
    0.029,  # t_cells_cd8
    0.019,  # t_cells_cd4_naive
    0.028,  # t_cells_cd4_memory_resting
    0.021,  # t_cells_cd4_memory_activated
    0.022,  # t_cells_follicular_helper
    0.021,  # t_cells_regulatory
    0.019,  # t_cells_gamma_delta
    0.0071,  # nk_cells_resting
    0.025,  # nk_cells_activated
    0.017,  # monocytes
    0.026,  # macrophages_m0
    0.026,  # macrophages_m1
    0.032,  # macrophages_m2
    0.039,  # dendritic_cells_resting
    0.010,  # dendritic_cells_activated
    0.039,  # mast_cells_resting
    0.012,  # mast_cells_activated
    0.0075,  # eosinophils
    0.021,  # neutrophils
)


def default_config() -> SimulatorConfig:
    """The literature-grounded defaults (see ../shared/biology.md for the effect table)."""
    cells = schema.lm22_columns()
    # Typical CIBERSORT LM22 fractions in solid tumours (order of magnitude; modelling choice).
    base = dict(
        zip(
            cells,
            (
                0.04,
                0.02,
                0.05,
                0.09,
                0.01,
                0.13,
                0.02,
                0.04,
                0.03,
                0.01,
                0.03,
                0.02,
                0.02,
                0.10,
                0.06,
                0.18,
                0.03,
                0.01,
                0.06,
                0.01,
                0.004,
                0.01,
            ),
            strict=True,
        )
    )
    archetypes = {
        "immune_hot": {
            "t_cells_cd8": 0.6,
            "t_cells_cd4_memory_activated": 0.5,
            "nk_cells_activated": 0.4,
            "macrophages_m1": 0.5,
            "t_cells_follicular_helper": 0.4,
            "b_cells_memory": 0.3,
            "plasma_cells": 0.3,
            "dendritic_cells_activated": 0.3,
            "macrophages_m2": -0.3,
        },
        "myeloid_rich": {
            "macrophages_m2": 0.5,
            "macrophages_m0": 0.4,
            "monocytes": 0.5,
            "neutrophils": 0.6,
            "t_cells_regulatory": 0.4,
            "mast_cells_activated": 0.3,
            "t_cells_cd8": -0.3,
            "nk_cells_activated": -0.3,
        },
        "lymphocyte_depleted": {
            "macrophages_m0": 0.5,
            "mast_cells_resting": 0.4,
            "t_cells_cd8": -0.6,
            "b_cells_naive": -0.4,
            "t_cells_cd4_memory_activated": -0.4,
            "nk_cells_activated": -0.3,
            "plasma_cells": -0.3,
        },
    }
    archetype_weights = {
        "breast": {"immune_hot": 0.30, "myeloid_rich": 0.35, "lymphocyte_depleted": 0.35},
        "colorectal": {"immune_hot": 0.30, "myeloid_rich": 0.35, "lymphocyte_depleted": 0.35},
        "lung_adenocarcinoma": {
            "immune_hot": 0.35,
            "myeloid_rich": 0.40,
            "lymphocyte_depleted": 0.25,
        },
        "melanoma": {"immune_hot": 0.50, "myeloid_rich": 0.25, "lymphocyte_depleted": 0.25},
        "prostate": {"immune_hot": 0.15, "myeloid_rich": 0.35, "lymphocyte_depleted": 0.50},
        "pancreatic": {"immune_hot": 0.10, "myeloid_rich": 0.55, "lymphocyte_depleted": 0.35},
        # Thorsson et al., Immunity 2018 (TCGA immune subtypes; modelling choice): gastric spans
        # EBV/MSI-hot and chromosomally unstable myeloid tumours; clear-cell renal carcinoma is
        # among the most T-cell-infiltrated primaries.
        "gastric": {"immune_hot": 0.25, "myeloid_rich": 0.40, "lymphocyte_depleted": 0.35},
        "renal": {"immune_hot": 0.45, "myeloid_rich": 0.35, "lymphocyte_depleted": 0.20},
    }
    type_shift = {
        "breast": {"plasma_cells": 0.2, "macrophages_m2": 0.1},
        "colorectal": {"neutrophils": 0.3, "mast_cells_resting": 0.2, "plasma_cells": 0.4},
        "lung_adenocarcinoma": {"neutrophils": 0.4, "macrophages_m0": 0.3, "monocytes": 0.2},
        "melanoma": {"t_cells_cd8": 0.3, "macrophages_m1": 0.2},
        "prostate": {"mast_cells_resting": 0.4, "t_cells_regulatory": 0.2},
        "pancreatic": {"macrophages_m2": 0.3, "neutrophils": 0.3, "t_cells_cd8": -0.3},
        "gastric": {"plasma_cells": 0.3, "neutrophils": 0.2, "mast_cells_resting": 0.2},
        "renal": {"t_cells_cd8": 0.4, "t_cells_regulatory": 0.2, "macrophages_m1": 0.1},
    }
    composition = Composition(
        base_fraction=base,
        cancer_type_shift=type_shift,
        archetypes=archetypes,
        archetype_weights=archetype_weights,
        inflammation_loading={
            "neutrophils": 0.4,
            "monocytes": 0.3,
            "macrophages_m0": 0.2,
            "mast_cells_activated": 0.2,
            "t_cells_gamma_delta": 0.2,
        },
        noise_sd=0.5,
    )
    detection = Detection(
        floor=dict(zip(cells, DETECTION_FLOOR, strict=True)), sample_quality_sd=0.25
    )
    extras = Extras(
        leukocyte_fraction_logit={
            "immune_hot": -0.2,
            "myeloid_rich": -0.8,
            "lymphocyte_depleted": -1.6,
        },
        leukocyte_fraction_sd=0.6,
        nlr_log_mean=0.9,
        nlr_per_sd_neutrophils=0.25,
        nlr_per_sd_inflammation=0.2,
        nlr_log_sd=0.35,
        platelet_log_mean=5.5,
        platelet_per_sd_inflammation=0.1,
        platelet_log_sd=0.25,
        mdsc_weights={"monocytes": 0.5, "neutrophils": 0.5, "macrophages_m2": 0.3},
        mdsc_noise_sd=0.6,
        missing_rate={
            "mdsc_score": 0.30,
            "platelet_count": 0.15,
            "neutrophil_lymphocyte_ratio": 0.15,
            "leukocyte_fraction": 0.10,
        },
    )
    relapse = Relapse(
        # Gastric: ~35 % distant relapse after resection; renal (localised RCC): ~20-25 %.
        dissemination_logit=_rates(-1.1, -0.9, -0.3, -0.6, -1.3, 0.7, -0.5, -1.0),
        stage_logit={"I": -0.9, "II": 0.0, "III": 0.9},
        age_logit_per_decade=0.05,
        dissemination_effects=[
            _e("t_cells_cd8", -0.40, EYLES),
            _e("neutrophils", 0.35, SPIEGEL),
            _e("macrophages_m2", 0.30, "Yu et al., Nat Med 2021; 2013 J Mol Med review"),
            _e("t_cells_regulatory", 0.25, "2013 J Mol Med review (Tregs aid invasion)"),
            _e("nk_cells_activated", -0.25, CORREIA),
            _e("platelet_count", 0.20, LABELLE),
        ],
        # Gastric relapses come early (most within 2-3 years); renal has a long tail of late
        # relapses (shape < 1: a hazard falling slowly, ~10 % after 5 years).
        scale_months=_rates(110.0, 40.0, 30.0, 55.0, 100.0, 20.0, 26.0, 70.0),
        shape=_rates(1.0, 1.3, 1.2, 1.1, 1.0, 1.3, 1.3, 0.9),
        dormancy_effects=[
            _e("t_cells_cd8", -0.35, EYLES),
            _e("nk_cells_activated", -0.50, CORREIA, "breast", "melanoma"),
            _e("nk_cells_activated", -0.20, CORREIA),
            _e("neutrophils", 0.30, ALBRENGUES),
        ],
        dormancy_interactions=[
            Interaction(
                features=("t_cells_cd8", "neutrophils"),
                per_sd=0.20,
                source=f"{COFFELT}; {SPIEGEL}: neutrophils blunt CD8 control",
            )
        ],
    )
    sites = {
        "bone": _site(
            _rates(0.60, 0.10, 0.35, 0.20, 0.80, 0.08, 0.12, 0.30),
            _e("t_cells_regulatory", 0.55, ZHAO, "breast", "prostate"),
            _e(
                "t_cells_cd4_memory_activated",
                0.50,
                f"{MONTEIRO}; renal bone metastases are purely osteolytic (modelling choice)",
                "breast",
                "prostate",
                "lung_adenocarcinoma",
                "renal",
            ),
            _e("mdsc_score", 0.45, SAWANT),
        ),
        "lung": _site(
            _rates(0.30, 0.30, 0.30, 0.45, 0.15, 0.25, 0.15, 0.55),
            _e("neutrophils", 0.50, WCULEK, "breast", "melanoma", "lung_adenocarcinoma"),
            _e("neutrophils", 0.20, SPIEGEL),
            _e("t_cells_gamma_delta", 0.30, COFFELT),
            _e("monocytes", 0.45, QIAN, "breast", "melanoma"),
            _e("t_cells_regulatory", 0.50, TAN, "breast"),
            _e("platelet_count", 0.30, LABELLE),
            inter=(
                Interaction(
                    features=("neutrophils", "t_cells_gamma_delta"),
                    per_sd=0.25,
                    source=f"{COFFELT}: IL-17 -> G-CSF -> neutrophil axis",
                ),
            ),
        ),
        "liver": _site(
            _rates(0.30, 0.65, 0.20, 0.30, 0.12, 0.70, 0.48, 0.20),
            _e(
                "macrophages_m2",
                0.55,
                f"{YU}; {PORTAL}",
                "colorectal",
                "melanoma",
                "pancreatic",
                "gastric",
            ),
            _e(
                "macrophages_m0",
                0.50,
                f"{COSTA_SILVA}; {ZHANG}",
                "pancreatic",
                "colorectal",
                "gastric",
            ),
            _e(
                "nk_cells_activated",
                -0.60,
                f"{CORREIA}; {PORTAL}",
                "breast",
                "melanoma",
                "colorectal",
                "gastric",
            ),
        ),
        "brain": _site(
            _rates(0.10, 0.04, 0.30, 0.30, 0.03, 0.03, 0.03, 0.08),
            _e("monocytes", 0.50, QIAN, "breast", "melanoma", "lung_adenocarcinoma"),
            _e("macrophages_m2", 0.45, SCHREURS, "breast", "melanoma", "lung_adenocarcinoma"),
        ),
        "distant_lymph_node": _site(
            _rates(0.30, 0.20, 0.30, 0.40, 0.35, 0.20, 0.25, 0.20),
            _e("t_cells_gamma_delta", 0.30, COFFELT),
        ),
        "pleura": _site(_rates(0.18, 0.07, 0.28, 0.08, 0.05, 0.10, 0.08, 0.08)),
        "adrenal_gland": _site(_rates(0.05, 0.03, 0.20, 0.10, 0.03, 0.05, 0.04, 0.10)),
        "intra_abdominal": _site(_rates(0.10, 0.30, 0.06, 0.20, 0.05, 0.45, 0.35, 0.06)),
    }
    return SimulatorConfig(
        clinical=Clinical(
            cancer_type_weights=_rates(0.30, 0.18, 0.14, 0.09, 0.11, 0.07, 0.06, 0.05),
            # Stage IV at STAGE_IV_SHARE; stages I-III share the rest 35:40:25 (modelling choice).
            stage_weights={
                t: {"I": 0.35 * (1 - iv), "II": 0.40 * (1 - iv), "III": 0.25 * (1 - iv), "IV": iv}
                for t, iv in STAGE_IV_SHARE.items()
            },
            age_mean=_rates(58.0, 66.0, 67.0, 60.0, 68.0, 70.0, 67.0, 64.0),
            age_sd=11.0,
            missing_rate={"age_years": 0.05, "stage": 0.08},
        ),
        composition=composition,
        detection=detection,
        extras=extras,
        relapse=relapse,
        sites=sites,
        site_shared_sd=0.6,
        censoring=Censoring(
            follow_up_min_months=24.0, follow_up_max_months=180.0, loss_per_year=0.02
        ),
    )


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: Path | None = None) -> SimulatorConfig:
    """Defaults, overridden by the TOML file at ``path`` when given."""
    config = default_config()
    if path is None:
        return config
    with path.open("rb") as fh:
        override = tomllib.load(fh)
    return SimulatorConfig.model_validate(_deep_merge(config.model_dump(), override))
