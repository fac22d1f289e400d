"""HTTP routes (contract in ../shared/design.md)."""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from metapredict import __version__, schema
from metapredict.predictor import Predictor
from serving import request_body, responses
from serving.keys import require_metrics_key
from serving.model_store import ModelStore
from serving.request_body import CSV, JSON
from serving.request_model import Vocabulary, vocabulary
from serving.settings import ServingSettings
from serving.telemetry import Telemetry
from serving.validation import FieldError, Problems, RequestRejected, validate_patients

PatientBuilder = Callable[
    [Predictor, list[dict[str, Any]], Any, Any, int, Any], list[dict[str, Any]]
]

#: Batches up to this size are predicted on the event loop with one LightGBM thread;
#: larger ones go to the thread pool (LightGBM releases the GIL) with all threads.
INLINE_ROWS = 32


class JSONBytes(JSONResponse):
    """JSON rendered with orjson (numpy arrays included); a JSONResponse, so the OpenAPI
    document describes a route's response model under application/json."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


async def get_store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.store
    return store


async def get_settings(request: Request) -> ServingSettings:
    settings: ServingSettings = request.app.state.settings
    return settings


async def get_telemetry(request: Request) -> Telemetry:
    telemetry: Telemetry = request.app.state.telemetry
    return telemetry


StoreDep = Annotated[ModelStore, Depends(get_store)]
SettingsDep = Annotated[ServingSettings, Depends(get_settings)]
TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]
API_KEY_HEADER = "X-API-Key"
ApiKeyHeader = Annotated[str | None, Header(alias=API_KEY_HEADER)]
ExplainQuery = Annotated[
    bool,
    Query(
        description="return the top contributing features (TreeSHAP); false is several times "
        "faster for large batches"
    ),
]


class DirectRoute(APIRoute):
    """A prediction route that hands its endpoint the few things it needs directly.

    FastAPI solves an endpoint's dependencies on every request: for these routes (the API key
    check, the store, the settings, one query parameter) that was ~110 us of a ~1 ms
    single-patient request. This route runs the same ``require_api_key`` first, reads the store
    and settings from ``app.state`` as ``get_store`` / ``get_settings`` do, and validates a
    query string, when there is one, with FastAPI's own parameter code (the same values and
    the same 422s); then it calls the endpoint. The endpoint's signature and the route's
    ``dependencies`` still declare all of it, so the OpenAPI document is unchanged.
    ``app.dependency_overrides`` does not apply to these routes, nor would dependencies added
    when including their router (``create_app`` adds none).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        queries = list(self.dependant.query_params)
        declared = set(inspect.signature(endpoint).parameters)
        calls = {d.call for d in self.dependant.dependencies}
        if (
            declared != {"request", "store", "settings", *(q.name for q in queries)}
            or calls != {require_api_key, get_store, get_settings}
            or self.dependant.header_params
            or self.dependant.cookie_params
            or self.dependant.path_params
            or self.body_field is not None
        ):
            raise TypeError(f"{self.path}: DirectRoute does not know how to call {endpoint}")
        defaults = {q.name: q.default for q in queries}

        async def handle(request: Request) -> Response:
            state = request.app.state
            settings: ServingSettings = state.settings
            await require_api_key(settings, request.headers.get(API_KEY_HEADER))
            values = defaults
            if request.scope.get("query_string"):
                values, errors = request_params_to_args(queries, request.query_params)
                if errors:
                    raise RequestValidationError(errors)
            response: Response = await endpoint(
                request=request, store=state.store, settings=settings, **values
            )
            return response

        return handle


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def require_api_key(settings: SettingsDep, x_api_key: ApiKeyHeader = None) -> None:
    if settings.api_key is not None and not _same(x_api_key, settings.api_key.get_secret_value()):
        raise RequestRejected(401, "missing or wrong X-API-Key")


