"""Shared by ``make fuzz`` and ``make soak``: a served store, raw requests, figures tables.

Both runs start ``metapredict serve`` as users do, count every request they send (status,
connection errors) and the server's resident memory, and write a results file whose first
table is the figures the README's reliability section quotes.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import (
    HOST,
    METAPREDICT_READY,
    Server,
    fmt_num,
    free_port,
    md_table,
    metapredict_server,
)

#: Seconds any one request may take before it counts as an error.
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Tally:
    """Requests sent and what came back."""

    requests: int = 0
    non_2xx: int = 0
    server_errors: int = 0  # 5xx
    connection_errors: int = 0  # refused, reset, timed out
    statuses: dict[int, int] = field(default_factory=dict)

    def count(self, status: int | None) -> None:
        self.requests += 1
        if status is None:
            self.connection_errors += 1
            return
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if not 200 <= status < 300:
            self.non_2xx += 1
        if status >= 500:
            self.server_errors += 1

    def add(self, requests: int, ok: int, errors: int) -> None:
        """Fold in a load generator's run (its errors are non-2xx answers plus failures)."""
        self.requests += requests
        self.non_2xx += requests - ok
        self.connection_errors += max(errors - (requests - ok), 0)


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    outcome: str
    passed: bool


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    chunked: bool = False,
) -> tuple[int | None, bytes]:
    """(status or None on a connection error, response body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}), encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as err:
        # The server may answer (413) and close while the body is still being sent.
        with contextlib.suppress(OSError, http.client.HTTPException, AttributeError):
            response = conn.getresponse()
            return response.status, response.read()
        return None, repr(err).encode()
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` as is and read until the server closes (bounded by the timeout)."""
    with socket.create_connection((HOST, port), timeout=REQUEST_TIMEOUT_S) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


@contextlib.contextmanager
def served(
    store: Path, log_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[tuple[Server, int]]:
    """``metapredict serve`` on ``store`` with extra environment ``env``, ready."""
    port = free_port()
    server = metapredict_server(store, port, log_dir)
    server.env |= dict(env or {})
    # The worktree's code, whichever checkout the console script was installed from.
    repo = Path(__file__).resolve().parents[1]
    server.env["PYTHONPATH"] = os.pathsep.join([str(repo / "src"), str(repo)])
    with server:
        server.wait_ready(port, METAPREDICT_READY, deadline_s=180)
        yield server, port


def figures_table(
    tally: Tally, rss_start: float, rss_end: float, faults: list[Fault], seconds: float
) -> str:
    rows = [
        ("requests", f"{tally.requests:,}"),
        ("non-2xx answers", f"{tally.non_2xx:,}"),
        ("5xx answers", f"{tally.server_errors:,}"),
        ("connection errors", f"{tally.connection_errors:,}"),
        ("server RSS at start (MiB)", fmt_num(rss_start, 0)),
        ("server RSS at end (MiB)", fmt_num(rss_end, 0)),
        ("faults as expected", f"{sum(f.passed for f in faults)} of {len(faults)}"),
        ("duration (s)", fmt_num(seconds, 0)),
    ]
    return md_table(["figure", "value"], rows)


def faults_table(faults: list[Fault]) -> str:
    return md_table(
        ["fault", "what was done", "outcome", "as expected"],
        [(f.name, f.what, f.outcome, "yes" if f.passed else "**no**") for f in faults],
    )
