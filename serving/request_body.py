"""Reading a request body: its media type, its size, a bound on its work, JSON or CSV.

Work per request is bounded before anything is parsed: a body may hold at most as many JSON
values (counted by their separators, ``,`` and ``:``, and for CSV its lines) as the largest
allowed request of complete patients needs, so a 4 MB body of 290,000 keys is refused in about a
millisecond instead of being parsed and checked key by key. Duplicate keys are refused (JSON
parsers keep the last one silently): the check costs microseconds for a request that is
otherwise valid, and is only made for such requests.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from starlette.requests import Request

from metapredict import schema
from serving.request_model import CANCER_TYPE, ID_FIELD, STAGE
from serving.settings import ServingSettings
from serving.validation import RequestRejected, parse_json

JSON = "application/json"
CSV = "text/csv"

#: Bodies at least this large are parsed and validated in a worker thread, off the event loop.
OFF_LOOP_BYTES = 64_000


def media_type(request: Request, accepted: tuple[str, ...]) -> str:
    """The request's media type, one of ``accepted``; else 415 naming what to send."""
    header = request.headers.get("content-type")
    wanted = " or ".join(f"Content-Type: {m}" for m in accepted)
    if header is None:
        raise RequestRejected(415, f"no Content-Type header; send {wanted}")
    mime, *parameters = (p.strip() for p in header.split(";"))
    mime = mime.lower()
    if mime not in accepted:
        raise RequestRejected(415, f"Content-Type {mime[:100]!r} is not accepted; send {wanted}")
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            raise RequestRejected(
                415, f"Content-Type parameter {parameter[:100]!r} is not accepted; send UTF-8"
            )
    return mime


async def read_body(request: Request, settings: ServingSettings, mime: str) -> bytes:
    """The body, refused (413) as soon as it is larger than ``settings.max_body_bytes`` or
    holds more values than ``settings.max_patients`` patients can (see :func:`value_budget`),
    while it is read; an empty body is a 400."""
    too_large = f"request body larger than {settings.max_body_bytes} bytes"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise RequestRejected(413, too_large)
    budget = Budget(mime, settings.max_patients)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > settings.max_body_bytes:
            raise RequestRejected(413, too_large)
        budget.spend(chunk)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise RequestRejected(400, "empty request body: send a JSON object")
    return body


def value_budget(max_patients: int) -> int:
    """How many JSON separators the largest allowed request needs, with room to spare."""
    fields = len(schema.feature_columns()) + 1  # and the id
    return 3 * max_patients * (fields + 1) + 1024


class Budget:
    """The separators (and CSV lines) a body may hold: 413 as soon as it holds more."""

    def __init__(self, mime: str, max_patients: int) -> None:
        self.csv = mime == CSV
        self.max_patients = max_patients
        self.limit = value_budget(max_patients)
        self.separators = 0
        self.lines = 0

    def spend(self, chunk: bytes) -> None:
        self.separators += chunk.count(b",") + chunk.count(b":")
        if self.separators > self.limit:
            raise RequestRejected(
                413,
                f"the body holds more values than {self.max_patients} patients can (more than "
                f"{self.limit} ',' and ':'); send fewer patients or fields per request",
            )
        if self.csv:
            self.lines += chunk.count(b"\n")
            if self.lines > self.max_patients + 1:
                raise RequestRejected(
                    413, f"more than {self.max_patients} patients and a header line of CSV"
                )


def parse(body: bytes, mime: str) -> tuple[Any, bool]:
    """(the document (JSON) or the rows (CSV), whether JSON held NaN / Infinity) of a body
    already within its budget."""
    if mime == CSV:
        return parse_csv(body), False
    return parse_json(body)


def parse_csv(body: bytes) -> list[dict[str, Any]]:
    """The rows of a CSV body with a header line, as ``DataFrame.to_csv`` writes them.

    An empty cell is a missing value; numbers are numbers; ``id``, ``cancer_type`` and
    ``stage`` are text.
    """
    import pandas as pd

    try:
        text = body.decode("utf-8")
        frame = pd.read_csv(io.StringIO(text), dtype={ID_FIELD: str, CANCER_TYPE: str, STAGE: str})
    except UnicodeDecodeError as err:
        raise RequestRejected(400, f"the CSV body is not UTF-8: {err}") from err
    except (ValueError, pd.errors.ParserError) as err:
        raise RequestRejected(
            400,
            f"the CSV body could not be read ({err}); send a header line and one row "
            "per patient, as DataFrame.to_csv(index=False) writes them",
        ) from err
    rows: list[dict[str, Any]] = frame.to_dict(orient="records")
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and math.isnan(value):
                row[key] = None
    return rows


def nan_as_missing(rows: list[Any]) -> list[Any]:
    """``rows`` with NaN cells as missing (null), as pandas and MLflow's clients mean them:
    ``convert_input_example_to_serving_input`` writes a frame's missing values as ``NaN``.
    Infinity stays, and is refused."""
    out: list[Any] = []
    for row in rows:
        if isinstance(row, dict):
            row = {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}
        out.append(row)
    return out


def _keys_and_colons(document: Any) -> tuple[int, int]:
    """(object keys, ``:`` characters inside strings) of a parsed JSON document."""
    keys = colons = 0
    stack = [document]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            keys += len(node)
            for key in node:
                if ":" in key:
                    colons += key.count(":")
            values: Any = node.values()
        else:  # a list
            values = node
        for value in values:
            kind = type(value)
            if kind is str:
                if ":" in value:
                    colons += value.count(":")
            elif kind is dict or kind is list:
                stack.append(value)
    return keys, colons


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                name = key if len(key) <= 64 else key[:61] + "..."
                raise RequestRejected(
                    422, f"the key {name!r} appears twice in one JSON object; send it once"
                )
            seen.add(key)
    return out


def check_no_duplicate_keys(body: bytes, document: Any) -> None:
    """422 when a JSON object of ``body`` repeats a key.

    Every key is followed by a ``:`` outside strings, so a body whose ``:`` count equals the
    parsed document's keys plus the ``:`` inside its strings has no repeated key. A body that
    escapes a colon (``\\u003a``) cannot be counted so, and is parsed once more, keeping pairs.
    """
    if b"\\u003a" in body or b"\\u003A" in body:
        json.loads(body.decode("utf-8"), object_pairs_hook=_refuse_duplicates)
        return
    keys, colons = _keys_and_colons(document) if type(document) in (dict, list) else (0, 0)
    if body.count(b":") != keys + colons:
        json.loads(body.decode("utf-8"), object_pairs_hook=_refuse_duplicates)