async def _read_document(
    request: Request, settings: ServingSettings, accepted: tuple[str, ...]
) -> tuple[str, bytes, Any, bool]:
    """(media type, body, parsed document, whether it held NaN / Infinity): 415, 413 and 400
    as they apply."""
    mime = request_body.media_type(request, accepted)
    body = await request_body.read_body(request, settings, mime)
    if len(body) >= request_body.OFF_LOOP_BYTES:
        document, non_finite = await run_in_threadpool(request_body.parse, body, mime)
    else:
        document, non_finite = request_body.parse(body, mime)
    return mime, body, document, non_finite


async def _validated(
    rows: Any, settings: ServingSettings, vocab: Vocabulary, large: bool
) -> list[dict[str, Any]]:
    """Validated records; a large request is validated off the event loop."""
    kwargs: dict[str, Any] = {
        "max_patients": settings.max_patients,
        "pandera_batch_rows": settings.pandera_batch_rows,
        "vocab": vocab,
    }
    if large:
        return await run_in_threadpool(lambda: validate_patients(rows, **kwargs))
    return validate_patients(rows, **kwargs)


def _predictor(store: ModelStore, task: str) -> Predictor:
    predictor = store.current.get(task)
    if predictor is None:
        raise RequestRejected(503, store.problem(task) or f"no {task} model is loaded yet")
    return predictor


def _outputs(predictor: Predictor, X: Any, explain: bool) -> tuple[Any, Any, Any]:
    """(outputs, interval bounds or None, contributions or None)."""
    # One LightGBM thread setting for every call, inline or in the pool (PREDICT_THREADS).
    if explain:
        outputs, contributions = predictor.predict_and_explain(X)
    else:
        outputs, contributions = predictor.predict_matrix(X), None
    return outputs, predictor.interval_bounds(X, outputs), contributions


async def _predict(
    predictor: Predictor, records: list[dict[str, Any]], explain: bool
) -> tuple[Any, Any, Any]:
    """(outputs, bounds or None, contributions or None); small batches inline, large ones in
    the thread pool."""
    X = predictor.encode_records(records)
    if len(records) <= INLINE_ROWS:
        return _outputs(predictor, X, explain)
    return await run_in_threadpool(_outputs, predictor, X, explain)


_ERROR_STATUSES: dict[int, str] = {
    400: "malformed JSON or CSV, or an empty body",
    401: "missing or wrong X-API-Key",
    413: "too many patients, too many values, or a body too large",
    415: "the Content-Type is not accepted",
    422: "each failing field of each patient and its rule (the first 100; 'omitted' counts "
    "the rest), or a request of the wrong shape",
    503: "the model is not loaded yet",
}


