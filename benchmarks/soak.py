"""``make soak``: bounded load on a served ``metapredict serve`` while faults are injected.

While a closed-loop load generator sends single-patient tropism predictions (4 connections,
bounded in requests and seconds), the run injects, one after another:

1. champion flips: the ``champion`` alias moved between two versions, each followed by an
   admin reload, which must serve the new version;
2. a corrupt artifact: the files of a third version truncated to half, the alias moved to it:
   the reload must fail, say so in ``/v1/models``, and leave the old model serving;
3. a held database lock: an exclusive SQLite transaction on the store for some seconds while
   the server polls the registry every second;
4. ``kill -9`` of a training job on the same store during its logging: the registry must stay
   consistent (the champion still loads) and the killed job's scratch folder is swept by the
   next process that makes one.

Nothing may answer 5xx, and every probe request during a fault must answer 200. Results:
``benchmarks/results/soak.md``. Run: ``python -m benchmarks.soak [--quick] [--store DIR]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.common import (
    VENV_BIN,
    PartOptions,
    Report,
    Target,
    log,
    md_table,
    options,
    parser,
    served_store,
    store_env,
    store_settings,
    training_config,
    work_dir,
    write_config_toml,
)
from benchmarks.reliability import Fault, Tally, faults_table, figures_table, request, served

ADMIN = "soak-admin-key"
MODEL = "metapredict-tropism"
PREDICT = "/v1/predict/tropism"
#: Seconds the database lock is held.
LOCK_SECONDS = 8.0
#: Bound on waiting for the training job to reach its logging step before killing it anyway.
TRAIN_WAIT_S = 180.0


def _one_patient() -> bytes:
    from serving.request_model import example_patient

    return json.dumps({"patients": [example_patient()]}).encode()


class Probe:
    """Prediction requests sent during a fault, tallied, with every status kept."""

    def __init__(self, port: int, tally: Tally) -> None:
        self.port = port
        self.tally = tally
        self.body = _one_patient()

    def once(self) -> int | None:
        status, _ = request(
            self.port, "POST", PREDICT, self.body, {"Content-Type": "application/json"}
        )
        self.tally.count(status)
        return status

    def many(self, n: int) -> list[int | None]:
        return [self.once() for _ in range(n)]


def _client(store: Path) -> Any:
    import mlflow
    from mlflow import MlflowClient

    uri = store_settings(store).tracking_uri
    # MLflow resolves a version's ``models:/m-...`` source through the global tracking URI.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _served_version(port: int, tally: Tally) -> tuple[str | None, dict[str, Any]]:
    status, body = request(port, "GET", "/v1/models")
    tally.count(status)
    model = json.loads(body)["models"]["tropism"] if status == 200 else {}
    return model.get("version"), model


def _reload(port: int, tally: Tally) -> dict[str, Any]:
    status, body = request(port, "POST", "/v1/admin/reload", b"", {"X-API-Key": ADMIN})
    tally.count(status)
    results = json.loads(body).get("results", []) if status == 200 else []
    return {r["task"]: r for r in results}


def _ok(statuses: Sequence[int | None]) -> bool:
    return all(s is not None and 200 <= s < 300 for s in statuses)


def flips(port: int, store: Path, versions: tuple[str, str], count: int, tally: Tally) -> Fault:
    client = _client(store)
    probe = Probe(port, tally)
    served: list[str | None] = []
    statuses: list[int | None] = []
    for i in range(count):
        target = versions[i % 2]
        client.set_registered_model_alias(MODEL, "champion", target)
        _reload(port, tally)
        statuses += probe.many(5)
        served.append(_served_version(port, tally)[0])
    expected = [versions[i % 2] for i in range(count)]
    return Fault(
        "champion flips",
        f"alias moved {count} times between versions {versions[0]} and {versions[1]}, "
        "each followed by an admin reload",
        f"served {', '.join(str(v) for v in served)}; probes {len(statuses)}, "
        f"non-2xx {sum(1 for s in statuses if not (s and 200 <= s < 300))}",
        served == expected and _ok(statuses),
    )


def _model_files(client: Any, version: str) -> list[Path]:
    uri = client.get_model_version_download_uri(MODEL, version)
    root = Path(uri.removeprefix("file://"))
    return sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size > 0)


def corrupt_artifact(port: int, store: Path, good: str, tally: Tally, backup: Path) -> Fault:
    client = _client(store)
    serving_before, _ = _served_version(port, tally)
    source = client.get_model_version(MODEL, good)
    # A version of its own: its artifacts copied, so truncating them leaves the others intact.
    copy = backup / "corrupt-version"
    original = Path(client.get_model_version_download_uri(MODEL, good).removeprefix("file://"))
    shutil.copytree(original, copy)
    bad = client.create_model_version(MODEL, copy.resolve().as_uri(), run_id=source.run_id)
    # the good version's digests: the load must find the truncated files by their content
    for key, value in (source.tags or {}).items():
        client.set_model_version_tag(MODEL, str(bad.version), key, value)
    files = [p for p in copy.rglob("*") if p.is_file() and p.stat().st_size > 0]
    for path in files:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    probe = Probe(port, tally)
    client.set_registered_model_alias(MODEL, "champion", str(bad.version))
    results = _reload(port, tally)
    statuses = probe.many(10)
    served, model = _served_version(port, tally)
    last = (model.get("last_reload") or {}) if model else {}
    client.set_registered_model_alias(MODEL, "champion", good)
    _reload(port, tally)
    reload_status = results.get("tropism", {}).get("status")
    message = str(last.get("message", ""))
    return Fault(
        "corrupt artifact",
        f"version {bad.version}: {len(files)} artifact files truncated to half; alias moved "
        "to it, admin reload",
        f"reload {reload_status}: {message[:160]!r}; serving version {served} "
        f"(before: {serving_before}); probes non-2xx "
        f"{sum(1 for s in statuses if not (s and s < 300))}",
        reload_status == "failed" and served == serving_before and _ok(statuses),
    )


def held_lock(port: int, store: Path, tally: Tally) -> Fault:
    db = sqlite3.connect(store / "mlflow.db", timeout=30, isolation_level=None)
    probe = Probe(port, tally)
    statuses: list[int | None] = []
    live: list[int | None] = []
    try:
        db.execute("BEGIN EXCLUSIVE")
        until = time.monotonic() + LOCK_SECONDS
        while time.monotonic() < until:
            statuses.append(probe.once())
            status, _ = request(port, "GET", "/health/live")
            tally.count(status)
            live.append(status)
            time.sleep(0.1)
    finally:
        db.execute("ROLLBACK")
        db.close()
    results = _reload(port, tally)
    after = results.get("tropism", {}).get("status")
    return Fault(
        "held database lock",
        f"exclusive SQLite transaction on mlflow.db for {LOCK_SECONDS:.0f} s while the server "
        "polls every second",
        f"probes {len(statuses)}, non-2xx {sum(1 for s in statuses if not (s and s < 300))}; "
        f"/health/live {len(live)} times, non-200 {sum(1 for s in live if s != 200)}; "
        f"reload after release: {after}",
        _ok(statuses) and _ok(live) and after in {"unchanged", "loaded"},
    )


def _scratch_of(tmp: Path, pid: int) -> list[Path]:
    return sorted(tmp.glob(f"metapredict-*-{pid}-*"))


def kill_training(port: int, store: Path, work: Path, quick: bool, tally: Tally) -> Fault:
    from metapredict.registry.store import make_scratch_dir

    config = training_config(
        "tropism", patients=1500 if quick else 3000, folds=2, model={"n_estimators": 30}
    )
    config = config.model_copy(
        update={
            "cv": config.cv.model_copy(update={"bootstrap_resamples": 20}),
            "intervals": config.intervals.model_copy(update={"members": 0}),
        }
    )
    toml = write_config_toml(config, work / "kill9.toml")
    scratch = work / "tmp"
    scratch.mkdir(exist_ok=True)
    env = store_env(store) | {"TMPDIR": str(scratch)}
    repo = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(repo / "src"), str(repo)])
    client = _client(store)
    before = {str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")}
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    proc = subprocess.Popen(
        [str(VENV_BIN / "metapredict"), "train", "tropism", "--config", str(toml)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(work / "kill9-train.log").open("wb"),
        start_new_session=True,
    )
    probe = Probe(port, tally)
    statuses: list[int | None] = []
    started = time.monotonic()
    while (
        proc.poll() is None
        and not _scratch_of(scratch, proc.pid)
        and time.monotonic() - started < TRAIN_WAIT_S
    ):
        statuses.append(probe.once())
        time.sleep(0.05)
    phase = "logging the model" if _scratch_of(scratch, proc.pid) else "before logging"
    at = time.monotonic() - started
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    left = _scratch_of(scratch, proc.pid)
    # The next process that makes a scratch folder sweeps what the killed one left.
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(scratch)
    import tempfile

    tempfile.tempdir = None
    try:
        shutil.rmtree(make_scratch_dir("soak"))
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous
        tempfile.tempdir = None
    swept = not _scratch_of(scratch, proc.pid)
    after = {str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")}
    champion_after = str(client.get_model_version_by_alias(MODEL, "champion").version)
    results = _reload(port, tally)
    statuses += probe.many(5)
    return Fault(
        "kill -9 of a training job",
        f"`metapredict train tropism` killed after {at:.0f} s ({phase})",
        f"exit {proc.returncode}; new versions {sorted(after - before) or 'none'}; champion "
        f"{champion} -> {champion_after}; reload {results.get('tropism', {}).get('status')}; "
        f"scratch folders left {len(left)}, swept: {'yes' if swept else 'no'}; "
        f"probes non-2xx {sum(1 for s in statuses if not (s and s < 300))}",
        champion_after == champion
        and swept
        and _ok(statuses)
        and results.get("tropism", {}).get("status") in {"unchanged", "loaded"},
    )


@contextlib.contextmanager
def background_load(port: int, seconds: float) -> Iterator[dict[str, Any]]:
    """Closed-loop load for at most ``seconds`` (or 200,000 requests) in a thread."""
    body = _one_patient()
    requests = [loadgen.post_request(PREDICT, body, port)]
    out: dict[str, Any] = {}

    def go() -> None:
        out["result"] = loadgen.run_load(
            port, requests, concurrency=4, max_requests=200_000, max_seconds=seconds
        )

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        thread.join(timeout=seconds + 60)


def _second_version(store: Path) -> tuple[str, str]:
    """Two registered tropism versions (a second one registered on the first one's files)."""
    client = _client(store)
    versions = sorted(
        (v for v in client.search_model_versions(f"name = '{MODEL}'")), key=lambda v: int(v.version)
    )
    if len(versions) >= 2:
        return str(versions[-2].version), str(versions[-1].version)
    first = versions[0]
    second = client.create_model_version(MODEL, first.source, run_id=first.run_id)
    for key, value in (first.tags or {}).items():  # the same files, the same digests
        client.set_model_version_tag(MODEL, str(second.version), key, value)
    return str(first.version), str(second.version)


def run(opts: PartOptions) -> Report:
    report = Report("soak", "Soak under faults (make soak)", opts.quick, opts.command)
    started = time.perf_counter()
    tally = Tally()
    load_seconds = 45.0 if opts.quick else 150.0
    # Robustness, not model quality: a small store trains in seconds.
    with (
        served_store(replace(opts, quick=True), log=log) as given,
        work_dir("metapredict-soak-") as tmp,
    ):
        store = tmp / "store"
        shutil.copytree(given, store)  # the faults change the store: work on a copy
        versions = _second_version(store)
        _client(store).set_registered_model_alias(MODEL, "champion", versions[0])
        env = {"METAPREDICT_POLL_SECONDS": "1", "METAPREDICT_ADMIN_API_KEY": ADMIN}
        with served(store, tmp, env) as (server, port):
            rss_start = server.rss_mib()
            with background_load(port, load_seconds) as load:
                faults = []
                log("champion flips ...")
                faults.append(flips(port, store, versions, 4 if opts.quick else 10, tally))
                log("corrupt artifact ...")
                faults.append(corrupt_artifact(port, store, versions[0], tally, tmp))
                log("held database lock ...")
                faults.append(held_lock(port, store, tally))
                log("kill -9 of a training job ...")
                faults.append(kill_training(port, store, tmp, opts.quick, tally))
            result: loadgen.LoadResult | None = load.get("result")
            rss_end = server.rss_mib()
            log_text = server.log_path.read_text(errors="replace")
    if result is not None:
        tally.add(result.requests, result.ok, result.errors)
    seconds = time.perf_counter() - started
    five = tally.server_errors
    tracebacks = log_text.count("Traceback")
    report.add("Figures", figures_table(tally, rss_start, rss_end, faults, seconds))
    report.add("Faults", faults_table(faults))
    if result is not None:
        report.add(
            "Background load",
            md_table(
                ["requests", "2xx", "errors", "seconds", "p50 (ms)", "p99 (ms)", "first error"],
                [
                    (
                        f"{result.requests:,}",
                        f"{result.ok:,}",
                        f"{result.errors:,}",
                        f"{result.seconds:.0f}",
                        f"{result.p50_ms:.1f}",
                        f"{result.p99_ms:.1f}",
                        result.first_error or "-",
                    )
                ],
            ),
        )
    load_ok = result is not None and result.errors == 0
    report.targets = [
        Target("no 5xx", "0 answers 5xx", str(five), five == 0),
        Target(
            "load unharmed",
            "every background request answered 2xx",
            f"{result.errors if result else '-'} errors",
            load_ok,
        ),
        Target(
            "faults",
            "every fault handled as expected",
            f"{sum(f.passed for f in faults)} of {len(faults)}",
            all(f.passed for f in faults),
        ),
        Target("no tracebacks", "0 tracebacks in the server log", str(tracebacks), tracebacks == 0),
    ]
    report.notes += [
        f"Background load: 4 connections, single-patient tropism predictions, at most "
        f"{load_seconds:.0f} s; the server polls the registry every second.",
        "The faults run on a copy of the store; the second version of a flip is registered "
        "on the first one's files when the store has one version.",
    ]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser("soak the served API under faults").parse_args(argv)
    opts = options(args, "benchmarks.soak")
    report = run(opts)
    path = report.write(opts.out)
    print(report.render())
    log(f"wrote {path}")
    return 1 if any(t.met is False for t in report.targets) else 0


if __name__ == "__main__":
    sys.exit(main())
