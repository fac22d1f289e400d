"""Entry point ``retrain`` of the MLproject: the same job as ``metapredict retrain``.

Empty ``--config`` / ``--training-config`` mean "use the default". ``mlflow run`` only knows
success or failure (any non-zero exit marks the project run FAILED and ``mlflow run`` exits 1),
so here every decision (promoted, kept, refused, champion changed) exits 0 and is read from the
``retrain_decision`` / ``retrain_outcome`` tags of the ``<task>-retrain`` run; only errors
(1) and bad arguments or config (2) exit non-zero. Schedulers that need the decision in the exit
code run ``metapredict retrain`` directly.
"""

from __future__ import annotations

import argparse
import sys

from metapredict.training_config import TASKS


def cli_args(argv: list[str] | None = None) -> list[str]:
    """Translate the MLproject's arguments (empty = default) into ``metapredict`` ones."""
    parser = argparse.ArgumentParser(prog="python -m training.retrain")
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", default="")
    parser.add_argument("--training-config", default="")
    args = parser.parse_args(argv)
    out = ["retrain", args.task, "--data", args.data]
    if args.config:
        out += ["--config", args.config]
    if args.training_config:
        out += ["--training-config", args.training_config]
    return out


#: ``metapredict retrain`` exit codes that are decisions, not failures.
DECISION_CODES = frozenset({0, 3, 4, 5})


def main(argv: list[str] | None = None) -> int:
    from metapredict.cli import app

    try:
        app(cli_args(argv), standalone_mode=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
        return 0 if code in DECISION_CODES else code
    return 0


if __name__ == "__main__":
    sys.exit(main())
