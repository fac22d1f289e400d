"""uvicorn's HTTP protocol with a header timeout, which uvicorn does not have.

uvicorn closes a keep-alive connection that stays idle ``timeout_keep_alive`` seconds after a
response, but a connection that never sends a request, or sends its headers a byte at a time
(slowloris), stays open for ever. :class:`HeaderTimeoutProtocol` closes a connection whose
request headers are not complete ``METAPREDICT_HEADER_TIMEOUT`` seconds after it connected, or
after the first byte of its next request. ``metapredict serve`` passes it to uvicorn
(``http=``); the application's lifespan publishes the timeout in the lifespan state, which
uvicorn hands every connection (so each worker process reads its own settings).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Lifespan-state key holding the header timeout (seconds).
HEADER_TIMEOUT = "metapredict.header_timeout"
DEFAULT_HEADER_TIMEOUT = 10.0


class HeaderTimeoutProtocol(HttpToolsProtocol):
    _header_timer: asyncio.TimerHandle | None = None

    def _header_timeout(self) -> float:
        return float(self.app_state.get(HEADER_TIMEOUT, DEFAULT_HEADER_TIMEOUT))

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self._header_timeout(), self._headers_too_slow
            )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()
