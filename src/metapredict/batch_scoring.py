"""Batch scoring of a cohort file with a registered model (``metapredict predict``).

A cohort (Parquet, CSV or TSV) is read in chunks (Parquet: one batch of rows at a time through
``pyarrow.parquet.ParquetFile.iter_batches``, so memory stays bounded whatever the file's
size), each chunk is checked against the schema (pandera, :func:`metapredict.schema.validate`)
and the model's own categories, and the valid rows are scored with the native predictor (the
next chunk is read and checked in a background thread meanwhile: :func:`one_ahead`). The
output (Parquet or CSV, by the extension of the output path) has one row per scored patient
with the fields of the HTTP API's answer, flattened into columns (:func:`output_columns`), and
is written to a temporary file renamed into place at the end: a failed or interrupted run
never leaves a half-written output.

Rows that break the schema are never scored silently: each problem is reported as (row, field,
rule). By default any invalid row fails the run (nothing is written but the report); with
``skip_invalid`` the valid rows are scored and the report lists the rows left out.

The Spark engine (:mod:`metapredict.spark_scoring`) runs :func:`check_chunk` and
:func:`score_chunk` on each partition, so both engines give the same rows.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from metapredict import schema
from metapredict.predictor import Predictor
from metapredict.tasks import HORIZONS

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Rows per chunk: large enough that per-chunk costs (pandera, the boosters' set-up) vanish,
#: small enough that a chunk's frames stay a few tens of MB.
CHUNK_ROWS = 65_536
#: The input row number (0-based, data rows only) of each output row.
ROW = "row"
#: The patient's identifier, echoed from the input's ``patient_id`` (or ``id``) column.
ID = "id"
ID_INPUTS = ("patient_id", "id")
#: Contributions listed per output with ``explain`` (as the API's default).
TOP_FEATURES = 5
#: Problems kept in memory and written to the report (a whole file of bad rows is not).
MAX_PROBLEMS = 100_000
PARQUET_SUFFIXES = (".parquet", ".pq")
TEXT_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
#: Inputs a patient may leave out (null or absent): the API's ``missing_inputs``.
OPTIONAL_INPUTS: tuple[str, ...] = tuple(
    c.name for c in schema.columns(schema.Features) if c.nullable or not c.required
)


class BatchInputError(ValueError):
    """The input or output file cannot be used at all (not a per-row problem)."""


@dataclass(frozen=True)
class RowProblem:
    """One broken rule of one input row (0-based data row number)."""

    row: int | None
    id: str | None
    field: str | None
    rule: str


@dataclass
class ScoringSummary:
    """What a scoring run did; ``problems`` holds at most :data:`MAX_PROBLEMS` entries."""

    rows_read: int = 0
    rows_scored: int = 0
    invalid_rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    output: Path | None = None
    report: Path | None = None

    def add_problems(self, problems: list[RowProblem]) -> None:
        self.invalid_rows += len({p.row for p in problems})
        room = MAX_PROBLEMS - len(self.problems)
        if room > 0:
            self.problems.extend(problems[:room])


# -- output columns --------------------------------------------------------------------------


def _output_field(predictor: Predictor, output: str) -> str:
    """The API's name of one model output, as a column name."""
    if predictor.task == "tropism":
        return f"probability_{output}"
    if output == "late_relapse":
        return "late_relapse_probability"
    return "cumulative_risk_" + output.removeprefix("risk_")


def _batch_names(predictor: Predictor) -> list[str]:
    """Column names for :attr:`Predictor.batch_columns` (outputs, then their bounds)."""
    names = []
    outputs = predictor.output_names
    for column in predictor.batch_columns:
        if column in outputs:
            names.append(_output_field(predictor, column))
            continue
        base, _, side = column.rpartition("_")
        names.append(f"{_output_field(predictor, base)}_{side}")
    return names


def output_columns(predictor: Predictor, *, explain: bool, with_id: bool) -> list[str]:
    """The output's columns, in order.

    ``row``; ``id`` when the input has one; per output its value (tropism
    ``probability_<site>``; dormancy ``cumulative_risk_<months>`` and
    ``late_relapse_probability``) and, when the model has intervals, ``<value>_lower`` and
    ``<value>_upper``; tropism ``ranked_sites`` / dormancy ``risk_group``; with ``explain``
    ``top_features`` (JSON, as in the API); ``missing_inputs`` (comma-separated) and
    ``warnings`` ("; "-separated).
    """
    columns = [ROW, *([ID] if with_id else []), *_batch_names(predictor)]
    columns.append("ranked_sites" if predictor.task == "tropism" else "risk_group")
    if explain:
        columns.append("top_features")
    return [*columns, "missing_inputs", "warnings"]


