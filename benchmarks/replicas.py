"""Replicas: ``metapredict serve --workers 2`` against ``--workers 1``, and a champion flip.

Two measurements on one trained store (SQLite):

1. Throughput and latency of single-patient ``POST /v1/predict/tropism`` for one server with
   ``--workers 1`` and one with ``--workers 2`` (alternating rounds, same bounded closed-loop
   load from ``benchmarks.loadgen``). Target: 2 workers >= 1.5x the throughput of 1 on 2 cores.
2. Two replicas (``--workers 2`` and ``--workers 1``, ``--poll-seconds 1``) under light bounded
   load while the ``champion`` alias moves to a new version: failed requests (target 0) and, per
   replica, the time from the move until every one of its workers reports the new version on
   ``/metrics`` (target: within the poll interval + 1 s).

Run: ``python -m benchmarks.replicas [--quick] [--store DIR]``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import loadgen
from benchmarks.common import (
    HOST,
    METAPREDICT_READY,
    VENV_BIN,
    PartOptions,
    Report,
    Server,
    Spread,
    Target,
    fmt_num,
    free_port,
    log,
    md_table,
    options,
    parser,
    served_store,
    store_env,
    store_settings,
    work_dir,
)
from benchmarks.serving import bodies

MODEL = "metapredict-tropism"
POLL_SECONDS = 1.0
PATH = "/v1/predict/tropism"
#: Target ratio of --workers 2 to --workers 1 throughput on 2 cores.
SPEEDUP_TARGET = 1.5


@dataclass(frozen=True)
class Budget:
    rounds: int
    seconds: float
    max_requests: int
    warmup_seconds: float
    concurrency: int
    flip_timeout: float


FULL = Budget(
    rounds=3, seconds=8.0, max_requests=40_000, warmup_seconds=2.0, concurrency=8, flip_timeout=30
)
QUICK = Budget(
    rounds=1, seconds=2.0, max_requests=5_000, warmup_seconds=0.5, concurrency=8, flip_timeout=30
)


def serve_server(store: Path, port: int, log_dir: Path, *, workers: int) -> Server:
    argv = [
        str(VENV_BIN / "metapredict"),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--poll-seconds",
        str(POLL_SECONDS),
    ]
    return Server(
        f"metapredict serve --workers {workers}",
        argv,
        store_env(store),
        log_dir / f"serve-w{workers}-{port}.log",
    )


def _worker_versions(port: int) -> dict[str, set[str]]:
    """Per worker (``pid`` label; ``""`` for one worker): model versions with value 1."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "metapredict_model_info" and sample.value == 1:
                labels = sample.labels
                if labels.get("task") == "tropism":
                    found.setdefault(labels.get("pid", ""), set()).add(labels["version"])
    return found


def throughput(ports: dict[int, int], budget: Budget) -> dict[int, list[loadgen.LoadResult]]:
    """Alternating rounds against each server (by worker count)."""
    payloads = bodies("patients", 1)
    requests = {w: [loadgen.post_request(PATH, b, p) for b in payloads] for w, p in ports.items()}
    results: dict[int, list[loadgen.LoadResult]] = {w: [] for w in ports}
    for workers, port in ports.items():
        loadgen.run_load(
            port,
            requests[workers],
            concurrency=budget.concurrency,
            max_requests=budget.max_requests,
            max_seconds=budget.warmup_seconds,
        )
    order = list(ports)
    for round_no in range(budget.rounds):
        for workers in order if round_no % 2 == 0 else order[::-1]:
            result = loadgen.run_load(
                ports[workers],
                requests[workers],
                concurrency=budget.concurrency,
                max_requests=budget.max_requests,
                max_seconds=budget.seconds,
            )
            log(
                f"replicas: --workers {workers} round {round_no + 1}: {result.rps:,.0f} req/s, "
                f"p99 {result.p99_ms:.2f} ms, errors {result.errors} {result.first_error}"
            )
            results[workers].append(result)
    return results


