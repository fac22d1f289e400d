"""Reading and writing cohort tables: Parquet (preferred), CSV or TSV; writes are atomic."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

_TEXT_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


def read_table(path: Path) -> pd.DataFrame:
    """Read a cohort table by its extension (.parquet, .csv, .tsv/.txt)."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        try:
            frame = pd.read_parquet(path)
        except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(
                f"{path} is not a readable Parquet file ({err}); write cohorts with "
                "`metapredict cohort build` or `metapredict simulate`, or pass a .csv/.tsv"
            ) from err
    elif suffix in _TEXT_SEPARATORS:
        try:
            frame = pd.read_csv(path, sep=_TEXT_SEPARATORS[suffix])
        except pd.errors.EmptyDataError as err:
            raise ValueError(
                f"{path} is empty: a cohort table needs a header row of column names and "
                "one row per patient"
            ) from err
    else:
        raise ValueError(
            f"cannot read {path.name}: expected a .parquet, .csv or .tsv file, got '{suffix}'"
        )
    if frame.empty:
        raise ValueError(f"{path} has no patients: add one row per patient below the header")
    return frame


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` so that a crash never leaves a half-written file there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
