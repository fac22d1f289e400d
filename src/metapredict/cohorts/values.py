"""Clinical value parsers: missing tokens, Yes/No flags, relapse status, stage, age, cancer type.

Every parser takes one raw cell (text) and returns a parsed value or ``None`` for missing, so
callers can count what was missing. Nothing here knows about files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from metapredict import schema

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
_STAGE_RE: Final = re.compile(r"^(?:AJCC\s*)?(?:STAGE\s*)?(IV|III|II|I|[1-4])(?:[A-D]\d?)?$")


def parse_stage(value: object, overrides: Mapping[str, str] | None = None) -> str | None:
    """AJCC stage text ('Stage IIA', 'STAGE III', 'IIIB', '2') -> 'I' | 'II' | 'III' | 'IV'.

    Stage 0, 'Stage X' and unparseable text raise ``ValueError``; missing -> ``None``.
    """
    if overrides:
        for raw, mapped in overrides.items():
            if normalise(raw) == normalise(value):
                return mapped
    if is_missing(value):
        return None
    text = re.sub(r"\s+", " ", str(value).strip().upper())
    match = _STAGE_RE.match(text)
    if not match:
        raise ValueError(f"not an AJCC stage I-IV: {value!r}")
    return _ROMAN[match.group(1)]


# cBioPortal / OncoTree text -> schema.CANCER_TYPES. Keys are lower-case. A value of None marks
# a recognised type the schema does not cover (it must not fall back to the broader CANCER_TYPE,
# e.g. "Uveal Melanoma" is not cutaneous melanoma, "Lung Squamous Cell Carcinoma" is NSCLC but
# not adenocarcinoma).
_CANCER_TYPE_TEXT: Final[dict[str, str | None]] = {
    # breast
    "breast cancer": "breast",
    "breast carcinoma": "breast",
    "invasive breast carcinoma": "breast",
    "breast invasive carcinoma": "breast",
    "breast invasive ductal carcinoma": "breast",
    "breast invasive lobular carcinoma": "breast",
    "breast mixed ductal and lobular carcinoma": "breast",
    "breast invasive mixed mucinous carcinoma": "breast",
    "breast invasive carcinoma, nos": "breast",
    "brca": "breast",
    "idc": "breast",
    "ilc": "breast",
    "mdlc": "breast",
    # colorectal
    "colorectal cancer": "colorectal",
    "colorectal adenocarcinoma": "colorectal",
    "colon adenocarcinoma": "colorectal",
    "rectal adenocarcinoma": "colorectal",
    "colon cancer": "colorectal",
    "rectal cancer": "colorectal",
    "mucinous adenocarcinoma of the colon and rectum": "colorectal",
    "coad": "colorectal",
    "read": "colorectal",
    "coadread": "colorectal",
    # lung adenocarcinoma (NSCLC only through its detailed type)
    "lung adenocarcinoma": "lung_adenocarcinoma",
    "luad": "lung_adenocarcinoma",
    "lung squamous cell carcinoma": None,
    "lusc": None,
    "small cell lung cancer": None,
    "large cell lung carcinoma": None,
    # melanoma (cutaneous)
    "melanoma": "melanoma",
    "cutaneous melanoma": "melanoma",
    "skin cutaneous melanoma": "melanoma",
    "melanoma of unknown primary": "melanoma",
    "skcm": "melanoma",
    "mel": "melanoma",
    "uveal melanoma": None,
    "mucosal melanoma of the vulva/vagina": None,
    "mucosal melanoma": None,
    "uvm": None,
    # prostate
    "prostate cancer": "prostate",
    "prostate adenocarcinoma": "prostate",
    "prad": "prostate",
    # pancreatic (exocrine)
    "pancreatic cancer": "pancreatic",
    "pancreatic adenocarcinoma": "pancreatic",
    "pancreatic ductal adenocarcinoma": "pancreatic",
    "paad": "pancreatic",
    "pancreatic neuroendocrine tumor": None,
    "panet": None,
}


class UnrecognisedCancerType(ValueError):
    """Cancer type text that is missing from the vocabulary (or a type the schema excludes)."""


def parse_cancer_type(
    candidates: Iterable[object], overrides: Mapping[str, str] | None = None
) -> str | None:
    """Map cBioPortal cancer-type cells, most specific first, to ``schema.CANCER_TYPES``.

    ``candidates`` are e.g. (CANCER_TYPE_DETAILED, CANCER_TYPE, ONCOTREE_CODE) of one row. The
    first non-missing cell the vocabulary recognises decides; a recognised type the schema does
    not cover (uveal melanoma, lung squamous) stops the search. All missing -> ``None``; present
    but unrecognised -> :class:`UnrecognisedCancerType`.
    """
    user = {normalise(k): v for k, v in (overrides or {}).items()}
    seen: list[str] = []
    for value in candidates:
        if is_missing(value):
            continue
        text = normalise(value)
        seen.append(str(value).strip())
        if text in schema.CANCER_TYPES:
            return text
        if text in user:
            return user[text]
        if text in _CANCER_TYPE_TEXT:
            mapped = _CANCER_TYPE_TEXT[text]
            if mapped is None:
                raise UnrecognisedCancerType(f"not covered by the schema: {seen[-1]!r}")
            return mapped
    if not seen:
        return None
    raise UnrecognisedCancerType(f"not in the cancer_type vocabulary: {' / '.join(seen)!r}")
