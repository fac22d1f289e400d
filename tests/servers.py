"""Starting and stopping real server processes in tests (``metapredict serve`` replicas).

Processes start in their own session (process group) and are stopped by that group's id, the PID
of the process started here; readiness is polled with a deadline, never with a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metapredict.settings import StoreSettings, project_root

#: Upper bound for a server to become ready (seconds); normally a few.
READY_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    *,
    process: subprocess.Popen[Any] | None = None,
    first_delay: float = 0.02,
) -> None:
    """Poll ``condition`` until it is true: the tests' one way of waiting for something to
    happen. The poll interval grows from ``first_delay`` to 0.5 s; fails with ``what`` after
    ``timeout`` seconds, or as soon as ``process`` (the one expected to make it happen) exits."""
    deadline = time.monotonic() + timeout
    delay = first_delay
    while not condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"waiting for {what}: the process exited ({process.returncode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 (False on a refused or dropped connection)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_http_ok(url: str, timeout: float, process: subprocess.Popen[Any] | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early when ``process`` exits."""
    wait_until(lambda: http_ok(url), timeout, f"{url} to answer 200", process=process)


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group led by ``process`` (it was started with a new session),
    then SIGKILL what is left after ``timeout``."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)
    # workers that outlived their leader
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def store_env(settings: StoreSettings) -> dict[str, str]:
    """The ``METAPREDICT_*`` variables that point a command at ``settings``."""
    return {
        "METAPREDICT_TRACKING_URI": settings.resolved_tracking_uri(),
        "METAPREDICT_ARTIFACT_ROOT": settings.artifact_root,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "COLUMNS": "200",
    }


def child_env(settings: StoreSettings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` for a child Python that imports this checkout, pointed at ``settings``."""
    root = project_root()
    path = os.pathsep.join([str(root / "src"), str(root), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, **store_env(settings), "PYTHONPATH": path, **(extra or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


#: ``python -c`` program running the ``metapredict`` CLI of the checkout on PYTHONPATH.
CLI = "from metapredict.cli import app; app()"


@dataclass(frozen=True)
class Replica:
    url: str
    port: int
    pid: int


#: TCP states in ``/proc/net/tcp``.
ESTABLISHED, LISTEN = "01", "0A"


def connections_per_process(
    group: int, port: int, state: str = ESTABLISHED, peers: set[int] | None = None
) -> dict[int, int]:
    """TCP sockets on local ``port`` in ``state`` held by each process of process group
    ``group`` (Linux ``/proc``): which worker of a replica accepted which connections
    (``ESTABLISHED``; only those from the client ports ``peers`` when given), or which workers
    listen (``LISTEN``)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == state and (peers is None or remote_port in peers):
            inodes.add(f"socket:[{fields[9]}]")
    held: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != group:  # the process group id
                continue
            count = sum(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # a process that ended meanwhile
        if count:
            held[int(proc.name)] = count
    return held


@contextlib.contextmanager
def serve_replica(
    settings: StoreSettings,
    *,
    workers: int = 1,
    poll_seconds: float = 1.0,
    tasks: tuple[str, ...] = ("tropism",),
    log: Path | None = None,
) -> Iterator[Replica]:
    """``metapredict serve`` on a free loopback port, ready (``/health/ready``) when yielded."""
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        CLI,
        "serve",
        "--port",
        str(port),
        "--poll-seconds",
        str(poll_seconds),
        "--workers",
        str(workers),
    ]
    tasks_json = "[" + ",".join(f'"{t}"' for t in tasks) + "]"
    env = child_env(settings, {"METAPREDICT_TASKS": tasks_json})
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/health/ready", READY_TIMEOUT, process)
        yield Replica(url=url, port=port, pid=process.pid)
    finally:
        stop_process_group(process)
        if not isinstance(out, int):
            out.close()


def register_copy(client: Any, name: str, version: str) -> str:
    """Register ``version``'s logged model again as a new version of ``name``; its number.

    The same files under a new version number: what a test needs to watch a champion move
    without training twice. The source is the logged model (``models:/m-<id>``), which the
    registry accepts only with that model's id.
    """
    import mlflow

    # the registry looks a ``models:/m-<id>`` source up in the global tracking store
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_registry_uri(client.tracking_uri)
    source = client.get_model_version(name, version)
    model_id = source.model_id or source.source.rsplit("/", 1)[-1]
    new = client.create_model_version(name, source.source, run_id=source.run_id, model_id=model_id)
    # the same files: the same digests (a version without its predictor_sha256 tag is refused)
    for key, value in (source.tags or {}).items():
        client.set_model_version_tag(name, str(new.version), key, value)
    return str(new.version)
