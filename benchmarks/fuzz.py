"""``make fuzz``: bad input against a served ``metapredict serve``, bounded to a few minutes.

Two parts against one server (small limits so the oversized cases stay cheap):

1. a table of hand-made bad requests, each with the statuses it may get (malformed and
   adversarial JSON, oversized and chunked bodies, wrong types, NaN, unknown keys by the
   hundred thousand, deep nesting, invalid UTF-8, wrong methods and content types, stalled
   and abandoned bodies);
2. schemathesis (``schemathesis run`` on the served OpenAPI document, check
   ``not_a_server_error``, a fixed seed and a time budget).

The server must never answer 5xx, must keep answering ``/health/live``, and its memory is
read at the start and the end. Results: ``benchmarks/results/fuzz.md``.
Run: ``python -m benchmarks.fuzz [--quick] [--store DIR] [--schemathesis-seconds S]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.common import (
    HOST,
    VENV_BIN,
    Report,
    Target,
    http_status,
    log,
    md_table,
    options,
    parser,
    served_store,
    work_dir,
)
from benchmarks.reliability import (
    Fault,
    Tally,
    faults_table,
    figures_table,
    raw_exchange,
    request,
    served,
)

MAX_BODY = 1_000_000
MAX_PATIENTS = 100
SERVER_ENV = {
    "METAPREDICT_MAX_BODY_BYTES": str(MAX_BODY),
    "METAPREDICT_MAX_PATIENTS": str(MAX_PATIENTS),
    "METAPREDICT_BODY_TIMEOUT": "3",
    "METAPREDICT_HEADER_TIMEOUT": "3",
    "METAPREDICT_POLL_SECONDS": "0",
}
JSON = {"Content-Type": "application/json"}
TROPISM = "/v1/predict/tropism"
CHUNKED = "chunked body of 400 MB (no Content-Length)"


def _patient() -> dict[str, Any]:
    from serving.request_model import example_patient

    return dict(example_patient())


def _doc(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _chunks(total: int, piece: int = 1 << 16) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * piece
        sent += piece


@dataclass(frozen=True)
class Case:
    name: str
    expect: frozenset[int]
    send: Callable[[int], tuple[int | None, bytes]]


def _post(body: bytes, headers: dict[str, str] | None = None, path: str = TROPISM) -> Any:
    return lambda port: request(port, "POST", path, body, JSON if headers is None else headers)


def _status_of(raw: bytes) -> tuple[int | None, bytes]:
    if raw.startswith(b"HTTP/1.1 "):
        return int(raw[9:12]), raw
    return None, raw


def cases() -> list[Case]:
    p = _patient()
    strings = {k: "x" for k in p}
    unknown = {f"k{i}": i for i in range(100_000)}
    deep = b"[" * 100_000 + b"]" * 100_000
    return [
        Case("malformed JSON", frozenset({400}), _post(b'{"patients": [')),
        Case("empty body", frozenset({400, 422}), _post(b"")),
        Case("a JSON array, not an object", frozenset({422}), _post(b"[]")),
        Case("patients not a list", frozenset({422}), _post(_doc({"patients": 5}))),
        Case("no patients", frozenset({422}), _post(_doc({"patients": []}))),
        Case(
            f"{MAX_PATIENTS + 1} patients",
            frozenset({413}),
            _post(_doc({"patients": [p] * (MAX_PATIENTS + 1)})),
        ),
        Case(
            "declared body over the limit",
            frozenset({413}),
            _post(b" " * (2 * MAX_BODY)),
        ),
        Case(
            CHUNKED,
            frozenset({413}),
            lambda port: request(port, "POST", TROPISM, _chunks(400 << 20), JSON, chunked=True),
        ),
        Case("NaN", frozenset({400, 422}), _post(_doc({"patients": [p | {"age_years": "NaN"}]}))),
        Case(
            "NaN literal",
            frozenset({400, 422}),
            _post(_doc({"patients": [p]}).replace(b'"age_years": ', b'"age_years": NaN, "x": ')),
        ),
        Case("1e999", frozenset({400, 422}), _post(b'{"patients": [{"age_years": 1e999}]}')),
        Case("every field a string", frozenset({422}), _post(_doc({"patients": [strings]}))),
        Case(
            "100,000 unknown keys in one patient",
            frozenset({413, 422}),
            _post(_doc({"patients": [p | unknown]})),
        ),
        Case("100,000 nested arrays", frozenset({400, 413, 422}), _post(deep)),
        Case("invalid UTF-8", frozenset({400}), _post(b'{"patients": ["\xff\xfe"]}')),
        Case(
            "duplicate keys",
            frozenset({422}),
            _post(b'{"patients": [], "patients": ' + _doc([p]) + b"}"),
        ),
        Case(
            "text/plain content type",
            frozenset({415}),
            _post(_doc({"patients": [p]}), {"Content-Type": "text/plain"}),
        ),
        Case(
            "negative fraction",
            frozenset({422}),
            _post(_doc({"patients": [p | {"b_cells_naive": -1}]})),
        ),
        Case(
            "an id of 500 kB",
            frozenset({200, 422}),
            _post(_doc({"patients": [p | {"id": "i" * 500_000}]})),
        ),
        Case(
            "explain=maybe",
            frozenset({422}),
            _post(_doc({"patients": [p]}), path=TROPISM + "?explain=maybe"),
        ),
        Case("GET on a POST route", frozenset({405}), lambda port: request(port, "GET", TROPISM)),
        Case("unknown path", frozenset({404}), lambda port: request(port, "GET", "/v1/nothing")),
        Case(
            "/invocations: rows shorter than columns",
            frozenset({422}),
            _post(
                _doc({"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}),
                path="/invocations",
            ),
        ),
        Case(
            "/invocations: unknown format",
            frozenset({422}),
            _post(_doc({"tensor": [1, 2]}), path="/invocations"),
        ),
        Case(
            "a 200 kB header",
            frozenset({400, 413, 431}),  # over 64 KiB of headers
            lambda port: request(port, "GET", "/health/live", headers={"X-Big": "b" * 200_000}),
        ),
        Case(
            "body stalled after 10 bytes",
            frozenset({408}),
            lambda port: _status_of(
                raw_exchange(
                    port,
                    f"POST {TROPISM} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json"
                    '\r\nContent-Length: 5000\r\n\r\n{"patient'.encode(),
                )
            ),
        ),
        Case(
            "not HTTP at all",
            frozenset({400}),
            lambda port: _status_of(raw_exchange(port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")),
        ),
    ]


def _peak_growth_mib(pid: int) -> Callable[[], float]:
    """Reset the server's peak RSS (Linux: clear_refs 5); the function returns its growth."""
    status = Path(f"/proc/{pid}/status")

    def kib(field: str) -> int:
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = kib("VmRSS")
    return lambda: (kib("VmHWM") - before) / 1024


