"""``metapredict convert-legacy {tropism|dormancy} --version N --trust-pickle``: register a
version saved as a pickle (before the JSON model format) again as data, once, outside any
server (:mod:`metapredict.legacy_conversion`)."""

from __future__ import annotations

import json

import typer

from metapredict.cli.streams import echo_result
from metapredict.tasks import Task

_TRUST_HELP = (
    "Unpickle the old version: a pickle runs whatever code it names, so only for a store "
    "whose every writer you trust. Required."
)


def convert_legacy(
    ctx: typer.Context,
    task: Task = typer.Argument(..., help="tropism or dormancy"),
    version: int = typer.Option(
        ..., "--version", min=1, metavar="N", help="The old version to convert."
    ),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help=_TRUST_HELP),
) -> None:
    """Register an old pickled version again in the JSON format and move its aliases to it.

    The new version belongs to the old version's training run; the old version stays in the
    registry, refused by every loader. Prints the new version as JSON on stdout.
    """
    from metapredict.cli.preflight import missing_store
    from metapredict.settings import get_store_settings

    if not trust_pickle:
        typer.echo(
            f"error: converting metapredict-{task} version {version} unpickles it, which runs "
            "whatever code the file names. If you trust every writer of this store, run again "
            f"with --trust-pickle; otherwise retrain: metapredict train {task}",
            err=True,
        )
        raise typer.Exit(2)
    settings = get_store_settings()
    problem = missing_store(settings)
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)

    from metapredict.legacy_conversion import ConversionError, convert_legacy
    from metapredict.registry.store import ModelNotFoundError

    try:
        done = convert_legacy(task, str(version), settings)
    except (ConversionError, ModelNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    echo_result(
        ctx,
        json.dumps(
            {
                "task": done.task,
                "old_version": done.old_version,
                "new_version": done.new_version,
                "run_id": done.run_id,
                "aliases_moved": list(done.aliases_moved),
                "aliases_left": list(done.aliases_left),
            },
            indent=2,
        ),
    )
