"""``metapredict deconvolve`` on an LM22-shaped problem: wall time, permutations, memory, answers.

Data (synthetic, seeded): a 547-gene x 22-type signature shaped like LM22 (log-normal values,
each gene a marker of one type), 500 mixtures of Dirichlet(0.6) fractions with multiplicative
log-normal noise (SD 0.3), and 20,000 genes in all (the other 19,453 log-normal background),
written as a tab-separated file (about 80 MB) as users bring them.

Timed: the command itself in a fresh interpreter (reading the file included), started through
``benchmarks/peak_rss.py`` for its own peak resident memory; without permutations and with 100,
alternating. Also one run on a "merged" copy of the file in which 40 % of the samples lack
3,000 genes (30 of them signature genes), which gives two gene sets and so two nulls, and one on
a log2 copy, for which quantile normalisation is on by default.

Answers: fractions from the command against the implementation before issue 15 (one libsvm
``NuSVR`` fit per sample and nu, copied below as :func:`reference_fit`), on the first samples
of the complete file, Pearson r per cell type across samples. Run alone:
``python -m benchmarks.deconvolution [--quick]``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import (
    BENCH_DIR,
    PartOptions,
    Report,
    Spread,
    Target,
    fmt_num,
    log,
    md_table,
    options,
    parser,
    work_dir,
)

WALL_GOAL_S = 60.0
PERMUTATION_GOAL = 0.25
AGREEMENT_GOAL = 0.999
PERMUTATIONS = 100
NOISE_SD = 0.3
SIGNATURE_GENES = 547
CELL_TYPES = 22
QUICK_NOTE = "quick mode: 60 samples x 3,000 genes, not the target's size"


@dataclass(frozen=True)
class Size:
    samples: int
    genes: int
    repeats: int
    reference_samples: int


FULL = Size(samples=500, genes=20_000, repeats=3, reference_samples=200)
QUICK = Size(samples=60, genes=3_000, repeats=1, reference_samples=20)


@dataclass(frozen=True)
class Run:
    label: str
    seconds: float
    peak_mib: float
    ok: bool
    detail: str


def make_data(size: Size, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Signature (genes x types), expression (genes x samples) and the true fractions."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(mean=2.0, sigma=1.0, size=(SIGNATURE_GENES, CELL_TYPES))
    markers = rng.integers(0, CELL_TYPES, size=SIGNATURE_GENES)
    base[np.arange(SIGNATURE_GENES), markers] *= rng.uniform(8.0, 40.0, size=SIGNATURE_GENES)
    genes = [f"SIG{i:04d}" for i in range(SIGNATURE_GENES)]
    types = [f"Type {k + 1}" for k in range(CELL_TYPES)]
    signature = pd.DataFrame(base, index=pd.Index(genes, name="GeneSymbol"), columns=types)
    truth = rng.dirichlet(np.full(CELL_TYPES, 0.6), size=size.samples)
    mixed = base @ truth.T * rng.lognormal(0.0, NOISE_SD, size=(SIGNATURE_GENES, size.samples))
    background = rng.lognormal(2.0, 1.5, size=(size.genes - SIGNATURE_GENES, size.samples))
    samples = [f"S{j:04d}" for j in range(size.samples)]
    expression = pd.DataFrame(
        np.vstack([mixed, background]),
        index=pd.Index(genes + [f"BG{i:05d}" for i in range(len(background))], name="GeneSymbol"),
        columns=samples,
    )
    return signature, expression, truth


def merged_copy(expression: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """40 % of the samples lack 3,000 genes, 30 of them signature genes (a merged series)."""
    rng = np.random.default_rng(seed)
    holes = expression
    lacking = rng.choice(holes.shape[1], size=int(0.4 * holes.shape[1]), replace=False)
    genes = np.concatenate(
        [
            rng.choice(SIGNATURE_GENES, size=30, replace=False),
            rng.choice(np.arange(SIGNATURE_GENES, len(holes)), size=2_970, replace=False),
        ]
    )
    values = holes.to_numpy(copy=True)
    values[np.ix_(genes, lacking)] = np.nan
    return pd.DataFrame(values, index=holes.index, columns=holes.columns)


# ------------------------------------------------------------------------------------------------
# The implementation before issue 15, kept here (not in src) to check the answers did not move.


def _reference_zscore(y: np.ndarray) -> np.ndarray:
    sd = y.std(ddof=1)
    out: np.ndarray = (y - y.mean()) / sd if sd > 0 else np.zeros_like(y)
    return out


def reference_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``fit_one`` as it was: best of three libsvm nu-SVR fits, weights clipped, renormalised."""
    from sklearn.svm import NuSVR

    y = _reference_zscore(y)
    best: tuple[float, np.ndarray] | None = None
    for nu in (0.25, 0.5, 0.75):
        model = NuSVR(kernel="linear", nu=nu, C=1.0)
        model.fit(x, y)
        weights = np.asarray(model.coef_, dtype=float).ravel().copy()
        weights[weights < 0] = 0.0
        total = weights.sum()
        if total > 0:
            weights /= total
        rmse = float(np.sqrt(np.mean((x @ weights - y) ** 2)))
        if best is None or rmse < best[0]:
            best = (rmse, weights)
    assert best is not None
    return best[1]


