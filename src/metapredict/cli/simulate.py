"""``metapredict simulate``: write a simulated cohort."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from metapredict.cli.messages import describe


def simulate(
    patients: int = typer.Option(5000, "--patients", "-n", min=1, help="Number of patients."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed (same seed, same file)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output Parquet file."),
    config: Path | None = typer.Option(
        None, "--config", help="TOML file overriding simulator parameters.", exists=True
    ),
) -> None:
    """Simulate a cohort from the literature-grounded generative model and write it as Parquet."""
    from metapredict import schema
    from metapredict.cohort_io import write_parquet_atomic
    from metapredict.simulator import (
        load_config,
        score_oracle,
        simulate_cohort,
    )

    console = Console(stderr=True, soft_wrap=True)
    try:
        sim_config = load_config(config)
    except ValueError as err:
        console.print(f"[red]invalid simulator config:[/red] {escape(describe(err, config))}")
        raise typer.Exit(2) from err
    started = time.perf_counter()
    with console.status(f"simulating {patients:,} patients (seed {seed})"):
        cohort = simulate_cohort(patients, seed, sim_config)
        schema.validate(cohort, schema.SimulatedCohort, extra_columns_allowed=())
        write_parquet_atomic(cohort, out)
    elapsed = time.perf_counter() - started

    months, event = schema.survival_columns()
    relapsed = cohort[cohort[event]]
    metastatic = schema.metastatic_at_diagnosis(cohort)
    cells = list(schema.lm22_columns())
    console.print(
        f"wrote [bold]{out}[/bold]: {len(cohort):,} patients, "
        f"{len(relapsed):,} with distant metastasis ({len(relapsed) / len(cohort):.1%}; "
        f"{int(metastatic.sum()):,} of them stage IV, metastatic at diagnosis), "
        f"median follow-up {cohort.loc[~metastatic, months].median():.0f} months, "
        f"{(cohort[cells] == 0).to_numpy().mean():.0%} of LM22 values exactly 0, "
        f"simulator {sim_config.version}, schema {schema.SCHEMA_VERSION}, {elapsed:.2f} s"
    )
    if len(relapsed) >= 20:
        scores = score_oracle(cohort)
        table = Table(title="Sites of distant metastasis and the oracle's ceiling")
        table.add_column("site")
        table.add_column("patients", justify="right")
        table.add_column("oracle AUROC", justify="right")
        for organ, col in zip(schema.sites(), schema.site_columns(), strict=True):
            table.add_row(organ, f"{int(relapsed[col].sum()):,}", f"{scores.site_auroc[organ]:.3f}")
        console.print(table)
        console.print(
            f"oracle macro AUROC {scores.macro_auroc:.3f}, "
            f"oracle Harrell's C {scores.harrell_c:.3f} (stage I-III)"
        )