def arrow_schema(predictor: Predictor, *, explain: bool, with_id: bool) -> pa.Schema:
    """The output's Arrow schema (the same for every chunk and both engines)."""
    fields = []
    for name in output_columns(predictor, explain=explain, with_id=with_id):
        if name == ROW:
            fields.append(pa.field(name, pa.int64(), nullable=False))
        elif name in (ID, "ranked_sites", "risk_group", "top_features"):
            fields.append(pa.field(name, pa.string()))
        elif name in ("missing_inputs", "warnings"):
            fields.append(pa.field(name, pa.string(), nullable=False))
        else:
            fields.append(pa.field(name, pa.float64(), nullable=False))
    return pa.schema(fields)


def input_columns(available: list[str]) -> list[str]:
    """The input columns a scoring run reads: the schema's features and an identifier."""
    wanted = {*schema.feature_columns(), *ID_INPUTS}
    return [c for c in available if c in wanted]


def id_column(available: list[str]) -> str | None:
    return next((c for c in ID_INPUTS if c in available), None)


# -- one chunk --------------------------------------------------------------------------------


def _ids(frame: pd.DataFrame, id_col: str | None) -> pd.Series | None:
    """The identifiers as text (None where missing), e.g. an integer id column as "17"."""
    if id_col is None:
        return None
    values = frame[id_col]
    present = values.notna().to_numpy(dtype=bool)
    # astype(str) is vectorised: a whole column at once, not a Python call per patient
    text = values.astype(str).to_numpy(dtype=object)
    text[~present] = None
    return pd.Series(text, index=frame.index, dtype=object)


def check_chunk(
    predictor: Predictor,
    frame: pd.DataFrame,
    id_col: str | None,
    ids: pd.Series | None = None,
) -> tuple[pd.DataFrame, list[RowProblem]]:
    """The valid rows of ``frame`` (validated, coerced) and each problem of the others.

    ``frame``'s index is the input row number; ``ids``: :func:`_ids` of it, when already
    known. A problem of the whole table (a required column missing) raises
    :class:`BatchInputError`.
    """
    features = frame[[c for c in frame.columns if c in set(schema.feature_columns())]]
    if ids is None:
        ids = _ids(frame, id_col)
    problems: list[RowProblem] = []
    try:
        validated = schema.validate(features, schema.Features)
    except schema.CohortValidationError as err:
        table = [v for v in err.violations if v.row is None]
        if table:
            raise BatchInputError(
                "; ".join(v.describe() for v in table)
                + " (the input must carry the schema's feature columns; see the README's data "
                "section)"
            ) from err
        for v in err.violations:
            row = int(v.row)
            pid = ids.loc[row] if ids is not None else None
            problems.append(RowProblem(row, pid, v.column, v.rule))
        bad = {p.row for p in problems}
        keep = features.loc[~features.index.isin(list(bad))]
        validated = schema.validate(keep, schema.Features) if len(keep) else keep
    category_problems = _category_problems(predictor, validated, ids)
    if category_problems:
        problems += category_problems
        bad = {p.row for p in category_problems}
        validated = validated.loc[~validated.index.isin(list(bad))]
    problems.sort(key=lambda p: p.row if p.row is not None else -1)
    return validated, problems


def _category_problems(
    predictor: Predictor, frame: pd.DataFrame, ids: pd.Series | None
) -> list[RowProblem]:
    """Rows whose cancer type or stage the model was not trained to answer for."""
    problems = []
    for column, allowed in predictor.categories.items():
        if column not in frame.columns or not allowed:
            continue
        values = frame[column].astype(object)
        bad = values.notna() & ~values.isin(allowed)
        rule = f"must be one of the labels this model was trained on: {', '.join(allowed)}"
        for row in values.index[bad]:
            pid = ids.loc[row] if ids is not None else None
            problems.append(RowProblem(int(row), pid, column, rule))
    return problems


