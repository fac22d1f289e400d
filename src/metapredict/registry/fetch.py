"""Fetching registered models for a server's start-up without waiting on MLflow's client.

A local SQLite store with local artifacts is read directly
(:mod:`metapredict.registry.direct_read`): :class:`Prefetch` answers from it at once and starts no
process. For any other store, MLflow's client costs about two seconds in a fresh interpreter
before it can answer (importing MLflow, then SQLAlchemy and Alembic when it opens the store); the
service needs about as long to import its own stack. :class:`Prefetch` then starts a child
process (``python -m metapredict.registry.fetch``) at once; the child asks the registry which
version each alias names, downloads those versions' predictor artifacts into a private directory
and reports them as one JSON line, while the server imports its stack on the other core. The
server then only reads the JSON and model text (checked against the digest the registry
recorded, which the child reports too). The child uses the same calls as
:func:`metapredict.registry.load`; if it fails as a whole, :class:`Prefetch` falls back to
loading in the server's own process.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metapredict.registry.loader import (
    FetchedModel,
    current_version,
    fetch,
    find_local,
    load,
    open_fetched,
)
from metapredict.registry.store import ModelNotFoundError, make_scratch_dir
from metapredict.settings import StoreSettings

if TYPE_CHECKING:
    from metapredict.predictor import Predictor

logger = logging.getLogger(__name__)

#: How long the server waits for the child before loading in its own process.
DEFAULT_TIMEOUT_S = 120.0


class PrefetchFailedError(RuntimeError):
    """The child process gave no usable answer (crashed, timed out, or said nonsense)."""


def _ok(fetched: FetchedModel) -> dict[str, Any]:
    return {"status": "ok", "model": asdict(fetched)}


def _missing(err: ModelNotFoundError) -> dict[str, Any]:
    return {"status": "missing", "message": str(err)}


def fetch_all(
    tasks: Sequence[str], alias: str, settings: StoreSettings, dest: Path
) -> dict[str, dict[str, Any]]:
    """Per task: ``{"status": "ok", "model": {...}}``, ``"missing"`` or ``"error"`` + message."""
    results: dict[str, dict[str, Any]] = {}
    for task in tasks:
        try:
            fetched = fetch(task, alias, settings, dest / task)
        except ModelNotFoundError as err:
            results[task] = _missing(err)
        except Exception as err:  # reported to the server, which keeps polling
            results[task] = {"status": "error", "message": f"{type(err).__name__}: {err}"}
        else:
            results[task] = _ok(fetched)
    return results


def read_all(
    tasks: Sequence[str], alias: str, settings: StoreSettings
) -> dict[str, dict[str, Any]] | None:
    """``fetch_all``'s answer read directly from the store, or None if any task needs MLflow."""
    results: dict[str, dict[str, Any]] = {}
    for task in tasks:
        try:
            fetched = find_local(task, alias, settings)
        except ModelNotFoundError as err:
            results[task] = _missing(err)
            continue
        if not isinstance(fetched, FetchedModel):
            return None
        results[task] = _ok(fetched)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Child entry point: one JSON request as the argument, one JSON line on stdout."""
    request = json.loads((argv if argv is not None else sys.argv[1:])[0])
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything else printed goes to stderr
    settings = StoreSettings(
        tracking_uri=request["tracking_uri"],
        artifact_root=request["artifact_root"],
        direct_read=request["direct_read"],
    )
    results = fetch_all(request["tasks"], request["alias"], settings, Path(request["dest"]))
    answer.write(json.dumps(results) + "\n")
    answer.flush()
    sys.stderr.flush()
    # Nothing is left to write: skip the interpreter's teardown of MLflow (~0.3 s).
    os._exit(0)


class Prefetch:
    """Every task's model for ``alias``: read directly, or by a child started on construction.

    ``version`` and ``load`` have the serving loader signatures ``(task, alias, settings)`` and
    block until the child (if any) answers. ``close`` ends the child and removes what it
    downloaded.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        alias: str,
        settings: StoreSettings,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.alias = alias
        self.settings = settings
        self._deadline = time.monotonic() + timeout
        self._lock = threading.Lock()
        self._answer: dict[str, dict[str, Any]] | None = read_all(tasks, alias, settings)
        self._failure: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dest: Path | None = None
        if self._answer is not None:
            return
        self._dest = make_scratch_dir("fetch")
        request = {
            "tasks": list(tasks),
            "alias": alias,
            "tracking_uri": settings.resolved_tracking_uri(),
            "artifact_root": str(settings.resolved_artifact_root()),
            "direct_read": settings.direct_read,
            "dest": str(self._dest),
        }
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "metapredict.registry.fetch", json.dumps(request)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )

    @property
    def child_started(self) -> bool:
        """Whether a child process asks MLflow (False: the store was read directly)."""
        return self._proc is not None

    @property
    def download_dir(self) -> Path | None:
        """Where the child downloads (removed per task once loaded, and by ``close``); None
        when no child was started."""
        return self._dest

    def _read_answer(self) -> dict[str, dict[str, Any]]:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        chunks: list[bytes] = []
        while not chunks or not chunks[-1].endswith(b"\n"):
            left = self._deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise PrefetchFailedError("the registry lookup process did not answer in time")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = self._proc.wait()
                raise PrefetchFailedError(
                    f"the registry lookup process exited with code {code} without answering"
                )
            chunks.append(chunk)
        try:
            answer = json.loads(b"".join(chunks))
        except ValueError as err:
            raise PrefetchFailedError(
                f"the registry lookup process answered nonsense: {err}"
            ) from err
        if not isinstance(answer, dict):
            raise PrefetchFailedError("the registry lookup process answered nonsense")
        return answer

    def _result(self, task: str, alias: str) -> dict[str, Any] | None:
        """The child's answer for ``task``, or None when the child failed (fall back)."""
        if alias != self.alias:
            return None
        with self._lock:
            if self._answer is None and self._failure is None:
                try:
                    self._answer = self._read_answer()
                except PrefetchFailedError as err:
                    self._failure = str(err)
                    logger.warning("%s; loading in this process instead", err)
            if self._answer is None:
                return None
        return self._answer.get(task)

    def _fetched(self, task: str, alias: str) -> FetchedModel | None:
        result = self._result(task, alias)
        if result is None:
            return None
        if result.get("status") == "missing":
            raise ModelNotFoundError(str(result.get("message")))
        if result.get("status") != "ok":
            raise RuntimeError(str(result.get("message", "the registry lookup failed")))
        return FetchedModel(**result["model"])

    def version(self, task: str, alias: str, settings: StoreSettings) -> str:
        fetched = self._fetched(task, alias)
        if fetched is None:
            return current_version(task, alias, settings)
        return fetched.version

    def load(self, task: str, alias: str, settings: StoreSettings) -> Predictor:
        fetched = self._fetched(task, alias)
        if fetched is None:
            return load(task, alias, settings)
        try:
            return open_fetched(fetched)
        finally:
            if self._dest is not None:  # the child's download (a direct read opens in place)
                shutil.rmtree(self._dest / task, ignore_errors=True)

    def close(self) -> None:
        """End the child if it still runs and remove its downloads (idempotent)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
        if self._dest is not None:
            shutil.rmtree(self._dest, ignore_errors=True)

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    main()
