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
from metapredict.cohorts.deconvolution import (
    deconvolve,
    results_table,
    standardise_signature,
    zscore_rows,
)
from metapredict.cohorts.errors import CohortInputError
from metapredict.cohorts.expression import (
    prepare_expression,
    prepare_signature,
    quantile_normalise,
)
from metapredict.cohorts.nusvr import linear_nusvr
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
    logged, check = prepare_expression(np.log2(linear), source="log.tsv", quantile_normalize=False)
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
    assert result.absent_genes == ("SYN0003", "SYN0010")
    assert result.partly_missing_genes == ()
    assert (result.genes_used == len(signature) - 2).all()
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
    assert list(table.columns) == [
        "Mixture",
        *LM22_LABELS,
        "P-value",
        "Correlation",
        "RMSE",
        "Genes used",
    ]
    assert (table["Genes used"] == len(signature)).all()
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
# Genes missing in some samples: each sample is fitted on the genes it has


def with_holes(expression: pd.DataFrame) -> pd.DataFrame:
    """Samples S001 and S003 lack 25 signature genes (a merged series), S004 lacks 3 others."""
    holes = expression.copy()
    holes.loc[holes.index[:25], ["S001", "S003"]] = np.nan
    holes.loc[holes.index[40:43], "S004"] = np.nan
    return holes


def test_a_sample_gets_the_same_fractions_alone_or_inside_any_file(
    signature: pd.DataFrame,
) -> None:
    truth = dirichlet_fractions(6, seed=20)
    expression = with_holes(mix(signature, truth, noise_sd=0.3, seed=21, background_genes=50))
    whole = deconvolve(expression, signature, n_jobs=2)
    for sample in expression.columns:
        alone = deconvolve(expression[[sample]], signature, n_jobs=1)
        pd.testing.assert_frame_equal(alone.fractions, whole.fractions.loc[[sample]])
        assert alone.rmse[sample] == whole.rmse[sample]
        assert alone.correlation[sample] == whole.correlation[sample]
    others = ["S004", "S001", "S000"]
    subset = deconvolve(expression[others], signature, n_jobs=1)
    pd.testing.assert_frame_equal(subset.fractions, whole.fractions.loc[others])


def test_a_sample_with_empty_genes_is_fitted_as_if_they_were_absent(
    signature: pd.DataFrame,
) -> None:
    truth = dirichlet_fractions(6, seed=22)
    expression = with_holes(mix(signature, truth, noise_sd=0.2, seed=23))
    result = deconvolve(expression, signature, n_jobs=1)
    dropped = expression.drop(index=expression.index[:25])[["S001"]]
    pd.testing.assert_frame_equal(
        deconvolve(dropped, signature, n_jobs=1).fractions, result.fractions.loc[["S001"]]
    )
    # the complete samples keep every gene (they used to lose the genes others lacked)
    assert result.genes_used.to_dict() == {
        "S000": 300, "S001": 275, "S002": 300, "S003": 275, "S004": 297, "S005": 300
    }  # fmt: skip
    assert result.absent_genes == ()
    assert len(result.partly_missing_genes) == 28
    assert result.samples_missing_genes == 3
    assert result.gene_sets == 3
    assert per_sample_r(result.fractions, truth).min() >= 0.9


def test_genes_absent_from_the_file_and_genes_empty_in_some_samples_are_told_apart(
    signature: pd.DataFrame,
) -> None:
    expression = with_holes(mix(signature, dirichlet_fractions(6, seed=24)))
    expression = expression.drop(index=["SYN0100", "SYN0101"])
    expression.loc["SYN0102"] = np.nan  # empty in every sample: as good as absent
    result = deconvolve(expression, signature, n_jobs=1)
    assert result.absent_genes == ("SYN0100", "SYN0101", "SYN0102")
    assert len(result.partly_missing_genes) == 28
    assert result.genes_used["S000"] == 297


def test_a_sample_with_too_few_signature_genes_is_refused_by_name(
    signature: pd.DataFrame,
) -> None:
    expression = mix(signature, dirichlet_fractions(3, seed=25))
    expression.loc[expression.index[:200], "S002"] = np.nan
    with pytest.raises(CohortInputError, match=r"expr.tsv: 1 sample\(s\) .*S002: 100 genes"):
        deconvolve(expression, signature, n_jobs=1, source="expr.tsv")


