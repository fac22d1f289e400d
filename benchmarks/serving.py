"""Serving: ``metapredict serve`` vs ``mlflow models serve`` on the same registered champion.

Both servers load ``models:/metapredict-tropism@champion`` from the same throwaway store and
listen on 127.0.0.1. One load generator (``benchmarks.loadgen``, calibrated against a trivial
endpoint) sends single patients at concurrency 1 and 8 and batches of 100 and 1,000 patients,
to three endpoints with the same semantics:

* ``mlflow /invocations``            (``dataframe_split``)
* ``metapredict /invocations``       (the same body, ``?task=tropism``)
* ``metapredict /v1/predict/tropism`` (``{"patients": [...]}``; also returns contributions)

Rounds alternate between endpoints (order reversed every round), each bounded by a number of
requests and a number of seconds. Run alone: ``python -m benchmarks.serving [--quick]``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import loadgen
from benchmarks.common import (
    METAPREDICT_READY,
    MLFLOW_READY,
    REPO,
    VENV_BIN,
    PartOptions,
    Report,
    Server,
    Spread,
    Target,
    fmt_num,
    free_port,
    http_post,
    log,
    md_table,
    metapredict_serve_available,
    metapredict_server,
    mlflow_server,
    options,
    parser,
    served_store,
    store_env,
    work_dir,
)

MLFLOW_INV = "mlflow /invocations"
MP_INV = "metapredict /invocations"
MP_V1 = "metapredict /v1/predict/tropism"
THROUGHPUT_GOAL = 25.0
P50_GOAL_MS = 2.0


@dataclass(frozen=True)
class Endpoint:
    label: str
    server: str  # "mlflow" | "metapredict"
    path: str
    style: str  # "split" | "patients"


ENDPOINTS = (
    Endpoint(MLFLOW_INV, "mlflow", "/invocations", "split"),
    Endpoint(MP_INV, "metapredict", "/invocations?task=tropism", "split"),
    Endpoint(MP_V1, "metapredict", "/v1/predict/tropism", "patients"),
)


@dataclass(frozen=True)
class Scenario:
    name: str
    patients: int
    concurrency: int


SCENARIOS = (
    Scenario("single patient, concurrency 1", 1, 1),
    Scenario("single patient, concurrency 8", 1, 8),
    Scenario("batch of 100, concurrency 1", 100, 1),
    Scenario("batch of 1,000, concurrency 1", 1000, 1),
)


@dataclass(frozen=True)
class Budget:
    rounds: int
    seconds: float  # per round
    max_requests: int  # per round
    warmup_seconds: float
    calibration_seconds: float


FULL = Budget(
    rounds=3, seconds=3.0, max_requests=100_000, warmup_seconds=1.0, calibration_seconds=3.0
)
QUICK = Budget(
    rounds=2, seconds=0.75, max_requests=5_000, warmup_seconds=0.25, calibration_seconds=1.0
)


@dataclass
class Cell:
    """All rounds of one endpoint in one scenario."""

    runs: list[loadgen.LoadResult] = field(default_factory=list)

    def rps(self) -> Spread:
        return Spread.of([r.rps for r in self.runs])

    def p50(self) -> Spread:
        return Spread.of([r.p50_ms for r in self.runs])

    def p99(self) -> Spread:
        return Spread.of([r.p99_ms for r in self.runs])

    def errors(self) -> int:
        return sum(r.errors for r in self.runs)


# ------------------------------------------------------------------------------------------------
# Request bodies


def patient_rows(n: int, seed: int = 20240) -> tuple[list[str], list[list[Any]]]:
    """``n`` simulated patients with every optional input present, resected (stage I-III, so
    both models answer for them); feature columns only."""
    from metapredict.simulator import complete_patients, default_config

    # About a third of simulated patients have every optional input and a stage I-III.
    frame = complete_patients(n, seed, draw=max(6 * n, 400), config=default_config())
    columns = list(frame.columns)
    rows: list[list[Any]] = []
    for record in frame.astype(object).to_numpy().tolist():
        rows.append([v.item() if isinstance(v, np.generic) else v for v in record])
    return columns, rows


def body(style: str, columns: list[str], rows: Sequence[list[Any]]) -> bytes:
    if style == "split":
        doc: dict[str, Any] = {"dataframe_split": {"columns": columns, "data": list(rows)}}
    else:
        doc = {
            "patients": [
                {**dict(zip(columns, r, strict=True)), "id": f"p{i}"} for i, r in enumerate(rows)
            ]
        }
    return json.dumps(doc).encode()


def bodies(style: str, patients: int) -> list[bytes]:
    """A few distinct bodies per scenario (64 single patients, 4 or 2 batches)."""
    count = 64 if patients == 1 else (4 if patients <= 100 else 2)
    columns, rows = patient_rows(count * patients)
    return [body(style, columns, rows[i * patients : (i + 1) * patients]) for i in range(count)]


# ------------------------------------------------------------------------------------------------
# Checks before measuring


def _predictions(payload: bytes) -> np.ndarray | None:
    try:
        doc = json.loads(payload)
        return np.array([[float(v) for v in row.values()] for row in doc["predictions"]])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _keys(payload: bytes | None) -> list[str]:
    try:
        return list(json.loads(payload or b"")["predictions"][0])
    except (ValueError, KeyError, IndexError, TypeError):
        return []


def check_endpoints(ports: dict[str, int]) -> list[str]:
    """Each endpoint answers 200; both /invocations give the same probabilities."""
    notes = []
    columns, rows = patient_rows(5)
    answers: dict[str, np.ndarray | None] = {}
    answers_raw: dict[str, bytes] = {}
    for ep in ENDPOINTS:
        if ep.server not in ports:
            continue
        status, payload = http_post(ports[ep.server], ep.path, body(ep.style, columns, rows))
        if status != 200:
            raise RuntimeError(f"{ep.label} answered {status}: {payload[:300]!r}")
        if ep.style == "split":
            answers[ep.label] = _predictions(payload)
            answers_raw[ep.label] = payload
    a, b = answers.get(MLFLOW_INV), answers.get(MP_INV)
    if a is not None and b is not None and a.shape == b.shape:
        diff = float(np.max(np.abs(a - b)))
        notes.append(
            f"Both /invocations answered the same 5 patients with the same probabilities "
            f"(max |difference| {diff:.1e})."
        )
        if diff > 1e-6:
            raise RuntimeError(
                f"the two servers disagree (max |difference| {diff}); "
                f"mlflow: {np.round(a, 4).tolist()}; metapredict: {np.round(b, 4).tolist()}; "
                f"mlflow keys: {_keys(answers_raw.get(MLFLOW_INV))}; "
                f"metapredict keys: {_keys(answers_raw.get(MP_INV))}"
            )
    return notes


# ------------------------------------------------------------------------------------------------
# Calibration of the load generator


def calibrate(budget: Budget, log_dir: Path) -> dict[int, loadgen.LoadResult]:
    """The client's ceiling: a trivial uvicorn endpoint with a single-patient-sized body."""
    port = free_port()
    argv = [
        str(VENV_BIN / "uvicorn"),
        "benchmarks.trivial_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--app-dir",
        str(REPO),
    ]
    env = store_env(log_dir)
    columns, rows = patient_rows(1)
    request = [loadgen.post_request("/", body("split", columns, rows), port)]
    out: dict[int, loadgen.LoadResult] = {}
    with Server("trivial endpoint", argv, env, log_dir / "trivial.log") as server:
        server.wait_ready(port, "/", deadline_s=30)
        loadgen.run_load(port, request, concurrency=1, max_requests=2_000, max_seconds=0.3)
        for concurrency in (1, 8):
            out[concurrency] = loadgen.run_load(
                port,
                request,
                concurrency=concurrency,
                max_requests=budget.max_requests,
                max_seconds=budget.calibration_seconds,
            )
    return out


