"""Shared benchmark machinery: machine facts, spreads, result files, servers, throwaway stores.

Nothing here runs at import. Servers are started in their own session (process group) and
ended by that group's id, which is the PID of the process we started; readiness is polled with a
deadline, never with a bare ``sleep``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from metapredict.registry.tracking import git_commit

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
#: The interpreter's bin directory (the venv's, under ``make bench``): console scripts live here.
VENV_BIN = Path(sys.executable).parent
PACKAGES = ("mlflow", "lightgbm", "fastapi", "uvicorn", "numpy", "pandas", "scikit-learn")


# ------------------------------------------------------------------------------------------------
# Machine and versions


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def machine_info() -> dict[str, str]:
    """Facts that make a number comparable: hardware, OS, load, versions, commit."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    info = {
        "cores": str(os.cpu_count()),
        "memory": _memory_gib(),
        "cpu": _cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "load average at start (1, 5, 15 min)": load,
        "python": platform.python_version(),
    }
    for package in PACKAGES:
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    info["git commit"] = git_commit()[:12]
    return info


# ------------------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class Spread:
    """Median and spread of repeated measurements."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(tuple(float(v) for v in values))

    @property
    def n(self) -> int:
        return len(self.values)

    def _q(self, q: float) -> float:
        if not self.values:
            return float("nan")
        return float(np.percentile(np.asarray(self.values), q))

    @property
    def median(self) -> float:
        return self._q(50)

    @property
    def p10(self) -> float:
        return self._q(10)

    @property
    def p90(self) -> float:
        return self._q(90)

    def fmt(self, digits: int = 1, scale: float = 1.0) -> str:
        """``median [p10, p90]`` (just the value when there is one run)."""
        if not self.values:
            return "-"
        m = f"{self.median * scale:,.{digits}f}"
        if self.n == 1:
            return m
        return f"{m} [{self.p10 * scale:,.{digits}f}, {self.p90 * scale:,.{digits}f}]"


def fmt_num(value: float | None, digits: int = 1) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


# ------------------------------------------------------------------------------------------------
# Result files


@dataclass
class Target:
    """A stated goal and whether this run met it (None: not judged: not measured, or quick mode)."""

    name: str
    goal: str
    measured: str
    met: bool | None
    note: str = ""

    @property
    def status(self) -> str:
        return {True: "met", False: "**missed**", None: "not judged"}[self.met]


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(targets: Sequence[Target]) -> str:
    return md_table(
        ["target", "goal", "measured", "status", "note"],
        [(t.name, t.goal, t.measured, t.status, t.note) for t in targets],
    )


@dataclass
class Report:
    """One results file: header (machine, versions, command), targets, then sections."""

    name: str
    title: str
    quick: bool
    command: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    machine: dict[str, str] = field(default_factory=machine_info)

    def add(self, heading: str, text: str) -> None:
        self.sections.append((heading, text))

    def render(self) -> str:
        took = time.perf_counter() - self.started
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        parts = [f"# {self.title}", ""]
        if self.quick:
            parts += [
                "> **Quick mode**: tiny sizes for smoke-checking; these numbers are noisy and not "
                "comparable with a full run.",
                "",
            ]
        parts += [
            f"Generated {stamp} by `{self.command or 'python -m benchmarks.' + self.name}` "
            f"in {took:.0f} s.",
            "",
            "## Machine",
            "",
            md_table(["what", "value"], list(self.machine.items())),
            "",
        ]
        if self.targets:
            parts += ["## Targets", "", targets_table(self.targets), ""]
        for heading, text in self.sections:
            parts += [f"## {heading}", "", text.rstrip(), ""]
        if self.notes:
            parts += ["## Notes", "", *(f"- {n}" for n in self.notes), ""]
        return "\n".join(parts)

    def write(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.name}.md"
        path.write_text(self.render())
        return path


# ------------------------------------------------------------------------------------------------
# Command line shared by every part


@dataclass(frozen=True)
class PartOptions:
    quick: bool
    out: Path
    store: Path | None
    command: str


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check in seconds")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the .md (default benchmarks/results, quick: benchmarks/results/quick)",
    )
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        help="reuse a directory holding a trained store (mlflow.db + artifacts/) "
        "instead of training one",
    )
    return p


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def options(args: argparse.Namespace, module: str) -> PartOptions:
    """The part's options from its command line. Also makes SIGTERM end the part as Ctrl-C
    does, by an exception: the ``finally`` blocks and context managers then stop the servers it
    started (each in its own process group, which the default SIGTERM action would leave
    running) and remove its temporary stores, and no results file is written."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    out = args.out or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    command = " ".join(["python -m", module, *sys.argv[1:]])
    return PartOptions(quick=bool(args.quick), out=out, store=args.store, command=command)


