"""``metapredict predict``: the local engine on 5,000,000 patients, and the Spark engine.

A Parquet cohort of simulated patients (written in row groups, never held whole in memory) is
scored by the ``metapredict predict`` command (local engine, a child process whose own peak
resident memory is read by ``benchmarks/peak_rss.py``), and compared with the floor: the raw
LightGBM Boosters behind the same outputs (the tropism model's site Boosters and, for the
intervals, the spread and centre Boosters) on the already-encoded matrix, chunk by chunk, in
this process.
The Spark engine (``local[2]``) scores a smaller file; its session start-up is timed apart.
Run alone: ``python -m benchmarks.batch_predict [--quick] [--store DIR]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import (
    BENCH_DIR,
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
)

GOAL_RATIO = 0.8
GOAL_RSS_GB = 1.5
PATIENTS = 5_000_000
QUICK_PATIENTS = 50_000
SPARK_PATIENTS = 500_000
QUICK_SPARK_PATIENTS = 20_000
#: Rows simulated at a time (each its own seed) while writing the cohort.
WRITE_CHUNK = 250_000


def write_cohort(path: Path, patients: int) -> float:
    """Simulate ``patients`` into a Parquet file, chunk by chunk; seconds taken."""
    from metapredict import schema
    from metapredict.simulator import default_config, simulate_cohort

    started = time.perf_counter()
    config = default_config()
    columns = ["patient_id", *schema.feature_columns()]
    writer: pq.ParquetWriter | None = None
    done = 0
    seed = 100
    try:
        while done < patients:
            n = min(WRITE_CHUNK, patients - done)
            frame = simulate_cohort(n, seed, config)[columns]
            frame["patient_id"] = [f"B{done + i:08d}" for i in range(n)]
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=65_536)
            done += n
            seed += 1
    finally:
        if writer is not None:
            writer.close()
    return time.perf_counter() - started


def floor_seconds(predictor: Any, path: Path) -> tuple[float, float]:
    """Seconds of the raw Boosters over the whole file (encoding not timed): (site Boosters
    alone, site + the intervals' spread and centre Boosters)."""
    from metapredict import batch_scoring

    boosters = list(predictor.model.boosters)
    spread = list(getattr(predictor.intervals, "spread_boosters", None) or [])
    spread += list(getattr(predictor.intervals, "centre_boosters", None) or [])
    main_s = spread_s = 0.0
    for frame in batch_scoring.read_chunks(path):
        X = predictor.encode_frame(frame)
        started = time.perf_counter()
        for b in boosters:
            b.predict(X, raw_score=True)
        main_s += time.perf_counter() - started
        started = time.perf_counter()
        for b in spread:
            b.predict(X, raw_score=True)
        spread_s += time.perf_counter() - started
    return main_s, main_s + spread_s


def run_command(store: Path, data: Path, out: Path, rss_file: Path) -> float:
    """``metapredict predict`` (local engine) in a child process; wall seconds."""
    code = "import sys; sys.argv[0] = 'metapredict'; from metapredict.cli import app; app()"
    command = [
        sys.executable,
        str(BENCH_DIR / "peak_rss.py"),
        str(rss_file),
        sys.executable,
        "-c",
        code,
        "predict",
        "--task",
        "tropism",
        "--data",
        str(data),
        "--out",
        str(out),
    ]
    env = {**os.environ, **store_env(store)}
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def spark_run(predictor: Any, data: Path, out: Path) -> tuple[float, float, int]:
    """(session start-up seconds, scoring seconds, rows scored) on ``local[2]``."""
    from metapredict import spark_scoring

    started = time.perf_counter()
    spark = spark_scoring.spark_session("local[2]", app_name="metapredict-bench")
    spark.range(1).count()  # the JVM and a first job
    startup = time.perf_counter() - started
    try:
        started = time.perf_counter()
        summary = spark_scoring.score_file(predictor, data, out, spark=spark)
        return startup, time.perf_counter() - started, summary.rows_scored
    finally:
        spark.stop()


def run(
    opts: PartOptions,
    store: Path | None = None,
    patients: int | None = None,
    spark_patients: int | None = None,
) -> Report:
    """``patients`` / ``spark_patients`` override the sizes (default 5,000,000 and 500,000)."""
    from metapredict import registry

    patients = patients or (QUICK_PATIENTS if opts.quick else PATIENTS)
    spark_patients = spark_patients or (QUICK_SPARK_PATIENTS if opts.quick else SPARK_PATIENTS)
    at_size = not opts.quick and patients >= PATIENTS
    report = Report("batch_predict", "Batch prediction: metapredict predict", opts.quick)
    report.command = opts.command
    load = os.getloadavg()
    store_opts = PartOptions(opts.quick, opts.out, store or opts.store, opts.command)
    with (
        served_store(store_opts, log=log) as store_dir,
        tempfile.TemporaryDirectory(prefix="metapredict-bench-predict-") as tmp_name,
    ):
        tmp = Path(tmp_name)
        predictor = registry.load("tropism", settings=store_settings(store_dir))
        data = tmp / "cohort.parquet"
        log(f"  simulating {patients:,} patients into {data} ...")
        simulate_s = write_cohort(data, patients)
        size_mb = data.stat().st_size / 1e6
        log(f"  floor: raw Boosters over {patients:,} rows ...")
        main_s, floor_s = floor_seconds(predictor, data)
        log("  metapredict predict (local engine) ...")
        rss_file = tmp / "rss.txt"
        command_s = run_command(store_dir, data, tmp / "scores.parquet", rss_file)
        scored = pq.ParquetFile(tmp / "scores.parquet").metadata.num_rows
        if scored != patients:
            raise RuntimeError(f"the command scored {scored:,} of {patients:,} patients")
        peak_gb = int(rss_file.read_text()) * 1024 / 1e9
        spark_data = tmp / "spark-cohort.parquet"
        write_cohort(spark_data, spark_patients)
        log(f"  spark engine on local[2], {spark_patients:,} patients ...")
        startup_s, spark_s, spark_rows = spark_run(predictor, spark_data, tmp / "spark-out")

    floor_rate = patients / floor_s
    command_rate = patients / command_s
    ratio = command_rate / floor_rate
    report.add(
        f"Results ({patients:,} patients, tropism, model version {predictor.info.version})",
        md_table(
            ["what", "seconds", "rows/s", "x floor"],
            [
                (
                    "raw site Boosters (no intervals)",
                    f"{main_s:.1f}",
                    f"{patients / main_s:,.0f}",
                    f"{(patients / main_s) / floor_rate:.2f}",
                ),
                (
                    "floor: raw site + interval Boosters (same outputs)",
                    f"{floor_s:.1f}",
                    f"{floor_rate:,.0f}",
                    "1.00",
                ),
                (
                    "metapredict predict, local engine (whole command)",
                    f"{command_s:.1f}",
                    f"{command_rate:,.0f}",
                    f"{ratio:.2f}",
                ),
                (
                    f"spark engine, local[2], {spark_rows:,} patients (scoring)",
                    f"{spark_s:.1f}",
                    f"{spark_rows / spark_s:,.0f}",
                    f"{(spark_rows / spark_s) / floor_rate:.2f}",
                ),
                ("spark session start-up (JVM + first job)", f"{startup_s:.1f}", "-", "-"),
            ],
        ),
    )
    quick_note = "quick mode" if opts.quick else f"{patients:,} patients: not the target's size"
    report.targets = [
        Target(
            "local engine vs raw Boosters (5,000,000 patients from Parquet)",
            f">= {GOAL_RATIO}x",
            f"{ratio:.2f}x",
            ratio >= GOAL_RATIO if at_size else None,
            "" if at_size else quick_note,
        ),
        Target(
            "local engine peak RSS",
            f"<= {GOAL_RSS_GB} GB",
            f"{peak_gb:.2f} GB",
            peak_gb <= GOAL_RSS_GB if at_size else None,
            "" if at_size else quick_note,
        ),
    ]
    report.add(
        "Method",
        f"- Cohort: {patients:,} simulated patients (features and ids), {size_mb:,.0f} MB of "
        f"Parquet in row groups of 65,536, written in {simulate_s:.0f} s.\n"
        "- Command: `metapredict predict --task tropism --data cohort.parquet --out "
        "scores.parquet` in a child process (the default output: probabilities, 90 % intervals, "
        "ranked sites, missing inputs, warnings; no --explain). Its time includes start-up "
        "(imports, loading the model) and the schema check of every row; its peak RSS is its "
        "own (`benchmarks/peak_rss.py`).\n"
        "- Floor: the same file read chunk by chunk in this process, encoded untimed, then the "
        "raw Boosters timed: the model's site Boosters and the interval spread and centre "
        "Boosters "
        "(`predict(X, raw_score=True)`), i.e. the booster work behind the same outputs. The "
        "site Boosters alone are shown for reference.\n"
        f"- Spark: `metapredict predict --engine spark` code path (`spark_scoring.score_file`) "
        f"on `local[2]` over {spark_patients:,} patients (two jobs: check, then score and write "
        "a Parquet directory); session start-up timed apart.\n"
        f"- Load average at start (1, 5, 15 min): {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} "
        "(above about 1, other jobs shared the 2 cores).",
    )
    report.notes += [
        f"The interval spread and centre Boosters are {1 - main_s / floor_s:.0%} of the "
        "floor's booster time (the site Boosters alone: the first row).",
        "The command's own work beyond the Boosters: start-up (imports, loading the model: a "
        "few seconds), reading, the schema check, encoding, the output columns and writing. The "
        "next chunk is read and checked in a background thread while the current one is scored "
        "(`batch_scoring.one_ahead`).",
        "Memory stays flat because the Parquet file is read without Arrow's pre-buffering: with "
        "it, `ParquetFile.iter_batches` kept every row group it had read buffered until the "
        "reader closed, and the peak RSS grew with the file (1.53 GB at 5,000,000 patients on "
        "`e8ddb0e`, against about 0.7 GB since `65e39ec`).",
    ]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("metapredict predict: local engine and Spark")
    p.add_argument("--patients", type=int, default=None, help=f"default {PATIENTS:,}")
    p.add_argument("--spark-patients", type=int, default=None, help=f"default {SPARK_PATIENTS:,}")
    args = p.parse_args(argv)
    opts = options(args, "benchmarks.batch_predict")
    path = run(opts, patients=args.patients, spark_patients=args.spark_patients).write(opts.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
