"""Error bodies: one shape for the service, MLflow's shape on the MLflow scoring routes.

Every error the service answers has the project's shape, ``{"message": ..., "detail": [...]}``
(``detail`` when there are fields to name), 404 and 405 included. The routes that stand in for
``mlflow models serve`` (``/invocations``, ``/ping``, ``/health``, ``/version``) answer in
MLflow's shape instead, ``{"error_code": ..., "message": ...}``, so MLflow's clients read them;
they keep ``detail`` too.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from serving.validation import FieldError, RequestRejected

logger = logging.getLogger(__name__)

#: The routes of MLflow's scoring protocol, which answer errors in MLflow's shape.
MLFLOW_PATHS = frozenset({"/invocations", "/ping", "/health", "/version"})

#: MLflow's error code (``mlflow.protos.databricks_pb2.ErrorCode``) for each status we answer.
MLFLOW_ERROR_CODES: dict[int, str] = {
    400: "MALFORMED_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "BAD_REQUEST",
    413: "RESOURCE_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    422: "INVALID_PARAMETER_VALUE",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}

_REASONS = {
    404: "no such route; the routes are listed at /docs",
    405: "this route does not take that method; see /docs",
}


def error_body(
    path: str, status: int, message: str, errors: list[FieldError] | None = None, omitted: int = 0
) -> dict[str, Any]:
    """The body of an error answered on ``path``."""
    body: dict[str, Any] = {}
    if path in MLFLOW_PATHS:
        body["error_code"] = MLFLOW_ERROR_CODES.get(status, "BAD_REQUEST")
    body["message"] = message
    if errors:
        body["detail"] = [e.as_dict() for e in errors]
    if omitted:
        body["omitted"] = omitted
    return body


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with :func:`error_body`."""

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: RequestRejected) -> JSONResponse:
        body = error_body(request.url.path, exc.status, exc.message, exc.errors, exc.omitted)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldError(
                None,
                None,
                ".".join(str(p) for p in e.get("loc", ())[1:]) or None,
                str(e.get("msg", "invalid")).removeprefix("Value error, "),
            )
            for e in exc.errors()
        ]
        body = error_body(request.url.path, 422, "invalid request", errors)
        return JSONResponse(body, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = _REASONS.get(exc.status_code) or str(exc.detail)
        body = error_body(request.url.path, exc.status_code, message)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
        body = error_body(request.url.path, 500, "internal error; see the service log")
        return JSONResponse(body, status_code=500)
