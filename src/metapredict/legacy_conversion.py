"""Converting a version saved before the JSON model format, once, outside any server.

Versions registered before the JSON format hold a pickled predictor (``predictor.joblib``).
Unpickling runs whatever code the file names, so every loader (the service, ``predict``,
``retrain``, the pyfunc) refuses them. :func:`convert_legacy` is the one place that unpickles:
a user who trusts every writer of the store runs ``metapredict convert-legacy <task> --version N
--trust-pickle`` once; the predictor is written in the JSON format, read back with the checked
reader and compared with the unpickled one, then registered as a new version of the same
training run (its metrics, plots and drift reference stay with it). The aliases the old
version held move to the new one: ``champion`` through the same compare-and-set as a
promotion. The old version stays in the registry, still refused.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from metapredict.pipeline import input_example
from metapredict.registry.artifact import DIGEST_TAG, read_predictor, write_predictor
from metapredict.registry.loader import fetch_version
from metapredict.registry.promotion import move_aliases, tag_version, version_record
from metapredict.registry.store import LEGACY_PREDICTOR_FILE, model_name, scratch_dir
from metapredict.registry.tracking import resume_or_start_run
from metapredict.settings import StoreSettings, get_store_settings

if TYPE_CHECKING:
    from metapredict.predictor import Predictor

logger = logging.getLogger(__name__)

#: Tags linking the two versions (and the training run to its converted version).
CONVERTED_FROM_TAG = "converted_from_version"
CONVERTED_TO_TAG = "converted_to_version"


class ConversionError(RuntimeError):
    """The version cannot be converted (the message says why); nothing was registered."""


@dataclass(frozen=True)
class Conversion:
    """What a conversion registered: the new version and the aliases moved to it."""

    task: str
    old_version: str
    new_version: str
    run_id: str
    aliases_moved: tuple[str, ...]
    aliases_left: tuple[str, ...]


def unpickle_predictor(path: Path, what: str) -> Predictor:
    """The predictor in an old ``predictor.joblib``. Runs the file's code: trusted files only."""
    import joblib

    from metapredict.predictor import Predictor

    try:
        predictor = joblib.load(path)
    except Exception as err:  # any exception: unpickling runs arbitrary code
        raise ConversionError(f"{what}: {LEGACY_PREDICTOR_FILE} could not be read: {err}") from None
    if not isinstance(predictor, Predictor):
        raise ConversionError(
            f"{what}: {LEGACY_PREDICTOR_FILE} does not hold a metapredict predictor "
            f"(it holds {type(predictor).__name__})"
        )
    return predictor


def check_round_trip(predictor: Predictor, what: str) -> None:
    """Write the predictor in the JSON format, read it back with the checked reader, and
    compare the answers (probabilities or risks and their bounds) on an example request."""
    example = input_example(predictor, rows=8)
    with tempfile.TemporaryDirectory(prefix="metapredict-convert-") as tmp:
        folder = Path(tmp) / "predictor"
        digest = write_predictor(predictor, folder)
        again = read_predictor(folder, digest)
    before = predictor.predict_batch(example)
    after = again.predict_batch(example)
    if list(before.columns) != list(after.columns) or not np.allclose(
        before.to_numpy(dtype=float), after.to_numpy(dtype=float), rtol=0, atol=1e-12
    ):
        raise ConversionError(
            f"{what}: the JSON format does not reproduce this predictor's answers; retrain it "
            f"(metapredict train {predictor.task})"
        )


def convert_legacy(task: str, version: str, settings: StoreSettings | None = None) -> Conversion:
    """Register old pickled version ``version`` of ``metapredict-<task>`` again in the JSON
    format and move its aliases to the new version. Raises :class:`ConversionError` (nothing
    registered) for a version that is not an old pickle, that was converted already, whose
    pickle is not a predictor of the task, or that the JSON format would not reproduce."""
    settings = settings or get_store_settings()
    what = f"{model_name(task)} version {version}"
    record = version_record(task, version, settings)
    if CONVERTED_TO_TAG in record.tags:
        raise ConversionError(
            f"{what} was already converted: version {record.tags[CONVERTED_TO_TAG]} holds it"
        )
    if DIGEST_TAG in record.tags:  # known without downloading anything
        raise ConversionError(f"{what} is already stored in the JSON format; nothing to convert")
    with scratch_dir("convert") as tmp:
        fetched = fetch_version(task, version, settings, Path(tmp), legacy_ok=True)
        if not fetched.legacy:
            raise ConversionError(
                f"{what} is already stored in the JSON format; nothing to convert"
            )
        logger.warning("%s: unpickling %s (--trust-pickle)", what, LEGACY_PREDICTOR_FILE)
        predictor = unpickle_predictor(Path(fetched.predictor_path), what)
    if predictor.task != task:
        raise ConversionError(f"{what} holds a {predictor.task} predictor, not a {task} one")
    check_round_trip(predictor, what)

    with resume_or_start_run(
        task,
        record.run_id,
        run_name=f"convert-v{version}",
        tags={"job": "convert-legacy", CONVERTED_FROM_TAG: version},
        settings=settings,
    ) as job:
        new = job.log_and_register(predictor, input_example(predictor), assign_alias=False).version
        tag_version(task, new, {CONVERTED_FROM_TAG: version}, settings)
        tag_version(task, version, {CONVERTED_TO_TAG: new}, settings)
        job.set_tags({CONVERTED_TO_TAG: new})
    moved, left = move_aliases(task, version, new, record.aliases, settings)
    if left:
        logger.warning("%s: %s moved on during the conversion; left as they are", what, left)
    logger.info("%s: registered again as version %s", what, new)
    return Conversion(task, version, new, job.run_id, tuple(moved), tuple(left))
