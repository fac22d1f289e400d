"""Batch scoring on Spark (``metapredict predict --engine spark``).

The cohort is read by Spark (Parquet, or CSV/TSV with the schema's column types), the native
predictor is broadcast to the executors as its model artifact (``predictor.json`` and the
LightGBM model texts, the files a registered version holds; nothing pickled), each executor's
Python worker loads it once with the registry's own checked reader, and each partition runs the
local engine's own
:func:`~metapredict.batch_scoring.check_chunk` and :func:`~metapredict.batch_scoring.score_chunk`
through ``DataFrame.mapInPandas``, so both engines give the same rows. Input row numbers come
from Spark's partition ids and ``monotonically_increasing_id`` (a partition's offset plus the
row's position in it; the partitions of a file scan follow the file's order).

Two jobs: the first only checks the rows and collects the problems (at most
:data:`~metapredict.batch_scoring.MAX_PROBLEMS`); unless ``skip_invalid``, any problem stops
the run there. The second scores the valid rows and writes a Parquet directory (one file per
partition) to a temporary directory beside the output, renamed into place at the end. On a
cluster the output path must be on a file system every executor and the driver share.

Executors need metapredict installed (the same version as the driver); a local master uses
the driver's Python.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from metapredict import batch_scoring, schema
from metapredict.batch_scoring import (
    ID_INPUTS,
    MAX_PROBLEMS,
    PARQUET_SUFFIXES,
    TEXT_SEPARATORS,
    BatchInputError,
    RowProblem,
    ScoringSummary,
)
from metapredict.predictor import Predictor
from metapredict.registry.artifact import read_predictor, write_predictor

logger = logging.getLogger(__name__)

_PID = "_metapredict_partition"
_MID = "_metapredict_mid"
#: monotonically_increasing_id puts the partition id in the upper 31 bits.
_POSITION_BITS = 33
PROBLEM_SCHEMA = "row long, id string, field string, rule string"

#: An executor's loaded predictors by their document's SHA-256: a Python worker loads a model
#: once, however many partitions it scores (Spark reuses its Python workers).
_LOADED: dict[str, Predictor] = {}


def artifact_files(predictor: Predictor) -> tuple[dict[str, bytes], str]:
    """``predictor`` as its model artifact's files (relative path -> bytes) and the document's
    SHA-256: what is broadcast to the executors."""
    with tempfile.TemporaryDirectory(prefix="metapredict-spark-") as tmp:
        root = Path(tmp)
        digest = write_predictor(predictor, root)
        files = {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
    return files, digest


def predictor_from_files(files: dict[str, bytes], digest: str) -> Predictor:
    """The predictor in ``files`` (see :func:`artifact_files`), read and checked as the registry
    reads an artifact (every file's SHA-256), once per process."""
    loaded = _LOADED.get(digest)
    if loaded is None:
        with tempfile.TemporaryDirectory(prefix="metapredict-spark-") as tmp:
            root = Path(tmp)
            for name, data in files.items():
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            loaded = _LOADED[digest] = read_predictor(root, digest)
    return loaded


def spark_session(master: str | None = None, app_name: str = "metapredict-predict") -> Any:
    """A SparkSession: ``master`` if given, else the one spark-submit set, else ``local[*]``."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    elif "SPARK_MASTER" not in os.environ and "spark.master" not in os.environ.get(
        "PYSPARK_SUBMIT_ARGS", ""
    ):
        builder = builder.master("local[*]")
    chosen = master or os.environ.get("SPARK_MASTER", "local")
    if chosen.startswith("local"):
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config(
            "spark.driver.host", "127.0.0.1"
        )
    return (
        builder.config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )


def _spark_type(field: pa.Field) -> str:
    if pa.types.is_int64(field.type):
        return "long"
    if pa.types.is_floating(field.type):
        return "double"
    return "string"


def _ddl(arrow: pa.Schema) -> str:
    return ", ".join(f"`{f.name}` {_spark_type(f)}" for f in arrow)


def _read(spark: Any, data: Path) -> Any:
    if not data.is_file():
        raise BatchInputError(f"no such file: {data}")
    suffix = data.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        frame = spark.read.parquet(str(data.resolve()))
    elif suffix in TEXT_SEPARATORS:
        header = pd.read_csv(data, sep=TEXT_SEPARATORS[suffix], nrows=0).columns.tolist()
        strings = {*ID_INPUTS, "cancer_type", "stage"}
        known = set(schema.feature_columns()) | set(ID_INPUTS)
        ddl = ", ".join(
            f"`{c}` {'string' if c in strings or c not in known else 'double'}" for c in header
        )
        frame = spark.read.csv(
            str(data.resolve()), header=True, sep=TEXT_SEPARATORS[suffix], schema=ddl
        )
    else:
        raise BatchInputError(
            f"cannot use {data.name}: expected a .parquet, .csv or .tsv file, got '{suffix}'"
        )
    return frame.select(*[f"`{c}`" for c in batch_scoring.input_columns(frame.columns)])


def _numbered(frame: Any) -> tuple[Any, dict[int, int], int]:
    """``frame`` with partition id and position columns, each partition's first row number,
    and the row count."""
    from pyspark.sql import functions as F

    tagged = frame.withColumn(_PID, F.spark_partition_id()).withColumn(
        _MID, F.monotonically_increasing_id()
    )
    counts = {int(r[0]): int(r[1]) for r in tagged.groupBy(_PID).count().collect()}
    offsets: dict[int, int] = {}
    total = 0
    for pid in sorted(counts):
        offsets[pid] = total
        total += counts[pid]
    return tagged, offsets, total


def _indexed(pdf: pd.DataFrame, offsets: dict[int, int]) -> pd.DataFrame:
    pid = pdf[_PID].to_numpy()
    position = pdf[_MID].to_numpy() - (pid.astype("int64") << _POSITION_BITS)
    rows = np.array([offsets[int(p)] for p in pid], dtype=np.int64) + position
    out = pdf.drop(columns=[_PID, _MID])
    out.index = pd.Index(rows.astype("int64"))
    return out


def score_file(
    predictor: Predictor,
    data: Path,
    out: Path,
    *,
    explain: bool = False,
    skip_invalid: bool = False,
    report: Path | None = None,
    master: str | None = None,
    spark: Any = None,
) -> ScoringSummary:
    """Score ``data`` on Spark into the Parquet directory ``out`` (see the module docstring)."""
    spark = spark or spark_session(master)
    frame = _read(spark, data)
    id_col = batch_scoring.id_column(frame.columns)
    tagged, offsets, total = _numbered(frame)
    if total == 0:
        raise BatchInputError(f"{data} holds no rows")
    shared = spark.sparkContext.broadcast(artifact_files(predictor))

    def check(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = predictor_from_files(*shared.value)
        for pdf in batches:
            chunk = _indexed(pdf, offsets)
            _, problems = batch_scoring.check_chunk(model, chunk, id_col)
            yield pd.DataFrame(
                [(p.row, p.id, p.field, p.rule) for p in problems],
                columns=["row", "id", "field", "rule"],
            ).astype({"row": "int64"})

    found = tagged.mapInPandas(check, PROBLEM_SCHEMA).orderBy("row")
    summary = ScoringSummary(rows_read=total)
    problems = [
        RowProblem(int(r["row"]), r["id"], r["field"], r["rule"])
        for r in found.limit(MAX_PROBLEMS).collect()
    ]
    if problems:
        summary.add_problems(problems)
        summary.invalid_rows = int(found.select("row").distinct().count())
        summary.report = report or batch_scoring.default_report_path(out)
        batch_scoring.write_report(summary.problems, summary.report)
        if not skip_invalid:
            return summary

    arrow = batch_scoring.arrow_schema(predictor, explain=explain, with_id=id_col is not None)

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = predictor_from_files(*shared.value)
        for pdf in batches:
            chunk = _indexed(pdf, offsets)
            scored, _ = batch_scoring.process_chunk(model, chunk, id_col, explain=explain)
            if scored is not None:
                yield scored

    scored = tagged.mapInPandas(score, _ddl(arrow))
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        target = tmp / "data"
        scored.write.parquet(target.as_uri())
        summary.rows_scored = total - summary.invalid_rows
        _replace(target, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary.output = out
    return summary


def _replace(new: Path, out: Path) -> None:
    """Move the finished directory ``new`` to ``out``, replacing what was there."""
    if not out.exists():
        os.replace(new, out)
        return
    old = new.with_name("previous")
    os.replace(out, old)
    os.replace(new, out)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()
