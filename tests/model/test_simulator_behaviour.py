"""Behaviour of the simulated cohort: valid, compositional, zero-rich like CIBERSORT output,
stage IV and missing values at realistic rates, the planted biology visible, honest oracle,
reproducible. Run on a large cohort (``large_simulated_cohort``, 60,000 patients) so that
sampling noise is small next to the margins asserted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sksurv.nonparametric import kaplan_meier_estimator

from metapredict import metrics, schema
from metapredict.simulator import (
    CANCER_TYPES,
    CLR_PSEUDOCOUNT,
    OracleScores,
    SimulatorConfig,
    default_config,
    score_oracle,
    simulate_cohort,
)
from metapredict.simulator.config import DETECTION_ZERO_SHARE

MONTHS, EVENT = schema.survival_columns()
LOG_EXTRAS = ("platelet_count", "neutrophil_lymphocyte_ratio")


def predictors(cohort: pd.DataFrame) -> pd.DataFrame:
    """Standardised predictors as the simulator defines them: CLR of each observed LM22 fraction
    plus the pseudocount (as metapredict.features computes it), log of the blood counts, the
    other extras as they are (NaN where missing)."""
    cells = list(schema.lm22_columns())
    logs = np.log(cohort[cells].to_numpy() + CLR_PSEUDOCOUNT)
    out = pd.DataFrame(logs - logs.mean(axis=1, keepdims=True), columns=cells, index=cohort.index)
    for name in schema.extra_columns():
        out[name] = np.log(cohort[name]) if name in LOG_EXTRAS else cohort[name]
    return (out - out.mean()) / out.std()


def relapsed(cohort: pd.DataFrame) -> pd.DataFrame:
    """Patients with distant metastasis: relapsed after resection or stage IV at diagnosis."""
    return cohort[cohort[EVENT]]


def resected(cohort: pd.DataFrame) -> pd.DataFrame:
    """Patients with a resected stage I-III primary (the dormancy population)."""
    return cohort[~schema.metastatic_at_diagnosis(cohort)]


def km_risk(cohort: pd.DataFrame, months: float) -> float:
    """Kaplan-Meier estimate of P(distant relapse by ``months``), censoring accounted for."""
    times, survival = kaplan_meier_estimator(
        cohort[EVENT].to_numpy(dtype=bool), cohort[MONTHS].to_numpy(dtype=float)
    )
    return float(1.0 - survival[np.searchsorted(times, months, side="right") - 1])


@pytest.fixture(scope="module")
def oracle_scores(large_simulated_cohort: pd.DataFrame) -> OracleScores:
    return score_oracle(large_simulated_cohort)


# ------------------------------------------------------------------------------------------------
# Valid and compositional


def test_simulated_cohort_passes_the_schema(large_simulated_cohort: pd.DataFrame) -> None:
    schema.validate(large_simulated_cohort, schema.SimulatedCohort, extra_columns_allowed=())


def test_fractions_are_compositional(large_simulated_cohort: pd.DataFrame) -> None:
    fractions = large_simulated_cohort[list(schema.lm22_columns())].to_numpy()
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    assert (fractions >= 0).all()
    assert (fractions.max(axis=1) > 0).all()


# ------------------------------------------------------------------------------------------------
# Zero-rich like CIBERSORT output on bulk tumour RNA-seq (biology.md, "What real studies look
# like"): about 40-50 % of all values exactly 0.

#: Share of samples in which each cell type is exactly 0: (lowest, highest) accepted.
ZERO_BANDS = {
    "t_cells_cd4_naive": (0.90, 1.0),
    "t_cells_gamma_delta": (0.90, 1.0),
    "eosinophils": (0.90, 1.0),
    "dendritic_cells_resting": (0.75, 0.85),
    "nk_cells_activated": (0.75, 0.85),
    "b_cells_memory": (0.75, 0.85),
    "neutrophils": (0.75, 0.85),
    "t_cells_cd4_memory_resting": (0.0, 0.05),
    "macrophages_m0": (0.0, 0.05),
    "macrophages_m2": (0.0, 0.05),
    "nk_cells_resting": (0.0, 0.05),
}


@pytest.mark.parametrize("cell", sorted(ZERO_BANDS))
def test_cell_types_are_exactly_zero_at_cibersort_rates(
    large_simulated_cohort: pd.DataFrame, cell: str
) -> None:
    low, high = ZERO_BANDS[cell]
    share = float((large_simulated_cohort[cell] == 0.0).mean())
    assert low <= share <= high, (cell, share)


def test_every_cell_type_is_zero_at_its_calibrated_target(
    large_simulated_cohort: pd.DataFrame,
) -> None:
    shares = (large_simulated_cohort[list(schema.lm22_columns())] == 0.0).mean()
    off = {
        cell: round(float(shares[cell]), 3)
        for cell, target in DETECTION_ZERO_SHARE.items()
        if abs(shares[cell] - target) > 0.02
    }
    assert not off, off


def test_about_45_percent_of_lm22_values_are_exactly_zero(
    large_simulated_cohort: pd.DataFrame,
) -> None:
    zeros = large_simulated_cohort[list(schema.lm22_columns())].to_numpy() == 0.0
    assert 0.40 <= zeros.mean() <= 0.50
    # "8 to 10 cell types are zero in most samples".
    assert 8 <= int((zeros.mean(axis=0) > 0.5).sum()) <= 10
    # Samples differ in how many cell types they lose (fit quality), as real tables do.
    per_sample = zeros.sum(axis=1)
    assert per_sample.std() > 1.0


def test_detection_can_be_switched_off(simulator_config: SimulatorConfig) -> None:
    config = simulator_config.model_copy(
        update={"detection": simulator_config.detection.model_copy(update={"enabled": False})}
    )
    fractions = simulate_cohort(500, seed=3, config=config)[list(schema.lm22_columns())]
    assert (fractions.to_numpy() > 0).all()
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------------
# Clinical covariates: cancer types, stage IV, missing age and stage


def test_every_simulator_cancer_type_appears(large_simulated_cohort: pd.DataFrame) -> None:
    shares = large_simulated_cohort["cancer_type"].value_counts(normalize=True)
    assert set(shares.index) == set(CANCER_TYPES)
    assert {"gastric", "renal"} <= set(shares.index)
    assert (shares > 0.02).all()


@pytest.mark.parametrize("cancer_type", CANCER_TYPES)
def test_stage_iv_is_at_the_configured_rate_per_cancer_type(
    large_simulated_cohort: pd.DataFrame, simulator_config: SimulatorConfig, cancer_type: str
) -> None:
    weights = simulator_config.clinical.stage_weights[cancer_type]
    expected = weights[schema.METASTATIC_STAGE] / sum(weights.values())
    group = large_simulated_cohort[large_simulated_cohort["cancer_type"] == cancer_type]
    known = group["stage"].dropna()
    assert (known == schema.METASTATIC_STAGE).mean() == pytest.approx(expected, abs=0.02)
    # Month 0 marks metastatic at diagnosis whether or not the stage is known.
    assert schema.metastatic_at_diagnosis(group).mean() == pytest.approx(expected, abs=0.02)


def test_default_stage_iv_rates_are_plausible(simulator_config: SimulatorConfig) -> None:
    """SEER's share diagnosed at distant stage, roughly (the issue's bands)."""
    bands = {
        "pancreatic": (0.45, 0.55),
        "lung_adenocarcinoma": (0.40, 0.50),
        "gastric": (0.30, 0.40),
        "colorectal": (0.20, 0.25),
        "renal": (0.15, 0.20),
        "breast": (0.05, 0.06),
        "prostate": (0.05, 0.08),
        "melanoma": (0.04, 0.05),
    }
    for cancer_type, (low, high) in bands.items():
        weights = simulator_config.clinical.stage_weights[cancer_type]
        share = weights[schema.METASTATIC_STAGE] / sum(weights.values())
        assert low <= share <= high, (cancer_type, share)


def test_stage_iv_patients_are_metastatic_at_month_zero(
    large_simulated_cohort: pd.DataFrame,
) -> None:
    cohort = large_simulated_cohort
    stage_iv = cohort[cohort["stage"] == schema.METASTATIC_STAGE]
    assert len(stage_iv) > 1000
    assert stage_iv[EVENT].all()
    assert (stage_iv[MONTHS] == 0.0).all()
    assert stage_iv[list(schema.site_columns())].any(axis=1).all()
    for h in (36, 60, 120):
        assert (stage_iv[f"oracle_risk_{h}"] == 1.0).all()
    assert (stage_iv["oracle_late_relapse"] == 0.0).all()
    # Nobody else is at month 0: a resected patient's time is at least 0.1 month.
    others = cohort[cohort["stage"].isin(["I", "II", "III"])]
    assert (others[MONTHS] >= 0.1).all()
    assert (others["oracle_risk_120"] < 1.0).all()


@pytest.mark.parametrize("column", ["age_years", "stage"])
def test_age_and_stage_are_missing_at_the_configured_rates(
    large_simulated_cohort: pd.DataFrame, simulator_config: SimulatorConfig, column: str
) -> None:
    rate = simulator_config.clinical.missing_rate[column]
    assert rate > 0
    missing = large_simulated_cohort[column].isna()
    assert missing.mean() == pytest.approx(rate, abs=0.01)
    # Completely at random: the same share in every cancer type and among the relapsed.
    by_type = missing.groupby(large_simulated_cohort["cancer_type"]).mean()
    assert (by_type - rate).abs().max() < 0.03
    assert missing[large_simulated_cohort[EVENT]].mean() == pytest.approx(rate, abs=0.015)


def test_missingness_can_be_switched_off(simulator_config: SimulatorConfig) -> None:
    clinical = simulator_config.clinical.model_copy(
        update={"missing_rate": {"age_years": 0.0, "stage": 0.0}}
    )
    extras = simulator_config.extras.model_copy(
        update={"missing_rate": dict.fromkeys(simulator_config.extras.missing_rate, 0.0)}
    )
    config = simulator_config.model_copy(update={"clinical": clinical, "extras": extras})
    cohort = simulate_cohort(500, seed=3, config=config)
    assert cohort[["age_years", "stage", *schema.extra_columns()]].notna().all().all()


def test_every_cell_type_varies_between_patients(large_simulated_cohort: pd.DataFrame) -> None:
    clr = predictors(large_simulated_cohort)[list(schema.lm22_columns())]
    assert clr.notna().all().all()  # a constant column would standardise to NaN


@pytest.mark.parametrize(
    ("extra", "cell"),
    [
        ("neutrophil_lymphocyte_ratio", "neutrophils"),
        ("mdsc_score", "neutrophils"),
        ("mdsc_score", "monocytes"),
        ("mdsc_score", "macrophages_m2"),
    ],
)
def test_extras_correlate_with_the_cells_they_reflect(
    large_simulated_cohort: pd.DataFrame, extra: str, cell: str
) -> None:
    present = large_simulated_cohort.dropna(subset=[extra])
    rho = spearmanr(present[extra], present[cell]).statistic
    assert rho > 0.1


def test_extras_are_missing_at_the_configured_rates(
    large_simulated_cohort: pd.DataFrame, simulator_config: SimulatorConfig
) -> None:
    for name, rate in simulator_config.extras.missing_rate.items():
        observed = large_simulated_cohort[name].isna().mean()
        assert observed == pytest.approx(rate, abs=0.01), name


# ------------------------------------------------------------------------------------------------
# Labels consistent with each other


def test_every_relapse_has_a_site_and_no_censored_patient_has_one(
    large_simulated_cohort: pd.DataFrame,
) -> None:
    any_site = large_simulated_cohort[list(schema.site_columns())].any(axis=1)
    event = large_simulated_cohort[EVENT]
    assert any_site[event].all()
    assert not any_site[~event].any()
    assert 0.1 < event.mean() < 0.5  # a realistic share of distant metastasis
    assert 0.1 < resected(large_simulated_cohort)[EVENT].mean() < 0.4  # relapse after resection


@pytest.mark.parametrize(
    ("cancer_type", "top_site"),
    [
        ("breast", "bone"),
        ("colorectal", "liver"),
        ("melanoma", "lung"),
        ("prostate", "bone"),
        ("pancreatic", "liver"),
        ("gastric", "liver"),
        ("renal", "lung"),
    ],
)
def test_most_common_site_follows_the_primary(
    large_simulated_cohort: pd.DataFrame, cancer_type: str, top_site: str
) -> None:
    rel = relapsed(large_simulated_cohort)
    rates = rel.loc[rel["cancer_type"] == cancer_type, list(schema.site_columns())].mean()
    assert rates.idxmax() == f"site_{top_site}"


# ------------------------------------------------------------------------------------------------
# Planted directions (biology.md)

#: A planted effect at least this large (per SD, on the log-odds scale) must be visible.
VISIBLE = 0.3


def planted(config: SimulatorConfig, organ: str, feature: str) -> dict[str, float]:
    """Per cancer type, the per-SD effect of ``feature`` on ``organ`` that ``config`` plants:
    the sum of its effects on that organ that apply to the type (an effect may be restricted to
    some primaries)."""
    out = dict.fromkeys(CANCER_TYPES, 0.0)
    for effect in config.sites[organ].effects:
        if effect.feature == feature:
            for cancer_type in effect.cancer_types or CANCER_TYPES:
                out[cancer_type] += effect.per_sd
    return out


def quartile_gaps(cohort: pd.DataFrame, site: str, predictor: str) -> dict[str, float]:
    """Per cancer type, among relapsed patients with ``predictor`` observed: the site's rate in
    the top quartile of ``predictor`` minus its rate in the bottom quartile. Ties (exact zeros)
    are broken by row order, so a cell type that is 0 in most samples still has quartiles."""
    gaps = {}
    for cancer_type, group in relapsed(cohort).dropna(subset=[predictor]).groupby("cancer_type"):
        quartile = pd.qcut(group[predictor].rank(method="first"), 4, labels=False)
        flags = group[f"site_{site}"]
        gaps[str(cancer_type)] = float(flags[quartile == 3].mean() - flags[quartile == 0].mean())
    return gaps


@pytest.mark.parametrize(
    ("site", "predictor", "direction"),
    [
        ("lung", "neutrophils", +1),  # Wculek & Malanchi 2015
        ("liver", "nk_cells_activated", -1),  # Correia 2021
        ("bone", "mdsc_score", +1),  # Sawant 2013
    ],
)
def test_site_involvement_moves_with_the_planted_cell(
    large_simulated_cohort: pd.DataFrame,
    simulator_config: SimulatorConfig,
    site: str,
    predictor: str,
    direction: int,
) -> None:
    """In every cancer type where the effect is planted, the top quartile of the cell differs
    from the bottom quartile in the planted direction."""
    effect = planted(simulator_config, site, predictor)
    where = [t for t, size in effect.items() if direction * size >= VISIBLE]
    assert where, f"no cancer type has a visible {predictor} -> {site} effect: {effect}"
    gaps = quartile_gaps(large_simulated_cohort, site, predictor)
    assert all(direction * gaps[t] > 0.03 for t in where), gaps


def _site_features(config: SimulatorConfig) -> list[tuple[str, str]]:
    return sorted({(organ, e.feature) for organ, s in config.sites.items() for e in s.effects})


def site_designs(cohort: pd.DataFrame, config: SimulatorConfig) -> dict[str, pd.DataFrame]:
    """Per organ, the design matrix of the site model's own form among relapsed patients: every
    standardised predictor (missing extras set to the mean, plus missingness flags), cancer
    type, and the planted interactions. A feature planted with an effect that differs by
    cancer type enters as one column per type (``feature@type``)."""
    rel = relapsed(cohort)
    x = predictors(cohort).loc[rel.index]
    used = {feature for _, feature in _site_features(config)}
    # The CLRs sum to zero: leave out one cell type that carries no site effect.
    x = x.drop(columns=next(c for c in schema.lm22_columns() if c not in used))
    extras = list(schema.extra_columns())
    missing = x[extras].isna().astype(float).add_suffix("_missing")
    x = x.fillna(0.0)
    types = pd.get_dummies(rel["cancer_type"], dtype=float)
    designs = {}
    for organ, site in config.sites.items():
        by_type = {
            f
            for f in {e.feature for e in site.effects}
            if len(set(planted(config, organ, f).values())) > 1
        }
        columns = [x.drop(columns=sorted(by_type)), missing, types.iloc[:, 1:]]
        columns += [types.mul(x[f], axis=0).add_prefix(f"{f}@") for f in sorted(by_type)]
        columns += [
            (x[a] * x[b]).rename(f"{a}*{b}").to_frame()
            for a, b in (i.features for i in site.interactions)
        ]
        designs[organ] = pd.concat(columns, axis=1)
    return designs


@pytest.fixture(scope="module")
def site_fits(
    large_simulated_cohort: pd.DataFrame, simulator_config: SimulatorConfig
) -> dict[str, dict[str, float]]:
    """Per organ, a multivariable logistic regression of the site flag on
    :func:`site_designs`. Returns the coefficients by column name."""
    rel = relapsed(large_simulated_cohort)
    fits = {}
    for organ, design in site_designs(large_simulated_cohort, simulator_config).items():
        fit = LogisticRegression(C=1e6, max_iter=5000).fit(design, rel[f"site_{organ}"])
        fits[organ] = dict(zip(design.columns, fit.coef_[0].tolist(), strict=True))
    return fits


def test_a_model_of_the_observed_columns_can_reach_the_oracle(
    large_simulated_cohort: pd.DataFrame, simulator_config: SimulatorConfig
) -> None:
    """The effects act on the reported (zero-clipped) fractions, so a model of the observed
    columns in the site model's own form, fitted on half of the relapsed patients, scores
    nearly the oracle's AUROC on the other half: only missing extras, the shared site term and
    the at-least-one-site rule stand between them. (Effects on the latent fractions would put
    information out of any model's reach.)"""
    rel = relapsed(large_simulated_cohort)
    fit_half = np.arange(len(rel)) % 2 == 0
    ratios = {}
    for organ, design in site_designs(large_simulated_cohort, simulator_config).items():
        y = rel[f"site_{organ}"].to_numpy(dtype=bool)
        fit = LogisticRegression(max_iter=5000).fit(design[fit_half], y[fit_half])
        ours = metrics.auroc(y[~fit_half], fit.predict_proba(design[~fit_half])[:, 1])
        best = metrics.auroc(y[~fit_half], rel[f"oracle_site_{organ}"].to_numpy()[~fit_half])
        ratios[organ] = round(ours / best, 3)
    assert all(0.95 <= r <= 1.02 for r in ratios.values()), ratios


@pytest.mark.parametrize(("organ", "feature"), _site_features(default_config()))
def test_every_planted_site_effect_is_recovered_with_its_sign(
    site_fits: dict[str, dict[str, float]],
    simulator_config: SimulatorConfig,
    organ: str,
    feature: str,
) -> None:
    """A regression on the observed columns finds each visible planted effect with its sign and
    a size of the planted order (missing extras, the shared site term and the at-least-one-site
    rule attenuate it)."""
    coefs = site_fits[organ]
    effect = planted(simulator_config, organ, feature)
    checked = 0
    for cancer_type, size in effect.items():
        if abs(size) < VISIBLE:
            continue
        coef = coefs.get(f"{feature}@{cancer_type}", coefs.get(feature))
        assert coef is not None
        assert np.sign(coef) == np.sign(size), (cancer_type, coef, size)
        assert 0.1 < abs(coef) < 2 * abs(size), (cancer_type, coef, size)
        checked += 1
    if checked == 0:
        pytest.skip(f"{feature} -> {organ} is planted below {VISIBLE} per SD everywhere")


def test_high_cd8_and_activated_nk_mean_fewer_relapses_by_36_months(
    large_simulated_cohort: pd.DataFrame,
) -> None:
    """Within each cancer type, among resected (stage I-III) patients: those above the type's
    median in both CD8 and activated NK fractions relapse less by 36 months (Kaplan-Meier) than
    those at or below it in both (activated NK is 0 in most samples: its median is often 0)."""
    for cancer_type, group in resected(large_simulated_cohort).groupby("cancer_type"):
        cd8 = group["t_cells_cd8"] > group["t_cells_cd8"].median()
        nk = group["nk_cells_activated"] > group["nk_cells_activated"].median()
        high, low = km_risk(group[cd8 & nk], 36), km_risk(group[~cd8 & ~nk], 36)
        assert high < low - 0.05, (cancer_type, high, low)


# ------------------------------------------------------------------------------------------------
# The oracle: consistent, calibrated against the observed outcomes, realistic


def test_oracle_risks_are_consistent(large_simulated_cohort: pd.DataFrame) -> None:
    r36, r60, r120, late = (
        large_simulated_cohort[c].to_numpy()
        for c in ("oracle_risk_36", "oracle_risk_60", "oracle_risk_120", "oracle_late_relapse")
    )
    assert (r36 <= r60).all()
    assert (r60 <= r120).all()
    assert ((late >= 0) & (late <= 1)).all()
    # P(relapse in (60, 120] | relapse-free at 60) by its definition; metastatic at diagnosis
    # (risk 1 from month 0) has nothing left to happen after month 60: 0 by convention.
    at_diagnosis = r60 == 1.0
    np.testing.assert_array_equal(
        at_diagnosis, schema.metastatic_at_diagnosis(large_simulated_cohort).to_numpy()
    )
    resected_ = ~at_diagnosis
    np.testing.assert_allclose(
        late[resected_],
        (r120[resected_] - r60[resected_]) / (1 - r60[resected_]),
        atol=1e-9,
    )
    assert (late[at_diagnosis] == 0.0).all()


@pytest.mark.parametrize("months", [36, 60, 120])
def test_observed_relapse_matches_the_oracle_risk(
    large_simulated_cohort: pd.DataFrame, months: int
) -> None:
    """Kaplan-Meier rather than 'patients followed >= 36 months': keeping the patients censored
    early only when they relapsed first would bias the observed share upwards."""
    observed = km_risk(large_simulated_cohort, months)
    expected = large_simulated_cohort[f"oracle_risk_{months}"].mean()
    assert observed == pytest.approx(expected, abs=0.02)


@pytest.mark.parametrize("months", [36, 60, 120])
def test_observed_relapse_after_resection_matches_the_oracle_risk(
    large_simulated_cohort: pd.DataFrame, months: int
) -> None:
    """The same on the dormancy population alone (stage IV would carry the check above)."""
    cohort = resected(large_simulated_cohort)
    observed = km_risk(cohort, months)
    assert observed == pytest.approx(cohort[f"oracle_risk_{months}"].mean(), abs=0.02)


@pytest.mark.parametrize("organ", schema.sites())
def test_observed_site_rates_match_the_oracle(
    large_simulated_cohort: pd.DataFrame, organ: str
) -> None:
    rel = relapsed(large_simulated_cohort)
    observed = rel[f"site_{organ}"].mean()
    assert observed == pytest.approx(rel[f"oracle_site_{organ}"].mean(), abs=0.02)
    # Stage IV (sites at diagnosis) follows the same site model.
    at_diagnosis = rel[schema.metastatic_at_diagnosis(rel)]
    assert at_diagnosis[f"site_{organ}"].mean() == pytest.approx(
        at_diagnosis[f"oracle_site_{organ}"].mean(), abs=0.02
    )


@pytest.mark.parametrize("organ", schema.sites())
def test_oracle_site_auroc_is_realistic(oracle_scores: OracleScores, organ: str) -> None:
    """biology.md: about 0.65-0.85 from molecular features; 0.95+ means a planted signal too
    strong. Band widened slightly for sampling noise, but never above 0.9."""
    auroc = oracle_scores.site_auroc[organ]
    assert 0.58 <= auroc <= 0.88
    assert auroc < 0.9


def test_oracle_summary_is_realistic(
    oracle_scores: OracleScores, large_simulated_cohort: pd.DataFrame
) -> None:
    assert 0.6 <= oracle_scores.macro_auroc <= 0.85
    assert 0.6 <= oracle_scores.harrell_c < 0.9
    assert oracle_scores.n_patients == len(large_simulated_cohort)
    assert oracle_scores.n_relapsed == int(large_simulated_cohort[EVENT].sum())
    assert oracle_scores.n_metastatic_at_diagnosis == int(
        schema.metastatic_at_diagnosis(large_simulated_cohort).sum()
    )


def test_oracle_concordance_is_scored_on_resected_patients_only(
    large_simulated_cohort: pd.DataFrame, oracle_scores: OracleScores
) -> None:
    """Stage IV (month 0, risk 1) would make every pair with them trivially concordant."""
    cohort = resected(large_simulated_cohort)
    risk = cohort[f"oracle_risk_{metrics.CONCORDANCE_HORIZON}"]
    expected = metrics.harrell_c(cohort[MONTHS], cohort[EVENT], risk)
    assert oracle_scores.harrell_c == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------
# Reproducibility


def test_same_seed_gives_an_identical_cohort(simulator_config: SimulatorConfig) -> None:
    first = simulate_cohort(2_000, seed=11, config=simulator_config)
    again = simulate_cohort(2_000, seed=11, config=simulator_config)
    pd.testing.assert_frame_equal(first, again)


def test_different_seed_gives_a_different_cohort(simulator_config: SimulatorConfig) -> None:
    first = simulate_cohort(2_000, seed=11, config=simulator_config)
    other = simulate_cohort(2_000, seed=12, config=simulator_config)
    numeric = [*schema.lm22_columns(), MONTHS]
    assert not np.allclose(first[numeric].to_numpy(), other[numeric].to_numpy())
    assert set(first["patient_id"]).isdisjoint(other["patient_id"])


def test_complete_patients_have_every_input_and_a_resected_primary() -> None:
    from metapredict.simulator import complete_patients

    rows = complete_patients(20, 5, draw=200, config=default_config())
    assert list(rows.columns) == list(schema.feature_columns())
    assert len(rows) == 20 and not rows.isna().any().any()
    assert set(rows["stage"]) <= {"I", "II", "III"}
    with pytest.raises(ValueError, match="simulated patients are complete"):
        complete_patients(150, 5, draw=200, config=default_config())
