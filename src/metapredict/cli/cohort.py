"""``metapredict cohort build``: a validated cohort Parquet from real-data files."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from metapredict.cohorts.errors import CohortInputError

if TYPE_CHECKING:
    from metapredict.cohorts.build import JoinReport
    from metapredict.cohorts.clinical import ClinicalData

app = typer.Typer(
    help="Build cohorts from real data (CIBERSORT tables + cBioPortal or mapped clinical files).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

#: How many ids each list in the printed report shows (the JSON report has them all).
_SHOW_IDS = 8


class ModeChoice(enum.StrEnum):
    auto = "auto"
    relative = "relative"
    absolute = "absolute"


@app.command(name="build")
def build(
    immune: Annotated[
        Path,
        typer.Option(
            "--immune", help="CIBERSORT/CIBERSORTx result table or `metapredict deconvolve` output."
        ),
    ],
    clinical: Annotated[
        Path,
        typer.Option(
            "--clinical",
            help="cBioPortal data_clinical_patient.txt, or any CSV/TSV with --mapping.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")],
    sample_clinical: Annotated[
        Path | None, typer.Option("--sample-clinical", help="cBioPortal data_clinical_sample.txt.")
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option("--mapping", help="TOML column mapping for a generic clinical table."),
    ] = None,
    relapse_pair: Annotated[
        str | None,
        typer.Option(
            "--relapse-pair",
            help="cBioPortal survival pair for distant relapse, e.g. DFS, RFS, PFS "
            "(<PAIR>_MONTHS + <PAIR>_STATUS). "
            "Default: the first of DMFS, DRFS, MFS, RFS, DFS, PFS.",
        ),
    ] = None,
    max_p_value: Annotated[
        float | None,
        typer.Option(
            "--max-p-value",
            min=0.0,
            max=1.0,
            help="Drop samples whose CIBERSORT P-value is above this (e.g. 0.05).",
        ),
    ] = None,
    mode: Annotated[
        ModeChoice,
        typer.Option(
            "--mode", help="LM22 scale: relative fractions, CIBERSORTx absolute scores, or detect."
        ),
    ] = ModeChoice.auto,
    cancer_type: Annotated[
        str | None,
        typer.Option(
            "--cancer-type",
            help="Cancer type for rows whose clinical files give none (single-cancer studies).",
        ),
    ] = None,
    report_path: Annotated[
        Path | None, typer.Option("--report", help="Also write the join report as JSON here.")
    ] = None,
) -> None:
    """Join an immune table with clinical follow-up, validate and write a cohort Parquet."""
    from metapredict import schema
    from metapredict.cohort_io import write_parquet_atomic
    from metapredict.cohorts.build import assemble, validate
    from metapredict.cohorts.cbioportal import load_cbioportal
    from metapredict.cohorts.cibersort import read_immune_table
    from metapredict.cohorts.mapping import apply_mapping, load_mapping

    console = Console(stderr=True, soft_wrap=True)
    if mapping is not None and sample_clinical is not None:
        console.print(
            "[red]error:[/red] --sample-clinical is for cBioPortal files; with "
            "--mapping, name the sample id column in the mapping instead"
        )
        raise typer.Exit(2)
    try:
        table = read_immune_table(immune, mode=mode.value)
        clinical_data: ClinicalData
        if mapping is not None:
            if relapse_pair is not None:
                raise CohortInputError(
                    "--relapse-pair is for cBioPortal files; with --mapping "
                    "name the columns under [columns]"
                )
            clinical_data = apply_mapping(clinical, load_mapping(mapping))
        else:
            clinical_data = load_cbioportal(clinical, sample_clinical, relapse_pair=relapse_pair)
        result = assemble(
            table, clinical_data, max_p_value=max_p_value, default_cancer_type=cancer_type
        )
    except CohortInputError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err

    try:
        cohort = validate(result)
    except schema.CohortValidationError as err:
        print_report(result.report, console)
        _write_report(result.report, report_path)
        console.print(f"[red]the cohort is not valid; nothing written to {out}[/red]")
        console.print(err.summary(limit=50), markup=False, highlight=False)
        raise typer.Exit(1) from err
    if cohort.empty:
        print_report(result.report, console)
        _write_report(result.report, report_path)
        console.print(f"[red]error:[/red] no rows left after the join; nothing written to {out}")
        raise typer.Exit(1)
    write_parquet_atomic(cohort, out)
    print_report(result.report, console)
    _write_report(result.report, report_path)
    trainable = [t for t, verdict in result.report.tasks.items() if verdict.startswith("yes")]
    console.print(
        f"wrote [bold]{out}[/bold]: {len(cohort):,} patients, {result.model.__name__} "
        f"(schema {schema.SCHEMA_VERSION}); it can train: {', '.join(trainable) or 'nothing'}"
    )


def _write_report(report: JoinReport, path: Path | None) -> None:
    if path is None:
        return
    payload = report.model_dump(mode="json")
    payload["dropped_counts"] = report.dropped_counts()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _ids(ids: list[str]) -> str:
    head = ", ".join(ids[:_SHOW_IDS])
    return head + (f", ... ({len(ids) - _SHOW_IDS} more)" if len(ids) > _SHOW_IDS else "")


def print_report(report: JoinReport, console: Console) -> None:
    """The join report as rich tables (ids truncated; ``--report`` has the full lists)."""
    summary = Table(title="Cohort join", show_header=False)
    summary.add_column("item")
    summary.add_column("value", overflow="fold")
    summary.add_row("LM22 scale", f"{report.mode} ({report.mode_reason})")
    summary.add_row("clinical source", report.clinical_source)
    summary.add_row("relapse from", report.relapse_source or "none (no relapse labels)")
    summary.add_row("immune samples", f"{report.immune_samples:,}")
    summary.add_row("clinical patients", f"{report.clinical_patients:,}")
    summary.add_row("matched samples", f"{len(report.matched):,}")
    summary.add_row(
        "unmatched immune samples",
        f"{len(report.unmatched_immune):,}"
        + (f": {_ids(report.unmatched_immune)}" if report.unmatched_immune else ""),
    )
    summary.add_row(
        "clinical patients without a sample",
        f"{len(report.unmatched_clinical):,}"
        + (f": {_ids(report.unmatched_clinical)}" if report.unmatched_clinical else ""),
    )
    summary.add_row(
        "patients with several samples",
        f"{len(report.duplicates):,}"
        + (
            ": " + _ids([f"{d.patient_id} kept {d.kept}" for d in report.duplicates])
            if report.duplicates
            else ""
        ),
    )
    summary.add_row(
        "rows kept",
        f"{report.rows:,}"
        + (f" ({report.relapsed:,} distant relapses)" if report.relapse_source else ""),
    )
    if report.cancer_types:
        summary.add_row(
            "cancer types", ", ".join(f"{k} {v:,}" for k, v in report.cancer_types.items())
        )
    if report.stage_counts:
        summary.add_row("stages", ", ".join(f"{k} {v:,}" for k, v in report.stage_counts.items()))
    if report.missing_age:
        summary.add_row("age missing", f"{report.missing_age:,}")
    if report.ignored_immune_columns:
        summary.add_row("ignored immune columns", ", ".join(report.ignored_immune_columns))
    if report.sites_absent:
        summary.add_row("sites with no column (left out)", ", ".join(report.sites_absent))
    for task, verdict in report.tasks.items():
        summary.add_row(f"can train {task}", verdict)
    console.print(summary)

    if report.dropped:
        dropped = Table(title="Rows dropped")
        dropped.add_column("reason")
        dropped.add_column("rows", justify="right")
        dropped.add_column("ids", overflow="fold")
        for reason, count in report.dropped_counts().items():
            ids = [d.id for d in report.dropped if d.reason == reason]
            dropped.add_row(reason, f"{count:,}", _ids(ids))
        console.print(dropped)

    if report.site_counts:
        sites = Table(title="Site labels (metastatic patients)")
        sites.add_column("site")
        sites.add_column("involved", justify="right")
        sites.add_column("flag missing -> not involved", justify="right")
        for site, count in report.site_counts.items():
            sites.add_row(
                site.removeprefix("site_"),
                f"{count:,}",
                f"{report.missing_site_flags_relapsed.get(site, 0):,}",
            )
        console.print(sites)
    for note in report.notes:
        console.print(f"note: {note}")