# ------------------------------------------------------------------------------------------------
# The benchmark


def measure(ports: dict[str, int], budget: Budget) -> dict[tuple[str, str], Cell]:
    """Alternating rounds over endpoints for every scenario."""
    cells: dict[tuple[str, str], Cell] = {}
    endpoints = [ep for ep in ENDPOINTS if ep.server in ports]
    for scenario in SCENARIOS:
        requests = {
            ep.label: [
                loadgen.post_request(ep.path, b, ports[ep.server])
                for b in bodies(ep.style, scenario.patients)
            ]
            for ep in endpoints
        }
        for ep in endpoints:  # warm-up, not recorded
            loadgen.run_load(
                ports[ep.server],
                requests[ep.label],
                concurrency=scenario.concurrency,
                max_requests=budget.max_requests,
                max_seconds=budget.warmup_seconds,
            )
        for r in range(budget.rounds):
            order = endpoints if r % 2 == 0 else list(reversed(endpoints))
            for ep in order:
                result = loadgen.run_load(
                    ports[ep.server],
                    requests[ep.label],
                    concurrency=scenario.concurrency,
                    max_requests=budget.max_requests,
                    max_seconds=budget.seconds,
                )
                cells.setdefault((scenario.name, ep.label), Cell()).runs.append(result)
                log(
                    f"  {scenario.name:32s} {ep.label:34s} round {r + 1}: "
                    f"{result.rps:9.1f} req/s  p50 {result.p50_ms:8.2f} ms  "
                    f"p99 {result.p99_ms:8.2f} ms  errors {result.errors}"
                )
    return cells


