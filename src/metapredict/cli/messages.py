"""Error messages for people: they name the file (or variable) and the fix, no library prefixes.

pydantic's own text ("1 validation error for DormancyConfig", "Value error, ...", "[type=...,
input_value=...]", "For further information visit https://...") is for developers; TOML's
decoder does not say which file it was reading. :func:`describe` turns both into one line per
problem, each starting with where it is.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic is imported when an error is described, not with the CLI
    from pydantic import ValidationError

#: pydantic puts these in front of the message of an error raised in a validator.
_PREFIXES = ("Value error, ", "Assertion failed, ")


def _location(loc: Sequence[int | str]) -> str:
    """``('cv', 'folds')`` -> ``[cv] folds``: the TOML table and key a user edits."""
    parts = [str(p) for p in loc]
    if len(parts) >= 2:
        return f"[{'.'.join(parts[:-1])}] {parts[-1]}"
    return parts[0] if parts else ""


def _message(error: Any) -> str:
    msg = str(error["msg"])
    for prefix in _PREFIXES:
        msg = msg.removeprefix(prefix)
    return msg


def validation_problems(err: ValidationError, *, env_prefix: str | None = None) -> list[str]:
    """One line per problem: ``<where>: <rule>``, never the input value, never a URL.

    With ``env_prefix`` the fields came from environment variables (pydantic-settings), and
    ``<where>`` is the variable, e.g. ``METAPREDICT_MAX_PATIENTS``.
    """
    lines = []
    for error in err.errors(include_url=False, include_input=False):
        loc = error["loc"]
        if env_prefix is not None and loc:
            where = f"{env_prefix}{str(loc[0]).upper()}"
        else:
            where = _location(loc)
        lines.append(f"{where}: {_message(error)}" if where else _message(error))
    return lines


def describe(err: BaseException, source: Path | str | None = None) -> str:
    """``err`` for a person; ``source`` is the file (or setting) it came from."""
    from pydantic import ValidationError

    where = f"{source}: " if source is not None else ""
    if isinstance(err, ValidationError):
        problems = validation_problems(err)
        if len(problems) == 1:
            return f"{where}{problems[0]}"
        return f"{where}{len(problems)} problems\n" + "\n".join(f"  - {p}" for p in problems)
    if isinstance(err, tomllib.TOMLDecodeError):
        return f"{where}not valid TOML: {err} (fix the syntax there)"
    if isinstance(err, FileNotFoundError) and err.filename is not None:
        return f"no such file: {err.filename}"
    return str(err)
