"""Cold start: process start to ready, ``metapredict serve`` vs ``mlflow models serve``.

Ready means ``GET /health/ready`` answers 200 (metapredict: both champions loaded) or
``GET /ping`` answers 200 (mlflow: the tropism champion loaded). Polled every 20 ms with a
90 s deadline; servers alternate, each started fresh and ended by its process group id.
Run alone: ``python -m benchmarks.cold_start [--quick]``.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.common import (
    METAPREDICT_READY,
    MLFLOW_READY,
    REPO,
    PartOptions,
    Report,
    Server,
    Spread,
    Target,
    free_port,
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

GOAL = 0.5
MLFLOW = "mlflow models serve (/ping)"

#: Start-up phases of ``metapredict serve``, timed in a fresh interpreter (one JSON line out:
#: the phases, then whether a registry child was started). A local SQLite store is read
#: directly; otherwise a registry child runs in parallel with the server's imports and the
#: server then waits for it.
PROFILE_SCRIPT = """
import json, time
t = [time.perf_counter()]
import metapredict.cli
from metapredict.registry.fetch import Prefetch
from serving.settings import ServingSettings
settings = ServingSettings(poll_seconds=0)
t.append(time.perf_counter())
prefetch = Prefetch(settings.tasks, settings.alias, settings)
t.append(time.perf_counter())
import uvicorn, serving.app
t.append(time.perf_counter())
app = serving.app.create_app(
    settings, startup_loader=prefetch.load, startup_probe=prefetch.version
)
t.append(time.perf_counter())
prefetch.version("tropism", settings.alias, settings)
t.append(time.perf_counter())
for task in settings.tasks:
    prefetch.load(task, settings.alias, settings)
t.append(time.perf_counter())
prefetch.close()
print(json.dumps([b - a for a, b in zip(t, t[1:])] + [prefetch.child_started]))
"""
PHASES = (
    "server: import the CLI and read settings",
    "server: ask the registry (local SQLite read directly, else start MLflow's child)",
    "server: import the service (FastAPI, scikit-learn, pandas, pandera, LightGBM)",
    "server: create_app (request model, OpenAPI examples)",
    "server: wait for the registry's answer (the child's, if one was started)",
    "server: read both champions (JSON + LightGBM text, digests checked)",
)

#: Loading both champions in a fresh interpreter, the service's stack already imported: from
#: the JSON artifact (what the service does) or from the same predictors pickled (what it did
#: before the JSON format). One number out: seconds.
LOAD_SCRIPT = """
import json, sys, time
from pathlib import Path
import joblib
import serving.app
from metapredict.registry.artifact import read_predictor
kind, items = sys.argv[1], json.loads(sys.argv[2])
started = time.perf_counter()
for item in items:
    if kind == "json":
        read_predictor(Path(item[0]), item[1])
    else:
        joblib.load(item)