def reference_fractions(signature: pd.DataFrame, expression: pd.DataFrame) -> np.ndarray:
    from joblib import Parallel, delayed

    genes = signature.index[signature.index.isin(expression.index)]
    sig = signature.loc[genes].to_numpy(dtype=float)
    x = (sig - sig.mean()) / sig.std(ddof=1)
    ys = expression.loc[genes].to_numpy(dtype=float)
    rows = Parallel(n_jobs=2)(delayed(reference_fit)(x, ys[:, j]) for j in range(ys.shape[1]))
    return np.vstack(rows)


# ------------------------------------------------------------------------------------------------


def deconvolve_once(
    label: str, expression: Path, signature: Path, out: Path, tmp: Path, *extra: str
) -> Run:
    """``metapredict deconvolve`` in a fresh interpreter, through the peak-RSS launcher.

    The command is started as ``python -c 'from metapredict.cli import app; app()'`` with this
    interpreter, so it runs the checkout this benchmark imports (the ``metapredict`` script of
    the venv would do the same under ``make bench``).
    """
    stamp = time.monotonic_ns()
    peak_path = tmp / f"peak-{stamp}.kib"
    command = [
        sys.executable,
        "-c",
        "from metapredict.cli import app; app()",
        "deconvolve",
        str(expression),
        "--signature",
        str(signature),
        "--n-jobs",
        "2",
        "--out",
        str(out),
        *extra,
    ]
    argv = [sys.executable, str(BENCH_DIR / "peak_rss.py"), str(peak_path), *command]
    log_path = tmp / f"deconvolve-{stamp}.log"
    env = dict(os.environ, COLUMNS="120", TERM="dumb")
    with log_path.open("wb") as sink:
        started = time.perf_counter()
        proc = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
        seconds = time.perf_counter() - started
    ok = proc.returncode == 0
    try:
        peak_mib = int(peak_path.read_text()) / 1024
    except (OSError, ValueError):
        peak_mib = float("nan")
    detail = "" if ok else log_path.read_text(errors="replace")[-600:]
    log(f"  {label}: {seconds:.1f} s, peak {peak_mib:.0f} MiB{'' if ok else ' FAILED'}")
    return Run(label, seconds, peak_mib, ok, detail)


def read_fractions(path: Path, types: Sequence[str]) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t", index_col=0)
    return table[list(types)]