# ------------------------------------------------------------------------------------------------
# Throwaway MLflow stores


def store_settings(directory: Path) -> Any:
    """StoreSettings pointing at ``directory`` (SQLite ``mlflow.db`` + ``artifacts/``)."""
    from metapredict.settings import StoreSettings

    return StoreSettings(
        tracking_uri=f"sqlite:///{directory / 'mlflow.db'}",
        artifact_root=str(directory / "artifacts"),
    )


def store_env(directory: Path) -> dict[str, str]:
    """Environment for a subprocess using the store in ``directory`` (venv bin first on PATH)."""
    # MLflow exports the last store this process connected to as MLFLOW_TRACKING_URI and
    # MLFLOW_REGISTRY_URI; a server must never inherit another store's registry.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "METAPREDICT_"))}
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    env["METAPREDICT_TRACKING_URI"] = uri
    env["METAPREDICT_ARTIFACT_ROOT"] = str(directory / "artifacts")
    env["MLFLOW_TRACKING_URI"] = uri
    env["MLFLOW_REGISTRY_URI"] = uri
    # Both servers alike: no usage telemetry (metapredict's CLI turns it off by default).
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def training_config(
    task: str,
    *,
    patients: int | None = None,
    simulate_seed: int | None = None,
    folds: int | None = None,
    model: Mapping[str, Any] | None = None,
) -> Any:
    """The packaged config for ``task`` with selected overrides."""
    from metapredict.training_config import (
        TASKS,
        DormancyConfig,
        TropismConfig,
        load_training_config,
    )

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    raw = load_training_config(task).model_dump()
    if patients is not None:
        raw["data"]["simulate_patients"] = patients
    if simulate_seed is not None:
        raw["data"]["simulate_seed"] = simulate_seed
    if folds is not None:
        raw["cv"]["folds"] = folds
    raw["model"] |= dict(model or {})
    cls: type[TropismConfig] | type[DormancyConfig] = (
        TropismConfig if task == "tropism" else DormancyConfig
    )
    return cls.model_validate(raw)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def write_config_toml(config: Any, path: Path) -> Path:
    """Write a training config (flat sections of scalars) as TOML that the CLI reads back."""
    raw: dict[str, Any] = config.model_dump()
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for section, values in raw.items():
        if isinstance(values, dict):
            lines += ["", f"[{section}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def train_store(directory: Path, *, quick: bool, log: Any = print) -> Path:
    """Train and register both tasks' champions into a fresh store in ``directory``.

    Full mode trains the packaged configuration on its own cohort size
    (``data.simulate_patients``, 20,000) with 2 folds: the size rule sets the trees from the
    cohort, so only that size gives the served model the default's size (at 10,000 patients
    tropism got 155 trees per site instead of 400); the 2 folds only shorten the CV, which does
    not change the registered model. Quick mode trains a small model in seconds.
    """
    from metapredict.pipeline import run_training

    directory.mkdir(parents=True, exist_ok=True)
    settings = store_settings(directory)
    for task in ("tropism", "dormancy"):
        if quick:
            config = training_config(task, patients=2000, folds=2, model={"n_estimators": 60})
        else:
            config = training_config(task, folds=2)  # the packaged cohort size
        started = time.perf_counter()
        outcome = run_training(config, settings=settings)
        log(
            f"  trained {task} into {directory} "
            f"(version {outcome.registered.version}, {time.perf_counter() - started:.0f} s)"
        )
    return directory


@contextlib.contextmanager
def work_dir(prefix: str) -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def served_store(opts: PartOptions, log: Any = print) -> Iterator[Path]:
    """``opts.store`` if given, else a freshly trained throwaway store."""
    if opts.store is not None:
        yield opts.store
        return
    with work_dir("metapredict-bench-store-") as tmp:
        log("training a throwaway store for this benchmark ...")
        yield train_store(tmp / "store", quick=opts.quick, log=log)


# ------------------------------------------------------------------------------------------------
# Servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """Status of ``GET http://127.0.0.1:port/path``; None when nothing answers."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def http_post(port: int, path: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class ServerFailed(RuntimeError):
    """A server exited or did not become ready before its deadline."""


class Server:
    """A server subprocess in its own process group, ended by that group's id (its PID)."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_ready(
        self, port: int, path: str, *, deadline_s: float = 90.0, interval_s: float = 0.02
    ) -> float:
        """Seconds from process start to the first 200 on ``path``; raises past the deadline."""
        assert self.proc is not None
        limit = self.started_at + deadline_s
        while time.perf_counter() < limit:
            if self.proc.poll() is not None:
                raise ServerFailed(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if http_status(port, path, timeout=1.0) == 200:
                return time.perf_counter() - self.started_at
            time.sleep(interval_s)
        raise ServerFailed(f"{self.name} not ready within {deadline_s:.0f} s:\n{self.log_tail()}")

    def rss_mib(self) -> float:
        """Resident memory of every process in the server's group (MiB)."""
        if self.proc is None:
            return float("nan")
        page = os.sysconf("SC_PAGE_SIZE")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.pid:  # pgrp
                    total += int((stat.parent / "statm").read_text().split()[1]) * page
        return total / 1024**2

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the group, wait (bounded), then SIGKILL whatever is left of it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=grace_s)
        limit = time.perf_counter() + grace_s
        while self._group_alive() and time.perf_counter() < limit:
            time.sleep(0.05)
        if self._group_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self.proc = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def mlflow_server(store: Path, port: int, log_dir: Path) -> Server:
    """``mlflow models serve`` on the tropism champion (readiness: ``GET /ping``)."""
    argv = [
        str(VENV_BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        "models:/metapredict-tropism@champion",
        "--env-manager",
        "local",
        "-h",
        HOST,
        "-p",
        str(port),
    ]
    return Server("mlflow models serve", argv, store_env(store), log_dir / f"mlflow-{port}.log")


def metapredict_server(
    store: Path, port: int, log_dir: Path, *, direct_read: bool = True
) -> Server:
    """``metapredict serve`` as users run it (readiness: ``GET /health/ready``).

    ``direct_read=False`` sets ``METAPREDICT_DIRECT_READ=false``: the champions are asked of
    MLflow's client (in a child process) instead of read from the SQLite store directly.
    """
    argv = [str(VENV_BIN / "metapredict"), "serve", "--host", HOST, "--port", str(port)]
    env = store_env(store)
    if not direct_read:
        env["METAPREDICT_DIRECT_READ"] = "false"
    return Server("metapredict serve", argv, env, log_dir / f"metapredict-{port}.log")


MLFLOW_READY = "/ping"
METAPREDICT_READY = "/health/ready"


def metapredict_serve_available() -> bool:
    """Whether this checkout has the ``metapredict serve`` command."""
    try:
        out = subprocess.run(
            [str(VENV_BIN / "metapredict"), "serve", "--help"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
