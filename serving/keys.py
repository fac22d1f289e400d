"""The metrics key: who may read ``GET /metrics``.

``METAPREDICT_METRICS_API_KEY`` is separate from the prediction key so that a Prometheus server
can scrape without being able to predict. It is accepted as ``Authorization: Bearer <key>``
(Prometheus' ``authorization`` scrape setting) or as ``X-API-Key``. Unset, ``/metrics`` is open:
it holds request counts, latencies and model versions, never patient data.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from serving.validation import RequestRejected


def same_key(given: str | None, expected: str) -> bool:
    """Whether ``given`` is ``expected``, compared in constant time."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _bearer(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def require_metrics_key(request: Request) -> None:
    key = request.app.state.settings.metrics_api_key
    if key is None:
        return
    expected = key.get_secret_value()
    headers = request.headers
    if not (
        same_key(_bearer(headers.get("authorization")), expected)
        or same_key(headers.get("x-api-key"), expected)
    ):
        raise RequestRejected(
            401, "missing or wrong metrics key (Authorization: Bearer or X-API-Key)"
        )
