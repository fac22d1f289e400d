"""The registered versions of a task's model, each with its training run's metrics and aliases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metapredict.registry.store import connect, model_name
from metapredict.settings import StoreSettings


@dataclass(frozen=True)
class VersionSummary:
    version: str
    aliases: tuple[str, ...]
    created_ms: int
    run_id: str
    run_name: str
    data_source: str
    #: the training run's (parent, i.e. LightGBM) metrics
    metrics: dict[str, float] = field(default_factory=dict)
    #: the version's tags (schema_version, retrain_decision, ...)
    tags: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "aliases": list(self.aliases),
            "created_ms": self.created_ms,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "data_source": self.data_source,
            "metrics": self.metrics,
            "tags": self.tags,
        }


def model_versions(task: str, settings: StoreSettings | None = None) -> list[VersionSummary]:
    """Every version of ``metapredict-<task>``, newest first (empty when none is registered)."""
    from mlflow.exceptions import MlflowException

    client: Any
    client, _, _ = connect(settings)
    name = model_name(task)
    try:
        aliases: dict[str, str] = dict(client.get_registered_model(name).aliases)
    except MlflowException:
        return []
    by_version: dict[str, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        by_version.setdefault(str(version), []).append(alias)
    out: list[VersionSummary] = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        run_metrics: dict[str, float] = {}
        run_name = data_source = ""
        if mv.run_id:
            try:
                run = client.get_run(mv.run_id)
            except MlflowException:
                run = None
            if run is not None:
                run_metrics = dict(run.data.metrics)
                run_name = str(run.info.run_name or "")
                data_source = str(run.data.tags.get("data_source", ""))
        out.append(
            VersionSummary(
                version=str(mv.version),
                aliases=tuple(by_version.get(str(mv.version), [])),
                created_ms=int(mv.creation_timestamp or 0),
                run_id=str(mv.run_id or ""),
                run_name=run_name,
                data_source=data_source,
                metrics=run_metrics,
                tags=dict(mv.tags or {}),
            )
        )
    return sorted(out, key=lambda v: int(v.version), reverse=True)