@dataclass
class FlipResult:
    lag_s: dict[str, float | None]  # replica name -> seconds until all its workers switched
    requests: int
    failed: int
    first_failure: str


def flip(ports: dict[str, int], store: Path, budget: Budget) -> FlipResult:
    """Move the champion to a new version under light load; time each replica's switch."""
    import mlflow
    from mlflow import MlflowClient

    uri = store_settings(store).tracking_uri
    # registering a ``models:/m-<id>`` source looks the logged model up in the global store
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    current = client.get_model_version_by_alias(MODEL, "champion")
    # the champion's logged model (``models:/m-<id>``) registered again under a new number
    new = client.create_model_version(
        MODEL,
        current.source,
        run_id=current.run_id,
        model_id=current.model_id or current.source.rsplit("/", 1)[-1],
    )
    for key, value in (current.tags or {}).items():  # the same files, the same digests
        client.set_model_version_tag(MODEL, str(new.version), key, value)
    body = bodies("patients", 1)[0]
    stop = threading.Event()
    counts = {"requests": 0, "failed": 0}
    failures: list[str] = []
    lock = threading.Lock()

    def send(port: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            for _ in range(100_000):  # bounded; ends when `stop` is set
                if stop.is_set():
                    return
                try:
                    headers = {"Content-Type": "application/json"}
                    conn.request("POST", PATH, body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    ok = response.status == 200
                    reason = f"HTTP {response.status}"
                except (OSError, http.client.HTTPException) as err:
                    ok, reason = False, repr(err)
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=30)
                with lock:
                    counts["requests"] += 1
                    if not ok:
                        counts["failed"] += 1
                        failures.append(reason)
                time.sleep(0.005)  # light load: ~100-200 req/s per sender
        finally:
            conn.close()

    threads = [threading.Thread(target=send, args=(p,)) for p in ports.values() for _ in range(2)]
    for t in threads:
        t.start()
    lag: dict[str, float | None] = dict.fromkeys(ports)
    try:
        time.sleep(1.0)  # load running before the move
        moved = time.perf_counter()
        client.set_registered_model_alias(MODEL, "champion", new.version)
        deadline = moved + budget.flip_timeout
        while any(v is None for v in lag.values()) and time.perf_counter() < deadline:
            for name, port in ports.items():
                if lag[name] is None:
                    versions = _worker_versions(port)
                    if versions and all(v == {str(new.version)} for v in versions.values()):
                        lag[name] = time.perf_counter() - moved
            time.sleep(0.02)
        time.sleep(1.0)  # load continues on the new version
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    return FlipResult(lag, counts["requests"], counts["failed"], failures[0] if failures else "")


def run(opts: PartOptions, store: Path | None = None) -> Report:
    budget = QUICK if opts.quick else FULL
    report = Report("replicas", "Replicas: serve --workers N and a champion flip", opts.quick)
    report.command = opts.command
    load_before = os.getloadavg()
    with work_dir("metapredict-bench-replicas-") as tmp:
        store_opts = PartOptions(opts.quick, opts.out, store or opts.store, opts.command)
        with served_store(store_opts, log=log) as given:
            store_dir = tmp / "store"  # a copy: the flip registers a version and moves the alias
            shutil.copytree(given, store_dir)
            ports = {1: free_port(), 2: free_port()}
            servers = {w: serve_server(store_dir, p, tmp, workers=w) for w, p in ports.items()}
            try:
                for server in servers.values():
                    server.start()
                for w, server in servers.items():
                    server.wait_ready(ports[w], METAPREDICT_READY, deadline_s=180)
                    while len(_worker_versions(ports[w])) < w:  # every worker has loaded
                        time.sleep(0.05)
                log("replicas: both servers ready")
                results = throughput(ports, budget)
                flipped = flip({"workers=2": ports[2], "workers=1": ports[1]}, store_dir, budget)
            finally:
                for server in servers.values():
                    server.stop()
    load_after = os.getloadavg()
    rps = {w: Spread.of([r.rps for r in rs]) for w, rs in results.items()}
    p50 = {w: Spread.of([r.p50_ms for r in rs]) for w, rs in results.items()}
    p99 = {w: Spread.of([r.p99_ms for r in rs]) for w, rs in results.items()}
    errors = {w: sum(r.errors for r in rs) for w, rs in results.items()}
    client_cpu = {w: Spread.of([r.client_cpu_share for r in rs]) for w, rs in results.items()}
    ratios = Spread.of(
        [a.rps / b.rps for a, b in zip(results[2], results[1], strict=True) if b.rps > 0]
    )
    worst_lag = max((v for v in flipped.lag_s.values() if v is not None), default=None)
    report.targets = [
        Target(
            "throughput --workers 2 / --workers 1 (single patient)",
            f">= {SPEEDUP_TARGET}x on 2 cores",
            f"{ratios.fmt(2)}x",
            None if opts.quick else ratios.median >= SPEEDUP_TARGET,
            "the load generator shares the 2 cores (client CPU below)",
        ),
        Target(
            "failed requests during a champion flip",
            "0",
            f"{flipped.failed} of {flipped.requests:,}",
            flipped.failed == 0,
            flipped.first_failure,
        ),
        Target(
            "every replica's workers on the new champion",
            f"within poll interval + 1 s ({POLL_SECONDS + 1:g} s)",
            ", ".join(f"{k}: {fmt_num(v, 2)} s" for k, v in flipped.lag_s.items()),
            None
            if worst_lag is None and any(v is None for v in flipped.lag_s.values())
            else (worst_lag is not None and worst_lag <= POLL_SECONDS + 1),
        ),
    ]
    report.add(
        "Throughput and latency",
        md_table(
            ["server", "req/s", "p50 ms", "p99 ms", "errors", "client CPU (1 core)"],
            [
                (
                    f"`metapredict serve --workers {w}`",
                    rps[w].fmt(0),
                    p50[w].fmt(2),
                    p99[w].fmt(2),
                    errors[w],
                    f"{client_cpu[w].median:.0%}",
                )
                for w in (1, 2)
            ],
        )
        + f"\n\nRatio (per round, --workers 2 / --workers 1): {ratios.fmt(2)}x.",
    )
    report.add(
        "Champion flip across two replicas",
        md_table(
            ["replica", "seconds until every worker serves the new version"],
            [(k, fmt_num(v, 2)) for k, v in flipped.lag_s.items()],
        )
        + f"\n\n{flipped.requests:,} requests during the flip, {flipped.failed} failed.",
    )
    report.add(
        "Method",
        f"- Both servers: `metapredict serve --workers N --poll-seconds {POLL_SECONDS:g}` on "
        "127.0.0.1, both champions loaded, started once. The load generator "
        f"(`benchmarks.loadgen`, {loadgen.loop_name()}, one process, {budget.concurrency} "
        "keep-alive connections, closed loop) runs on the same 2 cores.\n"
        f"- {budget.rounds} rounds per server, alternating order; each stops at "
        f"{budget.max_requests:,} requests or {budget.seconds:g} s, after a "
        f"{budget.warmup_seconds:g} s warm-up. Values: median [p10, p90] over rounds; p50/p99 "
        "are per-round latency percentiles. Bodies: 64 distinct simulated single patients.\n"
        "- Flip: a new version of the tropism model is registered (the champion's files), the "
        "alias moves while 2 senders per replica post single patients (~5 ms apart); the lag is "
        "from the move until `/metrics` of the replica shows the new version for every worker "
        "(`metapredict_model_info`, one series per worker pid), checked every 20 ms.\n"
        "- Load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in load_after)
        + ". Other processes on the machine take cores from both servers alike, but a busy "
        "machine lowers the 2-worker gain most (it needs both cores).",
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else "replicas").parse_args(argv)
    opts = options(args, "benchmarks.replicas")
    path = run(opts).write(opts.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
