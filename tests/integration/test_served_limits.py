"""A real `metapredict serve` process against clients that misbehave on the wire.

One server (the session's trained champions) with small limits: a 1 MB body, a 1 s header
timeout, a 2 s body timeout and a 1 s keep-alive. Raw sockets play the clients: a chunked upload
far over the limit, idle and slowloris connections, a stalled body, a client that hangs up
mid-body. Waits are bounded by socket timeouts, never by sleeping.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import HOST, VENV_BIN, Server, free_port
from tests.servers import wait_until
from tests.support import TrainedStore

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LIMIT = 1_000_000
#: Bound on every wait for the server to act (seconds); it acts within a few seconds.
WAIT = 30.0
PREDICT = "/v1/predict/tropism"


@pytest.fixture(scope="module")
def server(
    trained_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "METAPREDICT_"))}
    env |= {
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "METAPREDICT_TRACKING_URI": trained_store.settings.tracking_uri,
        "METAPREDICT_ARTIFACT_ROOT": trained_store.settings.artifact_root,
        "METAPREDICT_MAX_BODY_BYTES": str(LIMIT),
        "METAPREDICT_HEADER_TIMEOUT": "1",
        "METAPREDICT_BODY_TIMEOUT": "2",
        "METAPREDICT_KEEP_ALIVE_TIMEOUT": "1",
        "METAPREDICT_POLL_SECONDS": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    argv = [str(VENV_BIN / "metapredict"), "serve", "--port", str(port)]
    log = tmp_path_factory.mktemp("served-limits") / "server.log"
    with Server("metapredict serve", argv, env, log) as s:
        s.wait_ready(port, "/health/ready", deadline_s=120)
        yield s, port


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by WAIT)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _status(response: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    assert match, response[:200]
    return int(match[1])


def _peak_rss_reset(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _words(log: Path) -> str:
    """The log with its line wrapping undone (the CLI's log handler wraps long lines)."""
    return " ".join(log.read_text().split())


def _metrics(port: int) -> dict[tuple[str, str], float]:
    sock = _connect(port)
    sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    text = _read_until_closed(sock).split(b"\r\n\r\n", 1)[1].decode()
    sock.close()
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name == "metapredict_http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[(sample.labels["route"], sample.labels["status"])] = sample.value
    return counts


def test_a_chunked_body_is_stopped_at_the_limit_as_it_arrives(server: tuple[Server, int]) -> None:
    s, port = server
    upload = 200 * 2**20  # 200 MiB, 200 times the limit, sent without a Content-Length
    piece = b"x" * 2**16
    _peak_rss_reset(s.pid)
    before = _kib(s.pid, "VmRSS")
    sock = _connect(port)
    sock.sendall(
        f"POST {PREDICT} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    sent = 0
    try:
        while sent < upload:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed the connection: the upload ends here
    response = _read_until_closed(sock)
    sock.close()
    assert _status(response) == 413
    assert b"larger than 1000000 bytes" in response
    assert sent < upload
    growth_mib = (_kib(s.pid, "VmHWM") - before) / 1024
    assert growth_mib < 50, f"peak RSS grew {growth_mib:.0f} MiB for a 1 MB limit"


def test_a_declared_length_over_the_limit_is_refused_before_the_body(
    server: tuple[Server, int],
) -> None:
    _, port = server
    sock = _connect(port)
    sock.sendall(
        f"POST {PREDICT} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * LIMIT}\r\n\r\n".encode()
    )
    response = _read_until_closed(sock)  # answered and closed without one body byte sent
    sock.close()
    assert _status(response) == 413


def test_a_stalled_body_gets_408_and_the_connection_is_closed(server: tuple[Server, int]) -> None:
    _, port = server
    sock = _connect(port)
    sock.sendall(
        f"POST {PREDICT} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        'Content-Length: 5000\r\n\r\n{"patients": ['.encode()
    )
    response = _read_until_closed(sock)
    sock.close()
    assert _status(response) == 408


@pytest.mark.parametrize("sent", [b"", b"POST /v1/predict/tropism HTTP/1.1\r\nHost: 127"])
def test_idle_and_slow_header_connections_are_closed(
    server: tuple[Server, int], sent: bytes
) -> None:
    """Nothing sent, or headers trickling in (slowloris): closed after the header timeout."""
    _, port = server
    sock = _connect(port)
    sock.sendall(sent)
    started = time.monotonic()
    with pytest.raises((ConnectionResetError, BrokenPipeError, OSError)):
        while time.monotonic() - started < WAIT:
            sock.sendall(b"a")  # one more header byte per 0.1 s, for at most WAIT seconds
            # until the server closes the connection (readable, then b"") or 0.1 s pass
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable and sock.recv(1, socket.MSG_PEEK) == b"":
                raise ConnectionResetError("closed by the server")
    sock.close()
    assert time.monotonic() - started < WAIT


def test_an_idle_keep_alive_connection_is_closed(server: tuple[Server, int]) -> None:
    _, port = server
    sock = _connect(port)
    sock.sendall(f"GET /health/live HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    response = _read_until_closed(sock)  # a response, then the keep-alive timeout closes it
    sock.close()
    assert _status(response) == 200
    assert b'"alive"' in response


def test_a_client_leaving_mid_body_is_one_info_line_and_not_a_500(
    server: tuple[Server, int],
) -> None:
    s, port = server
    before = _metrics(port)
    sock = _connect(port)
    sock.sendall(
        f"POST {PREDICT} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        "Content-Length: 50000\r\n\r\n".encode()
        + b'{"patients": ['
        + b" " * 20000
    )
    sock.close()
    line = "client closed the connection before its request body was complete"
    wait_until(lambda: line in _words(s.log_path), WAIT, "the disconnect's log line")
    after = _metrics(port)
    assert after.get((PREDICT, "499"), 0) == before.get((PREDICT, "499"), 0) + 1
    assert after.get((PREDICT, "500"), 0) == 0
    log = s.log_path.read_text()
    assert _words(s.log_path).count(line) == 1
    assert "Traceback" not in log
    assert "ClientDisconnect" not in log


def test_sigterm_stops_the_server_with_status_0(
    trained_store: TrainedStore, tmp_path: Path
) -> None:
    """Its own server: SIGTERM ends it cleanly (exit 0) and it leaves no temporary folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "METAPREDICT_"))}
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env |= {
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "METAPREDICT_TRACKING_URI": trained_store.settings.tracking_uri,
        "METAPREDICT_ARTIFACT_ROOT": trained_store.settings.artifact_root,
        "METAPREDICT_POLL_SECONDS": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "TMPDIR": str(scratch),
    }
    port = free_port()
    argv = [str(VENV_BIN / "metapredict"), "serve", "--port", str(port)]
    s = Server("metapredict serve", argv, env, tmp_path / "server.log")
    with s:
        s.wait_ready(port, "/health/ready", deadline_s=120)
        assert s.proc is not None
        proc = s.proc
        proc.terminate()
        try:
            code = proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            code = None
    assert code == 0, s.log_tail()
    assert list(scratch.iterdir()) == []


def test_headers_over_64_kib_are_refused(server: tuple[Server, int]) -> None:
    _, port = server
    sock = _connect(port)
    sock.sendall(
        f"GET /health/live HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {'b' * 100_000}\r\n\r\n".encode()
    )
    response = _read_until_closed(sock)
    sock.close()
    assert _status(response) == 400
