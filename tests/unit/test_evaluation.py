"""Task data preparation, seeded stratified splits, cross-validation and oracle ratios."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from metapredict import features, schema
from metapredict.evaluation import (
    FamilyResult,
    MissingLabels,
    TaskData,
    add_oracle_ratios,
    cross_validate,
    evaluate_oracle,
    oracle_metrics,
    prepare,
)
from metapredict.models.baselines import CoxBaseline, LogisticTropism
from metapredict.models.dormancy import DiscreteTimeHazard
from metapredict.models.tropism import TropismClassifier

MONTHS, EVENT = schema.survival_columns()
CAT = features.categorical_indices()


@pytest.fixture(scope="module")
def tropism_data(simulated_cohort: pd.DataFrame) -> TaskData:
    return prepare("tropism", simulated_cohort, test_size=0.25, seed=3)


@pytest.fixture(scope="module")
def dormancy_data(simulated_cohort: pd.DataFrame) -> TaskData:
    return prepare("dormancy", simulated_cohort.head(1200), test_size=0.25, seed=3)


def test_tropism_trains_on_relapsed_patients_only(
    simulated_cohort: pd.DataFrame, tropism_data: TaskData
) -> None:
    relapsed = simulated_cohort[simulated_cohort[EVENT]]
    assert len(tropism_data.frame) == len(relapsed) < len(simulated_cohort)
    assert tropism_data.frame[EVENT].all()
    expected = relapsed[list(schema.site_columns())].to_numpy(dtype=bool)
    np.testing.assert_array_equal(tropism_data.y, expected)
    assert tropism_data.y.shape == (len(relapsed), len(schema.sites()))
    np.testing.assert_array_equal(
        tropism_data.X, features.encode_frame(relapsed, tropism_data.cancer_types)
    )
    assert tropism_data.cancer_types == tuple(sorted(relapsed["cancer_type"].unique()))
    assert tropism_data.sites == schema.sites()


def test_dormancy_trains_on_everyone_resected_with_censoring(
    simulated_cohort: pd.DataFrame, dormancy_data: TaskData
) -> None:
    cohort = simulated_cohort.head(1200)
    cohort = cohort[~schema.metastatic_at_diagnosis(cohort)]
    assert len(dormancy_data.frame) == len(cohort) < 1200
    y = dormancy_data.y
    np.testing.assert_array_equal(y[y.dtype.names[0]], cohort[EVENT].to_numpy(bool))
    np.testing.assert_array_equal(y[y.dtype.names[1]], cohort[MONTHS].to_numpy(float))
    assert 0 < cohort[EVENT].mean() < 1  # both relapsed and censored patients are kept


@pytest.mark.parametrize("task", ["tropism", "dormancy"])
def test_split_is_a_seeded_partition(simulated_cohort: pd.DataFrame, task: str) -> None:
    cohort = simulated_cohort.head(1200)
    first = prepare(task, cohort, test_size=0.25, seed=11)
    again = prepare(task, cohort, test_size=0.25, seed=11)
    other = prepare(task, cohort, test_size=0.25, seed=12)
    np.testing.assert_array_equal(first.train, again.train)
    np.testing.assert_array_equal(first.test, again.test)
    assert not np.array_equal(first.test, other.test)
    n = len(first.frame)
    assert np.intersect1d(first.train, first.test).size == 0
    np.testing.assert_array_equal(np.union1d(first.train, first.test), np.arange(n))
    assert first.test.size == pytest.approx(0.25 * n, abs=1)


def test_tropism_split_is_stratified_by_cancer_type(tropism_data: TaskData) -> None:
    types = tropism_data.frame["cancer_type"].astype(str)
    whole = types.value_counts(normalize=True)
    test = types.iloc[tropism_data.test].value_counts(normalize=True)
    assert set(test.index) == set(whole.index)
    assert (test - whole).abs().max() < 0.02


def test_dormancy_split_is_stratified_by_cancer_type_and_relapse(dormancy_data: TaskData) -> None:
    frame = dormancy_data.frame
    test = frame.iloc[dormancy_data.test]
    assert abs(test[EVENT].mean() - frame[EVENT].mean()) < 0.02
    shares = frame["cancer_type"].value_counts(normalize=True)
    test_shares = test["cancer_type"].value_counts(normalize=True)
    assert (test_shares - shares).abs().max() < 0.02


def test_rare_strata_are_merged_so_the_split_still_works(simulated_cohort: pd.DataFrame) -> None:
    cohort = simulated_cohort[simulated_cohort[EVENT]].head(120).copy()
    cohort["cancer_type"] = "breast"
    cohort.iloc[:2, cohort.columns.get_loc("cancer_type")] = "melanoma"  # 2 patients: too few
    data = prepare("tropism", cohort, test_size=0.25, seed=0)
    # a pool of 2 is still too few for its own stratum: it joins the largest
    assert set(data.strata) == {"breast"}
    cohort.iloc[2:4, cohort.columns.get_loc("cancer_type")] = ["gastric", "renal"]
    data = prepare("tropism", cohort, test_size=0.25, seed=0)
    assert set(data.strata) == {"breast", "other"}  # 4 rare patients pooled


def test_too_few_patients_are_refused_with_the_count(simulated_cohort: pd.DataFrame) -> None:
    simulated_cohort = simulated_cohort[~schema.metastatic_at_diagnosis(simulated_cohort)]
    relapsed = simulated_cohort[simulated_cohort[EVENT]].head(40)
    cohort = pd.concat([relapsed, simulated_cohort[~simulated_cohort[EVENT]].head(100)])
    with pytest.raises(MissingLabels, match=r"at least 50 metastatic patients.*has 40"):
        prepare("tropism", cohort, test_size=0.2, seed=0)
    with pytest.raises(ValueError, match=r"dormancy task needs at least 50 patients; .* has 49"):
        prepare("dormancy", cohort.head(49), test_size=0.2, seed=0)
    assert len(prepare("dormancy", cohort.head(50), test_size=0.2, seed=0).frame) == 50


def test_tropism_families_report_identical_metric_names(tropism_data: TaskData) -> None:
    messages: list[str] = []
    lgbm = cross_validate(
        "lightgbm",
        lambda: TropismClassifier(
            n_estimators=5, calibration="none", categorical_features=CAT, n_jobs=1
        ),
        tropism_data,
        folds=2,
        seed=0,
        progress=messages.append,
    )
    logistic = cross_validate(
        "logistic_regression",
        lambda: LogisticTropism(categorical_features=CAT),
        tropism_data,
        folds=2,
        seed=0,
    )
    names = set(lgbm.all_metrics())
    assert names == set(logistic.all_metrics())
    assert {"cv_macro_auroc", "cv_macro_auroc_std", "test_macro_auroc", "test_macro_brier"} <= names
    assert messages == [
        "tropism lightgbm: fold 1/2",
        "tropism lightgbm: fold 2/2",
        "tropism lightgbm: final fit on the training split",
    ]
    assert lgbm.test_prediction is not None
    assert lgbm.test_prediction.shape == (tropism_data.test.size, len(schema.sites()))
    assert isinstance(lgbm.estimator, TropismClassifier)


def test_dormancy_families_report_identical_metric_names(dormancy_data: TaskData) -> None:
    hazard = cross_validate(
        "lightgbm",
        lambda: DiscreteTimeHazard(
            n_estimators=5, min_child_samples=20, categorical_features=CAT, n_jobs=1
        ),
        dormancy_data,
        folds=2,
        seed=0,
    )
    cox = cross_validate(
        "cox_ph", lambda: CoxBaseline(categorical_features=CAT), dormancy_data, folds=2, seed=0
    )
    names = set(hazard.all_metrics())
    assert names == set(cox.all_metrics())
    assert {"cv_harrell_c", "test_harrell_c", "test_integrated_brier"} <= names
    assert hazard.test_prediction is not None
    assert hazard.test_prediction.shape == (dormancy_data.test.size, 4)


def test_oracle_is_scored_only_when_its_columns_exist(
    simulated_cohort: pd.DataFrame, tropism_data: TaskData
) -> None:
    assert tropism_data.has_oracle
    oracle = evaluate_oracle(tropism_data)
    assert oracle is not None and oracle.family == "oracle"
    assert set(oracle_metrics("tropism", schema.sites())) <= set(oracle.test)

    real = simulated_cohort.drop(columns=list(schema.oracle_columns()))
    real_data = prepare("tropism", real, test_size=0.25, seed=3)
    assert not real_data.has_oracle
    assert evaluate_oracle(real_data) is None
    ours = FamilyResult("lightgbm", test={"macro_auroc": 0.7})
    add_oracle_ratios(ours, None, "tropism")
    assert ours.ratio_to_oracle == {}
    assert not [k for k in ours.all_metrics() if "ratio_to_oracle" in k]


def test_ratio_to_oracle_divides_the_oracle_metrics_only() -> None:
    ours = FamilyResult("lightgbm", test={"macro_auroc": 0.6, "auroc_bone": math.nan, "x": 1.0})
    oracle = FamilyResult("oracle", test={"macro_auroc": 0.75, "auroc_bone": 0.8, "x": 2.0})
    add_oracle_ratios(ours, oracle, "tropism")
    assert ours.ratio_to_oracle == {"macro_auroc": pytest.approx(0.8)}  # NaN and non-oracle skipped
    assert ours.all_metrics()["test_macro_auroc_ratio_to_oracle"] == pytest.approx(0.8)

    survival = FamilyResult("cox_ph", test={"harrell_c": 0.66})
    add_oracle_ratios(survival, FamilyResult("oracle", test={"harrell_c": 0.7}), "dormancy")
    assert survival.ratio_to_oracle == {"harrell_c": pytest.approx(0.66 / 0.7)}


def test_all_metrics_prefixes_and_drops_missing_values() -> None:
    result = FamilyResult(
        "lightgbm",
        cv={"macro_auroc": 0.7, "macro_auroc_std": 0.01},
        test={"macro_auroc": 0.72, "auroc_brain": math.nan},
        slices={"macro_auroc_breast": 0.74},
        ratio_to_oracle={"macro_auroc": 0.9},
    )
    assert result.all_metrics() == {
        "cv_macro_auroc": 0.7,
        "cv_macro_auroc_std": 0.01,
        "test_macro_auroc": 0.72,
        "test_macro_auroc_breast": 0.74,
        "test_macro_auroc_ratio_to_oracle": 0.9,
    }


def test_each_task_needs_only_its_own_labels(simulated_cohort: pd.DataFrame) -> None:
    cohort = simulated_cohort.head(1500)
    relapse_only = cohort.drop(columns=list(schema.site_columns()))
    sites_only = cohort.drop(columns=list(schema.survival_columns()))
    assert len(prepare("dormancy", relapse_only, test_size=0.2, seed=0).frame) > 0
    with pytest.raises(MissingLabels, match=r"^this cohort cannot train tropism: no site column"):
        prepare("tropism", relapse_only, test_size=0.2, seed=0)
    with pytest.raises(MissingLabels, match=r"cannot train dormancy: no relapse pair"):
        prepare("dormancy", sites_only, test_size=0.2, seed=0)
    # without a relapse column, the metastatic patients are those with a site flagged
    data = prepare("tropism", sites_only, test_size=0.2, seed=0)
    flagged = sites_only[list(schema.site_columns())].any(axis=1)
    assert len(data.frame) == int(flagged.sum())


def test_tropism_trains_the_sites_present_with_enough_patients(
    simulated_cohort: pd.DataFrame,
) -> None:
    cohort = simulated_cohort.head(2000).drop(columns=["site_pleura", "site_adrenal_gland"])
    relapsed = cohort[cohort[EVENT]]
    rare = relapsed.index[relapsed["site_brain"]][3:]
    cohort.loc[rare, "site_brain"] = False  # 3 patients with brain involvement: too few
    data = prepare("tropism", cohort, test_size=0.2, seed=0)
    assert "brain" not in data.sites and "pleura" not in data.sites
    assert data.sites == tuple(
        s for s in schema.sites() if s not in {"brain", "pleura", "adrenal_gland"}
    )
    assert data.y.shape[1] == len(data.sites)
    assert any(n.startswith("site brain not trained: 3 of") for n in data.notes)


def test_dormancy_leaves_out_stage_iv_and_keeps_missing_stage(
    simulated_cohort: pd.DataFrame,
) -> None:
    cohort = simulated_cohort.head(600).copy()
    cohort["stage"] = cohort["stage"].astype(object)
    cohort.loc[cohort.index[:30], "stage"] = "IV"
    cohort.loc[cohort.index[30:50], "stage"] = None
    data = prepare("dormancy", cohort, test_size=0.2, seed=0)
    assert not data.frame["stage"].eq("IV").any()
    assert (data.frame[MONTHS] > 0).all()
    assert data.frame["stage"].isna().sum() >= 20
    at_zero = cohort[EVENT] & (cohort[MONTHS] <= 0)
    n_out = int((at_zero | cohort["stage"].eq("IV")).sum())
    assert n_out >= 30
    assert data.notes[0].startswith(f"{n_out} patient(s) metastatic at diagnosis left out")
    assert data.categories["stage"] == ("I", "II", "III")
    assert prepare("tropism", cohort, test_size=0.2, seed=0).categories["stage"] == schema.STAGES


def test_split_by_site_moves_every_per_site_metric_to_its_site_and_keeps_the_rest() -> None:
    result = FamilyResult(
        "lightgbm",
        cv={"macro_auroc": 0.7, "macro_auroc_std": 0.02, "auroc_lung": 0.6, "auroc_lung_std": 0.1},
        test={"macro_auroc": 0.71, "auroc_lung": 0.61, "brier_distant_lymph_node": 0.2},
        test_ci={"auroc_lung": (0.5, 0.7), "macro_auroc": (0.65, 0.77)},
        slices={"macro_auroc_lung_adenocarcinoma": 0.66},  # a cancer type, not the lung site
    )
    summary, per_site = result.split_by_site(("lung", "distant_lymph_node", "bone"))
    assert per_site == {
        "lung": {
            "cv_auroc": 0.6,
            "cv_auroc_std": 0.1,
            "test_auroc": 0.61,
            "test_auroc_ci95_low": 0.5,
            "test_auroc_ci95_high": 0.7,
        },
        "distant_lymph_node": {"test_brier": 0.2},
    }
    assert summary == {
        "cv_macro_auroc": 0.7,
        "cv_macro_auroc_std": 0.02,
        "test_macro_auroc": 0.71,
        "test_macro_auroc_ci95_low": 0.65,
        "test_macro_auroc_ci95_high": 0.77,
        "test_macro_auroc_lung_adenocarcinoma": 0.66,
    }
    # nothing lost: every metric is in exactly one part
    assert len(summary) + sum(len(v) for v in per_site.values()) == len(result.all_metrics())
