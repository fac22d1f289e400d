"""uvicorn's HTTP protocol with a header timeout, which uvicorn does not have.

uvicorn closes a keep-alive connection that stays idle ``timeout_keep_alive`` seconds after a
response, but a connection that never sends a request, or sends its headers a byte at a time
(slowloris), stays open for ever, and httptools sets no bound on the size of headers.
:class:`HeaderTimeoutProtocol` closes a connection whose request headers are not complete
``METAPREDICT_HEADER_TIMEOUT`` seconds after it connected, or after the first byte of its next
request, and answers 400 to request headers over 64 KiB. ``metapredict serve`` passes it to uvicorn
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
#: Request line and headers of one request, in bytes; more is refused with 400 (httptools
#: itself sets no bound, and a client could stream headers until the header timeout).
MAX_HEADER_BYTES = 64 * 1024


class HeadersTooLargeError(ValueError):
    """Raised in a parser callback: uvicorn answers 400 and closes the connection."""


class HeaderTimeoutProtocol(HttpToolsProtocol):
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HeadersTooLargeError(f"request headers over {MAX_HEADER_BYTES} bytes")

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

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
        self._header_bytes = 0
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()
