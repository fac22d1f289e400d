"""``metapredict serve --workers N``: N worker processes, each listening on a socket of its own.

Every worker binds the same address with ``SO_REUSEPORT``, so the kernel spreads new
connections over the workers by their addresses. uvicorn's own ``workers=N`` hands all workers
one shared socket, and the worker that wakes first accepts most of a burst of connections: a
client that opens its keep-alive pool at once (a proxy, a load generator) got one worker
(16 of 16 connections in 10 bursts of 10; ``benchmarks/results/replicas.md``).

The parent starts the workers, starts a new one when one dies, and stops them all (SIGTERM,
each shuts down gracefully) when it is told to stop or its block ends.
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
import time
from typing import Any

logger = logging.getLogger(__name__)

#: The app factory the workers import.
APP_FACTORY = "serving.app:create_app"
#: Seconds between checks that every worker is alive, and at least between two restarts.
CHECK_S = 0.5
#: Seconds a stopped worker gets beyond uvicorn's graceful-shutdown timeout before SIGKILL.
STOP_GRACE_S = 5.0


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` with ``SO_REUSEPORT``: one per worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(options: dict[str, Any]) -> None:
    """One worker process: its own socket, uvicorn serving the app factory on it."""
    import uvicorn

    sock = reuse_port_socket(options["host"], options["port"])
    uvicorn.Server(uvicorn.Config(APP_FACTORY, factory=True, **options)).run(sockets=[sock])


def run_workers(options: dict[str, Any], workers: int) -> None:
    """Run ``workers`` processes on uvicorn ``options`` (host, port, protocol, timeouts) until
    this process is stopped (SIGTERM or SIGINT raise out of the wait); then stop them."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked state

    def start() -> Any:
        process = context.Process(target=_worker, args=(options,), name="metapredict-worker")
        process.start()
        return process

    processes = [start() for _ in range(workers)]
    try:
        while True:
            time.sleep(CHECK_S)
            for i, process in enumerate(processes):
                if not process.is_alive():
                    logger.warning(
                        "worker %d (pid %s) exited with %s; starting another",
                        i + 1,
                        process.pid,
                        process.exitcode,
                    )
                    processes[i] = start()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + float(options.get("timeout_graceful_shutdown") or 0)
        for process in processes:
            process.join(max(deadline - time.monotonic(), 0) + STOP_GRACE_S)
            if process.is_alive():
                process.kill()
                process.join()