def per_type_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = []
    for k in range(a.shape[1]):
        if np.std(a[:, k]) == 0 and np.std(b[:, k]) == 0:
            out.append(1.0 if np.array_equal(a[:, k], b[:, k]) else math.nan)
        else:
            out.append(float(np.corrcoef(a[:, k], b[:, k])[0, 1]))
    return np.array(out)


def per_sample_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([np.corrcoef(a[i], b[i])[0, 1] for i in range(len(a))])


def run(opts: PartOptions) -> Report:
    size = QUICK if opts.quick else FULL
    report = Report("deconvolution", "Deconvolution: metapredict deconvolve", opts.quick)
    report.command = opts.command
    with work_dir("metapredict-bench-deconv-") as tmp:
        started = time.perf_counter()
        signature, expression, truth = make_data(size)
        sig_path = tmp / "signature.txt"
        expr_path = tmp / "expression.txt"
        merged_path = tmp / "merged.txt"
        signature.to_csv(sig_path, sep="\t", float_format="%.6g")
        expression.to_csv(expr_path, sep="\t", float_format="%.6g")
        log2_path = tmp / "log2.txt"
        if not opts.quick:
            merged_copy(expression).to_csv(merged_path, sep="\t", float_format="%.6g", na_rep="")
            np.log2(expression + 1.0).to_csv(log2_path, sep="\t", float_format="%.6g")
        log(
            f"  wrote {size.samples} x {size.genes:,} expression "
            f"({expr_path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s"
        )

        plain: list[Run] = []
        permuted: list[Run] = []
        out_plain = tmp / "plain.txt"
        out_perm = tmp / "perm.txt"
        for r in range(size.repeats):
            order = ("plain", "perm") if r % 2 == 0 else ("perm", "plain")
            for which in order:
                if which == "plain":
                    plain.append(
                        deconvolve_once("no permutations", expr_path, sig_path, out_plain, tmp)
                    )
                else:
                    permuted.append(
                        deconvolve_once(
                            f"{PERMUTATIONS} permutations",
                            expr_path,
                            sig_path,
                            out_perm,
                            tmp,
                            "--permutations",
                            str(PERMUTATIONS),
                        )
                    )
        merged: Run | None = None
        if not opts.quick:
            merged = deconvolve_once(
                f"merged file, {PERMUTATIONS} permutations",
                merged_path,
                sig_path,
                tmp / "merged-out.txt",
                tmp,
                "--permutations",
                str(PERMUTATIONS),
            )
        logged: Run | None = None
        if not opts.quick:
            logged = deconvolve_once(
                "log2 copy (quantile normalisation on), no permutations",
                log2_path,
                sig_path,
                tmp / "log2-out.txt",
                tmp,
            )
        extra = [r for r in (merged, logged) if r is not None]
        failed = [r for r in [*plain, *permuted, *extra] if not r.ok]
        if failed:
            raise RuntimeError(f"metapredict deconvolve failed:\n{failed[0].detail}")

        ours = read_fractions(out_plain, signature.columns).to_numpy()
        n_ref = size.reference_samples
        t0 = time.perf_counter()
        reference = reference_fractions(signature, expression.iloc[:, :n_ref])
        reference_s = time.perf_counter() - t0
        log(f"  reference implementation on {n_ref} samples: {reference_s:.0f} s")

    wall = Spread.of([r.seconds for r in plain])
    wall_perm = Spread.of([r.seconds for r in permuted])
    overhead = Spread.of(
        [b.seconds / a.seconds - 1.0 for a, b in zip(plain, permuted, strict=True)]
    )
    peak = Spread.of([r.peak_mib for r in [*plain, *permuted]])
    r_types = per_type_r(ours[:n_ref], reference)
    r_truth_ours = per_sample_r(ours, truth)
    r_truth_ref = per_sample_r(reference, truth[:n_ref])
    max_diff = float(np.abs(ours[:n_ref] - reference).max())

    def judged(met: bool) -> bool | None:
        return None if opts.quick else met

    note = QUICK_NOTE if opts.quick else ""
    report.targets = [
        Target(
            f"{size.samples} samples x {size.genes:,} genes, no permutations (wall)",
            f"<= {WALL_GOAL_S:.0f} s",
            f"{wall.fmt(1)} s",
            judged(wall.median <= WALL_GOAL_S),
            note,
        ),
        Target(
            f"{PERMUTATIONS} permutations: extra wall time",
            f"<= {PERMUTATION_GOAL:.0%}",
            f"{overhead.fmt(1, 100)} % ({wall_perm.fmt(1)} s)",
            judged(overhead.median <= PERMUTATION_GOAL),
            note,
        ),
        Target(
            "fractions vs the implementation before issue 15 (libsvm per sample), "
            "Pearson r per cell type",
            f">= {AGREEMENT_GOAL} (every type)",
            f"min {np.nanmin(r_types):.5f}, median {np.nanmedian(r_types):.5f} ({n_ref} samples)",
            judged(bool(np.nanmin(r_types) >= AGREEMENT_GOAL)),
            note,
        ),
    ]
    rows = [
        (r.label, fmt_num(r.seconds, 1), fmt_num(r.peak_mib, 0))
        for r in [*plain, *permuted, *extra]
    ]
    report.add(
        f"Runs ({size.samples} samples x {size.genes:,} genes, 2 cores, --n-jobs 2)",
        md_table(["run", "wall s", "peak RSS MiB"], rows)
        + f"\n\nPeak resident memory over the timed runs: {peak.fmt(0)} MiB.",
    )
    report.add(
        "Answers",
        md_table(
            ["what", "value"],
            [
                ("samples compared with the pre-issue-15 implementation", str(n_ref)),
                (
                    "Pearson r per cell type: min / median",
                    f"{np.nanmin(r_types):.5f} / {np.nanmedian(r_types):.5f}",
                ),
                ("largest |fraction difference|", f"{max_diff:.4f}"),
                (
                    "per-sample r with the true fractions (new): median [min]",
                    f"{np.median(r_truth_ours):.3f} [{r_truth_ours.min():.3f}]",
                ),
                (
                    "per-sample r with the true fractions (pre-issue-15): median [min]",
                    f"{np.median(r_truth_ref):.3f} [{r_truth_ref.min():.3f}]",
                ),
                (
                    "pre-issue-15 implementation, wall for those samples (2 processes)",
                    f"{reference_s:.0f} s",
                ),
            ],
        ),
    )
    report.add(
        "Method",
        "- Data: a synthetic LM22-shaped signature (547 genes x 22 types), Dirichlet(0.6) "
        f"fractions, multiplicative log-normal noise SD {NOISE_SD}, background genes up to "
        f"{size.genes:,}; written with 6 significant digits, tab-separated.\n"
        "- Each run is `metapredict deconvolve EXPR --signature SIG --n-jobs 2 --out OUT` in a "
        "fresh interpreter (start-up and reading the file included), started through "
        "`benchmarks/peak_rss.py` for the run's own peak RSS; runs with and without "
        f"`--permutations {PERMUTATIONS}` alternate, and the extra time is the ratio within "
        "each pair.\n"
        "- The merged run (full mode) lacks 3,000 genes in 40 % of the samples: two gene sets, "
        "so two nulls of 100 permutations each. The log2 run (full mode) reads log2(x + 1) of "
        "the same file, which turns quantile normalisation on by default (as for arrays).\n"
        "- Answers: the pre-issue-15 `fit_one` (copied into this module) on the first samples "
        "of the same file, in this process with 2 worker processes; r per cell type across "
        "those samples.",
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report.notes.append(
        f"Load average at the end (1, 5, 15 min): {load}; the timed runs are single shots on a "
        "2-core machine, so another job running alongside slows them."
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser("metapredict deconvolve: speed, memory, answers").parse_args(argv)
    opts = options(args, "benchmarks.deconvolution")
    path = run(opts).write(opts.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
