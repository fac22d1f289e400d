"""Bounds on how a request body arrives: its size as it is read, and how long it may take.

:class:`RequestGuard` is pure ASGI middleware. It counts the bytes of every ``http.request``
message as the application reads them, so a body without a Content-Length (chunked) is
stopped at ``METAPREDICT_MAX_BODY_BYTES`` as it arrives, never read in full: the client gets
413 and the connection is closed, which ends the upload. A declared Content-Length over the
limit is refused before anything is read. A body that has not fully arrived
``METAPREDICT_BODY_TIMEOUT`` seconds after its headers gets 408 and the connection is closed.

A client that closes the connection before its body is complete gets no answer (there is no
one to answer); it is logged as one info line and counted in ``/metrics`` with status 499
("client closed request", as nginx counts it), not as a server error.

The answer is sent from inside ``receive``, before the exception reaches the application, and
anything the application sends after it is dropped: whatever the application makes of the
exception (a route may turn a failed body read into a 400), the client sees the 413 or 408.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.requests import ClientDisconnect

from serving.errors import error_body
from serving.telemetry import CLIENT_CLOSED

logger = logging.getLogger(__name__)


class _BodyRefused(Exception):
    """The body broke a limit; the answer has been sent."""


class RequestGuard:
    def __init__(self, app: Any, *, max_body_bytes: int, body_timeout: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            message = f"request body larger than {limit} bytes"
            await _answer(send, 413, message, scope.get("path", ""))
            return

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        state = {"received": 0, "complete": False, "started": False, "answered": False}

        async def guarded_send(message: Any) -> None:
            if state["answered"]:
                return  # the guard has answered; the application's late reply is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        async def refuse(status: int, message: str) -> None:
            if not state["started"]:
                state["answered"] = True
                await _answer(send, status, message, scope.get("path", ""))
            raise _BodyRefused(message)

        async def guarded_receive() -> Any:
            if state["complete"]:
                return await receive()  # waiting for a disconnect: no deadline
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                await refuse(
                    408, f"the request body did not arrive within {self.body_timeout:g} seconds"
                )
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    await refuse(413, f"request body larger than {limit} bytes")
                state["complete"] = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except _BodyRefused:
            return
        except ClientDisconnect:
            if state["answered"]:
                return
            scope[CLIENT_CLOSED] = True
            logger.info(
                "client closed the connection before its request body was complete "
                "(%s %s, %d bytes received)",
                scope.get("method", ""),
                scope.get("path", ""),
                state["received"],
            )
        except Exception:
            if state["answered"]:
                return  # the application's reaction to the refusal (e.g. a wrapped error)
            raise


def _content_length(scope: Any) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer(send: Any, status: int, message: str, path: str) -> None:
    """A JSON error in the routes' own shape (MLflow's on its scoring routes), closing the
    connection (which ends an upload)."""
    body = orjson.dumps(error_body(path, status, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
