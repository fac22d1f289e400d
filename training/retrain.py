"""Entry point ``retrain`` of the MLproject: the same job as ``metapredict retrain``.

Empty ``--config`` / ``--training-config`` mean "use the default"; the exit code is the CLI's
(0 promoted, 3 kept, 4 refused, 5 champion changed during the job, 1 error).
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


def main(argv: list[str] | None = None) -> int:
    from metapredict.cli import app

    try:
        app(cli_args(argv), standalone_mode=True)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
