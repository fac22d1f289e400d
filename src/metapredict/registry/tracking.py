"""Logging a training job: a parent run per job, child runs per model family, the model."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from metapredict.predictor import Predictor
from metapredict.registry.store import (
    CHALLENGER,
    CHAMPION,
    PREDICTOR_ARTIFACT,
    connect,
    experiment_id,
    model_name,
    scratch_dir,
)
from metapredict.registry.ui_view import try_ensure_headline_view
from metapredict.settings import StoreSettings, project_root

logger = logging.getLogger(__name__)

#: Third-party packages the logged model needs, pinned to the versions it was trained with.
#: Loading the model imports its code path (the metapredict package, logged with it) and these.
_RUNTIME_PACKAGES = (
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "lightgbm",
    "pandera",
    "pydantic",
    "pydantic-settings",
    "mlflow",
)


#: MLflow 3's experiment type: the UI lists the experiment with model-training experiments (runs,
#: metrics, models), not GenAI ones (traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    alias: str
    run_id: str
    model_uri: str


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_root(),
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pip_requirements() -> list[str]:
    reqs = []
    for package in _RUNTIME_PACKAGES:
        try:
            reqs.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


class JobRun:
    """A live MLflow run (parent or child) with typed logging helpers."""

    def __init__(
        self,
        run_id: str,
        task: str,
        client: Any,
        experiment_id: str,
        settings: StoreSettings | None = None,
    ) -> None:
        self.run_id = run_id
        self.task = task
        self.client = client
        self.experiment_id = experiment_id
        self.settings = settings

    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        mlflow.log_params({k: _param(v) for k, v in params.items()}, run_id=self.run_id)

    def log_metrics(self, values: Mapping[str, float]) -> None:
        import mlflow

        mlflow.log_metrics(dict(values), run_id=self.run_id)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        import mlflow

        with _active(self.run_id):
            mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_figure(self, figure: Figure, path: str) -> None:
        self.client.log_figure(self.run_id, figure, path)

    def log_dict(self, data: Mapping[str, Any], path: str) -> None:
        self.client.log_dict(self.run_id, dict(data), path)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_dataset(self, frame: pd.DataFrame, *, name: str, source: str, digest: str) -> None:
        """The dataset's schema, digest and profile (never its rows) as a run input."""
        import mlflow
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.pandas_dataset import from_pandas

        origin: Any = source
        if not Path(source).exists():  # generated data (the simulator): describe, don't point
            origin = CodeDatasetSource(tags={"mlflow.source.name": source})
        dataset = from_pandas(frame, source=origin, name=name, digest=digest)
        with _active(self.run_id):
            mlflow.log_input(dataset, context="training")

    @contextmanager
    def child(self, name: str) -> Iterator[JobRun]:
        """A nested run (one per model family)."""
        import mlflow

        with (
            _active(self.run_id),
            mlflow.start_run(experiment_id=self.experiment_id, run_name=name, nested=True) as run,
        ):
            yield JobRun(run.info.run_id, self.task, self.client, self.experiment_id, self.settings)

    def log_and_register(
        self,
        predictor: Predictor,
        input_example: pd.DataFrame,
        *,
        alias: str | None = None,
        refusal: str | None = None,
        assign_alias: bool = True,
    ) -> RegisteredVersion:
        """Log the whole fitted predictor as an MLflow model and register it.

        The first version of a model gets alias ``champion``; later ones ``challenger``
        (promotion is the retraining gate's decision). An explicit ``alias`` is set instead
        (the retraining job passes ``challenger`` and promotes under a lock). With a
        ``refusal`` (the champion guard's reason) the version gets no alias unless one is
        given, and the reason as its ``not_champion`` tag. ``assign_alias=False`` registers
        the version without an alias (the caller moves aliases itself).
        """
        import mlflow
        from mlflow.models import infer_signature

        from metapredict.registry.artifact import (
            DIGEST_TAG,
            FORMAT_TAG,
            format_tag,
            write_predictor,
        )
        from metapredict.registry.pyfunc import MODEL_CODE

        name = model_name(self.task)
        example_output = predictor.predict_batch(input_example)
        signature = infer_signature(input_example, example_output)
        _loosen_signature(signature)
        with scratch_dir("log") as tmp:
            folder = Path(tmp) / PREDICTOR_ARTIFACT
            digest = write_predictor(predictor, folder)
            with _active(self.run_id):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(MODEL_CODE),
                    artifacts={PREDICTOR_ARTIFACT: str(folder)},
                    model_config={DIGEST_TAG: digest},
                    code_paths=[str(_package_copy(Path(tmp) / "code"))],
                    signature=signature,
                    input_example=input_example,
                    pip_requirements=pip_requirements(),
                    registered_model_name=name,
                    metadata={
                        "schema_version": predictor.schema_version,
                        "task": self.task,
                        DIGEST_TAG: digest,
                        FORMAT_TAG: format_tag(),
                    },
                )
        version = str(info.registered_model_version)
        # Before any alias can name the version: loaders refuse a version without its digest.
        self.client.set_model_version_tag(name, version, DIGEST_TAG, digest)
        self.client.set_model_version_tag(name, version, FORMAT_TAG, format_tag())
        client = self.client
        if refusal is not None:
            client.set_model_version_tag(name, version, "not_champion", refusal)
        if not assign_alias or (refusal is not None and alias is None):
            client.set_model_version_tag(name, version, "schema_version", predictor.schema_version)
            logger.info("registered %s version %s without an alias", name, version)
            return RegisteredVersion(name, version, "", self.run_id, f"models:/{name}/{version}")
        if alias is None:
            # The first version becomes champion through the same compare-and-set (under the
            # registry lock) as a promotion, so two first trainings cannot both claim it.
            from metapredict.registry.promotion import champion_version, promote_if_unchanged

            if (
                champion_version(self.task, self.settings) is None
                and promote_if_unchanged(self.task, version, None, self.settings).promoted
            ):
                alias = CHAMPION
            else:
                alias = CHALLENGER
                client.set_registered_model_alias(name, alias, version)
        else:
            client.set_registered_model_alias(name, alias, version)
        client.set_model_version_tag(name, version, "schema_version", predictor.schema_version)
        logger.info("registered %s version %s as @%s", name, version, alias)
        return RegisteredVersion(name, version, alias, self.run_id, f"models:/{name}/{version}")