def run_table(
    port: int, pid: int, tally: Tally
) -> list[tuple[Case, int | None, int, float, float]]:
    """(case, status, response bytes, seconds, peak RSS growth in MiB) for every case."""
    out = []
    for case in cases():
        growth = _peak_growth_mib(pid)
        started = time.perf_counter()
        status, body = case.send(port)
        seconds = time.perf_counter() - started
        grew = growth()
        tally.count(status)
        out.append((case, status, len(body), seconds, grew))
        log(f"  {case.name}: {status} ({len(body):,} bytes, {seconds:.2f} s, +{grew:.1f} MiB)")
    return out


def run_schemathesis(port: int, seconds: float, report_dir: Path) -> dict[str, Any]:
    """schemathesis' JSON report of a bounded run (``not_a_server_error``, seed 1)."""
    report = report_dir / "schemathesis.json"
    argv = [
        str(VENV_BIN / "schemathesis"),
        "run",
        f"http://{HOST}:{port}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-time",
        str(int(seconds)),
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=seconds + 120,
            check=False,
            cwd=report_dir,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"exit_code": None, "error": "schemathesis did not stop in time"}
    if not report.is_file():
        tail = done.stdout.decode(errors="replace")[-2000:]
        return {"exit_code": done.returncode, "error": tail}
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def run(opts: Any, schemathesis_seconds: float) -> Report:
    report = Report("fuzz", "Fuzzing the served API (make fuzz)", opts.quick, opts.command)
    started = time.perf_counter()
    tally = Tally()
    with (
        served_store(replace(opts, quick=True), log=log) as store,  # a small store suffices
        work_dir("metapredict-fuzz-") as tmp,
        served(store, tmp, SERVER_ENV) as (server, port),
    ):
        rss_start = server.rss_mib()
        log("bad-input table ...")
        table = run_table(port, server.pid, tally)
        log(f"schemathesis for {schemathesis_seconds:.0f} s ...")
        st = run_schemathesis(port, schemathesis_seconds, tmp)
        alive = http_status(port, "/health/live", timeout=5.0) == 200
        tally.count(200 if alive else None)
        rss_end = server.rss_mib()
        log_text = server.log_path.read_text(errors="replace")
    generated = int(st.get("test_cases", {}).get("generated", 0))
    st_failures = st.get("failures") or []
    faults = [
        Fault(
            case.name,
            f"expects {' or '.join(str(s) for s in sorted(case.expect))}",
            f"{status} ({size:,} bytes in {secs:.2f} s; peak RSS +{grew:.1f} MiB)",
            status in case.expect,
        )
        for case, status, size, secs, grew in table
    ]
    chunked_growth = next(grew for case, *_, grew in table if case.name == CHUNKED)
    faults.append(
        Fault(
            "schemathesis",
            f"{generated:,} generated requests, check not_a_server_error, seed 1",
            f"exit code {st.get('exit_code')}, {len(st_failures)} failures"
            + (f" ({st['error'][:200]})" if "error" in st else ""),
            st.get("exit_code") == 0 and not st_failures,
        )
    )
    faults.append(
        Fault("liveness after all", "GET /health/live", "200" if alive else "no answer", alive)
    )
    tally.requests += generated  # schemathesis' requests (all checked: no 5xx among them)
    no_5xx = tally.server_errors == 0 and not st_failures
    tracebacks = log_text.count("Traceback")
    seconds = time.perf_counter() - started
    report.add("Figures", figures_table(tally, rss_start, rss_end, faults, seconds))
    report.add("Faults", faults_table(faults))
    report.add(
        "Statuses of the table's requests",
        md_table(["status", "count"], sorted(tally.statuses.items())),
    )
    report.targets = [
        Target(
            "no 5xx", "0 answers 5xx (table and schemathesis)", str(tally.server_errors), no_5xx
        ),
        Target("alive", "/health/live answers after the run", "yes" if alive else "no", alive),
        Target(
            "chunked body memory",
            f"peak RSS growth during a 400 MB chunked upload <= 2x the {MAX_BODY / 1e6:g} MB limit",
            f"{chunked_growth:.1f} MiB",
            chunked_growth * 2**20 <= 2 * MAX_BODY,
        ),
        Target("no tracebacks", "0 tracebacks in the server log", str(tracebacks), tracebacks == 0),
    ]
    report.notes += [
        f"Server limits for this run: {SERVER_ENV}.",
        "Requests count the table's and schemathesis' (its JSON report gives no statuses: "
        "non-2xx counts the table's requests only; schemathesis checks that none of its "
        "requests got a 5xx).",
        "A case whose status is not among those it expects is reported, not retried; the run "
        "fails (exit 1) only on a 5xx, a dead server or a traceback.",
    ]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("fuzz the served API")
    p.add_argument("--schemathesis-seconds", type=float, default=None)
    args = p.parse_args(argv)
    opts = options(args, "benchmarks.fuzz")
    seconds = args.schemathesis_seconds or (20.0 if opts.quick else 90.0)
    report = run(opts, seconds)
    path = report.write(opts.out)
    print(report.render())
    log(f"wrote {path}")
    failed = [t for t in report.targets if t.met is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