def test_permutation_nulls_serve_each_gene_set(signature: pd.DataFrame) -> None:
    small = signature.iloc[:120]
    truth = dirichlet_fractions(4, seed=26)
    expression = mix(small, truth, noise_sd=0.1, seed=27)
    expression.loc[expression.index[:10], "S003"] = np.nan
    planned: list[int] = []
    done: list[int] = []
    result = deconvolve(
        expression,
        small,
        permutations=30,
        seed=1,
        n_jobs=1,
        on_plan=planned.append,
        on_progress=done.append,
    )
    assert planned == [4 + 2 * 30]
    assert sum(done) == planned[0]
    assert result.p_value.between(0, 1).all()
    assert (result.p_value <= 0.05).all()


def test_many_gene_sets_with_permutations_are_warned_about(
    signature: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    small = signature.iloc[:120]
    expression = mix(small, dirichlet_fractions(12, seed=28), noise_sd=0.1, seed=29)
    for j, sample in enumerate(expression.columns):
        expression.loc[expression.index[j], sample] = np.nan  # every sample its own gene set
    with caplog.at_level("WARNING", logger="metapredict.cohorts.deconvolution"):
        result = deconvolve(expression, small, permutations=2, n_jobs=1)
    assert result.gene_sets == 12
    assert "12 distinct gene sets" in caplog.text and "24 extra fits" in caplog.text


# ---------------------------------------------------------------------------------------------
# Agreement with an independent implementation: a plain scikit-learn NuSVR loop


def nusvr_loop(expression: pd.DataFrame, signature: pd.DataFrame) -> np.ndarray:
    """CIBERSORT's CoreAlg written out with sklearn's NuSVR (libsvm), one sample at a time."""
    from sklearn.svm import NuSVR

    out = []
    for sample in expression.columns:
        column = expression[sample].dropna()
        genes = [g for g in signature.index if g in column.index]
        x = signature.loc[genes].to_numpy()
        x = (x - x.mean()) / np.std(x, ddof=1)
        y = column.loc[genes].to_numpy()
        y = (y - y.mean()) / np.std(y, ddof=1)
        best, best_rmse = None, np.inf
        for nu in (0.25, 0.5, 0.75):
            w = NuSVR(kernel="linear", nu=nu, C=1.0).fit(x, y).coef_.ravel()
            w = np.where(w < 0, 0.0, w)
            w = w / w.sum()
            rmse = np.sqrt(np.mean((x @ w - y) ** 2))
            if rmse < best_rmse:
                best, best_rmse = w, rmse
        out.append(best)
    return np.array(out)


@pytest.mark.slow
def test_fractions_agree_with_a_plain_nusvr_loop_per_cell_type() -> None:
    signature = synthetic_signature(n_genes=200, seed=30)
    truth = dirichlet_fractions(40, seed=31)
    expression = mix(signature, truth, noise_sd=0.3, seed=32, background_genes=100)
    expression.loc[expression.index[:30], expression.columns[::3]] = np.nan
    ours = deconvolve(expression, signature, n_jobs=2).fractions.to_numpy()
    theirs = nusvr_loop(expression, signature)
    complete = expression.notna().all(axis=0).to_numpy()
    for rows in (complete, ~complete):
        r = [np.corrcoef(ours[rows, k], theirs[rows, k])[0, 1] for k in range(len(LM22_LABELS))]
        assert min(r) >= 0.99, r
    assert np.abs(ours - theirs).max() < 0.05


@pytest.mark.parametrize("nu", [0.25, 0.5, 0.75])
def test_the_interior_point_solver_reaches_libsvms_optimum(
    signature: pd.DataFrame, nu: float
) -> None:
    from sklearn.svm import NuSVR

    x = standardise_signature(signature.to_numpy())
    expression = mix(signature, dirichlet_fractions(5, seed=33), noise_sd=0.3, seed=34)
    ys = zscore_rows(expression.to_numpy().T)
    ours = linear_nusvr(x, ys, nu)
    tight = np.array([NuSVR(kernel="linear", nu=nu, tol=1e-7).fit(x, y).coef_[0] for y in ys])
    np.testing.assert_allclose(ours, tight, atol=1e-3)


def test_rows_the_solver_cannot_finish_go_to_libsvm(signature: pd.DataFrame) -> None:
    from sklearn.svm import NuSVR

    x = standardise_signature(signature.to_numpy())
    ys = zscore_rows(mix(signature, dirichlet_fractions(2, seed=35), noise_sd=0.3).to_numpy().T)
    handed_over = linear_nusvr(x, ys, 0.5, max_steps=1)
    libsvm = np.array([NuSVR(kernel="linear", nu=0.5).fit(x, y).coef_[0] for y in ys])
    np.testing.assert_array_equal(handed_over, libsvm)


def test_a_constant_sample_gets_no_weight(signature: pd.DataFrame) -> None:
    x = standardise_signature(signature.to_numpy())
    np.testing.assert_array_equal(linear_nusvr(x, np.zeros((2, len(x))), 0.5), 0.0)
    flat = pd.DataFrame(5.0, index=signature.index, columns=["FLAT"])
    result = deconvolve(flat, signature, n_jobs=1)
    assert (result.fractions.to_numpy() == 0).all()


# ---------------------------------------------------------------------------------------------
# Negative values, centred data, quantile normalisation


def rsem_like(genes: int = 2000, samples: int = 12, seed: int = 0) -> pd.DataFrame:
    """An RSEM-normalised table: heavy-tailed, many zeros, ~1.5 % tiny negatives (>= -0.96)."""
    rng = np.random.default_rng(seed)
    values = rng.lognormal(3.0, 2.5, size=(genes, samples))
    values[rng.random(values.shape) < 0.1] = 0.0
    values.flat[0] = 1.2e5  # one very high gene sets the maximum, as in real tables
    low = values < 5
    negative = low & (rng.random(values.shape) < 0.06)
    values[negative] = -rng.uniform(0.01, 0.96, size=int(negative.sum()))
    return pd.DataFrame(values, index=[f"G{i}" for i in range(genes)])


def test_tiny_negatives_of_an_rsem_table_are_set_to_zero_and_counted() -> None:
    table = rsem_like()
    share = float((table < 0).to_numpy().mean())
    assert 0.005 < share < 0.03 and table.min().min() >= -0.96
    out, check = prepare_expression(table, source="rsem.txt")
    assert check.negatives_set_to_zero == int((table < 0).to_numpy().sum())
    assert (out.to_numpy() >= 0).all()
    assert not check.unlogged and not check.quantile_normalise
    assert any("small negative value(s)" in note for note in check.notes)
    positive = table.to_numpy() > 0
    np.testing.assert_array_equal(out.to_numpy()[positive], table.to_numpy()[positive])


def test_gene_centred_linear_data_are_refused() -> None:
    table = rsem_like(seed=1).clip(lower=0)
    centred = table.sub(table.mean(axis=1), axis=0)
    with pytest.raises(CohortInputError, match=r"centred.tsv: .*negative"):
        prepare_expression(centred, source="centred.tsv")


def test_z_scored_data_are_refused_with_what_was_seen_and_what_to_give() -> None:
    table = np.log2(rsem_like(seed=2).clip(lower=0) + 1)
    z = table.sub(table.mean(axis=1), axis=0).div(table.std(axis=1) + 1e-9, axis=0)
    with pytest.raises(CohortInputError) as err:
        prepare_expression(z, source="z.tsv")
    message = str(err.value)
    assert message.startswith("z.tsv: the values look centred, z-scored or log ratios")
    assert "median" in message and "negative" in message and "Give TPM" in message


def test_a_two_colour_log_ratio_array_is_refused_not_unlogged() -> None:
    rng = np.random.default_rng(3)
    ratios = rng.standard_t(df=4, size=(3000, 20)) * 0.8  # centred on 0, max about 10
    frame = pd.DataFrame(np.clip(ratios, -10, 10), index=[f"G{i}" for i in range(3000)])
    assert frame.to_numpy().max() < 50
    with pytest.raises(CohortInputError, match="log ratios of a two-colour array"):
        prepare_expression(frame, source="gse-two-colour.txt")


def test_many_or_deep_negatives_on_a_linear_scale_are_refused() -> None:
    table = rsem_like(seed=4)
    deep = table.copy()
    deep.iloc[5, 3] = -5000.0  # far below a normalisation's residue
    with pytest.raises(CohortInputError, match=r"negative values .* linear scale"):
        prepare_expression(deep, source="deep.tsv")
    many = table.copy()
    holes = np.random.default_rng(5).random(many.shape) < 0.1
    many = many.mask(holes, -0.5)  # a tenth of the values: background-subtracted, not residue
    with pytest.raises(CohortInputError, match="more, or deeper, than a normalisation leaves"):
        prepare_expression(many, source="many.tsv")


def test_log2_data_with_a_few_negatives_are_unlogged() -> None:
    table = np.log2(rsem_like(seed=5).clip(lower=0) + 0.5)  # log2 TPM with a pseudo-count
    out, check = prepare_expression(table, source="log2tpm.tsv", quantile_normalize=False)
    assert check.unlogged
    np.testing.assert_allclose(out.to_numpy(), 2.0 ** table.to_numpy())


def test_quantile_normalisation_matches_the_textbook_example() -> None:
    frame = pd.DataFrame(
        {"A": [5.0, 2.0, 3.0, 4.0], "B": [4.0, 1.0, 4.0, 2.0], "C": [3.0, 4.0, 6.0, 8.0]},
        index=["g1", "g2", "g3", "g4"],
    )
    out = quantile_normalise(frame)
    ref = [2.0, 3.0, 14 / 3, 17 / 3]  # means of the sorted columns
    np.testing.assert_allclose(out["A"], [ref[3], ref[0], ref[1], ref[2]])
    np.testing.assert_allclose(out["B"], [(ref[2] + ref[3]) / 2, ref[0], 31 / 6, ref[1]])
    np.testing.assert_allclose(out["C"], ref)


def test_quantile_normalisation_keeps_empty_cells_empty() -> None:
    rng = np.random.default_rng(6)
    frame = pd.DataFrame(rng.lognormal(3, 1, size=(50, 4)), columns=list("abcd"))
    frame.iloc[:5, 1] = np.nan
    out = quantile_normalise(frame)
    assert out.iloc[:5, 1].isna().all() and out.drop(columns="b").notna().all().all()
    complete = np.sort(out[["a", "c", "d"]].to_numpy(), axis=0)
    np.testing.assert_allclose(complete[:, 0], complete[:, 1])
    # a sample's ranks are kept
    assert (out["b"].rank().dropna() == frame["b"].rank().dropna()).all()


@pytest.mark.parametrize(
    ("log_scale", "choice", "expected"),
    [(True, None, True), (False, None, False), (True, False, False), (False, True, True)],
)
def test_quantile_normalisation_default_follows_the_scale(
    log_scale: bool, choice: bool | None, expected: bool
) -> None:
    table = rsem_like(seed=7).clip(lower=0)
    if log_scale:
        table = np.log2(table + 1)
    _, check = prepare_expression(table, source="x.tsv", quantile_normalize=choice)
    assert check.quantile_normalise is expected
    if choice is not None:
        assert check.quantile_reason == "chosen"
    else:
        assert check.quantile_reason.startswith("log-scale" if log_scale else "linear-scale")


def test_quantile_normalisation_in_deconvolve_covers_every_gene_of_the_file(
    signature: pd.DataFrame,
) -> None:
    expression = mix(signature, dirichlet_fractions(5, seed=40), noise_sd=0.2, background_genes=80)
    normalised = deconvolve(expression, signature, n_jobs=1, quantile_normalize=True)
    by_hand = deconvolve(quantile_normalise(expression), signature, n_jobs=1)
    pd.testing.assert_frame_equal(normalised.fractions, by_hand.fractions)
    plain = deconvolve(expression, signature, n_jobs=1)
    assert not np.allclose(plain.fractions.to_numpy(), normalised.fractions.to_numpy())


def test_minus_infinity_is_log2_of_zero_and_other_infinities_are_empty() -> None:
    table = np.log2(rsem_like(seed=9).clip(lower=0) + 1)
    table.iloc[0, 0] = -np.inf
    table.iloc[1, 1] = np.inf
    out, check = prepare_expression(table, source="log.tsv", quantile_normalize=False)
    assert out.iloc[0, 0] == 0.0
    assert np.isnan(out.iloc[1, 1])
    assert "1 infinite value(s) read as empty cells" in check.notes


def test_a_sample_with_no_values_is_refused_by_name() -> None:
    table = rsem_like(seed=10).clip(lower=0)
    table[3] = np.nan
    with pytest.raises(CohortInputError, match=r"merged.tsv: 1 sample column\(s\) .*\(3\)"):
        prepare_expression(table, source="merged.tsv")
    empty_column = quantile_normalise(table)
    assert empty_column[3].isna().all() and empty_column.drop(columns=3).notna().all().all()


def test_empty_cells_are_kept_and_counted() -> None:
    table = rsem_like(seed=8).clip(lower=0)
    table.iloc[:30, :4] = np.nan
    table.iloc[30, :] = np.nan
    out, check = prepare_expression(table, source="merged.tsv")
    assert check.genes_with_missing_values == 30
    assert check.empty_genes == 1
    assert len(out) == len(table) - 1
    assert out.iloc[:30, :4].isna().all().all()


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
