"""A throwaway PostgreSQL cluster and an MLflow tracking server on it, for tests.

Importable (``tests.postgres``) so any test module or fixture can reuse it:

>>> with postgres_cluster(workdir) as cluster:                         # doctest: +SKIP
...     uri = cluster.create_database("store1")
...     with tracking_server(uri, workdir / "artifacts") as server:
...         settings = server.store_settings()   # METAPREDICT_TRACKING_URI=http://...

The cluster comes from the PostgreSQL server packages (``initdb`` + ``pg_ctl`` under
``/usr/lib/postgresql/<major>/bin``, or on PATH), in a temporary folder, listening on a free
loopback port with ``trust`` authentication for loopback only. PostgreSQL refuses to run as
root: when the tests run as root the cluster is run as the ``postgres`` user (``runuser``), in a
folder that user owns. Both the cluster and the server are stopped at exit, by PID / ``pg_ctl``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from metapredict.settings import StoreSettings
from tests.servers import free_port, stop_process_group, wait_http_ok

#: Upper bound for start-up waits (seconds); they normally end in a few seconds.
START_TIMEOUT = 120.0
#: The OS user that runs the cluster when the tests run as root.
POSTGRES_USER = "postgres"


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def postgres_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl`` (newest Debian major, else PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailableError(
        "PostgreSQL server binaries not found (apt-get install postgresql)"
    )


def _as_cluster_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", POSTGRES_USER, "--", *argv]


@dataclass(frozen=True)
class PostgresCluster:
    bin_dir: Path
    data_dir: Path
    port: int
    user: str = POSTGRES_USER

    def uri(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (owned by the superuser); return its SQLAlchemy URI."""
        subprocess.run(
            [
                str(self.bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                name,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return self.uri(name)


@contextlib.contextmanager
def postgres_cluster(workdir: Path | None = None) -> Iterator[PostgresCluster]:
    """A fresh cluster on a free loopback port; stopped (``pg_ctl stop -m fast``) and removed
    at exit. ``workdir``: a parent for the data folder (default: the system temp folder)."""
    bin_dir = postgres_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="metapredict-pg-", dir=workdir))
    if os.geteuid() == 0:
        shutil.chown(root, user=POSTGRES_USER)
        root.chmod(0o755)
        # every parent must be traversable by the cluster user
        for parent in root.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                raise PermissionError(
                    f"{parent} is not traversable by user {POSTGRES_USER}; "
                    "pass a workdir under a world-traversable folder (e.g. /tmp)"
                )
    data = root / "data"
    port = free_port()
    cluster = PostgresCluster(bin_dir=bin_dir, data_dir=data, port=port)
    log = root / "postgres.log"
    subprocess.run(
        _as_cluster_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                POSTGRES_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    started = False
    try:
        subprocess.run(
            _as_cluster_user(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(int(START_TIMEOUT)),
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT + 10,
        )
        started = True
        yield cluster
    finally:
        if started:
            subprocess.run(
                _as_cluster_user(
                    [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
                ),
                capture_output=True,
                timeout=START_TIMEOUT,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class TrackingServer:
    url: str
    backend_uri: str
    artifacts: Path
    pid: int

    def store_settings(self) -> StoreSettings:
        """Settings that reach this server over HTTP (artifacts proxied through it)."""
        return StoreSettings(tracking_uri=self.url, artifact_root="", direct_read=True)


def tracking_server_command(
    backend_uri: str, artifacts: Path, port: int, *, host: str = "127.0.0.1"
) -> tuple[list[str], dict[str, str]]:
    """``mlflow server`` with proxied artifacts, one worker and no job runner."""
    bin_dir = Path(sys.executable).parent
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    for name in ("METAPREDICT_TRACKING_URI", "MLFLOW_TRACKING_URI", "METAPREDICT_ARTIFACT_ROOT"):
        env.pop(name, None)
    return argv, env


@contextlib.contextmanager
def tracking_server(
    backend_uri: str, artifacts: Path, *, log: Path | None = None
) -> Iterator[TrackingServer]:
    """``mlflow server`` on ``backend_uri`` at a free loopback port, ready when yielded."""
    artifacts.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv, env = tracking_server_command(backend_uri, artifacts, port)
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/health", START_TIMEOUT, process)
        yield TrackingServer(url=url, backend_uri=backend_uri, artifacts=artifacts, pid=process.pid)
    finally:
        stop_process_group(process)
        if log is not None and not isinstance(out, int):
            out.close()


def reset_registry(
    settings: StoreSettings, tasks: tuple[str, ...] = ("tropism", "dormancy")
) -> None:
    """Make a shared store look empty to the next test: hard-delete the tasks' registered
    models (and promotion locks) and rename the tasks' experiments out of the way (MLflow keeps
    a deleted experiment's name reserved, a renamed one frees it)."""
    import uuid

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = settings.resolved_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for task in tasks:
        for name in (f"metapredict-{task}", f"metapredict-{task}.promotion-lock"):
            with contextlib.suppress(MlflowException):
                client.delete_registered_model(name)
        experiment = client.get_experiment_by_name(task)
        if experiment is not None:
            client.rename_experiment(
                experiment.experiment_id, f"{task}-archived-{uuid.uuid4().hex[:8]}"
            )