def joined_patterns(rows: NDArray[Any], labels: Sequence[str], sep: str) -> list[str]:
    """Per row of ``rows`` (a boolean mask over ``labels``, or a matrix of indices into them),
    the ``sep``-joined labels it names, in column order.

    Rows repeat few patterns (which inputs are missing, the order of the sites), so each
    distinct row is joined once and the strings are handed out by index: Python string work
    per pattern rather than per patient.
    """
    n, width = rows.shape
    if n == 0:
        return []
    base = 2 if rows.dtype == bool else max(width, 2)
    if width * np.log2(base) < 63:  # each row as one integer: a 1-D unique is much faster
        codes = rows.astype(np.int64) @ (base ** np.arange(width, dtype=np.int64))
        first, inverse = np.unique(codes, return_index=True, return_inverse=True)[1:]
        unique = rows[first]
    else:
        unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    names = np.asarray(labels, dtype=object)
    if rows.dtype == bool:
        strings = [sep.join(names[row]) for row in unique]
    else:
        strings = [sep.join(names[row].tolist()) for row in unique]
    return np.asarray(strings, dtype=object)[inverse.reshape(n)].tolist()  # type: ignore[no-any-return]


def _missing_inputs(frame: pd.DataFrame) -> list[str]:
    n = len(frame)
    mask = np.ones((n, len(OPTIONAL_INPUTS)), dtype=bool)  # an absent column: missing for all
    for j, name in enumerate(OPTIONAL_INPUTS):
        if name in frame.columns:
            mask[:, j] = frame[name].isna().to_numpy()
    return joined_patterns(mask, OPTIONAL_INPUTS, ",")


def _warnings(predictor: Predictor, frame: pd.DataFrame) -> list[str]:
    """The API's out-of-range warnings, computed per column rather than per record (only the
    rows with a warning get string work)."""
    parts: dict[int, list[str]] = {}
    for name, (lo, hi) in predictor.feature_ranges.items():
        if name not in frame.columns:
            continue
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        flagged = np.flatnonzero((values < lo) | (values > hi))  # NaN compares False
        for i in flagged.tolist():
            parts.setdefault(i, []).append(
                f"{name}={values[i]:.4g} lies outside the range seen in training "
                f"[{lo:.4g}, {hi:.4g}]"
            )
    out = [""] * len(frame)
    for i, messages in parts.items():
        out[i] = "; ".join(messages)
    return out


def _value(frame: pd.DataFrame, name: str, i: int) -> Any:
    if name not in frame.columns:
        return None
    value = frame[name].iat[i]
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return value.item() if isinstance(value, np.generic) else value


def _top_features(
    predictor: Predictor, frame: pd.DataFrame, contributions: np.ndarray
) -> list[str]:
    """Per row, the JSON of the API's ``top_features`` (largest |contribution| first)."""
    names = predictor.feature_names
    values = contributions[..., :-1]
    k = min(TOP_FEATURES, values.shape[-1])
    order = np.argsort(-np.abs(values), axis=-1, kind="stable")[..., :k]
    out = []
    for i in range(values.shape[0]):

        def entries(j: int, i: int = i) -> list[dict[str, Any]]:
            return [
                {
                    "feature": names[f],
                    "contribution": float(values[i, j, f]),
                    "value": _value(frame, names[f], i),
                }
                for f in order[i, j]
            ]

        if predictor.task == "tropism":
            doc: Any = {site: entries(j) for j, site in enumerate(predictor.explained_outputs)}
        else:
            doc = entries(0)
        out.append(json.dumps(doc))
    return out


def score_chunk(
    predictor: Predictor,
    valid: pd.DataFrame,
    ids: pd.Series | None,
    *,
    explain: bool,
    X: NDArray[np.float64] | None = None,
) -> pd.DataFrame:
    """The output rows of validated patients (``valid``'s index: input row numbers; ``X``:
    their encoded matrix, when already built)."""
    if X is None:
        X = predictor.encode_frame(valid)
    columns: dict[str, Any] = {ROW: valid.index.to_numpy(dtype=np.int64)}
    if ids is not None:
        columns[ID] = ids.loc[valid.index].to_numpy(dtype=object)
    if explain:
        outputs, contributions = predictor.predict_and_explain(X)
        bounds = predictor.interval_bounds(X, outputs)
        matrix = (
            outputs
            if bounds is None
            else np.concatenate([outputs, bounds.reshape(outputs.shape[0], -1)], axis=1)
        )
    else:
        matrix = predictor.batch_matrix(X)
        outputs = matrix[:, : len(predictor.output_names)]
    for j, name in enumerate(_batch_names(predictor)):
        columns[name] = matrix[:, j]
    if predictor.task == "tropism":
        ranked = np.argsort(-outputs, axis=1, kind="stable")
        columns["ranked_sites"] = joined_patterns(ranked, predictor.output_names, ",")
    else:
        columns["risk_group"] = predictor.risk_group(outputs[:, len(HORIZONS) - 1])
    if explain:
        columns["top_features"] = _top_features(predictor, valid, contributions)
    columns["missing_inputs"] = _missing_inputs(valid)
    columns["warnings"] = _warnings(predictor, valid)
    return pd.DataFrame(columns)


