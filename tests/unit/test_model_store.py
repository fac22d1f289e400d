"""The model store says what happened: typed reasons, "failed" apart from "no champion", retries
with backoff, a reload timeout, and no local paths in what it reports."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from typing import Any

import pytest

from metapredict.predictor import ModelInfo, Predictor
from metapredict.registry.store import ModelNotFoundError
from serving import model_store
from serving.model_store import ModelStore, describe_error
from serving.settings import ServingSettings


class _Registry:
    """A fake registry: ``current`` names the champion; ``outcomes`` what loading gives."""

    def __init__(self, outcomes: dict[str, Any]) -> None:
        self.outcomes = outcomes
        self.current: str | None = "5"
        self.loads = 0
        self.gate: threading.Event | None = None

    def probe(self, task: str, alias: str, settings: ServingSettings) -> str:
        if self.current is None:
            raise ModelNotFoundError(
                f"no model 'metapredict-{task}' with alias '{alias}' in "
                f"sqlite:////srv/secret/store/mlflow.db; train one first: metapredict train {task}"
            )
        return self.current

    def load(self, task: str, alias: str, settings: ServingSettings) -> Predictor:
        self.loads += 1
        if self.gate is not None:
            assert self.gate.wait(10)
        found = self.outcomes[str(self.current)]
        if isinstance(found, BaseException):
            raise found
        return replace(
            found, info=ModelInfo(name=f"metapredict-{task}", version=self.current or "")
        )


def _store(registry: _Registry, **settings: Any) -> ModelStore:
    return ModelStore(
        ServingSettings(tasks=("tropism",), poll_seconds=5, **settings),
        loader=registry.load,
        version_probe=registry.probe,
    )


@pytest.fixture
def predictor() -> Predictor:
    """Enough of a predictor for the store (it never predicts here)."""
    from metapredict import features

    return Predictor(
        task="tropism", model=None, feature_ranges={}, feature_names=features.feature_names()
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (EOFError(), "EOFError: EOFError()"),
        (KeyError(3), "KeyError: 3"),
        (ValueError(""), "ValueError: ValueError('')"),
        (
            FileNotFoundError(2, "No such file", "/srv/store/artifacts/m-1/predictor.joblib"),
            "FileNotFoundError: [Errno 2] No such file: '.../predictor.joblib'",
        ),
    ],
)
def test_a_load_error_names_its_type_and_reason(error: BaseException, expected: str) -> None:
    assert describe_error(error) == expected


def test_a_champion_that_fails_to_load_is_not_no_champion() -> None:
    registry = _Registry({"5": EOFError()})
    store = _store(registry)
    store.load_initial()
    assert store.status("tropism") == "failed"
    assert store.problem("tropism") == "champion v5 failed to load: EOFError: EOFError()"
    registry.current = None
    asyncio.run(store.reload())
    assert store.status("tropism") == "missing"
    problem = store.problem("tropism")
    assert problem is not None and problem.startswith("no champion for tropism")
    assert "metapredict train tropism" in problem and "/srv" not in problem


def test_a_failed_version_is_retried_with_backoff_not_every_poll(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(model_store.time, "monotonic", lambda: clock[0])
    registry = _Registry({"5": ValueError("truncated"), "6": predictor})
    store = _store(registry)
    store.load_initial()
    assert registry.loads == 1
    waits = []
    for _ in range(3):
        (skipped,) = asyncio.run(store.reload(poll=True))
        assert (skipped.status, skipped.attempted, registry.loads) == (
            "failed",
            False,
            len(waits) + 1,
        )
        assert skipped.retry_at is not None
        wait = skipped.retry_at - skipped.at
        waits.append(wait)
        clock[0] += wait + 1
        (retried,) = asyncio.run(store.reload(poll=True))
        assert retried.attempted and registry.loads == len(waits) + 1
    assert waits[0] == pytest.approx(model_store.RETRY_BASE_S, abs=1)
    assert waits[1] == pytest.approx(2 * waits[0], abs=1) and waits[2] == pytest.approx(
        4 * waits[0], abs=1
    )
    # an admin reload tries at once; a new version is tried at once
    asyncio.run(store.reload())
    assert registry.loads == 5
    registry.current = "6"
    (loaded,) = asyncio.run(store.reload(poll=True))
    assert loaded.status == "loaded" and store.problem("tropism") is None


def test_a_reload_that_hangs_answers_within_its_timeout(predictor: Predictor) -> None:
    registry = _Registry({"5": predictor})
    store = _store(registry, reload_timeout_seconds=0.2)
    registry.gate = threading.Event()

    async def scenario() -> None:
        (slow,) = await store.reload()
        assert slow.status == "failed" and "took longer than 0.2 s" in slow.message
        (again,) = await store.reload()
        assert "still running" in again.message
        registry.gate.set()  # type: ignore[union-attr]
        for _ in range(200):
            if store.current.get("tropism") is not None:
                break
            await asyncio.sleep(0.02)
        assert store.current.get("tropism") is not None
        assert store.last_reload["tropism"].status == "loaded"

    asyncio.run(scenario())