def _ratio(cells: dict[tuple[str, str], Cell], scenario: str, label: str) -> Spread:
    """Per-round throughput ratio endpoint / mlflow (rounds are paired in time)."""
    ours, theirs = cells.get((scenario, label)), cells.get((scenario, MLFLOW_INV))
    if ours is None or theirs is None:
        return Spread.of([])
    return Spread.of(
        [a.rps / b.rps for a, b in zip(ours.runs, theirs.runs, strict=True) if b.rps > 0]
    )


def tables(cells: dict[tuple[str, str], Cell]) -> str:
    parts = []
    for scenario in SCENARIOS:
        rows = []
        for ep in ENDPOINTS:
            cell = cells.get((scenario.name, ep.label))
            if cell is None:
                continue
            ratio = "1" if ep.label == MLFLOW_INV else _ratio(cells, scenario.name, ep.label).fmt(1)
            rows.append(
                (
                    ep.label,
                    cell.rps().fmt(1),
                    fmt_num(cell.rps().median * scenario.patients, 0),
                    cell.p50().fmt(2),
                    cell.p99().fmt(2),
                    ratio,
                    sum(r.ok for r in cell.runs),
                    cell.errors(),
                )
            )
        parts.append(f"### {scenario.name}\n")
        parts.append(
            md_table(
                [
                    "endpoint",
                    "req/s",
                    "patients/s",
                    "p50 ms",
                    "p99 ms",
                    "throughput / mlflow",
                    "requests",
                    "errors",
                ],
                rows,
            )
        )
        parts.append("")
    return "\n".join(parts)


PROFILE_STAGES = (
    "parse JSON (orjson)",
    "validate (pydantic model generated from the schema)",
    "encode features (CLR, codes)",
    "predict: 8 site boosters, single-row fast path",
    "predict + TreeSHAP contributions (replaces the line above on /v1)",
    "intervals: the spread model, one small booster per site (single-row fast path)",
    "build the response (top features per site, warnings)",
    "serialise the response (orjson)",
    "the whole request through the app (FastAPI, middleware, routing; no sockets)",
)
#: Index of the whole-request row: it contains the stages above it, so is not added to them.
WHOLE_REQUEST = len(PROFILE_STAGES) - 1