@dataclass
class CheckedChunk:
    """One input chunk after the schema check: its valid rows (and their encoded matrix), the
    chunk's ids and the problems of its other rows."""

    rows: int
    valid: pd.DataFrame
    X: NDArray[np.float64] | None
    ids: pd.Series | None
    problems: list[RowProblem]


def prepare_chunk(
    predictor: Predictor, frame: pd.DataFrame, id_col: str | None, *, encode: bool = True
) -> CheckedChunk:
    """Check one chunk (index: input row numbers) and encode its valid rows (unless
    ``encode`` is false: a chunk that will only be checked)."""
    ids = _ids(frame, id_col)
    valid, problems = check_chunk(predictor, frame, id_col, ids)
    X = None if valid.empty or not encode else predictor.encode_frame(valid)
    return CheckedChunk(len(frame), valid, X, ids, problems)


def process_chunk(
    predictor: Predictor,
    frame: pd.DataFrame,
    id_col: str | None,
    *,
    explain: bool,
    score: bool = True,
) -> tuple[pd.DataFrame | None, list[RowProblem]]:
    """Check one chunk (index: input row numbers) and score its valid rows (unless ``score``
    is false: after a problem, without ``skip_invalid``, the rest is only checked)."""
    chunk = prepare_chunk(predictor, frame, id_col, encode=score)
    if chunk.X is None:
        return None, chunk.problems
    scored = score_chunk(predictor, chunk.valid, chunk.ids, explain=explain, X=chunk.X)
    return scored, chunk.problems


_END = object()