print(time.perf_counter() - started)
"""


def _size_mib(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def format_comparison(store_dir: Path, tmp: Path, repeats: int) -> tuple[Spread, Spread, str]:
    """Seconds to load both champions from their JSON artifacts vs from the same predictors
    pickled (fresh interpreters), and the sizes on disk."""
    import joblib

    from metapredict.registry.loader import FetchedModel, find_local, open_fetched
    from metapredict.settings import StoreSettings

    env = store_env(store_dir)
    settings = StoreSettings(
        tracking_uri=env["METAPREDICT_TRACKING_URI"], artifact_root=env["METAPREDICT_ARTIFACT_ROOT"]
    )
    folders: list[tuple[str, str]] = []
    pickles: list[str] = []
    sizes = []
    for task in ("tropism", "dormancy"):
        found = find_local(task, "champion", settings)
        assert isinstance(found, FetchedModel), found
        folders.append((found.predictor_path, found.predictor_sha256))
        pickled = tmp / f"{task}.joblib"
        joblib.dump(open_fetched(found), pickled)
        pickles.append(str(pickled))
        sizes.append(
            f"{task} {_size_mib(Path(found.predictor_path)):.1f} MiB "
            f"(pickled: {_size_mib(pickled):.1f} MiB)"
        )
    times: dict[str, list[float]] = {"json": [], "pickle": []}
    for _ in range(repeats):
        for kind, items in (("json", folders), ("pickle", pickles)):
            out = subprocess.run(
                [sys.executable, "-c", LOAD_SCRIPT, kind, json.dumps(items)],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            times[kind].append(float(out.stdout.strip().splitlines()[-1]))
    return Spread.of(times["json"]), Spread.of(times["pickle"]), "; ".join(sizes)


def _profile_note(profile: list[Spread]) -> str:
    """The largest start-up phases, from the measured profile."""
    if not profile:
        return "no start-up profile (metapredict serve not available)"
    total = sum(p.median for p in profile[: len(PHASES)])
    ranked = sorted(zip(PHASES, profile, strict=False), key=lambda x: -x[1].median)[:3]
    listed = "; ".join(f"{name}: {p.median:.2f} s ({p.median / total:.0%})" for name, p in ranked)
    return f"largest start-up phases (see 'Where metapredict's start-up time goes'): {listed}"


def startup_profile(store_dir: Path, repeats: int) -> tuple[list[Spread], bool]:
    """Seconds per start-up phase of ``metapredict serve`` (``PHASES``); whether a child ran."""
    env = store_env(store_dir)
    runs: list[list[float]] = []
    children: list[bool] = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", PROFILE_SCRIPT],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        *phases, child = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(phases)
        children.append(bool(child))
    return [Spread.of([r[i] for r in runs]) for i in range(len(PHASES))], any(children)


METAPREDICT = "metapredict serve (/health/ready)"
#: The same server with the registry asked of MLflow's client (the path for non-SQLite stores,
#: and the default before the direct read): shows what the direct read saves.
VIA_MLFLOW = "metapredict serve, METAPREDICT_DIRECT_READ=false (/health/ready)"


def run(opts: PartOptions, store: Path | None = None) -> Report:
    repeats = 1 if opts.quick else 3
    warm = 0 if opts.quick else 1  # unrecorded first round: warms the page cache
    report = Report("cold_start", "Cold start: process start to ready", opts.quick)
    report.command = opts.command
    have_mp = metapredict_serve_available()
    kinds: list[tuple[str, Callable[[Path, int, Path], Server], str]] = [
        (MLFLOW, mlflow_server, MLFLOW_READY)
    ]
    if have_mp:
        kinds.append((METAPREDICT, metapredict_server, METAPREDICT_READY))
        via_mlflow = functools.partial(metapredict_server, direct_read=False)
        kinds.append((VIA_MLFLOW, via_mlflow, METAPREDICT_READY))
    seconds: dict[str, list[float]] = {k[0]: [] for k in kinds}
    profile: list[Spread] = []
    child_started = False
    formats: tuple[Spread, Spread, str] | None = None
    memory: dict[str, list[float]] = {k[0]: [] for k in kinds}
    store_opts = PartOptions(opts.quick, opts.out, store or opts.store, opts.command)
    with served_store(store_opts, log=log) as store_dir, work_dir("metapredict-bench-cold-") as tmp:
        for r in range(repeats + warm):
            order = kinds if r % 2 == 0 else list(reversed(kinds))
            for name, make, path in order:
                port = free_port()
                with make(store_dir, port, tmp) as server:
                    elapsed = server.wait_ready(port, path, deadline_s=90.0)
                    rss = server.rss_mib()
                if r >= warm:
                    seconds[name].append(elapsed)
                    memory[name].append(rss)
                log(f"  cold start {name}: {elapsed:.2f} s{'' if r >= warm else ' (warm-up)'}")
        if have_mp:
            profile, child_started = startup_profile(store_dir, repeats)
            formats = format_comparison(store_dir, tmp, max(repeats, 3))

    spreads = {k: Spread.of(v) for k, v in seconds.items()}
    report.add(
        f"Results ({repeats} starts each"
        + (", after one unrecorded warm-up start)" if warm else ")"),
        md_table(
            ["server", "seconds to ready", "RSS when ready, MiB"],
            [(k, spreads[k].fmt(2), Spread.of(memory[k]).fmt(0)) for k in seconds],
        ),
    )
    if have_mp:
        ratios = Spread.of(
            [a / b for a, b in zip(seconds[METAPREDICT], seconds[MLFLOW], strict=True)]
        )
        met = ratios.median <= GOAL
        report.targets.append(
            Target(
                "cold start vs mlflow models serve",
                f"<= {GOAL}x",
                f"{ratios.fmt(2)}x ({spreads[METAPREDICT].fmt(2)} s vs {spreads[MLFLOW].fmt(2)} s)",
                met,
                "" if met else _profile_note(profile),
            )
        )
    else:
        report.targets.append(
            Target(
                "cold start vs mlflow models serve",
                f"<= {GOAL}x",
                "-",
                None,
                "metapredict serve not available in this checkout",
            )
        )
    if have_mp:
        total = sum(p.median for p in profile)
        rows = [
            (name, p.fmt(2), f"{p.median / total:.0%}")
            for name, p in zip(PHASES, profile, strict=True)
        ]
        via = Spread.of([a / b for a, b in zip(seconds[VIA_MLFLOW], seconds[MLFLOW], strict=True)])
        how = (
            "a registry child process was started (the store could not be read directly)"
            if child_started
            else "the local SQLite store was read directly: no MLflow import, no child process"
        )
        report.add(
            "Where metapredict's start-up time goes",
            md_table(["phase (fresh interpreter, in order)", "seconds", "share"], rows)
            + f"\n\nHere {how}. The rest of the time to ready is the interpreter and uvicorn "
            "start-up. Phases are timed by a script that does what `metapredict serve` does "
            "before it answers `/health/ready`.\n\n"
            "With `METAPREDICT_DIRECT_READ=false` (the registry asked of MLflow's client in a "
            "child process while the server imports its stack, as for any store that is not a "
            f"local SQLite file) the start takes {spreads[VIA_MLFLOW].fmt(2)} s, "
            f"{via.fmt(2)}x mlflow's: before it can read the few rows that name the champions, "
            "MLflow's client imports MLflow, then SQLAlchemy and Alembic, and maps its ORM.",
        )
    if formats is not None:
        as_json, as_pickle, sizes = formats
        report.add(
            "The model format's effect on start-up",
            md_table(
                ["both champions loaded from", "seconds (fresh interpreter, stack imported)"],
                [
                    ("JSON + LightGBM model text, SHA-256 checked (served)", as_json.fmt(3)),
                    ("the same predictors pickled (the format before)", as_pickle.fmt(3)),
                ],
            )
            + f"\n\nOn disk: {sizes}. Both formats hold the same LightGBM model text (a "
            "pickled Booster is its model string), so parsing the boosters costs the same; the "
            "JSON format adds the digests (SHA-256 of every file) and pydantic's check of the "
            "document, and loads nothing that can run code. Loading is a small part of the "
            "start-up either way (see the phases above).",
        )
    report.add(
        "Method",
        "- Timer starts just before `Popen` and stops at the first 200 on the readiness path; "
        "polling every 20 ms (each poll a fresh connection, 1 s timeout), 90 s deadline. "
        "Servers alternate (order reversed every round); ratios are per round "
        "(metapredict / mlflow), median [p10, p90].\n"
        "- mlflow: `mlflow models serve -m models:/metapredict-tropism@champion --env-manager "
        "local` (imports mlflow, resolves the alias, then execs uvicorn which loads the pyfunc "
        "model). metapredict: `metapredict serve` loading both champions natively, reading the "
        "SQLite registry directly (read-only, schema revision checked) and reading the "
        "predictors (JSON + LightGBM model text, digests checked) where they lie in the "
        "artifact store; and the same with "
        "`METAPREDICT_DIRECT_READ=false`, where a child process asks MLflow's client while the "
        "server imports its stack. All with MLflow's usage telemetry off.\n"
        "- RSS: every process in the server's process group, read from /proc when ready.",
    )
    report.notes.append(
        "scikit-learn on the serving side: loading and serving import none of scikit-learn, "
        "joblib or cloudpickle themselves, but LightGBM and pyarrow import them whenever they "
        "are installed, so in this environment (which trains too) the start-up includes them. "
        "With their imports blocked, as in a serving image without scikit-learn, importing the "
        "service and loading both champions took 2.2-2.5 s instead of 2.8-3.5 s and 196 MB "
        "instead of 254 MB (a script run during issue 19 on a shared machine, not this part)."
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser("cold start").parse_args(argv)
    opts = options(args, "benchmarks.cold_start")
    path = run(opts).write(opts.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
