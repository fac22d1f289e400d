"""Keep local paths out of HTTP responses.

Load and reload failures carry the messages of the exceptions behind them, which often name
files (``[Errno 2] No such file or directory: '/srv/store/artifacts/.../predictor.joblib'``,
``file:///...``, ``sqlite:////srv/store/mlflow.db``). The log keeps them whole for the operator;
a response shows only each path's last part (``.../predictor.joblib``).
"""

from __future__ import annotations

import re

#: An absolute path (optionally behind a URI scheme such as ``file://`` or ``sqlite:///``):
#: its folders, then its last part.
_ABSOLUTE = re.compile(
    r"(?:(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*:/*)|(?<![\w.~:-]))"
    r"/(?P<folders>(?:[^/\s'\"`,;()<>\[\]{}]+/)+)"
    r"(?P<name>[^/\s'\"`,;()<>\[\]{}]*)"
)


#: Schemes naming local files; other URIs (``models:/``, ``runs:/``, ``http://``) are kept.
_LOCAL_SCHEMES = re.compile(r"(file|sqlite(\+\w+)?):/*", re.IGNORECASE)


def _short(match: re.Match[str]) -> str:
    scheme = match["scheme"]
    if scheme is not None and not _LOCAL_SCHEMES.fullmatch(scheme):
        return match[0]
    return ".../" + match["name"]


def without_paths(text: str) -> str:
    """``text`` with every absolute path or file URI cut to ``.../<last part>``."""
    return _ABSOLUTE.sub(_short, text)