def one_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, each next one computed in a background thread while the caller works on the
    current one.

    Used to read and check chunk k + 1 while chunk k is scored: the Boosters release the GIL
    and parquet reading runs in Arrow's C++, so the schema check (single-threaded Python)
    overlaps work that does not need the interpreter. At most one item is computed ahead, so
    memory grows by one chunk. An exception raised while computing an item is raised here, in
    the caller's thread, when that item is due.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="metapredict-read") as pool:
        pending = pool.submit(next, items, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = pool.submit(next, items, _END)
            yield item  # type: ignore[misc]


# -- reading -----------------------------------------------------------------------------------


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in TEXT_SEPARATORS:
        return "text"
    raise BatchInputError(
        f"cannot use {path.name}: expected a .parquet, .csv or .tsv file, got '{suffix or path}'"
    )


def count_rows(path: Path) -> int | None:
    """Rows in the input when cheap to know (Parquet metadata), else None."""
    if _kind(path) == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def read_chunks(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The input in chunks of at most ``chunk_rows`` rows, indexed by input row number, with
    only the columns scoring needs."""
    if not path.is_file():
        raise BatchInputError(f"no such file: {path}")
    offset = 0
    if _kind(path) == "parquet":
        try:
            # pre_buffer=False: with Arrow's pre-buffering, iter_batches keeps every row group
            # it has read buffered until the reader closes, so memory grew with the file
            # (1.53 GB peak at 5,000,000 patients; flat at about 0.7 GB without it).
            parquet = pq.ParquetFile(path, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as err:
            raise BatchInputError(f"{path} is not a readable Parquet file: {err}") from err
        wanted = input_columns(parquet.schema_arrow.names)
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=wanted):
            frame = batch.to_pandas()
            frame.index = pd.RangeIndex(offset, offset + len(frame))
            offset += len(frame)
            yield frame
        return
    sep = TEXT_SEPARATORS[path.suffix.lower()]
    header = pd.read_csv(path, sep=sep, nrows=0).columns.tolist()
    wanted = input_columns(header)
    dtypes = {c: str for c in (*ID_INPUTS, "cancer_type", "stage") if c in wanted}
    with pd.read_csv(path, sep=sep, usecols=wanted, dtype=dtypes, chunksize=chunk_rows) as reader:
        for frame in reader:
            frame.index = pd.RangeIndex(offset, offset + len(frame))
            offset += len(frame)
            yield frame


# -- writing -----------------------------------------------------------------------------------


def output_kind(path: Path) -> str:
    kind = _kind(path)
    return "parquet" if kind == "parquet" else "csv"


class AtomicWriter:
    """Writes chunks to a temporary file beside ``path``; :meth:`commit` renames it into
    place, :meth:`abort` deletes it."""

    def __init__(self, path: Path, schema_: pa.Schema, metadata: dict[str, str]) -> None:
        self.path = path
        self.kind = output_kind(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.schema = schema_.with_metadata(metadata)
        self._parquet: pq.ParquetWriter | None = None
        self._text: Any = None
        if self.kind == "parquet":
            self._parquet = pq.ParquetWriter(self.tmp, self.schema)
        else:
            self._text = self.tmp.open("w", newline="", encoding="utf-8")
            csv.writer(self._text).writerow(self.schema.names)

    def write(self, frame: pd.DataFrame) -> None:
        if self._parquet is not None:
            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            self._parquet.write_table(table)
        else:
            frame.to_csv(self._text, header=False, index=False, lineterminator="\n")

    def _close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._text is not None:
            self._text.close()
            self._text = None

    def commit(self) -> None:
        self._close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._close()
        self.tmp.unlink(missing_ok=True)


def write_report(problems: list[RowProblem], path: Path) -> None:
    """The problems as CSV (row, id, field, rule), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["row", "id", "field", "rule"])
            for p in problems:
                writer.writerow(["" if p.row is None else p.row, p.id or "", p.field or "", p.rule])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_report_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.invalid-rows.csv")


def file_metadata(predictor: Predictor) -> dict[str, str]:
    """Written into the output's Parquet metadata (key ``metapredict``): what scored it."""
    info = predictor.info
    doc = {
        "task": predictor.task,
        "model": {
            "name": info.name,
            "version": info.version,
            "alias": info.alias,
            "run_id": info.run_id,
        },
        "schema_version": predictor.schema_version,
        "interval_level": predictor.interval_level,
    }
    return {"metapredict": json.dumps(doc)}


# -- the local engine --------------------------------------------------------------------------


def score_file(
    predictor: Predictor,
    data: Path,
    out: Path,
    *,
    explain: bool = False,
    skip_invalid: bool = False,
    report: Path | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> ScoringSummary:
    """Score ``data`` into ``out`` in one process, chunk by chunk (memory: a few chunks).

    Without ``skip_invalid``, any invalid row leaves ``out`` untouched (the rest of the file is
    still checked, so the report is complete); with it, the valid rows are written. Either way
    the problems go to ``report`` (default ``<out>.invalid-rows.csv``) when there are any.
    ``progress`` is called with the rows of each chunk done.
    """
    output_kind(out)
    summary = ScoringSummary()
    writer: AtomicWriter | None = None
    id_col: str | None = None

    def checked() -> Iterator[CheckedChunk]:
        nonlocal id_col
        for number, frame in enumerate(read_chunks(data, chunk_rows)):
            if number == 0:
                id_col = id_column(frame.columns.tolist())
            # After a problem, without skip_invalid, nothing more is scored: the rest is only
            # checked (the chunk already read ahead when the problem was found may be encoded).
            encode = skip_invalid or not summary.problems
            yield prepare_chunk(predictor, frame, id_col, encode=encode)

    try:
        for chunk in one_ahead(checked()):
            if writer is None:
                columns = arrow_schema(predictor, explain=explain, with_id=id_col is not None)
                writer = AtomicWriter(out, columns, file_metadata(predictor))
            summary.rows_read += chunk.rows
            if chunk.problems:
                summary.add_problems(chunk.problems)
            if chunk.X is not None and (skip_invalid or not summary.problems):
                scored = score_chunk(predictor, chunk.valid, chunk.ids, explain=explain, X=chunk.X)
                writer.write(scored)
                summary.rows_scored += len(scored)
            if progress is not None:
                progress(chunk.rows)
        if writer is None:
            raise BatchInputError(f"{data} holds no rows")
        return _finish(summary, writer, out, skip_invalid, report)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


def _finish(
    summary: ScoringSummary,
    writer: AtomicWriter,
    out: Path,
    skip_invalid: bool,
    report: Path | None,
) -> ScoringSummary:
    if summary.problems:
        summary.report = report or default_report_path(out)
        write_report(summary.problems, summary.report)
    if summary.problems and not skip_invalid:
        writer.abort()
        summary.rows_scored = 0
        return summary
    writer.commit()
    summary.output = out
    return summary
