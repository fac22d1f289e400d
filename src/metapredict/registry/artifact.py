"""The served model on disk: one JSON document plus LightGBM model text, checked by digest.

A registered version's ``artifacts/predictor/`` folder holds:

* ``predictor.json``: the format name and version, task, schema version, feature order,
  categories, sites, risk-group cut points, feature ranges, each estimator's hyperparameters
  and calibration, the interval ensemble's level, and the SHA-256 of every booster file;
* ``boosters/**.txt``: one LightGBM model text per booster (``Booster.model_to_string``).

Reading it executes nothing: JSON is parsed and checked by pydantic, booster text by
LightGBM's own text reader. The SHA-256 of ``predictor.json`` is recorded at registration (the
model version's ``predictor_sha256`` tag) and checked before anything is parsed; the document
then pins every booster file by its own SHA-256. Any mismatch, a missing or extra-named file, or
a document this code cannot rebuild is refused with an :class:`ArtifactError` saying which and
why. Pure: no MLflow.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

import lightgbm as lgb
from pydantic import BaseModel, ConfigDict, ValidationError

from metapredict import __version__
from metapredict.models.serialise import (
    DocumentError,
    EstimatorDoc,
    IntervalsDoc,
    TropismDoc,
    ensemble_document,
    ensemble_from_document,
    estimator_document,
    estimator_from_document,
)
from metapredict.predictor import Predictor

FORMAT = "metapredict-predictor"
FORMAT_VERSION = 1
#: The document inside the predictor folder (its digest is the version's tag).
MANIFEST = "predictor.json"
#: The model-version tag holding the SHA-256 of ``predictor.json``.
DIGEST_TAG = "predictor_sha256"
#: The model-version tag naming the artifact format (``metapredict-predictor/1``).
FORMAT_TAG = "predictor_format"
#: What a booster file may be called (no absolute paths, no ``..``, nothing outside the folder).
_BOOSTER_NAME = re.compile(r"^boosters(/[a-z0-9][a-z0-9-]*)+\.txt$")
#: Largest document or booster file read (a tropism model with intervals is a few MB in all).
MAX_FILE_BYTES = 256 * 1024 * 1024


class ArtifactError(ValueError):
    """A predictor artifact that is refused: changed since registration, incomplete, malformed
    or of another format. The message says which file and why."""


class PredictorDocument(BaseModel):
    """``predictor.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["metapredict-predictor"]
    format_version: int
    metapredict_version: str
    task: Literal["tropism", "dormancy"]
    schema_version: str
    feature_names: list[str]
    categories: dict[str, list[str]]
    sites: list[str]
    risk_cutoffs: tuple[float, float] | None
    feature_ranges: dict[str, tuple[float, float]]
    estimator: EstimatorDoc
    intervals: IntervalsDoc | None
    #: booster file (relative to the folder) -> its SHA-256
    files: dict[str, str]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def format_tag() -> str:
    return f"{FORMAT}/{FORMAT_VERSION}"


