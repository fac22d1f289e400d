"""Draw a simulated cohort from a :class:`SimulatorConfig`.

The generative story, per patient:

1. cancer type, stage (I-IV) and age;
2. a latent immune archetype and a systemic-inflammation factor; latent LM22 fractions from a
   logistic-normal draw (compositional: they sum to 1 by construction);
3. the observed (reported) fractions: CIBERSORT-like detection, latent fractions below a
   per-cell detection floor set to exactly 0 and the row renormalised (``config.detection``);
4. extras correlated with the true (latent) cells they reflect (NLR with neutrophils, MDSC
   score with myeloid cells), some missing at random; the outcome uses the true value;
5. a stage IV patient is metastatic at diagnosis (relapse observed at month 0); a stage I-III
   patient disseminates (cure-mixture) and, if so, relapses after a dormancy-exit time with a
   Weibull proportional hazard; right censoring by accrual and loss to follow-up;
6. for a patient with an observed relapse, the organs involved: a logistic model per organ
   plus a shared latent term, at least one organ per relapse;
7. age and stage missing completely at random (``config.clinical.missing_rate``); the
   outcomes above used the true values.

Every immune effect acts on the *observed* fractions: the predictor of a cell type is the
centred log-ratio of its reported fraction plus :data:`CLR_PSEUDOCOUNT` (what
``metapredict.features`` computes), so a model of the observed columns can in principle reach
the oracle; only missing extras, missing age/stage and the shared site term hide information.

The oracle columns hold each patient's true probabilities under this story: for a stage IV
patient the risk by every horizon is 1 and the late-relapse probability 0 (relapse at month 0,
nothing left to happen after month 60).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import expit, logit

from metapredict import schema
from metapredict.simulator.config import CANCER_TYPES, Effect, Interaction, SimulatorConfig

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Extras whose logarithm is the predictor (right-skewed blood counts).
LOG_EXTRAS = frozenset({"platelet_count", "neutrophil_lymphocyte_ratio"})
#: Gauss-Hermite nodes used to integrate the shared site term out of the oracle.
_QUADRATURE_NODES = 24
#: Fixed seed of the reference draw that sets the SD scales (part of the model, not the cohort).
_REFERENCE_SEED = 20_130_321
#: Added to every observed fraction before the log-ratio, as ``metapredict.features`` does
#: (``features.CLR_PSEUDOCOUNT``; defined here because data flow one way, a test keeps the two
#: equal). Exact zeros then have a finite predictor value.
CLR_PSEUDOCOUNT = 1e-3
#: Index of the metastatic stage (IV) in ``schema.STAGES``.
_STAGE_IV = schema.STAGES.index(schema.METASTATIC_STAGE)


@dataclass(frozen=True)
class _Composition:
    cancer_type: IntArray
    stage: IntArray  # index into schema.STAGES
    age: FloatArray
    archetype: IntArray
    inflammation: FloatArray
    latent: FloatArray  # (n, 22) true fractions, rows sum to 1, all positive
    fractions: FloatArray  # (n, 22) observed: exact zeros below the floor, rows sum to 1

    @property
    def metastatic(self) -> NDArray[np.bool_]:
        """Stage IV: metastatic at diagnosis."""
        result: NDArray[np.bool_] = self.stage == _STAGE_IV
        return result


@dataclass(frozen=True)
class Scales:
    """Mean and SD of every predictor in the reference population."""

    mean: dict[str, float]
    sd: dict[str, float]

    def standardise(self, name: str, values: FloatArray) -> FloatArray:
        return (values - self.mean[name]) / self.sd[name]


def clr(fractions: FloatArray, pseudocount: float = 0.0) -> FloatArray:
    """Centred log-ratio of compositions (rows), after adding ``pseudocount`` to each part."""
    logs = np.log(fractions + pseudocount)
    result: FloatArray = logs - logs.mean(axis=1, keepdims=True)
    return result


def observed_clr(fractions: FloatArray) -> FloatArray:
    """The predictor of each cell type: CLR of the observed fractions + ``CLR_PSEUDOCOUNT``."""
    return clr(fractions, CLR_PSEUDOCOUNT)


def detect(config: SimulatorConfig, latent: FloatArray, quality: FloatArray) -> FloatArray:
    """The fractions a CIBERSORT-like deconvolution reports (see ``config.Detection``).

    ``quality`` is each sample's fit-quality draw (standard normal): a latent fraction below
    ``floor * exp(sample_quality_sd * quality)`` becomes exactly 0, the row's largest fraction
    is always kept, and the row is renormalised to sum to 1.
    """
    det = config.detection
    if not det.enabled:
        return latent.copy()
    floor = np.array([det.floor[c] for c in schema.lm22_columns()])
    threshold = floor[None, :] * np.exp(det.sample_quality_sd * quality)[:, None]
    kept = latent >= threshold
    kept[np.arange(latent.shape[0]), latent.argmax(axis=1)] = True
    observed = np.where(kept, latent, 0.0)
    result: FloatArray = observed / observed.sum(axis=1, keepdims=True)
    return result


def calibrate_detection_floors(
    config: SimulatorConfig,
    zero_share: dict[str, float],
    *,
    patients: int | None = None,
    seed: int = _REFERENCE_SEED,
) -> dict[str, float]:
    """Detection floors under which each cell type is 0 in ``zero_share`` of the samples.

    A cell is 0 when its latent fraction is below ``floor * exp(sample_quality_sd * q)``, i.e.
    when ``latent * exp(-sample_quality_sd * q)`` is below the floor: the floor is that
    quantity's ``zero_share`` quantile over a draw of ``config``'s composition (the floors in
    ``config`` itself play no part). Deterministic for a given ``seed``.
    """
    unknown = set(zero_share) - set(schema.lm22_columns())
    if unknown or not all(0.0 <= v < 1.0 for v in zero_share.values()):
        raise ValueError(f"zero shares must be in [0, 1) for LM22 cell types: {zero_share}")
    rng = np.random.default_rng(seed)
    comp = _draw_composition(config, patients or config.reference_patients, rng)
    quality = rng.standard_normal(comp.latent.shape[0])
    scaled = comp.latent * np.exp(-config.detection.sample_quality_sd * quality)[:, None]
    cells = schema.lm22_columns()
    return {
        c: float(np.quantile(scaled[:, cells.index(c)], share)) if share > 0 else 0.0
        for c, share in zero_share.items()
    }


def _draw_composition(config: SimulatorConfig, n: int, rng: np.random.Generator) -> _Composition:
    clin, comp = config.clinical, config.composition
    types = CANCER_TYPES
    cells = schema.lm22_columns()
    type_p = np.array([clin.cancer_type_weights[t] for t in types])
    cancer_type = rng.choice(len(types), size=n, p=type_p / type_p.sum())

    stage = np.empty(n, dtype=np.int64)
    age = np.empty(n)
    archetype = np.empty(n, dtype=np.int64)
    arch_names = list(comp.archetypes)
    u_stage, u_arch = rng.random(n), rng.random(n)
    age_noise = rng.standard_normal(n)
    for ti, t in enumerate(types):
        idx = cancer_type == ti
        sp = np.array([clin.stage_weights[t][s] for s in schema.STAGES])
        stage[idx] = np.searchsorted(np.cumsum(sp / sp.sum()), u_stage[idx], side="right")
        ap = np.array([comp.archetype_weights[t][a] for a in arch_names])
        archetype[idx] = np.searchsorted(np.cumsum(ap / ap.sum()), u_arch[idx], side="right")
        age[idx] = clin.age_mean[t] + clin.age_sd * age_noise[idx]
    stage = np.minimum(stage, len(schema.STAGES) - 1)
    archetype = np.minimum(archetype, len(arch_names) - 1)
    age = np.clip(np.round(age), 18.0, 100.0)

    base = np.log(np.array([comp.base_fraction[c] for c in cells]))
    type_shift = np.array(
        [[comp.cancer_type_shift.get(t, {}).get(c, 0.0) for c in cells] for t in types]
    )
    arch_shift = np.array([[comp.archetypes[a].get(c, 0.0) for c in cells] for a in arch_names])
    loading = np.array([comp.inflammation_loading.get(c, 0.0) for c in cells])
    inflammation = rng.standard_normal(n)
    z = (
        base
        + type_shift[cancer_type]
        + arch_shift[archetype]
        + inflammation[:, None] * loading
        + comp.noise_sd * rng.standard_normal((n, len(cells)))
    )
    z -= z.max(axis=1, keepdims=True)
    latent = np.exp(z)
    latent /= latent.sum(axis=1, keepdims=True)
    fractions = detect(config, latent, rng.standard_normal(n))
    return _Composition(cancer_type, stage, age, archetype, inflammation, latent, fractions)


def _draw_extras(
    config: SimulatorConfig,
    comp: _Composition,
    clr_z: dict[str, FloatArray],
    rng: np.random.Generator,
) -> dict[str, FloatArray]:
    """True values of the extras (before missingness); ``clr_z`` holds the standardised CLRs of
    the latent fractions (blood and signature scores follow the true infiltrate)."""
    ex = config.extras
    n = comp.latent.shape[0]
    arch_logit = np.array([ex.leukocyte_fraction_logit[a] for a in config.composition.archetypes])
    leuko = expit(arch_logit[comp.archetype] + ex.leukocyte_fraction_sd * rng.standard_normal(n))
    nlr = np.exp(
        ex.nlr_log_mean
        + ex.nlr_per_sd_neutrophils * clr_z["neutrophils"]
        + ex.nlr_per_sd_inflammation * comp.inflammation
        + ex.nlr_log_sd * rng.standard_normal(n)
    )
    platelets = np.exp(
        ex.platelet_log_mean
        + ex.platelet_per_sd_inflammation * comp.inflammation
        + ex.platelet_log_sd * rng.standard_normal(n)
    )
    weights = ex.mdsc_weights
    signal = sum((w * clr_z[c] for c, w in weights.items()), start=np.zeros(n))
    signal_sd = float(np.sqrt(sum(w * w for w in weights.values()))) or 1.0
    mdsc = (signal / signal_sd + ex.mdsc_noise_sd * rng.standard_normal(n)) / np.sqrt(
        1.0 + ex.mdsc_noise_sd**2
    )
    bounds = {c.name: (c.minimum, c.maximum) for c in schema.columns() if c.group == "extra"}
    raw = {
        "mdsc_score": mdsc,
        "platelet_count": platelets,
        "neutrophil_lymphocyte_ratio": nlr,
        "leukocyte_fraction": leuko,
    }
    return {name: np.clip(v, *bounds[name]) for name, v in raw.items()}


def _predictor_values(
    name: str, clr_values: FloatArray | None, extras: dict[str, FloatArray]
) -> FloatArray:
    if name in extras:
        v = extras[name]
        return np.log(v) if name in LOG_EXTRAS else v
    assert clr_values is not None
    return clr_values[:, schema.lm22_columns().index(name)]


def _column_scales(values: FloatArray) -> Scales:
    cells = schema.lm22_columns()
    mean = dict(zip(cells, values.mean(axis=0).tolist(), strict=True))
    sd = dict(zip(cells, values.std(axis=0).tolist(), strict=True))
    return Scales(mean, sd)


def _standardised(scales: Scales, values: FloatArray) -> dict[str, FloatArray]:
    return {c: scales.standardise(c, values[:, i]) for i, c in enumerate(schema.lm22_columns())}


@lru_cache(maxsize=8)
def _reference_scales_cached(config_json: str) -> tuple[Scales, Scales]:
    config = SimulatorConfig.model_validate(json.loads(config_json))
    rng_comp, rng_extra = (
        np.random.default_rng(s) for s in np.random.SeedSequence(_REFERENCE_SEED).spawn(2)
    )
    comp = _draw_composition(config, config.reference_patients, rng_comp)
    latent = _column_scales(clr(comp.latent))
    observed = _column_scales(observed_clr(comp.fractions))
    extras = _draw_extras(config, comp, _standardised(latent, clr(comp.latent)), rng_extra)
    mean, sd = dict(observed.mean), dict(observed.sd)
    for name in schema.extra_columns():
        v = _predictor_values(name, None, extras)
        mean[name], sd[name] = float(v.mean()), float(v.std())
    return Scales(mean, sd), latent


def reference_scales(config: SimulatorConfig) -> Scales:
    """Mean and SD of each predictor (observed-fraction CLRs, extras) in a fixed reference draw
    of ``config`` (deterministic: a fixed seed; cached)."""
    return _reference_scales_cached(config.model_dump_json())[0]


def _latent_scales(config: SimulatorConfig) -> Scales:
    """Mean and SD of the latent-fraction CLRs in the same reference draw (for the extras)."""
    return _reference_scales_cached(config.model_dump_json())[1]


def _linear(
    effects: Iterable[Effect],
    interactions: Iterable[Interaction],
    z: dict[str, FloatArray],
    cancer_type: IntArray,
) -> FloatArray:
    eta = np.zeros(cancer_type.shape[0])
    for e in effects:
        term = e.per_sd * z[e.feature]
        if e.cancer_types is not None:
            scope = [CANCER_TYPES.index(t) for t in e.cancer_types]
            term = np.where(np.isin(cancer_type, scope), term, 0.0)
        eta += term
    for i in interactions:
        a, b = i.features
        eta += i.per_sd * z[a] * z[b]
    return eta


@dataclass(frozen=True)
class _Truth:
    p_disseminate: FloatArray
    hazard_scale: FloatArray  # exp(dormancy linear predictor)
    weibull_scale: FloatArray
    weibull_shape: FloatArray
    site_logit: FloatArray  # (n, sites), before the shared term
    metastatic: NDArray[np.bool_]  # stage IV: relapse at month 0


def _truth(config: SimulatorConfig, comp: _Composition, z: dict[str, FloatArray]) -> _Truth:
    rel = config.relapse
    types = CANCER_TYPES
    n = comp.fractions.shape[0]
    base = np.array([rel.dissemination_logit[t] for t in types])[comp.cancer_type]
    # Stage IV gets no dissemination term: it is metastatic already (overridden below).
    stage = np.array([rel.stage_logit.get(s, 0.0) for s in schema.STAGES])[comp.stage]
    age = rel.age_logit_per_decade * (comp.age - 60.0) / 10.0
    eta_d = (
        base
        + stage
        + age
        + _linear(rel.dissemination_effects, rel.dissemination_interactions, z, comp.cancer_type)
    )
    eta_h = _linear(rel.dormancy_effects, rel.dormancy_interactions, z, comp.cancer_type)
    lam = np.array([rel.scale_months[t] for t in types])[comp.cancer_type]
    k = np.array([rel.shape[t] for t in types])[comp.cancer_type]
    site_logit = np.empty((n, len(schema.sites())))
    for j, organ in enumerate(schema.sites()):
        site = config.sites[organ]
        rates = np.array([site.base_rate[t] for t in types])
        site_logit[:, j] = logit(rates)[comp.cancer_type] + _linear(
            site.effects, site.interactions, z, comp.cancer_type
        )
    return _Truth(expit(eta_d), np.exp(eta_h), lam, k, site_logit, comp.metastatic)


def cumulative_risk(truth: _Truth, months: float) -> FloatArray:
    """True P(distant relapse by ``months``): 1 for a patient metastatic at diagnosis."""
    survival_dormant = np.exp(
        -((months / truth.weibull_scale) ** truth.weibull_shape) * truth.hazard_scale
    )
    risk: FloatArray = np.where(
        truth.metastatic, 1.0, truth.p_disseminate * (1.0 - survival_dormant)
    )
    return risk


def _site_oracle(logits: FloatArray, shared_sd: float) -> FloatArray:
    """P(site observed | relapse), integrating the shared term and the at-least-one rule."""
    nodes, weights = np.polynomial.hermite.hermgauss(_QUADRATURE_NODES)
    out = np.zeros_like(logits)
    for x, w in zip(nodes, weights, strict=True):
        p = expit(logits + np.sqrt(2.0) * shared_sd * x)
        none = np.prod(1.0 - p, axis=1, keepdims=True)
        out += (w / np.sqrt(np.pi)) * (p + none * p / p.sum(axis=1, keepdims=True))
    return np.clip(out, 0.0, 1.0)


def simulate_cohort(
    n: int,
    seed: int,
    config: SimulatorConfig,
) -> pd.DataFrame:
    """A cohort of ``n`` patients valid under :class:`schema.SimulatedCohort`."""
    if n < 1:
        raise ValueError("the number of patients must be at least 1")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_comp, rng_extra, rng_missing, rng_relapse, rng_censor, rng_site = streams

    comp = _draw_composition(config, n, rng_comp)
    scales = reference_scales(config)
    z = _standardised(scales, observed_clr(comp.fractions))
    latent_z = _standardised(_latent_scales(config), clr(comp.latent))
    extras = _draw_extras(config, comp, latent_z, rng_extra)
    for name in schema.extra_columns():
        z[name] = scales.standardise(name, _predictor_values(name, None, extras))
    truth = _truth(config, comp, z)

    # Time to first distant relapse: month 0 for stage IV (metastatic at diagnosis).
    disseminated = rng_relapse.random(n) < truth.p_disseminate
    exit_draw = rng_relapse.exponential(size=n)
    relapse_time = truth.weibull_scale * (exit_draw / truth.hazard_scale) ** (
        1.0 / truth.weibull_shape
    )
    relapse_time = np.where(disseminated, relapse_time, np.inf)
    cens = config.censoring
    follow_up = rng_censor.uniform(cens.follow_up_min_months, cens.follow_up_max_months, n)
    loss_rate = cens.loss_per_year / 12.0
    lost = rng_censor.exponential(1.0 / loss_rate, n) if loss_rate > 0 else np.full(n, np.inf)
    censor_time = np.minimum(follow_up, lost)
    event = (relapse_time <= censor_time) | truth.metastatic
    # A resected patient's time is at least 0.1 month, so 0.0 marks metastatic at diagnosis.
    observed = np.round(np.maximum(np.minimum(relapse_time, censor_time), 0.1), 1)
    observed = np.where(truth.metastatic, 0.0, observed)

    # Organs involved at relapse (or at diagnosis for stage IV).
    shared = config.site_shared_sd * rng_site.standard_normal(n)
    p_site = expit(truth.site_logit + shared[:, None])
    site_flags = rng_site.random(p_site.shape) < p_site
    fallback_u = rng_site.random(n)
    none = ~site_flags.any(axis=1)
    if none.any():
        cum = np.cumsum(p_site[none], axis=1)
        pick = (cum < (fallback_u[none] * cum[:, -1])[:, None]).sum(axis=1)
        site_flags[np.flatnonzero(none), np.minimum(pick, p_site.shape[1] - 1)] = True
    site_flags &= event[:, None]

    # Observed extras, age and stage: missing completely at random.
    observed_extras = {}
    for name in schema.extra_columns():
        missing = rng_missing.random(n) < config.extras.missing_rate[name]
        observed_extras[name] = np.where(missing, np.nan, extras[name])
    age_missing = rng_missing.random(n) < config.clinical.missing_rate["age_years"]
    stage_missing = rng_missing.random(n) < config.clinical.missing_rate["stage"]

    risk = {m: cumulative_risk(truth, m) for m in (36.0, 60.0, 120.0)}
    with np.errstate(divide="ignore", invalid="ignore"):
        late = np.where(truth.metastatic, 0.0, (risk[120.0] - risk[60.0]) / (1.0 - risk[60.0]))
    site_oracle = _site_oracle(truth.site_logit, config.site_shared_sd)

    width = max(6, len(str(n)))
    data: dict[str, Sequence[object] | NDArray[np.generic]] = {
        "patient_id": [f"SIM{seed}-{i:0{width}d}" for i in range(n)],
    }
    for i, c in enumerate(schema.lm22_columns()):
        data[c] = comp.fractions[:, i]
    data.update(observed_extras)
    data["cancer_type"] = np.array(CANCER_TYPES, dtype=object)[comp.cancer_type]
    stage = np.array(schema.STAGES, dtype=object)[comp.stage]
    stage[stage_missing] = None
    data["stage"] = stage
    data["age_years"] = np.where(age_missing, np.nan, comp.age)
    for j, c in enumerate(schema.site_columns()):
        data[c] = site_flags[:, j]
    data["distant_relapse_months"] = observed
    data["distant_relapse"] = event
    for j, organ in enumerate(schema.sites()):
        data[f"oracle_site_{organ}"] = site_oracle[:, j]
    data["oracle_risk_36"] = risk[36.0]
    data["oracle_risk_60"] = risk[60.0]
    data["oracle_risk_120"] = risk[120.0]
    data["oracle_late_relapse"] = np.clip(late, 0.0, 1.0)
    frame = pd.DataFrame(data)
    ordered = [c.name for c in schema.columns(schema.SimulatedCohort)]
    return frame[ordered]


def complete_patients(n: int, seed: int, *, draw: int, config: SimulatorConfig) -> pd.DataFrame:
    """The first ``n`` of ``draw`` simulated patients who have every optional input and a
    resected primary (stage I-III, so both models answer for them); feature columns only.

    For examples and load tests, never for training: it is a selected, not a random, sample.
    """
    cohort = simulate_cohort(draw, seed, config)
    complete = cohort.dropna(subset=[*schema.extra_columns(), "age_years", "stage"])
    complete = complete[complete["stage"] != schema.METASTATIC_STAGE]
    if len(complete) < n:
        raise ValueError(
            f"only {len(complete)} of {draw} simulated patients are complete; {n} asked"
        )
    return complete[list(schema.feature_columns())].head(n).reset_index(drop=True)
