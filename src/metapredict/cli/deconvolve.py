"""``metapredict deconvolve``: CIBERSORT-style immune fractions from bulk expression."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from metapredict.cohorts import MAX_PERMUTATIONS, CohortInputError

if TYPE_CHECKING:
    import pandas as pd

    from metapredict.cohorts.deconvolution import DeconvolutionResult

#: How many missing signature genes the summary names (all are counted).
_SHOW_GENES = 10


def deconvolve(
    expression: Annotated[
        Path,
        typer.Argument(
            help="Expression matrix: genes x samples, first column HGNC symbols, TSV or CSV."
        ),
    ],
    signature: Annotated[
        Path,
        typer.Option(
            "--signature",
            help="Signature matrix (e.g. LM22, which you supply): genes x cell types.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Results table (.txt/.tsv tab-separated, .csv comma)."),
    ],
    permutations: Annotated[
        int,
        typer.Option(
            "--permutations",
            min=0,
            max=MAX_PERMUTATIONS,
            help="Permutations for CIBERSORT p-values (0: none; CIBERSORT suggests >= 100).",
        ),
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutation draws.")] = 0,
    n_jobs: Annotated[int, typer.Option("--n-jobs", min=1, help="Parallel worker processes.")] = 2,
    quantile_normalize: Annotated[
        bool | None,
        typer.Option(
            "--quantile-normalize/--no-quantile-normalize",
            help="Quantile-normalise the samples (CIBERSORT's option for arrays). Default: on "
            "for log-scale input (arrays), off for linear input (RNA-seq TPM).",
            show_default=False,
        ),
    ] = None,
    gmt: Annotated[
        Path | None,
        typer.Option(
            "--gmt",
            help="GMT gene sets; a set named 'mdsc_score' adds that z-scored signature score.",
        ),
    ] = None,
) -> None:
    """Estimate LM22-style immune fractions per sample (CIBERSORT's nu-SVR method)."""
    from metapredict import schema
    from metapredict.cohorts.deconvolution import deconvolve as run_deconvolution
    from metapredict.cohorts.deconvolution import results_table
    from metapredict.cohorts.expression import prepare_expression, prepare_signature, read_matrix
    from metapredict.cohorts.signatures import read_gmt, score_gene_sets

    console = Console(stderr=True, soft_wrap=True)
    if out.suffix.lower() not in {".txt", ".tsv", ".csv"}:
        console.print("error: --out must end in .txt, .tsv or .csv")
        raise typer.Exit(2)
    try:
        sig = prepare_signature(read_matrix(signature, what="signature"), source=signature.name)
        with console.status(f"reading {expression.name}"):
            raw = read_matrix(expression, what="expression")
        mixture, check = prepare_expression(
            raw, source=expression.name, quantile_normalize=quantile_normalize
        )
        del raw
        sets = read_gmt(gmt) if gmt is not None else None
        for note in check.notes:
            console.print(f"note: {note}")
        console.print(
            f"quantile normalisation {'on' if check.quantile_normalise else 'off'}: "
            f"{check.quantile_reason} (--quantile-normalize or --no-quantile-normalize to "
            "choose)",
            markup=False,
        )
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task("nu-SVR fits", total=None)
            result = run_deconvolution(
                mixture,
                sig,
                permutations=permutations,
                seed=seed,
                n_jobs=n_jobs,
                quantile_normalize=check.quantile_normalise,
                on_plan=lambda total: progress.update(task, total=total),
                on_progress=lambda n: progress.advance(task, n),
                source=expression.name,
            )
        extra = None
        if sets is not None:
            extra, score_report = score_gene_sets(mixture, sets)
            for column, used in score_report.used.items():
                console.print(f"{column}: {used} genes scored")
            if score_report.ignored_sets:
                console.print(
                    f"note: {len(score_report.ignored_sets)} GMT set(s) ignored (not a score "
                    "column): " + ", ".join(score_report.ignored_sets[:5])
                )
    except CohortInputError as err:
        console.print(f"error: {err}", markup=False)
        raise typer.Exit(2) from err

    table = results_table(result, extra)
    _write_text_atomic(table, out)
    for line in summary_lines(result, out):
        console.print(line, markup=False)
    unknown = [c for c in sig.columns if c not in schema.lm22_labels()]
    if unknown:
        console.print(
            f"note: {len(unknown)} signature column(s) are not LM22 labels "
            f"({', '.join(unknown[:4])}); `metapredict cohort build` needs the 22 LM22 labels",
            markup=False,
        )
    low = result.correlation.lt(0.5).sum()
    if low:
        console.print(f"note: {int(low)} sample(s) fit poorly (correlation < 0.5)")


def _names(genes: tuple[str, ...]) -> str:
    shown = ", ".join(genes[:_SHOW_GENES])
    return shown + (f" ... ({len(genes) - _SHOW_GENES} more)" if len(genes) > _SHOW_GENES else "")


def summary_lines(result: DeconvolutionResult, out: Path) -> list[str]:
    """What was written and which signature genes each sample lacked, with counts."""
    from metapredict.cohorts.deconvolution import GENES_USED

    used = result.genes_used
    n_sig = result.signature_genes
    in_file = n_sig - len(result.absent_genes)
    lines = [
        f"wrote {out}: {len(result.fractions):,} samples; {in_file:,} of {n_sig:,} signature "
        f"genes in the file; genes used per sample: "
        + (
            f"{int(used.iloc[0]):,}"
            if used.nunique() <= 1
            else f"{int(used.min()):,}-{int(used.max()):,} (column '{GENES_USED}')"
        )
    ]
    if result.absent_genes:
        lines.append(
            f"signature genes absent from the file: {len(result.absent_genes)} "
            f"({_names(result.absent_genes)})"
        )
    if result.partly_missing_genes:
        lines.append(
            f"signature genes empty in some samples: {len(result.partly_missing_genes)} "
            f"({_names(result.partly_missing_genes)}); {result.samples_missing_genes:,} "
            "sample(s) fitted without the ones they lack"
        )
    if result.gene_sets > 1 and result.p_value.notna().any():
        lines.append(f"p-values: one permutation null per gene set ({result.gene_sets} gene sets)")
    return lines


def _write_text_atomic(table: pd.DataFrame, path: Path) -> None:
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        table.to_csv(tmp, sep=sep, index=False, na_rep="NA", float_format="%.6g")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