def _errors(model: type[Any]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": model, "description": d} for status, d in _ERROR_STATUSES.items()}


def build_router() -> APIRouter:
    router = APIRouter()
    predict_deps = [Depends(require_api_key)]

    async def _patients(
        request: Request, store: ModelStore, settings: ServingSettings, task: str, explain: bool
    ) -> tuple[Predictor, list[dict[str, Any]], Any, Any, Any]:
        predictor = _predictor(store, task)
        vocab = vocabulary(predictor)
        _, body, document, _ = await _read_document(request, settings, (JSON,))
        if not isinstance(document, dict) or "patients" not in document:
            raise RequestRejected(422, "the body must be a JSON object with a 'patients' list")
        if len(document) > 1:
            unknown = [_short(k) for k in document if k != "patients"]
            raise RequestRejected(422, f"unknown top-level fields: {', '.join(unknown[:20])}")
        large = len(body) >= request_body.OFF_LOOP_BYTES
        records = await _validated(document["patients"], settings, vocab, large)
        request_body.check_no_duplicate_keys(body, document)
        outputs, bounds, contributions = await _predict(predictor, records, explain)
        request.app.state.telemetry.count_predictions(task, len(records))
        return predictor, records, outputs, bounds, contributions

    def add_predict_route(
        task: str, summary: str, response_model: type[Any], build: PatientBuilder
    ) -> None:
        async def predict(
            request: Request, store: StoreDep, settings: SettingsDep, explain: ExplainQuery = True
        ) -> JSONBytes:
            predictor, records, outputs, bounds, contrib = await _patients(
                request, store, settings, task, explain
            )
            return JSONBytes(
                {
                    "model": responses.model_meta(predictor),
                    "schema_version": predictor.schema_version,
                    "interval_level": predictor.interval_level,
                    "patients": build(
                        predictor, records, outputs, contrib, settings.top_features, bounds
                    ),
                }
            )

        router.add_api_route(
            f"/v1/predict/{task}",
            predict,
            methods=["POST"],
            name=f"predict_{task}",
            tags=["predict"],
            summary=summary,
            response_class=JSONBytes,
            response_model=response_model,
            responses=_errors(responses.ErrorBody),
            dependencies=predict_deps,
            route_class_override=DirectRoute,
        )

    add_predict_route(
        "tropism",
        "Organ tropism: P(each organ involved | distant relapse)",
        responses.TropismResponse,
        responses.tropism_patients,
    )
    add_predict_route(
        "dormancy",
        "Dormancy: cumulative and late distant-relapse risk",
        responses.DormancyResponse,
        responses.dormancy_patients,
    )

    async def invocations(
        request: Request,
        store: StoreDep,
        settings: SettingsDep,
        task: Annotated[Literal["tropism", "dormancy"], Query()] = "tropism",
    ) -> JSONBytes:
        predictor = _predictor(store, task)
        vocab = vocabulary(predictor)
        mime, body, document, non_finite = await _read_document(request, settings, (JSON, CSV))
        rows = document if mime == CSV else mlflow_rows(document)
        if non_finite:  # MLflow's clients write a frame's missing values as NaN
            rows = request_body.nan_as_missing(rows)
        large = len(body) >= request_body.OFF_LOOP_BYTES
        records = await _validated(rows, settings, vocab, large)
        if mime == JSON:
            request_body.check_no_duplicate_keys(body, document)
        X = predictor.encode_records(records)
        if len(records) <= INLINE_ROWS:
            outputs = predictor.batch_matrix(X)
        else:
            outputs = await run_in_threadpool(predictor.batch_matrix, X)
        request.app.state.telemetry.count_predictions(task, len(records))
        names = predictor.batch_columns
        return JSONBytes(
            {"predictions": [dict(zip(names, row.tolist(), strict=True)) for row in outputs]}
        )

    router.add_api_route(
        "/invocations",
        invocations,
        methods=["POST"],
        tags=["mlflow"],
        summary="MLflow scoring protocol (dataframe_split, dataframe_records, inputs, "
        "instances, CSV)",
        description=(
            "Drop-in for `mlflow models serve`: the same bodies (`dataframe_split`, "
            "`dataframe_records`, `inputs` or `instances`, each with optional `params`, which "
            "this model takes none of and ignores as MLflow does; or `text/csv` with a header "
            'line), the same `{"predictions": [...]}` answer (one record per patient: site '
            "probabilities, or risk_36, risk_60, risk_120 and late_relapse, then each one's "
            "interval as `<output>_lower` and `<output>_upper` when the model has intervals) "
            'and MLflow\'s error shape, `{"error_code": ..., "message": ...}`. `inputs` and '
            "`instances` also take a column-oriented object (`{column: [values]}`). Choose the "
            "model with `?task=` (default tropism)."
        ),
        response_class=JSONBytes,
        response_model=responses.InvocationsResponse,
        responses=_errors(responses.MlflowErrorBody),
        dependencies=predict_deps,
        route_class_override=DirectRoute,
    )

    async def ping(request: Request) -> Response:
        store: ModelStore = request.app.state.store
        missing = [t for t in store.settings.tasks if store.current.get(t) is None]
        if missing:
            raise RequestRejected(503, f"not ready: no {', '.join(missing)} model loaded yet")
        return JSONBytes({"status": "ready"})

    for path in ("/ping", "/health"):
        router.add_api_route(
            path,
            ping,
            methods=["GET"],
            tags=["mlflow"],
            summary="200 once every task's model is loaded, else 503 (as `mlflow models serve`)",
            response_model=responses.Status,
            responses={503: {"model": responses.MlflowErrorBody, "description": "not ready"}},
            name=f"mlflow_{path.strip('/')}",
        )

    @router.get(
        "/version",
        tags=["mlflow"],
        summary="The service's version, as plain text (as `mlflow models serve`)",
        response_class=PlainTextResponse,
    )
    async def version() -> PlainTextResponse:
        return PlainTextResponse(__version__)

    @router.get(
        "/v1/models",
        tags=["service"],
        summary="Loaded models and last reload results",
        dependencies=predict_deps,
        responses={401: {"model": responses.ErrorBody}},
    )
    async def models(store: StoreDep) -> dict[str, Any]:
        current = store.current
        out: dict[str, Any] = {"schema_version": schema.SCHEMA_VERSION, "models": {}}
        for task in store.settings.tasks:
            p = current.get(task)
            reload = store.last_reload.get(task)
            out["models"][task] = {
                "loaded": p is not None,
                "status": store.status(task),
                "problem": store.problem(task),
                "read_via": p.info.read_via if p is not None else None,
                **(responses.model_meta(p) if p is not None else {}),
                "schema_version": p.schema_version if p is not None else None,
                "outputs": list(p.output_names) if p is not None else [],
                **({"sites": list(p.sites)} if p is not None and task == "tropism" else {}),
                "categories": (
                    {k: list(v) for k, v in p.categories.items()} if p is not None else {}
                ),
                "training_metrics": _headline(p.info.metrics) if p is not None else {},
                "last_reload": reload.as_dict() if reload is not None else None,
            }
        return out

    @router.get("/health/live", tags=["service"], summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @router.get(
        "/health/ready",
        tags=["service"],
        summary="200 once every task's model is loaded, else 503",
        response_model=responses.Readiness,
        responses={503: {"model": responses.Readiness, "description": "not ready"}},
    )
    async def ready(store: StoreDep) -> Response:
        missing = [t for t in store.settings.tasks if store.current.get(t) is None]
        if missing:
            problems = {t: store.problem(t) for t in missing}
            return JSONBytes(
                {"status": "loading", "missing": missing, "problems": problems}, status_code=503
            )
        return JSONBytes({"status": "ready"})

    @router.get(
        "/metrics",
        tags=["service"],
        summary="Prometheus metrics, text format (needs METAPREDICT_METRICS_API_KEY when set)",
        dependencies=[Depends(require_metrics_key)],
        responses={401: {"model": responses.ErrorBody}},
        response_class=PlainTextResponse,
    )
    async def prometheus(telemetry: TelemetryDep) -> Response:
        return Response(telemetry.render(), media_type="text/plain; version=0.0.4")

    @router.post(
        "/v1/admin/reload",
        tags=["service"],
        summary="Look for a new champion now (needs the admin X-API-Key)",
        responses={
            403: {"model": responses.ErrorBody, "description": "reload is disabled"},
            401: {"model": responses.ErrorBody, "description": "missing or wrong X-API-Key"},
        },
    )
    async def reload(
        store: StoreDep, settings: SettingsDep, x_api_key: ApiKeyHeader = None
    ) -> dict[str, Any]:
        if settings.admin_api_key is None:
            raise RequestRejected(403, "reload is disabled: set METAPREDICT_ADMIN_API_KEY")
        if not _same(x_api_key, settings.admin_api_key.get_secret_value()):
            raise RequestRejected(401, "missing or wrong X-API-Key")
        results = await store.reload()
        return {"results": [r.as_dict() for r in results]}

    return router


HEADLINE_METRICS = (
    "cv_macro_auroc",
    "test_macro_auroc",
    "test_macro_auprc",
    "test_macro_brier",
    "test_macro_calibration_error",
    "test_macro_auroc_ratio_to_oracle",
    "cv_harrell_c",
    "test_harrell_c",
    "test_uno_c",
    "test_td_auc_36",
    "test_td_auc_60",
    "test_td_auc_120",
    "test_integrated_brier",
    "test_harrell_c_ratio_to_oracle",
)


def _headline(values: dict[str, float]) -> dict[str, float]:
    return {k: values[k] for k in HEADLINE_METRICS if k in values}


def _short(key: str) -> str:
    return key if len(key) <= 64 else key[:61] + "..."


#: The keys of MLflow's JSON scoring formats, one per request.
MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")


def _columns_check(columns: list[Any]) -> None:
    """422 for columns no patient has, or named twice: listed up to the bound, never one row
    of the request built with them."""
    known = {"id", *schema.feature_columns()}
    problems = Problems()
    seen: set[str] = set()
    for c in columns:
        if not isinstance(c, str):
            problems.add(FieldError(None, None, None, "each column name must be a string"))
        elif c in seen:
            problems.add(FieldError(None, None, _short(c), "is a column named twice"))
        elif c not in known:
            problems.add(FieldError(None, None, _short(c), "is not a field the schema knows"))
        else:
            seen.add(c)
        if problems.room == 0:
            break
    if problems:
        named = ", ".join(str(e.field) for e in problems.kept[:10] if e.field is not None)
        raise RequestRejected(
            422,
            f"columns that are not the schema's, or named twice: {named or 'see detail'}",
            problems.kept,
            problems.omitted,
        )


def _columnar(name: str, value: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a column-oriented ``{column: [values]}`` object."""
    columns = list(value)
    _columns_check(columns)
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise RequestRejected(
            422, f"'{name}' as an object must map each column to a list, all of one length"
        )
    n = lengths.pop()
    return [{c: value[c][i] for c in columns} for i in range(n)]


def mlflow_rows(document: Any) -> list[Any]:
    """Rows of an MLflow scoring request: one of ``dataframe_split``, ``dataframe_records``,
    ``inputs``, ``instances``, and optional ``params``."""
    if not isinstance(document, dict):
        raise RequestRejected(422, "the body must be a JSON object")
    formats = [k for k in MLFLOW_FORMATS if k in document]
    others = [_short(k) for k in document if k not in MLFLOW_FORMATS and k != "params"]
    if len(formats) != 1:
        raise RequestRejected(
            422,
            "expected exactly one of 'dataframe_split', 'dataframe_records', 'inputs' or "
            f"'instances' (MLflow scoring protocol); got {len(formats)}",
        )
    if others:
        raise RequestRejected(422, f"unknown top-level fields: {', '.join(others[:20])}")
    params = document.get("params")
    if params is not None and not isinstance(params, dict):
        raise RequestRejected(422, "'params' must be a JSON object")
    (name,) = formats
    value = document[name]
    if name == "dataframe_split":
        return _split_rows(value)
    if isinstance(value, dict) and name in ("inputs", "instances"):
        return _columnar(name, value)
    if not isinstance(value, list):
        raise RequestRejected(422, f"'{name}' must be a list of patient objects")
    return value


def _split_rows(split: Any) -> list[dict[str, Any]]:
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
        raise RequestRejected(422, "'dataframe_split' needs 'columns' and 'data'")
    unknown = [_short(k) for k in split if k not in ("columns", "data", "index")]
    if unknown:
        raise RequestRejected(
            422, f"'dataframe_split' takes 'columns', 'data' and 'index'; not {', '.join(unknown)}"
        )
    if "index" in split and not isinstance(split["index"], list):
        raise RequestRejected(422, "'dataframe_split.index' must be a list of row labels")
    columns, data = split["columns"], split.get("data")
    _columns_check(columns)
    if not isinstance(data, list) or not all(
        isinstance(r, list) and len(r) == len(columns) for r in data
    ):
        raise RequestRejected(
            422, "'dataframe_split.data' must be a list of rows as long as 'columns'"
        )
    return [dict(zip(columns, r, strict=True)) for r in data]
