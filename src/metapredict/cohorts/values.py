"""Clinical value parsers: missing tokens, Yes/No flags, relapse status, stage, age, cancer type.

Every parser takes one raw cell (text) and returns a parsed value or ``None`` for missing, so
callers can count what was missing. Nothing here knows about files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from metapredict.cancer_types import known_label, normalise_cancer_type, snake_case

#: Cell values that mean "no value" in cBioPortal and TCGA exports (compared case-insensitively).
MISSING_TOKENS: Final = frozenset(
    {
        "",
        "na",
        "n/a",
        "nan",
        "none",
        "null",
        "-",
        "--",
        ".",
        "unknown",
        "not available",
        "[not available]",
        "[unknown]",
        "[not applicable]",
        "[not evaluated]",
        "[discrepancy]",
        "[not reported]",
        "[completed]",
    }
)

_TRUE_FLAGS: Final = frozenset({"yes", "y", "true", "t", "1", "positive", "present"})
_FALSE_FLAGS: Final = frozenset({"no", "n", "false", "f", "0", "negative", "absent"})

_EVENT_WORDS: Final = frozenset(
    {
        "recurred",
        "progressed",
        "recurred/progressed",
        "recurrence",
        "relapse",
        "relapsed",
        "progression",
        "event",
        "deceased",
        "dead",
        "yes",
        "true",
        "1",
    }
)
_CENSORED_WORDS: Final = frozenset(
    {
        "diseasefree",
        "disease free",
        "censored",
        "censor",
        "no event",
        "living",
        "alive",
        "no",
        "false",
        "0",
    }
)
_STATUS_PREFIX: Final = re.compile(r"^\s*([01])\s*:")


def normalise(value: object) -> str:
    return str(value).strip().lower()


def is_missing(value: object, extra_tokens: Iterable[str] = ()) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN
        return True
    text = normalise(value)
    return text in MISSING_TOKENS or text in {normalise(t) for t in extra_tokens}


def parse_flag(
    value: object, *, true: Iterable[str] = (), false: Iterable[str] = ()
) -> bool | None:
    """Yes/No (also True/False, 1/0) -> bool; Unknown or missing -> None."""
    if is_missing(value):
        return None
    text = normalise(value)
    if text in _TRUE_FLAGS or text in {normalise(t) for t in true}:
        return True
    if text in _FALSE_FLAGS or text in {normalise(t) for t in false}:
        return False
    raise ValueError(f"not a Yes/No flag: {value!r}")


def parse_status(
    value: object, *, true: Iterable[str] = (), false: Iterable[str] = ()
) -> bool | None:
    """cBioPortal survival status ('1:Recurred/Progressed', '0:DiseaseFree', ...) -> event."""
    if is_missing(value):
        return None
    text = normalise(value)
    if text in {normalise(t) for t in true}:
        return True
    if text in {normalise(t) for t in false}:
        return False
    prefix = _STATUS_PREFIX.match(text)
    if prefix:
        return prefix.group(1) == "1"
    if text in _EVENT_WORDS:
        return True
    if text in _CENSORED_WORDS:
        return False
    raise ValueError(f"not a survival status: {value!r}")


def parse_number(value: object) -> float | None:
    """A number, tolerating '90+' / '>89' style top-coding; missing -> None."""
    if is_missing(value):
        return None
    text = str(value).strip().lstrip("<>=~").rstrip("+")
    try:
        return float(text)
    except ValueError as err:
        raise ValueError(f"not a number: {value!r}") from err


_ROMAN: Final = {"I": "I", "II": "II", "III": "III", "IV": "IV", "1": "I", "2": "II", "3": "III"}
_ROMAN["4"] = "IV"
_STAGE_UNKNOWN: Final = re.compile(r"^(?:AJCC\s*)?(?:STAGE\s*)?X$")
_STAGE_RE: Final = re.compile(r"^(?:AJCC\s*)?(?:STAGE\s*)?(IV|III|II|I|[1-4])(?:[A-D]\d?)?$")


def parse_stage(value: object, overrides: Mapping[str, str] | None = None) -> str | None:
    """AJCC stage text ('Stage IIA', 'STAGE III', 'IIIB', '2') -> 'I' | 'II' | 'III' | 'IV'.

    Stage 0 and unparseable text raise ``ValueError``; missing and 'Stage X' (not assessable)
    -> ``None``.
    """
    if overrides:
        for raw, mapped in overrides.items():
            if normalise(raw) == normalise(value):
                return mapped
    if is_missing(value):
        return None
    text = re.sub(r"\s+", " ", str(value).strip().upper())
    if _STAGE_UNKNOWN.match(text):
        return None  # 'Stage X': cannot be assessed
    match = _STAGE_RE.match(text)
    if not match:
        raise ValueError(f"not an AJCC stage I-IV: {value!r}")
    return _ROMAN[match.group(1)]


class UnrecognisedCancerType(ValueError):
    """Cancer-type text that no label can be made of (no letter or digit)."""


#: Fallback order when no candidate is in the table: the broad CANCER_TYPE first, then the
#: detailed type, then the OncoTree code (indices into the candidates).
_FALLBACK_ORDER: Final = (1, 0, 2)


def parse_cancer_type(
    candidates: Sequence[object], overrides: Mapping[str, str] | None = None
) -> str | None:
    """Map a row's cancer-type cells to a normalised label (:mod:`metapredict.cancer_types`).

    ``candidates`` are (CANCER_TYPE_DETAILED, CANCER_TYPE, ONCOTREE_CODE) of one row, most
    specific first. A user override decides first, then the first cell the built-in table
    knows ("Lung Squamous Cell Carcinoma" is ``lung_squamous``, never the broader
    "Non-Small Cell Lung Cancer"). When the table knows none, the broad type is kept as given,
    in lowercase snake case. All missing -> ``None``.
    """
    user = {normalise(k): v for k, v in (overrides or {}).items()}
    cells = [None if is_missing(v) else str(v).strip() for v in candidates]
    present = [text for text in cells if text is not None]
    if not present:
        return None
    for cell in present:
        if normalise(cell) in user:
            return snake_case(user[normalise(cell)])
        label = known_label(cell)
        if label is not None:
            return label
    order = [i for i in _FALLBACK_ORDER if i < len(cells)] + list(range(3, len(cells)))
    fallback = next(found for i in order if (found := cells[i]) is not None)
    try:
        return normalise_cancer_type(fallback)
    except ValueError as err:
        raise UnrecognisedCancerType(str(err)) from err
