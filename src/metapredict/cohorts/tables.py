"""Reading delimited text tables (CSV, TSV) with separator sniffing and readable errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metapredict.cohorts.errors import CohortInputError


def first_data_line(path: Path, *, skip_comments: bool = False) -> str:
    """The first non-empty line of ``path`` (optionally skipping ``#`` lines)."""
    if not path.exists():
        raise CohortInputError(f"no such file: {path}")
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        for line in handle:
            stripped = line.rstrip("\r\n")
            if not stripped.strip():
                continue
            if skip_comments and stripped.startswith("#"):
                continue
            return stripped
    raise CohortInputError(f"{path.name} is empty")


def sniff_separator(path: Path, *, skip_comments: bool = False) -> str:
    """Tab if the header line has a tab, else comma if it has a comma, else tab."""
    header = first_data_line(path, skip_comments=skip_comments)
    if "\t" in header:
        return "\t"
    if "," in header:
        return ","
    if ";" in header:
        return ";"
    return "\t"


def read_text_table(
    path: Path,
    *,
    separator: str | None = None,
    as_strings: bool = False,
    skip_rows: int = 0,
) -> pd.DataFrame:
    """Read a delimited text file; ``as_strings`` keeps every cell as text ('' for empty)."""
    sep = separator or sniff_separator(path)
    try:
        if as_strings:
            frame = pd.read_csv(
                path,
                sep=sep,
                dtype=str,
                keep_default_na=False,
                skiprows=skip_rows,
                encoding="utf-8-sig",
            )
        else:
            frame = pd.read_csv(path, sep=sep, skiprows=skip_rows, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise CohortInputError(f"cannot parse {path.name} as a delimited table: {err}") from err
    if frame.shape[1] < 2:
        raise CohortInputError(
            f"{path.name} has {frame.shape[1]} column; expected a tab- or comma-separated table"
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame
