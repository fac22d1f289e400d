"""A small closed-loop HTTP/1.1 load generator (asyncio streams, uvloop when installed).

``concurrency`` keep-alive connections each send a request, wait for the whole response, and
send the next. A run stops by itself at ``max_requests`` issued OR ``max_seconds`` elapsed,
whichever comes first; a server that stops answering is abandoned ``grace_s`` after that. The
request bytes are built once, so the client's cost per request is one write, one header parse
and one body read: :func:`calibrate` measures that ceiling against a trivial endpoint
(``benchmarks.trivial_app``) so a report can show the client is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from benchmarks.common import HOST

T = TypeVar("T")


@dataclass(frozen=True)
class LoadResult:
    requests: int  # completed with any status
    ok: int  # completed with a 2xx status
    errors: int  # connection errors, timeouts, non-2xx
    seconds: float
    latencies_ms: tuple[float, ...]
    client_cpu_s: float
    first_error: str = ""

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies_ms), q))

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def client_cpu_share(self) -> float:
        """Fraction of one core the client used during the run."""
        return self.client_cpu_s / self.seconds if self.seconds > 0 else 0.0


def post_request(path: str, body: bytes, port: int) -> bytes:
    """The raw bytes of a keep-alive ``POST`` with a JSON body."""
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode("ascii")
    return head + body


def get_request(path: str, port: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode("ascii")


class _Shared:
    def __init__(self, max_requests: int, stop_at: float) -> None:
        self.max_requests = max_requests
        self.stop_at = stop_at
        self.issued = 0
        self.ok = 0
        self.errors = 0
        self.first_error = ""
        self.latencies: list[float] = []

    def take(self) -> int | None:
        if self.issued >= self.max_requests or time.perf_counter() >= self.stop_at:
            return None
        self.issued += 1
        return self.issued


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep_alive) after consuming one whole response."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep_alive = b"connection: close" not in lower
    marker = lower.find(b"content-length:")
    if marker >= 0:
        end = lower.find(b"\r\n", marker)
        length = int(lower[marker + 15 : end])
        if length:
            await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()
        keep_alive = False
    return status, keep_alive


async def _worker(port: int, requests: Sequence[bytes], shared: _Shared) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    perf = time.perf_counter
    try:
        while (n := shared.take()) is not None:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            assert reader is not None
            started = perf()
            try:
                writer.write(requests[n % len(requests)])
                status, keep_alive = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                shared.errors += 1
                shared.first_error = shared.first_error or f"{type(err).__name__}: {err}"
                writer.close()
                reader = writer = None
                continue
            shared.latencies.append((perf() - started) * 1000.0)
            if 200 <= status < 300:
                shared.ok += 1
            else:
                shared.errors += 1
                shared.first_error = shared.first_error or f"HTTP {status}"
            if not keep_alive:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _run(
    port: int,
    requests: Sequence[bytes],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    grace_s: float,
) -> LoadResult:
    shared = _Shared(max_requests, time.perf_counter() + max_seconds)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(_worker(port, requests, shared)) for _ in range(concurrency)]
    done, pending = await asyncio.wait(tasks, timeout=max_seconds + grace_s)
    for task in pending:  # a server that stopped answering: abandon its requests
        task.cancel()
        shared.errors += 1
        shared.first_error = shared.first_error or "timed out"
    if pending:
        await asyncio.wait(pending, timeout=grace_s)
    for task in done:
        if task.exception() is not None:
            shared.errors += 1
            shared.first_error = shared.first_error or repr(task.exception())
    seconds = time.perf_counter() - t0
    return LoadResult(
        requests=len(shared.latencies),
        ok=shared.ok,
        errors=shared.errors,
        seconds=seconds,
        latencies_ms=tuple(shared.latencies),
        client_cpu_s=time.process_time() - cpu0,
        first_error=shared.first_error,
    )


def _run_loop(main: Callable[[], Awaitable[T]]) -> T:
    async def wrapped() -> T:
        return await main()

    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(wrapped())


def run_load(
    port: int,
    requests: Sequence[bytes],
    *,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    grace_s: float = 30.0,
) -> LoadResult:
    """One bounded closed-loop run (garbage collection paused while it runs)."""
    if not requests:
        raise ValueError("no requests to send")
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run_loop(
            lambda: _run(port, requests, concurrency, max_requests, max_seconds, grace_s)
        )
    finally:
        if gc_was_enabled:
            gc.enable()


def loop_name() -> str:
    from importlib import metadata

    try:
        return f"uvloop {metadata.version('uvloop')}"
    except metadata.PackageNotFoundError:
        return "asyncio"