def write_predictor(predictor: Predictor, directory: Path) -> str:
    """Write ``predictor`` into ``directory`` (created); return the SHA-256 of its document."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}

    def put(name: str, booster: lgb.Booster) -> str:
        ref = f"boosters/{name}.txt"
        if not _BOOSTER_NAME.match(ref) or ref in files:
            raise ValueError(f"bad or repeated booster name {name!r}")
        data = booster.model_to_string(num_iteration=-1).encode()
        path = directory / ref
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[ref] = sha256_bytes(data)
        return ref

    estimator = estimator_document(predictor.model, "main", put)
    intervals = None if predictor.intervals is None else ensemble_document(predictor.intervals, put)
    document = PredictorDocument(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        metapredict_version=__version__,
        task=predictor.task,
        schema_version=predictor.schema_version,
        feature_names=list(predictor.feature_names),
        categories={k: list(v) for k, v in predictor.categories.items()},
        sites=list(predictor.sites),
        risk_cutoffs=predictor.risk_cutoffs,
        feature_ranges={
            k: (float(lo), float(hi)) for k, (lo, hi) in predictor.feature_ranges.items()
        },
        estimator=estimator,
        intervals=intervals,
        files=files,
    )
    data = document.model_dump_json(indent=1).encode()
    (directory / MANIFEST).write_bytes(data)
    return sha256_bytes(data)


def _read(path: Path, name: str) -> bytes:
    try:
        if path.is_symlink():
            raise ArtifactError(
                f"{name} is a symbolic link; the artifact must hold the file itself"
            )
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ArtifactError(f"{name} is {size} bytes, more than a model file can be")
        return path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{name} is missing from the artifact") from None
    except OSError as err:
        raise ArtifactError(
            f"{name} cannot be read ({type(err).__name__}: {err.strerror})"
        ) from None


def _validation_summary(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "document"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = err.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def read_document(directory: Path, expected_sha256: str) -> PredictorDocument:
    """``predictor.json``, once its SHA-256 matches the digest recorded at registration."""
    data = _read(directory / MANIFEST, MANIFEST)
    actual = sha256_bytes(data)
    if actual != expected_sha256:
        raise ArtifactError(
            f"{MANIFEST} has SHA-256 {actual[:12]}..., not the {expected_sha256[:12]}... "
            "recorded when the version was registered: the artifact was changed afterwards"
        )
    try:
        document = PredictorDocument.model_validate_json(data)
    except ValidationError as err:
        raise ArtifactError(
            f"{MANIFEST} is not a {FORMAT} document: {_validation_summary(err)}"
        ) from None
    if document.format_version != FORMAT_VERSION:
        raise ArtifactError(
            f"{MANIFEST} is format version {document.format_version}; this metapredict reads "
            f"version {FORMAT_VERSION} (saved by metapredict {document.metapredict_version})"
        )
    return document


def read_predictor(directory: Path, expected_sha256: str) -> Predictor:
    """The predictor saved in ``directory`` by :func:`write_predictor`, every file checked.

    Raises :class:`ArtifactError` naming the file and the reason when anything does not match.
    """
    document = read_document(directory, expected_sha256)
    for ref in document.files:
        if not _BOOSTER_NAME.match(ref):
            raise ArtifactError(f"{MANIFEST} names a booster file {ref!r} outside boosters/")

    def get(ref: str) -> lgb.Booster:
        digest = document.files.get(ref)
        if digest is None:
            raise ArtifactError(f"{MANIFEST} uses {ref!r} without recording its digest")
        data = _read(directory / ref, ref)
        if sha256_bytes(data) != digest:
            raise ArtifactError(
                f"{ref} does not match the SHA-256 recorded in {MANIFEST}: the file was changed"
            )
        try:
            return lgb.Booster(model_str=data.decode("utf-8"))
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as err:
            raise ArtifactError(f"{ref} is not LightGBM model text ({err})") from None

    task = document.task
    kind = "tropism" if task == "tropism" else "dormancy"
    members = document.intervals.members if document.intervals is not None else []
    if any(doc.kind != kind for doc in (document.estimator, *members)):
        raise ArtifactError(f"{MANIFEST} mixes estimators of another task into a {task} model")
    if isinstance(document.estimator, TropismDoc) and len(document.estimator.sites) != len(
        document.sites
    ):
        raise ArtifactError(f"{MANIFEST} lists {len(document.sites)} sites but has other boosters")
    try:
        estimator = estimator_from_document(document.estimator, get)
        intervals = (
            None if document.intervals is None else ensemble_from_document(document.intervals, get)
        )
    except DocumentError as err:
        raise ArtifactError(f"{MANIFEST}: {err}") from None
    return Predictor(
        task=task,
        model=estimator,
        feature_ranges={k: (lo, hi) for k, (lo, hi) in document.feature_ranges.items()},
        schema_version=document.schema_version,
        feature_names=tuple(document.feature_names),
        risk_cutoffs=document.risk_cutoffs,
        categories={k: tuple(v) for k, v in document.categories.items()},
        sites=tuple(document.sites),
        intervals=intervals,
    )