async def _asgi_post(app: Any, path: str, payload: bytes) -> int:
    """POST ``payload`` to ``path`` through the ASGI ``app``; the response status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def _whole_request_us(store_dir: Path, raw: bytes, repeats: int, n: int) -> Spread:
    """Microseconds per single-patient POST /v1/predict/tropism through the whole app."""
    import asyncio

    from benchmarks.common import store_settings
    from serving.app import create_app
    from serving.settings import ServingSettings

    store = store_settings(store_dir)
    app = create_app(
        ServingSettings(
            tracking_uri=store.tracking_uri, artifact_root=store.artifact_root, poll_seconds=0
        )
    )

    async def measure() -> list[float]:
        async with app.router.lifespan_context(app):
            for _ in range(100):
                status = await _asgi_post(app, "/v1/predict/tropism", raw)
                if status != 200:
                    raise RuntimeError(f"the app answered {status} in the profile")
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(n):
                    await _asgi_post(app, "/v1/predict/tropism", raw)
                runs.append((time.perf_counter() - t0) / n * 1e6)
            return runs

    return Spread.of(asyncio.run(measure()))


def request_path_profile(store_dir: Path, repeats: int = 5, n: int = 2000) -> list[Spread]:
    """Microseconds per single-patient request for each in-process stage (``PROFILE_STAGES``)."""
    import orjson

    from benchmarks.common import store_settings
    from metapredict import registry
    from serving import responses
    from serving.request_model import vocabulary
    from serving.validation import parse_json, validate_patients

    predictor = registry.load("tropism", "champion", store_settings(store_dir))
    columns, rows = patient_rows(1)
    raw = body("patients", columns, rows)
    doc, _ = parse_json(raw)
    vocab = vocabulary(predictor)
    records = validate_patients(
        doc["patients"], max_patients=1000, pandera_batch_rows=200, vocab=vocab
    )
    X = predictor.encode_records(records)
    proba, contrib = predictor.predict_and_explain(X)
    bounds = predictor.interval_bounds(X, proba)
    answer = responses.tropism_patients(predictor, records, proba, contrib, 5, bounds)
    stages = (
        lambda: parse_json(raw),
        lambda: validate_patients(
            doc["patients"], max_patients=1000, pandera_batch_rows=200, vocab=vocab
        ),
        lambda: predictor.encode_records(records),
        lambda: predictor.predict_matrix(X),
        lambda: predictor.predict_and_explain(X),
        lambda: predictor.interval_bounds(X, proba),
        lambda: responses.tropism_patients(predictor, records, proba, contrib, 5, bounds),
        lambda: orjson.dumps({"patients": answer}, option=orjson.OPT_SERIALIZE_NUMPY),
    )
    out = []
    for stage in stages:
        for _ in range(100):
            stage()
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(n):
                stage()
            runs.append((time.perf_counter() - t0) / n * 1e6)
        out.append(Spread.of(runs))
    out.append(_whole_request_us(store_dir, raw, repeats, n))
    return out


def _profile_summary(profile: list[Spread]) -> str:
    explain = profile[4].median - profile[3].median
    intervals = profile[5].median
    stages = sum(p.median for i, p in enumerate(profile) if i not in (3, WHOLE_REQUEST)) / 1000
    whole = profile[WHOLE_REQUEST].median / 1000.0
    return (
        f"in process {whole:.2f} ms per /v1 request through the app, of which the stages "
        f"{stages:.2f} ms, TreeSHAP contributions {explain / 1000.0:.2f} ms and the intervals "
        f"{intervals / 1000.0:.2f} ms; the rest of the latency is HTTP (uvicorn) and the client"
    )


def targets(
    cells: dict[tuple[str, str], Cell],
    have_metapredict: bool,
    profile: list[Spread] | None = None,
) -> list[Target]:
    if not have_metapredict:
        return [
            Target(
                "throughput >= 25x mlflow (single patient, c=8)",
                ">= 25x",
                "-",
                None,
                "metapredict serve not available in this checkout",
            ),
            Target(
                "single-patient p50",
                "<= 2 ms",
                "-",
                None,
                "metapredict serve not available in this checkout",
            ),
        ]
    c8, c1 = SCENARIOS[1].name, SCENARIOS[0].name
    out = []
    for label in (MP_V1, MP_INV):
        ratio = _ratio(cells, c8, label)
        met = ratio.median >= THROUGHPUT_GOAL if ratio.n else None
        note = ""
        if met is False:
            note = (
                "per-request cost on 2 cores shared with the load generator; see 'Where a "
                "single-patient request spends its time'"
                + (f" ({_profile_summary(profile)})" if profile else "")
            )
        out.append(
            Target(
                f"throughput vs mlflow, single patient, c=8 ({label})",
                f">= {THROUGHPUT_GOAL:.0f}x",
                f"{ratio.fmt(1)}x",
                met,
                note,
            )
        )
    for label in (MP_V1, MP_INV):
        cell = cells.get((c1, label))
        p50 = cell.p50() if cell else Spread.of([])
        met = p50.median <= P50_GOAL_MS if p50.n else None
        out.append(
            Target(
                f"single-patient p50, c=1 ({label})",
                f"<= {P50_GOAL_MS:.0f} ms",
                f"{p50.fmt(2)} ms",
                met,
                ""
                if met is not False
                else "see 'Where a single-patient request spends its time'"
                + (f" ({_profile_summary(profile)})" if profile else ""),
            )
        )
    return out


def run(opts: PartOptions, store: Path | None = None) -> Report:
    budget = QUICK if opts.quick else FULL
    report = Report("serving", "Serving: metapredict serve vs mlflow models serve", opts.quick)
    report.command = opts.command
    have_mp = metapredict_serve_available()
    with work_dir("metapredict-bench-serving-") as tmp:
        log("serving: calibrating the load generator against a trivial endpoint ...")
        calibration = calibrate(budget, tmp)
        store_opts = PartOptions(opts.quick, opts.out, store or opts.store, opts.command)
        with served_store(store_opts, log=log) as store_dir:
            ports = {"mlflow": free_port()}
            servers = [mlflow_server(store_dir, ports["mlflow"], tmp)]
            if have_mp:
                ports["metapredict"] = free_port()
                servers.append(metapredict_server(store_dir, ports["metapredict"], tmp))
            try:
                for server in servers:
                    server.start()
                ready = {servers[0].name: servers[0].wait_ready(ports["mlflow"], MLFLOW_READY)}
                if have_mp:
                    ready[servers[1].name] = servers[1].wait_ready(
                        ports["metapredict"], METAPREDICT_READY
                    )
                started = ", ".join(f"{k} {v:.1f} s" for k, v in ready.items())
                log(f"serving: servers ready ({started})")
                notes = check_endpoints(ports)
                cells = measure(ports, budget)
                rss = {s.name: s.rss_mib() for s in servers}
            finally:
                for server in servers:
                    server.stop()
            profile = request_path_profile(store_dir) if have_mp else None
    report.targets = targets(cells, have_mp, profile)
    report.add("Results", tables(cells))
    if profile:
        report.add(
            "Where a single-patient request spends its time",
            "In-process cost of each stage of `POST /v1/predict/tropism` for one patient, "
            "then of the whole request sent to the ASGI app (microseconds, median [p10, p90] "
            "of 5 x 2,000 calls, servers stopped):\n\n"
            + md_table(
                ["stage", "us"],
                [(name, p.fmt(1)) for name, p in zip(PROFILE_STAGES, profile, strict=True)],
            )
            + f"\n\n{_profile_summary(profile)}. `/invocations` skips the contributions and "
            "the per-site explanation.",
        )
    calib_rows = [
        (
            c,
            fmt_num(res.rps, 0),
            fmt_num(res.p50_ms, 3),
            fmt_num(res.p99_ms, 3),
            f"{res.client_cpu_share:.0%}",
        )
        for c, res in calibration.items()
    ]
    best = {
        c: max(
            (
                cells[(s.name, ep.label)].rps().median
                for s in SCENARIOS[:2]
                for ep in ENDPOINTS
                if s.concurrency == c and (s.name, ep.label) in cells
            ),
            default=float("nan"),
        )
        for c in (1, 8)
    }
    report.add(
        "Load generator calibration",
        f"Client: `benchmarks.loadgen` ({loadgen.loop_name()}), one process, closed loop, "
        "keep-alive connections. Against `benchmarks.trivial_app` (uvicorn, a constant answer) "
        "with the single-patient body:\n\n"
        + md_table(["concurrency", "req/s", "p50 ms", "p99 ms", "client CPU (1 core)"], calib_rows)
        + "\n\nThe fastest single-patient endpoint reached "
        + ", ".join(
            f"{fmt_num(best[c], 0)} req/s at concurrency {c} "
            f"({best[c] / calibration[c].rps:.0%} of the client's ceiling)"
            for c in (1, 8)
            if calibration[c].rps > 0
        )
        + ". The ceiling includes uvicorn's own cost, so the client alone is faster still.",
    )
    report.add(
        "Method",
        f"- {budget.rounds} rounds per endpoint and scenario, alternating endpoints "
        "(order reversed every other round); each round stops at "
        f"{budget.max_requests:,} requests or {budget.seconds:g} s, whichever comes first, after "
        f"a {budget.warmup_seconds:g} s warm-up per endpoint and scenario. Values are medians "
        "over rounds with [p10, p90] across rounds; p50/p99 are per-round latency percentiles.\n"
        "- 'throughput / mlflow' is the per-round ratio to `mlflow /invocations` in the same "
        "round (median [p10, p90]).\n"
        "- Bodies: simulated patients with every optional extra present, 64 distinct single "
        "patients (4 distinct batches of 100, 2 of 1,000), sent in rotation.\n"
        "- Servers: `mlflow models serve -m models:/metapredict-tropism@champion --env-manager "
        "local` (one uvicorn worker, as MLflow starts it) and `metapredict serve` (one uvicorn "
        "worker, both champions loaded), both on 127.0.0.1, started once and kept up for all "
        "rounds, ended by their process group id. The load generator runs on the same 2 cores.\n"
        f"- Resident memory after the run: "
        + ", ".join(f"{k} {v:,.0f} MiB" for k, v in rss.items())
        + ".",
    )
    report.notes += notes
    if not have_mp:
        report.notes.append(
            "`metapredict serve` is not available in this checkout: only mlflow was measured."
        )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else "serving").parse_args(argv)
    opts = options(args, "benchmarks.serving")
    path = run(opts).write(opts.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
