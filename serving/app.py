"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from metapredict import __version__, schema
from serving.errors import install_error_handlers
from serving.limits import RequestGuard
from serving.model_store import Loader, ModelSet, ModelStore, VersionProbe
from serving.openapi import build_openapi
from serving.protocol import HEADER_TIMEOUT
from serving.routes import build_router
from serving.settings import ServingSettings, get_serving_settings
from serving.telemetry import MetricsMiddleware, Telemetry

logger = logging.getLogger(__name__)

DESCRIPTION = """
Predicts, from the immune infiltrate of a primary tumour (CIBERSORT LM22 fractions, optional
blood and signature covariates, cancer type, stage, age):

* **organ tropism**: P(each distant organ is involved | distant relapse);
* **dormancy / late relapse**: cumulative distant-relapse risk by 36, 60 and 120 months and
  P(relapse in (60, 120] months | relapse-free at 60 months).

Every answer names the model version and schema version that produced it.
"""


def _registry_loader(task: str, alias: str, settings: ServingSettings) -> Any:
    from metapredict import registry

    return registry.load(task, alias, settings)


def _registry_probe(task: str, alias: str, settings: ServingSettings) -> str:
    from metapredict import registry

    return registry.current_version(task, alias, settings)


def create_app(
    settings: ServingSettings | None = None,
    *,
    loader: Loader | None = None,
    version_probe: VersionProbe | None = None,
    startup_loader: Loader | None = None,
    startup_probe: VersionProbe | None = None,
) -> FastAPI:
    """Build the service. ``loader`` / ``version_probe`` replace the registry in tests;
    ``startup_loader`` / ``startup_probe``, when given, serve the first load only (``metapredict
    serve`` passes a :class:`~metapredict.registry.fetch.Prefetch` begun before its imports)."""
    settings = settings or get_serving_settings()
    telemetry = Telemetry()
    served: list[ModelSet | None] = [None]  # the models the OpenAPI document describes

    def on_change(models: ModelSet) -> None:
        telemetry.set_models(dict(models.predictors))
        served[0] = models
        app.openapi_schema = None  # described anew for the new model on the next request

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        logging.getLogger("metapredict").setLevel(logging.INFO)
        logging.getLogger("serving").setLevel(logging.INFO)
        if settings.api_key is not None and settings.metrics_api_key is None:
            logger.info(
                "GET /metrics is open (no METAPREDICT_METRICS_API_KEY): it shows request counts "
                "and model versions, no patient data"
            )
        store = ModelStore(
            settings,
            loader=loader or _registry_loader,
            version_probe=version_probe or _registry_probe,
            on_change=on_change,
            startup_loader=startup_loader,
            startup_probe=startup_probe,
        )
        app.state.store = store
        await asyncio.to_thread(store.load_initial)
        poller = asyncio.create_task(store.poll_forever()) if settings.poll_seconds > 0 else None
        try:
            # Lifespan state reaches uvicorn's connections: the header timeout is read there.
            yield {HEADER_TIMEOUT: settings.header_timeout}
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            telemetry.close()

    # /docs and /redoc from Swagger UI and ReDoc files shipped in the fastapi-offline package:
    # they render with no internet connection
    app = FastAPIOffline(
        title="metapredict",
        version=__version__,
        description=DESCRIPTION + f"\nSchema version {schema.SCHEMA_VERSION}.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.telemetry = telemetry
    app.include_router(build_router())
    # The guard sits inside the metrics middleware, which so counts its 413s, 408s and 499s.
    app.add_middleware(
        RequestGuard, max_body_bytes=settings.max_body_bytes, body_timeout=settings.body_timeout
    )
    app.add_middleware(MetricsMiddleware, telemetry=telemetry)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, served[0])
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    install_error_handlers(app)
    return app