def _loosen_signature(signature: Any) -> None:
    """Optional inputs (extras, stage, age) may be absent: mark them not required. Numeric
    inputs are declared ``Any``: MLflow refuses int64 for a ``double`` field, and a patient's age
    or platelet count is naturally an integer (the model converts and validates them)."""
    from mlflow.types.schema import AnyType

    from metapredict import schema
    from metapredict.registry.pyfunc import numeric_features

    optional = {c.name for c in schema.columns(schema.Features) if c.nullable or not c.required}
    numeric = set(numeric_features())
    for spec in signature.inputs.inputs:
        if spec.name in optional:
            spec._required = False
        if spec.name in numeric:
            spec._type = AnyType()  # type: ignore[no-untyped-call]


def _package_copy(directory: Path) -> Path:
    """A copy of the metapredict package (no caches) to log as the model's code path, so the
    model loads wherever its requirements are installed, without metapredict itself."""
    import shutil

    import metapredict

    source = Path(metapredict.__file__).parent
    target = directory / "metapredict"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def _param(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)[:6000]
    return str(value)


@contextmanager
def _active(run_id: str) -> Iterator[None]:
    """Make ``run_id`` the active run for fluent calls that take no run id."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    with mlflow.start_run(run_id=run_id, nested=active is not None):
        yield


@contextmanager
def start_job_run(
    task: str,
    *,
    run_name: str,
    tags: Mapping[str, Any],
    settings: StoreSettings | None = None,
) -> Iterator[JobRun]:
    """The parent run of a training job in the experiment named after the task."""
    import mlflow

    client, _, root = connect(settings)
    exp = experiment_id(client, task, root)
    mark_training_experiment(client, exp)
    try_ensure_headline_view(client, exp, task)
    with mlflow.start_run(experiment_id=exp, run_name=run_name) as run:
        job = JobRun(run.info.run_id, task, client, exp, settings)
        job.set_tags({**tags, "git_commit": git_commit()})
        yield job


@contextmanager
def resume_or_start_run(
    task: str,
    run_id: str,
    *,
    run_name: str,
    tags: Mapping[str, Any],
    settings: StoreSettings | None = None,
) -> Iterator[JobRun]:
    """Run ``run_id`` again (it ends as it was, finished), or, when it is gone or deleted, a new
    run ``run_name`` in the task's experiment (:func:`start_job_run`)."""
    from mlflow.exceptions import MlflowException

    client, _, _ = connect(settings)
    run = None
    if run_id:
        try:
            run = client.get_run(run_id)  # type: ignore[attr-defined]
        except MlflowException:
            run = None
    if run is not None and run.info.lifecycle_stage == "active":
        yield JobRun(run_id, task, client, run.info.experiment_id, settings)
        return
    logger.warning("run %s is gone; logging in a new run %s", run_id or "(none)", run_name)
    with start_job_run(task, run_name=run_name, tags=tags, settings=settings) as job:
        yield job


def mark_training_experiment(client: Any, experiment: str) -> None:
    """Tag the experiment as model training (MLflow 3), unless it already says so."""
    tags = client.get_experiment(experiment).tags
    if tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
        client.set_experiment_tag(experiment, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
