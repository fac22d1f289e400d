"""Checks a command makes before it starts: the store exists, the port is free.

Each returns None when all is well, else a message for the user naming what is wrong and the fix.
Nothing here creates a file or a directory: a mistyped store path must not become a new, empty
store.
"""

from __future__ import annotations

import errno
import os
import socket

from metapredict.settings import StoreSettings, sqlite_path


def _uri_source(settings: StoreSettings) -> str:
    if settings.tracking_uri:
        return "METAPREDICT_TRACKING_URI"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return "MLFLOW_TRACKING_URI"
    return "the default store"


def missing_store(settings: StoreSettings) -> str | None:
    """Why a local (SQLite) store cannot be read, or None (also for server URIs)."""
    database = sqlite_path(settings.resolved_tracking_uri())
    if database is None:
        return None
    source = _uri_source(settings)
    if database.is_dir():
        return (
            f"{database} is a directory, not an MLflow database ({source}); point it at the "
            "mlflow.db file inside, e.g. sqlite:///" + str(database / "mlflow.db")
        )
    if not database.is_file():
        return (
            f"no MLflow store at {database} ({source}); check the path, or train a model "
            "first (metapredict train tropism); nothing was created"
        )
    return None


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, not an address here, ...), or None.

    Binds a socket the way uvicorn does (``SO_REUSEADDR``) and closes it at once.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return f"unknown host {host!r}: give --host an address of this machine, e.g. 127.0.0.1"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is already in use (another `metapredict serve`?); "
                    "stop that process or choose another port with --port"
                )
            if err.errno == errno.EACCES:
                return f"no permission to listen on port {port}; choose --port 1024 or above"
            if err.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this machine; use --host 127.0.0.1"
            return f"cannot listen on {host}:{port}: {err.strerror}"
    return None
