"""Entry point of the MLproject (``mlflow run training -e <task>``): the same job as
``metapredict train``. Empty ``--data`` / ``--config`` mean "use the default"."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from metapredict.pipeline import run_training
from metapredict.schema import CohortValidationError
from metapredict.training_config import TASKS, load_training_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train")
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--data", default="")
    parser.add_argument("--config", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_training_config(args.task, Path(args.config) if args.config else None)
    try:
        outcome = run_training(
            config,
            data=Path(args.data) if args.data else None,
            progress=lambda message: logging.getLogger("training").info(message),
        )
    except CohortValidationError as err:
        print(f"the cohort breaks the schema; nothing was trained or registered.\n{err}")
        return 1
    reg = outcome.registered
    print(f"registered {reg.name} version {reg.version} as @{reg.alias} (run {reg.run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
