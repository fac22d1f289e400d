"""CIBERSORT's nu-SVR method on expression mixed from a synthetic signature with known fractions.

Measured on this synthetic design (400-gene signature + 200 background genes, Dirichlet(0.6)
fractions, multiplicative log-normal noise): noiseless per-sample Pearson r = 1.000 (min);
noise SD 0.1 -> mean r 0.998 (min 0.990); 0.3 -> mean 0.980 (min 0.92); 0.5 -> mean 0.950
(min 0.86). The tests below hold the noiseless floor (r >= 0.95 per sample) and a noisy floor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cohort_fixtures import LM22_LABELS, dirichlet_fractions, mix, synthetic_signature

from metapredict import schema
from metapredict.cohorts.cibersort import read_immune_table
from metapredict.cohorts.deconvolution import deconvolve, results_table
from metapredict.cohorts.errors import CohortInputError
from metapredict.cohorts.expression import prepare_expression, prepare_signature
from metapredict.cohorts.signatures import read_gmt, score_gene_sets


def per_sample_r(estimated: pd.DataFrame, truth: np.ndarray) -> np.ndarray:
    est = estimated.to_numpy()
    return np.array([np.corrcoef(est[i], truth[i])[0, 1] for i in range(len(truth))])


@pytest.fixture(scope="module")
def signature() -> pd.DataFrame:
    return synthetic_signature(n_genes=300, seed=0)


def test_noiseless_mixtures_recover_known_fractions(signature: pd.DataFrame) -> None:
    truth = dirichlet_fractions(16, seed=1)
    expression = mix(signature, truth, background_genes=150)
    result = deconvolve(expression, signature, n_jobs=1)
    r = per_sample_r(result.fractions, truth)
    assert r.min() >= 0.95
    assert np.abs(result.fractions.to_numpy() - truth).max() < 0.02
    assert list(result.fractions.columns) == list(LM22_LABELS)
    assert (result.correlation > 0.99).all()


def test_noisy_mixtures_still_track_the_fractions(signature: pd.DataFrame) -> None:
    truth = dirichlet_fractions(8, seed=2)
    expression = mix(signature, truth, noise_sd=0.3, seed=3)
    result = deconvolve(expression, signature, n_jobs=1)
    r = per_sample_r(result.fractions, truth)
    assert r.mean() >= 0.9
    assert r.min() >= 0.8


def test_weights_are_non_negative_and_sum_to_one(signature: pd.DataFrame) -> None:
    truth = dirichlet_fractions(6, seed=4)
    result = deconvolve(mix(signature, truth, noise_sd=0.5, seed=5), signature, n_jobs=1)
    values = result.fractions.to_numpy()
    assert (values >= 0).all()
    np.testing.assert_allclose(values.sum(axis=1), 1.0)
    assert (values == 0).any(), "negative SVR weights are clipped to exactly zero"


def test_parallel_and_serial_runs_agree(signature: pd.DataFrame) -> None:
    expression = mix(signature, dirichlet_fractions(6, seed=6), noise_sd=0.2, seed=7)
    serial = deconvolve(expression, signature, n_jobs=1)
    parallel = deconvolve(expression, signature, n_jobs=2)
    pd.testing.assert_frame_equal(serial.fractions, parallel.fractions)


def test_log2_input_is_unlogged_and_gives_the_same_fractions(signature: pd.DataFrame) -> None:
    truth = dirichlet_fractions(4, seed=8)
    linear = mix(signature, truth)
    logged, check = prepare_expression(np.log2(linear), source="log.tsv")
    assert check.unlogged
    plain, plain_check = prepare_expression(linear, source="lin.tsv")
    assert not plain_check.unlogged
    a = deconvolve(logged, signature, n_jobs=1).fractions
    b = deconvolve(plain, signature, n_jobs=1).fractions
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-6)


def test_missing_signature_genes_are_reported(signature: pd.DataFrame) -> None:
    truth = dirichlet_fractions(4, seed=9)
    expression = mix(signature, truth).drop(index=["SYN0003", "SYN0010"])
    result = deconvolve(expression, signature, n_jobs=1)
    assert result.missing_genes == ("SYN0003", "SYN0010")
    assert result.genes_used == len(signature) - 2
    assert per_sample_r(result.fractions, truth).min() >= 0.95


def test_too_little_gene_overlap_is_refused(signature: pd.DataFrame) -> None:
    expression = mix(signature, dirichlet_fractions(3, seed=10)).iloc[:100]
    with pytest.raises(CohortInputError, match="only 100 of 300 signature genes"):
        deconvolve(expression, signature, n_jobs=1)


def test_raw_counts_are_refused() -> None:
    rng = np.random.default_rng(0)
    counts = pd.DataFrame(
        rng.negative_binomial(2, 0.001, size=(200, 5)).astype(float),
        index=[f"G{i}" for i in range(200)],
    )
    with pytest.raises(CohortInputError, match="raw read counts"):
        prepare_expression(counts, source="counts.tsv")


def test_integer_tpm_scaled_to_a_million_is_accepted() -> None:
    rng = np.random.default_rng(1)
    values = rng.dirichlet(np.ones(400), size=4).T * 1e6
    tpm = pd.DataFrame(np.round(values), index=[f"G{i}" for i in range(400)])
    tpm = tpm * (1e6 / tpm.sum(axis=0))
    tpm = tpm.round()
    frame, check = prepare_expression(tpm, source="tpm.tsv")
    assert not check.unlogged and len(frame) == 400


@pytest.mark.parametrize(
    ("genes", "message"),
    [
        ([f"ENSG{i:011d}.{i % 3}" for i in range(50)], "Ensembl"),
        ([str(1000 + i) for i in range(50)], "Entrez"),
    ],
)
def test_non_symbol_gene_ids_are_refused(genes: list[str], message: str) -> None:
    frame = pd.DataFrame(np.full((50, 3), 5.5), index=genes)
    with pytest.raises(CohortInputError, match=message):
        prepare_expression(frame, source="expr.tsv")
    with pytest.raises(CohortInputError, match=message):
        prepare_signature(frame, source="sig.tsv")


def test_negative_linear_values_are_refused() -> None:
    frame = pd.DataFrame([[100.0, -3.0], [4.0, 2.0]], index=["A", "B"])
    with pytest.raises(CohortInputError, match="negative values"):
        prepare_expression(frame, source="centred.tsv")


def test_duplicated_symbols_are_averaged() -> None:
    frame = pd.DataFrame([[100.5, 60.5], [200.5, 80.5], [10.5, 10.5]], index=["A", "A", "B"])
    out, check = prepare_expression(frame, source="probes.tsv")
    assert check.duplicated_genes == 1
    assert out.loc["A"].tolist() == [150.5, 70.5]


def test_permutation_p_values_are_seeded_and_separate_signal_from_noise(
    signature: pd.DataFrame,
) -> None:
    small = signature.iloc[:120]
    truth = dirichlet_fractions(2, seed=11)
    expression = mix(small, truth, noise_sd=0.1, seed=12)
    rng = np.random.default_rng(13)
    expression["NOISE"] = rng.permutation(expression.to_numpy().ravel())[: len(expression)]
    first = deconvolve(expression, small, permutations=40, seed=3, n_jobs=1)
    again = deconvolve(expression, small, permutations=40, seed=3, n_jobs=1)
    pd.testing.assert_series_equal(first.p_value, again.p_value)
    assert first.p_value[["S000", "S001"]].max() <= 0.05
    assert first.p_value["NOISE"] > first.p_value[["S000", "S001"]].max()
    assert first.p_value.between(0, 1).all()
    assert deconvolve(expression, small, n_jobs=1).p_value.isna().all()


def test_results_table_is_a_cibersort_table_cohort_build_reads(
    signature: pd.DataFrame, tmp_path: Path
) -> None:
    truth = dirichlet_fractions(3, seed=14)
    result = deconvolve(mix(signature, truth), signature, n_jobs=1)
    table = results_table(result)
    assert list(table.columns) == ["Mixture", *LM22_LABELS, "P-value", "Correlation", "RMSE"]
    path = tmp_path / "results.txt"
    table.to_csv(path, sep="\t", index=False, na_rep="NA")
    immune = read_immune_table(path)
    assert immune.mode == "relative"
    assert list(immune.frame.index) == ["S000", "S001", "S002"]
    assert immune.frame["cibersort_p_value"].isna().all()
    np.testing.assert_allclose(
        immune.frame[list(schema.lm22_columns())].to_numpy(), truth, atol=0.02
    )


# ---------------------------------------------------------------------------------------------
# GMT marker-set scores


def write_gmt(path: Path, sets: dict[str, list[str]]) -> Path:
    path.write_text(
        "".join(f"{name}\tmade up\t" + "\t".join(genes) + "\n" for name, genes in sets.items())
    )
    return path


def test_gmt_score_ranks_samples_by_their_set_genes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    expression = pd.DataFrame(
        rng.lognormal(3.0, 0.3, size=(30, 6)),
        index=[f"G{i}" for i in range(30)],
        columns=[f"S{j}" for j in range(6)],
    )
    expression.loc[["G0", "G1", "G2"]] *= np.array([1, 2, 4, 8, 16, 32])
    sets = read_gmt(write_gmt(tmp_path / "s.gmt", {"MDSC_SCORE": ["G0", "G1", "G2", "GX"]}))
    scores, report = score_gene_sets(expression, sets)
    assert list(scores.columns) == ["mdsc_score"]
    assert scores["mdsc_score"].is_monotonic_increasing
    assert report.used == {"mdsc_score": 3}
    assert report.missing_genes == {"mdsc_score": ["GX"]}
    info = schema.column_info("mdsc_score")
    assert scores["mdsc_score"].between(info.minimum, info.maximum).all()


def test_gmt_without_a_score_column_set_is_refused(tmp_path: Path) -> None:
    sets = read_gmt(write_gmt(tmp_path / "s.gmt", {"HALLMARK_HYPOXIA": ["A", "B"]}))
    expression = pd.DataFrame(np.ones((2, 3)), index=["A", "B"])
    with pytest.raises(CohortInputError, match="mdsc_score"):
        score_gene_sets(expression, sets)


def test_malformed_gmt_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.gmt"
    path.write_text("mdsc_score only-a-name\n")
    with pytest.raises(CohortInputError, match="line 1"):
        read_gmt(path)
